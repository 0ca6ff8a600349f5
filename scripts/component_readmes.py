"""Write (or check) each component folder's README.md from its docstring, signature and metadata.yaml.

The Kubeflow pipelines-components catalog's layout: every component folder holds ``component.py``,
``metadata.yaml`` and a ``README.md`` whose overview, inputs and outputs are generated from the
component (one source of truth: the docstring's ``Args:`` and the signature's types and defaults),
followed by hand-written content after ``CUSTOM_MARKER`` (usage example, the tests that cover it),
which regeneration keeps. tests/test_catalog.py runs ``--check`` so that a README cannot drift.

    .venv/bin/python scripts/component_readmes.py           # rewrite the generated part
    .venv/bin/python scripts/component_readmes.py --check   # exit 1 naming each stale README
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Annotated, get_args, get_origin

import yaml

from liger_bench.plan.signature import docstring_args

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ROOT / "components"
CUSTOM_MARKER = "<!-- custom-content -->"


def component_folders() -> list[Path]:
    """Every folder under components/ that holds a ``component.py``."""
    return sorted(path.parent for path in COMPONENTS.glob("*/component.py"))


def split_docstring(doc: str) -> tuple[str, dict[str, str], str]:
    """A Google docstring's overview, its ``Args:`` descriptions (one line each) and its ``Returns:`` text."""
    lines = inspect.cleandoc(doc).splitlines()
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in lines:
        if line in ("Args:", "Returns:"):
            current = line[:-1]
            sections[current] = []
        else:
            sections[current].append(line)
    returns = " ".join(line.strip() for line in sections.get("Returns", []) if line.strip())
    return "\n".join(sections[""]).strip(), docstring_args(doc), returns


def type_name(annotation: object) -> str:
    """How the signature spells a type: ``str``, ``list[int]``, ``Input[Model]``, ``Output[HTML]``."""
    if get_origin(annotation) is Annotated:  # kfp's Input[T] and Output[T]
        inner, marker = get_args(annotation)
        return f"{marker.__name__.removesuffix('Annotation')}[{type_name(inner)}]"
    if isinstance(annotation, type) and not get_args(annotation):
        return annotation.__name__
    return re.sub(r"\b(?:typing|kfp\.dsl(?:\.\w+)*)\.", "", str(annotation))


def generated_part(folder: Path) -> str:
    """The README up to ``CUSTOM_MARKER``: title, overview, inputs, outputs, metadata."""
    name = folder.name
    component = getattr(importlib.import_module(f"liger_bench.components.{name}"), name)
    func = component.python_func
    overview, descriptions, returns = split_docstring(func.__doc__ or "")
    metadata = yaml.safe_load((folder / "metadata.yaml").read_text())
    signature = inspect.signature(func)
    inputs, outputs = [], []
    for param in signature.parameters.values():
        kind = type_name(param.annotation)
        description = descriptions[param.name]
        if kind.startswith("Output["):
            outputs.append(f"| `{param.name}` | `{kind[len('Output[') : -1]}` | {description} |")
        else:
            default = "" if param.default is inspect.Parameter.empty else f"`{param.default!r}`"
            inputs.append(f"| `{param.name}` | `{kind}` | {default} | {description} |")
    if signature.return_annotation is not inspect.Signature.empty:
        outputs.append(f"| `Output` | `{type_name(signature.return_annotation)}` | {returns} |")
    dependencies = metadata["dependencies"]
    kubeflow = ", ".join(f"{dep['name']} {dep['version']}" for dep in dependencies["kubeflow"])
    services = ", ".join(dep["name"] for dep in dependencies.get("external_services") or []) or "none"
    return "\n".join(
        [
            f"# {name.replace('_', ' ').capitalize()}",
            "",
            "## Overview",
            "",
            overview,
            "",
            "## Inputs",
            "",
            "| Parameter | Type | Default | Description |",
            "|-----------|------|---------|-------------|",
            *inputs,
            "",
            "## Outputs",
            "",
            "| Name | Type | Description |",
            "|------|------|-------------|",
            *outputs,
            "",
            "## Metadata",
            "",
            f"- **Name**: {metadata['name']}",
            f"- **Tier**: {metadata['tier']}",
            f"- **Stability**: {metadata['stability']}",
            f"- **Kubeflow dependencies**: {kubeflow}",
            f"- **External services**: {services}",
            f"- **Tags**: {', '.join(metadata.get('tags') or [])}",
            f"- **Last verified**: {metadata['lastVerified']:%Y-%m-%d}",
            "",
            "",
        ]
    )


def readme_text(folder: Path) -> str:
    """The README as it should be: the generated part, then the folder's hand-written part unchanged."""
    existing = (folder / "README.md").read_text() if (folder / "README.md").exists() else ""
    custom = existing.partition(CUSTOM_MARKER)[2] if CUSTOM_MARKER in existing else "\n"
    return generated_part(folder) + CUSTOM_MARKER + custom


def main(argv: list[str] | None = None) -> int:
    """Rewrite every component README, or with ``--check`` report the stale ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a README is stale")
    args = parser.parse_args(argv)
    stale = []
    for folder in component_folders():
        path, text = folder / "README.md", readme_text(folder)
        if not path.exists() or path.read_text() != text:
            stale.append(str(path.relative_to(ROOT)))
            if not args.check:
                path.write_text(text)
    if stale and args.check:
        print(f"stale, run scripts/component_readmes.py: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
