"""Expansion and validation of the experiment grid: runs before any GPU is requested."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from liger_bench.cluster import ClusterOptions
from liger_bench.plan.config import EXPERIMENT_AXES, TrainConfig, coerce
from liger_bench.plan.signature import pipeline_default
from liger_bench.vocabulary import KERNEL_ABLATIONS, NO_ABLATION, Variant, variant_of

if TYPE_CHECKING:  # only a type here; the module brings multiprocessing, which the CLI's help need not load
    from liger_bench.plan.architecture import ArchitectureTrial

# prepare_grid's scale parameters default to the compile options' defaults.
DEFAULT_CLUSTER = ClusterOptions()
# TrainConfig fields each grid item gets from the grid itself; base_config sets any other.
SET_BY_GRID = (
    *EXPERIMENT_AXES,
    "ablation",
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
    kernel_ablation: str = _pipeline_default("kernel_ablation")
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


def expand_grid(spec: GridSpec, model_type: str | None = None) -> list[dict]:
    """Validate ``spec`` and return one TrainConfig dict per run, in a stable order.

    Order: repeat-major, so that with limited parallelism every cell gets its first run before any
    cell gets its second, and the variants of a cell alternate, the kernel-ablation arms after the others.

    Args:
        spec: The grid's parameters.
        model_type: The model's ``config.model_type``, whose kernels a ``kernel_ablation`` ablates (read
            from liger-kernel); None: not known yet (``liger-bench local`` before the download), so the
            ablation is validated but its arms are left out.
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
    cells = len(batch_sizes) * len(seq_lengths) * n_runs
    size = len(use_liger) * len(torch_compile) * cells
    if size > max_grid_size:
        raise GridError(
            f"grid size {size} (= {len(use_liger)} use_liger × {len(torch_compile)} torch_compile × "
            f"{len(batch_sizes)} batch sizes × "
            f"{len(seq_lengths)} sequence lengths × {n_runs} runs) exceeds max_grid_size={max_grid_size}; "
            "accepted: shorten an axis or n_runs, or raise max_grid_size"
        )
    arms = _ablation_arms(spec, use_liger, torch_compile, model_type)
    if size + len(arms) * cells > max_grid_size:
        raise GridError(
            f"grid size {size + len(arms) * cells} exceeds max_grid_size={max_grid_size}: kernel_ablation="
            f"{spec.kernel_ablation!r} adds {len(arms) * cells} runs ({len(arms)} arms {sorted(arms)} × "
            f"{len(batch_sizes)} batch sizes × {len(seq_lengths)} sequence lengths × {n_runs} runs) to the "
            f"{size} of the other variants; accepted: kernel_ablation 'each' or 'leave-one-out' (half the arms of "
            "'both'), fewer batch sizes, sequence lengths or n_runs, or a larger max_grid_size"
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
    # (use_liger, torch_compile, ablation, kernel flags) of each variant; ablation arms are eager Liger.
    variants = [(liger, compiled, "", {}) for compiled, liger in itertools.product(torch_compile, use_liger)]
    variants += [(True, False, ablation, flags) for ablation, flags in arms.items()]
    points = itertools.product(range(n_runs), seq_lengths, batch_sizes, variants)
    # A "max" item trains at batch 1 until find_frontier resolves it; prepare_grid's checks see that batch.
    return [
        dataclasses.replace(
            shared,
            run_key=run_key(variant_of(liger, compiled, ablation), batch_size, seq_len, repeat),
            repeat=repeat,
            at_frontier=batch_size == AT_FRONTIER,
            use_liger=liger,
            torch_compile=compiled,
            ablation=ablation,
            per_device_train_batch_size=1 if batch_size == AT_FRONTIER else batch_size,
            max_seq_length=seq_len,
            max_steps=max_steps,
            warmup_steps_to_skip=warmup,
            **{f"liger_{kernel}": on for kernel, on in flags.items()},
            **scale,
        ).to_dict()
        for repeat, seq_len, batch_size, (liger, compiled, ablation, flags) in points
    ]


def _ablation_arms(
    spec: GridSpec, use_liger: list[bool], torch_compile: list[bool], model_type: str | None
) -> dict[str, dict[str, bool]]:
    """The kernel-ablation arms of ``spec`` (``liger.ablation_arms``); {} when off or the model type is not known.

    An arm is compared with the eager baseline (a kernel alone) and eager Liger (all but one), so the
    grid must have both; the arm sets every kernel flag, so base_config may set none.
    """
    from liger_bench.plan.liger import LigerError, ablation_arms

    ablation = spec.kernel_ablation
    if ablation not in KERNEL_ABLATIONS:
        raise GridError(f"kernel_ablation: {ablation!r} is not accepted; accepted: {', '.join(KERNEL_ABLATIONS)}")
    if ablation == NO_ABLATION:
        return {}
    if not ({True, False} <= set(use_liger) and False in torch_compile):
        raise GridError(
            f"kernel_ablation: {ablation!r} compares each kernel with the eager baseline and eager Liger, which a grid "
            f"of use_liger={use_liger} and torch_compile={torch_compile} lacks; accepted: use_liger [true, false] "
            "and torch_compile with false, or kernel_ablation 'off'"
        )
    flags = sorted(key for key in spec.base_config or {} if key.startswith("liger_"))
    if flags:
        raise GridError(
            f"base_config: keys {flags} set kernels, which kernel_ablation={ablation!r} sets itself for every arm "
            "(from liger-kernel's defaults for the model type); accepted: no liger_* key with kernel_ablation, "
            "or kernel_ablation 'off'"
        )
    if model_type is None:
        return {}
    try:
        return ablation_arms(model_type, ablation)
    except LigerError as err:
        raise GridError(f"kernel_ablation: {err}") from err


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
    # The attention comes from base_config, the kernel flags too, but for the kernel-ablation arms' own:
    # every distinct kernel set is patched in a trial of its own, the base one's trial is returned.
    config = TrainConfig.from_dict(items[0])
    kernel_sets = {"": config.liger_flags() if use_liger else None}
    for item in map(TrainConfig.from_dict, items):
        kernel_sets.setdefault(item.ablation, item.liger_flags())
    trials = []
    for ablation, flags in kernel_sets.items():
        try:
            trials.append(try_architecture(model_dir, config.attn_implementation, flags))
        except LigerError as err:
            parameter = f"kernel_ablation: arm {variant_of(True, False, ablation)}" if ablation else "base_config"
            raise GridError(f"{parameter}: model {name!r}: {err}") from err
        except ArchitectureError as err:
            parameter = "base_config: attn_implementation" if config.attn_implementation else "model_name"
            raise GridError(f"{parameter}: model {name!r}: {err}") from err
    return trials[0]


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
