"""What a user types on the command line, checked before anything slow starts.

kfp-free: the caller passes the pipeline's declared parameters (name to kfp type name such as
``Integer``), read from the pipeline signature (``liger_bench.plan.signature``), which stays the one place
that declares them.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from liger_bench.inputs.hub import is_local

QUOTING_RULE = (
    "values are JSON inside shell quotes: strings need JSON quotes, e.g. --param model_name='\"org/model\"'; "
    "lists look like --param per_device_train_batch_size='[2, 4]'"
)
# kfp's parameter type names and the JSON values each accepts.
ACCEPTED_TYPES: dict[str, tuple[type, ...]] = {
    "String": (str,),
    "Integer": (int,),
    "Float": (int, float),
    "Boolean": (bool,),
    "List": (list,),
    "Dict": (dict,),
}
TYPE_WORDS = {
    "String": "a JSON string",
    "Integer": "an integer",
    "Float": "a number",
    "Boolean": "true or false",
    "List": "a JSON list",
    "Dict": "a JSON object",
}
LOCAL_PATH_PARAMETERS = ("model_name", "dataset_name")
# What tells a local model folder from a local dataset, as named in the message for a swapped pair.
LOCAL_KIND_FILES = {"model": "config.json", "dataset": "data files, no config.json"}


class UserError(Exception):
    """A mistake in what the user typed or pointed at: shown as one message, without a traceback."""


def closest(name: str, valid: list[str]) -> str:
    """' (did you mean X?)' for the nearest valid name, or '' when none is close.

    Every valid name that contains ``name`` is near (up to three: ``batch_size`` is in
    ``frontier_max_batch_size``, ``frontier_seq_batch_size`` and ``per_device_train_batch_size``); else the most
    similar one.
    """
    match = [v for v in valid if name in v][:3] or difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f" (did you mean {' or '.join(match)}?)" if match else ""


def check_names(names: list[str], declared: Mapping[str, str], option: str = "--param") -> None:
    """Refuse names the pipeline does not declare, listing the valid ones and the closest match."""
    valid = sorted(declared)
    for name in names:
        if name not in declared:
            raise UserError(
                f"{option} {name}: no such pipeline parameter{closest(name, valid)}; valid: {', '.join(valid)}"
            )


def check_type(name: str, value: Any, kind: str) -> None:
    """Refuse a value whose JSON type the parameter's kfp type does not accept."""
    accepted = ACCEPTED_TYPES[kind]
    if isinstance(value, bool) and bool not in accepted or not isinstance(value, accepted):
        raise UserError(
            f"{name}: expected {TYPE_WORDS[kind]}, got {json.dumps(value)} ({type(value).__name__}); {QUOTING_RULE}"
        )


def parse_params(pairs: list[str], declared: Mapping[str, str]) -> dict[str, Any]:
    """``NAME=JSON`` pairs to a dict of declared parameters with values of the declared types.

    Args:
        pairs: The ``--param`` values as typed.
        declared: Name to kfp type name (``String``, ``Integer``, ``Float``, ``Boolean``, ``List``, ``Dict``).

    Returns:
        The parameters, parsed as JSON.

    Raises:
        UserError: A pair without ``=``, an unknown name, a value that is not JSON or of the wrong type.

    """
    params = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise UserError(f"--param expects NAME=VALUE, got {pair!r}; {QUOTING_RULE}")
        check_names([name], declared)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as error:
            raise UserError(f"--param {name}: {raw!r} is not valid JSON ({error.msg}); {QUOTING_RULE}") from None
        check_type(name, value, declared[name])
        params[name] = value
    return params


