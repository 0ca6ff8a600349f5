"""Expansion and validation of the experiment grid: runs before any GPU is requested."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from liger_bench.cluster import ClusterOptions
from liger_bench.plan.config import EXPERIMENT_AXES, TrainConfig, coerce
from liger_bench.plan.signature import pipeline_default
from liger_bench.vocabulary import Variant, variant_of

if TYPE_CHECKING:  # only a type here; the module brings multiprocessing, which the CLI's help need not load
    from liger_bench.plan.architecture import ArchitectureTrial

# prepare_grid's scale parameters default to the compile options' defaults.
DEFAULT_CLUSTER = ClusterOptions()
# TrainConfig fields each grid item gets from the grid itself; base_config sets any other.
SET_BY_GRID = (
    *EXPERIMENT_AXES,
    "run_key",
    "repeat",
    "at_frontier",
    "max_steps",
    "warmup_steps_to_skip",
    "gpus_per_run",
    "nodes_per_run",
)


# The batch-axis value that stands for each variant's own memory frontier, found by find_frontier.
AT_FRONTIER = "max"


class GridError(ValueError):
    """A grid parameter is invalid; the message names the parameter, the value and what is accepted."""


def _pipeline_default(name: str) -> Any:
    return field(default_factory=lambda: pipeline_default(name))


@dataclass
class GridSpec:
    """The experiment: axes × repeats over a base training config.

    The fields are prepare_grid's parameters: pipeline parameters, whose defaults and help the
    pipeline signature declares, and the compile options of the run's scale (``ClusterOptions``).
    """

    use_liger: list = _pipeline_default("use_liger")
    torch_compile: list = _pipeline_default("torch_compile")
    per_device_train_batch_size: list = _pipeline_default("per_device_train_batch_size")
    max_seq_length: list = _pipeline_default("max_seq_length")
    n_runs: int = _pipeline_default("n_runs")
    max_steps: int = _pipeline_default("max_steps")
    warmup_steps_to_skip: int = _pipeline_default("warmup_steps_to_skip")
    base_config: dict = _pipeline_default("base_config")
    max_grid_size: int = _pipeline_default("max_grid_size")
    gpus_per_run: int = DEFAULT_CLUSTER.gpus_per_run
    nodes_per_run: int = DEFAULT_CLUSTER.nodes_per_run
    max_gpus_per_run: int = DEFAULT_CLUSTER.max_gpus_per_run
    trainer_configured: bool = DEFAULT_CLUSTER.trainer_configured


def run_key(variant: Variant, batch_size: int | str, seq_len: int, repeat: int) -> str:
    """Stable, readable key of a grid point, e.g. ``liger-compile-bs16-seq512-r2`` (``bsmax`` before the search)."""
    return f"{variant}-bs{batch_size}-seq{seq_len}-r{repeat}"


def _axis(name: str, values: Any, positive: bool) -> list:
    """The values of the axis ``name`` as the TrainConfig field of that name declares them, validated."""
    kind = TrainConfig.field_kind(name)
    if not isinstance(values, (list, tuple)):
        raise GridError(f"{name}: expected a list, got {values!r}")
    if not values:
        raise GridError(f"{name}: the axis is empty ({values!r}); give at least one value")
    converted = []
    for value in values:
        if name == "per_device_train_batch_size" and value == AT_FRONTIER:
            converted.append(value)
            continue
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise GridError(f"{name}: {value!r} is not an integer; accepted: positive integers")
        try:
            item = coerce(name, value, kind)
        except ValueError as err:
            accepted = "true or false" if kind is bool else "positive integers"
            if name == "per_device_train_batch_size":
                accepted += f', or "{AT_FRONTIER}" (each variant\'s searched memory frontier)'
            raise GridError(f"{name}: {value!r} is not valid; accepted: {accepted}") from err
        if positive and item <= 0:
            raise GridError(f"{name}: {item!r} is not positive; accepted: positive integers")
        converted.append(item)
    duplicates = sorted({v for v in converted if converted.count(v) > 1}, key=str)
    if duplicates:
        raise GridError(f"{name}: duplicate values {duplicates} in {list(values)!r}; list each value once")
    return converted


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    try:
        number = coerce(name, value, int)
    except ValueError as err:
        raise GridError(f"{name}: {value!r} is not an integer; accepted: integers >= {minimum}") from err
    if number < minimum:
        raise GridError(f"{name}: {value!r} is too small; accepted: integers >= {minimum}")
    return number


def expand_grid(spec: GridSpec) -> list[dict]:
    """Validate ``spec`` and return one TrainConfig dict per run, in a stable order.

    Order: repeat-major, so that with limited parallelism every cell gets its first run before any
    cell gets its second, and the variants of a cell alternate.
    """
    use_liger = _axis("use_liger", spec.use_liger, positive=False)
    torch_compile = _axis("torch_compile", spec.torch_compile, positive=False)
    batch_sizes = _axis("per_device_train_batch_size", spec.per_device_train_batch_size, positive=True)
    seq_lengths = _axis("max_seq_length", spec.max_seq_length, positive=True)
    n_runs = _positive_int("n_runs", spec.n_runs)
    warmup = _positive_int("warmup_steps_to_skip", spec.warmup_steps_to_skip, minimum=0)
    max_steps = _positive_int("max_steps", spec.max_steps)
    if max_steps <= warmup:
        raise GridError(
            f"max_steps: {max_steps} leaves no measured step after warmup_steps_to_skip={warmup}; "
            f"accepted: max_steps > {warmup}"
        )
    max_grid_size = _positive_int("max_grid_size", spec.max_grid_size)
    size = len(use_liger) * len(torch_compile) * len(batch_sizes) * len(seq_lengths) * n_runs
    if size > max_grid_size:
        raise GridError(
            f"grid size {size} (= {len(use_liger)} use_liger × {len(torch_compile)} torch_compile × "
            f"{len(batch_sizes)} batch sizes × "
            f"{len(seq_lengths)} sequence lengths × {n_runs} runs) exceeds max_grid_size={max_grid_size}; "
            "accepted: shorten an axis or n_runs, or raise max_grid_size"
        )

    scale = check_scale(spec)
    base = dict(spec.base_config or {})
    reserved = sorted(set(base) & set(SET_BY_GRID))
    if reserved:
        raise GridError(
            f"base_config: keys {reserved} are set by the grid itself; use the pipeline parameters of those names"
        )
    unknown = sorted(set(base) - set(TrainConfig.field_names()))
    if unknown:
        raise GridError(f"base_config: unknown keys {unknown}; accepted: {sorted(TrainConfig.field_names())}")

    try:
        shared = TrainConfig.from_dict(base)  # the one conversion of base_config's values to their types
    except ValueError as err:
        raise GridError(f"base_config: {err}") from err
    points = itertools.product(range(n_runs), seq_lengths, batch_sizes, torch_compile, use_liger)
    # A "max" item trains at batch 1 until find_frontier resolves it; prepare_grid's checks see that batch.
    return [
        dataclasses.replace(
            shared,
            run_key=run_key(variant_of(liger, compiled), batch_size, seq_len, repeat),
            repeat=repeat,
            at_frontier=batch_size == AT_FRONTIER,
            use_liger=liger,
            torch_compile=compiled,
            per_device_train_batch_size=1 if batch_size == AT_FRONTIER else batch_size,
            max_seq_length=seq_len,
            max_steps=max_steps,
            warmup_steps_to_skip=warmup,
            **scale,
        ).to_dict()
        for repeat, seq_len, batch_size, compiled, liger in points
    ]


def check_scale(spec: GridSpec) -> dict[str, int]:
    """The GPUs and nodes every run asks for, refused before any GPU is requested when they cannot be had."""
    gpus = _positive_int("gpus_per_run", spec.gpus_per_run)
    nodes = _positive_int("nodes_per_run", spec.nodes_per_run)
    limit = _positive_int("max_gpus_per_run", spec.max_gpus_per_run)
    if gpus * nodes > limit:
        raise GridError(
            f"gpus_per_run × nodes_per_run = {gpus} × {nodes} = {gpus * nodes} GPUs per run exceeds "
            f"max_gpus_per_run={limit}; accepted: at most {limit} GPUs per run, or raise max_gpus_per_run"
        )
    if nodes > 1 and not spec.trainer_configured:
        raise GridError(
            f"nodes_per_run: {nodes} needs the Kubeflow Trainer path, which this pipeline was compiled without; "
            "accepted: nodes_per_run=1, or compile with --trainer-runtime and --trainer-pvc "
            "(a TrainingRuntime and a ReadWriteMany volume both sides mount)"
        )
    return {"gpus_per_run": gpus, "nodes_per_run": nodes}


def check_against_model(items: list[dict], model_info: dict, model_dir: str) -> ArchitectureTrial:
    """Reject grid points the model cannot run, before any GPU is requested; return the architecture trial.

    ``model_info`` is download_model's metadata (model_type, context_length and its source), ``model_dir``
    its folder. The model is built on the meta device with the grid's attention implementation and,
    when a run uses Liger, patched with its kernels (``architecture.try_architecture``), so what
    transformers or liger-kernel refuse fails here.
    """
    from liger_bench.plan.architecture import ArchitectureError, try_architecture
    from liger_bench.plan.liger import LigerError, supported_model_types

    name = model_info.get("name", "")
    context = int(model_info.get("context_length") or 0)
    longest = max(item["max_seq_length"] for item in items)
    if context and longest > context:
        raise GridError(
            f"max_seq_length: {longest} exceeds the context length {context} of model {name!r} "
            f"(from {model_info.get('context_length_source', '')}); accepted: values <= {context}"
        )
    model_type = model_info.get("model_type", "")
    liger_model_types = supported_model_types()
    use_liger = any(item["use_liger"] for item in items)
    if use_liger and model_type not in liger_model_types:
        raise GridError(
            f"use_liger: true was requested but liger-kernel has no patches for model type {model_type!r} "
            f"(model {name!r}); use use_liger=[false], or a model of one of the types "
            f"{sorted(liger_model_types)}"
        )
    # Only the axes differ between items; the kernel flags and the attention come from base_config.
    config = TrainConfig.from_dict(items[0])
    try:
        return try_architecture(model_dir, config.attn_implementation, config.liger_flags() if use_liger else None)
    except LigerError as err:
        raise GridError(f"base_config: model {name!r}: {err}") from err
    except ArchitectureError as err:
        parameter = "base_config: attn_implementation" if config.attn_implementation else "model_name"
        raise GridError(f"{parameter}: model {name!r}: {err}") from err


def describe_experiment(grid: list[dict]) -> dict:
    """What a validated grid measures: each axis's values, the repeats, and every shared setting."""
    grid = [TrainConfig.from_dict(item).to_dict() for item in grid]  # KFP hands integers over as floats
    # A "max" item's batch is its variant's frontier, found after this description: it reads "max".
    shown = [{**item, "per_device_train_batch_size": AT_FRONTIER} if item["at_frontier"] else item for item in grid]
    axes = {
        axis: sorted({item[axis] for item in shown}, key=lambda v: (isinstance(v, str), v)) for axis in EXPERIMENT_AXES
    }
    shared = {
        key: value
        for key, value in grid[0].items()
        if key not in (*EXPERIMENT_AXES, "run_key", "repeat") and all(item[key] == value for item in grid)
    }
    return {**axes, "n_runs": 1 + max(item["repeat"] for item in grid), "grid_size": len(grid), **shared}
