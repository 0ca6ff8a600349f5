"""What a user types on the command line, checked before anything slow starts.

kfp-free: the caller passes the pipeline's declared parameters (name to kfp type name such as
``Integer``), read from the pipeline signature (``liger_bench.plan.signature``), which stays the one place
that declares them.
"""

from __future__ import annotations

import difflib
import json
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


class UserError(Exception):
    """A mistake in what the user typed or pointed at: shown as one message, without a traceback."""


def closest(name: str, valid: list[str]) -> str:
    """' (did you mean X?)' for the nearest valid name, or '' when none is close."""
    match = [v for v in valid if name in v] or difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f" (did you mean {match[0]}?)" if match else ""


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
    """Expand the grid as prepare_grid will (same function, same messages); return its size.

    Args:
        params: Pipeline parameters given; the others keep their defaults, which GridSpec's are.

    Raises:
        UserError: A grid value prepare_grid would refuse, with its message.
    """
    import dataclasses

    from liger_bench.plan.grid import GridError, GridSpec, expand_grid

    axes = {f.name: params[f.name] for f in dataclasses.fields(GridSpec) if f.name in params}
    try:
        return len(expand_grid(GridSpec(**axes)))
    except GridError as error:
        raise UserError(str(error)) from None


def check_local_paths(params: Mapping[str, Any]) -> None:
    """Refuse a model or dataset that names a local path which does not exist (a hub id passes)."""
    for name in LOCAL_PATH_PARAMETERS:
        value = params.get(name)
        if isinstance(value, str) and is_local(value) and not Path(value).expanduser().exists():
            raise UserError(
                f"{name}: local path {value!r} does not exist; give an existing folder or file, "
                "or a Hugging Face id such as 'org/name'"
            )