def check_grid(params: Mapping[str, Any]) -> int:
    """Expand the grid, check it and the tracking URI and the frontier settings as prepare_grid will (same messages).

    Args:
        params: Pipeline parameters given; the others keep their defaults, which GridSpec's are.

    Returns:
        The number of runs in the grid.

    Raises:
        UserError: A grid value or a tracking URI prepare_grid would refuse, with its message.
    """
    import dataclasses

    from liger_bench.credentials import check_tracking_uri
    from liger_bench.plan.frontier import FrontierSettings, check_at_frontier
    from liger_bench.plan.grid import GridSpec, expand_grid
    from liger_bench.plan.signature import pipeline_default

    axes = {f.name: params[f.name] for f in dataclasses.fields(GridSpec) if f.name in params}
    frontier = {f.name: params[f.name] for f in dataclasses.fields(FrontierSettings) if f.name in params}
    try:
        check_tracking_uri(params.get("mlflow_tracking_uri", ""))
        FrontierSettings.from_dict(frontier)
        grid = expand_grid(GridSpec(**axes))
        check_at_frontier(params.get("frontier_search", pipeline_default("frontier_search")), grid)
        return len(grid)
    except ValueError as error:  # a GridError is one
        raise UserError(str(error)) from None


def check_local_paths(params: Mapping[str, Any]) -> None:
    """Refuse an empty model or dataset, a local path that does not exist, and a model and dataset swapped.

    A hub id passes: whether it exists is the download tasks' question.
    """
    for name in LOCAL_PATH_PARAMETERS:
        value = params.get(name)
        if isinstance(value, str) and not value.strip():
            raise UserError(
                f"{name}: {value!r} is empty; give a Hugging Face id such as 'org/name' or a local path "
                "(leave both model_name and dataset_name out for the embedded default)"
            )
        if isinstance(value, str) and is_local(value) and not Path(value).expanduser().exists():
            raise UserError(
                f"{name}: local path {value!r} does not exist; give an existing folder or file, "
                "or a Hugging Face id such as 'org/name'"
            )
    for name, value in params.items():
        if name in LOCAL_PATH_PARAMETERS and isinstance(value, str) and is_local(value):
            looks_like = local_kind(Path(value).expanduser())
            if looks_like and f"{looks_like}_name" != name:
                raise UserError(
                    f"{name}: {value!r} holds a {looks_like} ({LOCAL_KIND_FILES[looks_like]}), not a "
                    f"{name.removesuffix('_name')}; are model_name and dataset_name swapped?"
                )


def local_kind(path: Path) -> str:
    """'model' for a folder with a model's ``config.json``; 'dataset' for data files (a file, or a folder of them)."""
    from liger_bench.inputs.data import LOCAL_DATA_SUFFIXES

    if path.is_file():
        return "dataset" if path.suffix in LOCAL_DATA_SUFFIXES else ""
    if not path.is_dir():
        return ""
    if (path / "config.json").is_file():
        return "model"
    if any(child.suffix in LOCAL_DATA_SUFFIXES for child in path.iterdir()) or (path / "dataset_info.json").is_file():
        return "dataset"
    return ""


def check_writable_folder(path: Path, option: str) -> None:
    """Refuse a folder that is a file, lies under a file, or cannot be created or written by this user.

    Checked before anything is created: the nearest existing folder on the way must be writable.

    Args:
        path: The folder, which need not exist yet.
        option: The command-line option that named it, for the message.
    """
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: is a file, not a folder; give a folder (created when missing)")
    _check_writable_ancestor(path, option)


def check_writable_file(path: Path, option: str) -> None:
    """Refuse a file path that is a folder, lies under a file, or whose folder this user cannot write.

    Args:
        path: The file to write, which need not exist yet.
        option: The command-line option that named it, for the message.
    """
    path = path.expanduser()
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name, e.g. {path / 'liger_benchmark.yaml'}")
    _check_writable_ancestor(path.parent, option, path)


def _check_writable_ancestor(folder: Path, option: str, named: Path | None = None) -> None:
    named = named or folder
    existing = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{option} {named}: {existing} is a file, so no folder can be made inside it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {named}: {existing} is not writable by this user; give a path you can write to")
