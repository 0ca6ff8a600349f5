"""The compiled pipeline package: the same bytes for the same pipeline and options.

kfp 2.17 lists every pipeline parameter's default in the package's header comment, rendered from a
protobuf ``Struct`` whose key order follows the process's string hashing; two compiles of the same
pipeline then differ inside a dict default (``gpu_tolerations``). ``stable_header`` sorts those keys.
"""

from __future__ import annotations

import ast
import re
import tempfile
from pathlib import Path
from typing import Any

from liger_bench.records import write_text_atomic

# The pipeline's name in the package and in Kubeflow (kfp-free here, so that ``liger-bench upload --help`` shows it).
PIPELINE_NAME = "liger-benchmark"
# "#    gpu_tolerations: list [Default: [{'key': ..., 'effect': ...}]]"
HEADER_DEFAULT = re.compile(r"^(#    \S+: \S+ \[Default: )(.*)(\])$")


def compile_package(pipeline, output: Path) -> Path:
    """Compile ``pipeline`` to the YAML package ``output`` (written atomically) with a stable header."""
    from kfp import compiler

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "pipeline.yaml"
        compiler.Compiler().compile(pipeline, str(raw))
        return write_text_atomic(output, stable_header(raw.read_text()))


def stable_header(text: str) -> str:
    """``text`` with the dict defaults of the leading comment rendered with sorted keys."""
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if not line.startswith("#"):
            break
        match = HEADER_DEFAULT.match(line.rstrip("\n"))
        if match:
            lines[index] = f"{match[1]}{_sorted(ast.literal_eval(match[2]))!r}{match[3]}\n"
    return "".join(lines)


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value
