"""The pipeline's parameters as its signature declares them, read without importing kfp.

The signature of ``liger_benchmark`` in ``pipelines/liger_benchmark.py`` is the one declaration of
every pipeline parameter: name, type, default (what the Kubeflow UI shows) and the docstring's
``Args:`` line. This module reads them from the source with ``ast``, so that the grid, the training
config and ``liger-bench local --help`` take them from there and stay instant; kfp compiles the same
signature (tests/test_cli.py checks that both readings agree).
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib.util
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PIPELINE_MODULE = "liger_bench.pipelines.liger_benchmark"
# The annotations kfp accepts for our parameters, and the type names kfp gives them.
KFP_TYPES = {"str": "String", "int": "Integer", "float": "Float", "bool": "Boolean", "list": "List", "dict": "Dict"}
ARG_LINE = re.compile(r"^(?P<indent> +)(?P<name>\w+): (?P<text>.*)$")


class SignatureError(ValueError):
    """The pipeline signature breaks a house rule: every parameter has a literal default, a type and an Args line."""


@dataclass(frozen=True)
class PipelineParameter:
    """One pipeline parameter as declared.

    Args:
        name: The parameter's name.
        kfp_type: kfp's name of its type (``String``, ``Integer``, ``Float``, ``Boolean``, ``List``, ``Dict``).
        default: Its default value (a literal).
        help: Its line of the docstring's ``Args:`` section, continuation lines joined.
    """

    name: str
    kfp_type: str
    default: Any
    help: str


def pipeline_parameters(source: Path | None = None) -> dict[str, PipelineParameter]:
    """The pipeline's parameters, by name, in the signature's order.

    Args:
        source: A pipeline module to read; ``None``: the installed ``pipelines/liger_benchmark.py``.

    Returns:
        Name to parameter; defaults are copies, so callers may change them.

    Raises:
        SignatureError: No ``@dsl.pipeline`` function, or a parameter without a literal default,
            a kfp type or an ``Args:`` line.
    """
    return copy.deepcopy(_read(source or Path(importlib.util.find_spec(PIPELINE_MODULE).origin)))


def pipeline_default(name: str) -> Any:
    """The default of the pipeline parameter ``name`` (a fresh copy of a list or dict).

    Args:
        name: A pipeline parameter's name.

    Raises:
        KeyError: The pipeline has no such parameter.
    """
    return pipeline_parameters()[name].default


@functools.cache
def _read(path: Path) -> dict[str, PipelineParameter]:
    function = _pipeline_function(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), path)
    helps = docstring_args(ast.get_docstring(function) or "")
    arguments = function.args.args
    with_defaults = arguments[len(arguments) - len(function.args.defaults) :]
    defaults = {argument.arg: node for argument, node in zip(with_defaults, function.args.defaults, strict=True)}
    parameters = {}
    for argument in arguments:
        name = argument.arg
        annotation = argument.annotation.id if isinstance(argument.annotation, ast.Name) else None
        if annotation not in KFP_TYPES:
            raise SignatureError(f"{path}: parameter {name}: annotation must be one of {sorted(KFP_TYPES)}")
        if name not in defaults:
            raise SignatureError(f"{path}: parameter {name} has no default; every pipeline parameter needs one")
        if name not in helps:
            raise SignatureError(f"{path}: parameter {name} has no line in the docstring's Args: section")
        try:
            default = ast.literal_eval(defaults[name])
        except ValueError:
            raise SignatureError(f"{path}: parameter {name}: the default must be a literal") from None
        parameters[name] = PipelineParameter(name, KFP_TYPES[annotation], default, helps[name])
    return parameters


def _pipeline_function(tree: ast.Module, path: Path) -> ast.FunctionDef:
    """The function decorated with ``@dsl.pipeline(...)``, wherever it is nested."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                called = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(called, ast.Attribute) and called.attr == "pipeline":
                    return node
    raise SignatureError(f"{path}: no function decorated with @dsl.pipeline")


def docstring_args(docstring: str) -> dict[str, str]:
    """Name to text of a Google-style docstring's ``Args:`` entries, continuation lines joined.

    Args:
        docstring: The docstring (its indentation is removed first).
    """
    lines = inspect.cleandoc(docstring).splitlines()
    entries: dict[str, list[str]] = {}
    indent = None
    for line in lines[lines.index("Args:") + 1 :] if "Args:" in lines else []:
        if line and not line.startswith(" "):
            break  # the next section
        match = ARG_LINE.match(line)
        if match and (indent is None or len(match["indent"]) == indent):
            indent = len(match["indent"])
            entries[match["name"]] = [match["text"]]
        elif line.strip() and entries:
            entries[list(entries)[-1]].append(line.strip())
    return {name: " ".join(text) for name, text in entries.items()}
