"""Checks of user input that need no GPU: prepare_grid, the download tasks and the CLI run them.

A bad value found here fails a CPU task (or the CLI) with a message naming the parameter, the
value and what is accepted, before any GPU pod is scheduled. The numeric ranges of the training
settings are ``TrainConfig``'s own (``config.NUMBER_RANGES``); this module holds the checks that
need transformers, the dataset or the model.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from liger_bench.plan.config import TrainConfig
from liger_bench.plan.grid import GridError

# kfp's type name of a pipeline parameter annotated ``float`` (``component_spec.inputs[name].type``).
KFP_FLOAT = "Float"


def _training_arguments(config: TrainConfig, output_dir: str, **neutral: str):
    """train_model's ``TrainingArguments`` with ``neutral`` settings, to blame a problem on the right name.

    ``neutral`` replaces the setting not under test (optimizer or scheduler) by a plain torch one.
    """
    from liger_bench.plan.arguments import training_arguments

    # bf16 depends on the GPU; every check below holds for both precisions.
    return training_arguments(_with(config, **neutral), output_dir, bf16=False)


def optimizer_problem(config: TrainConfig) -> str:
    """Why transformers' Trainer cannot build ``config.optim`` in this environment; "" when it can.

    The CPU image carries the same Python packages as the training image, so an optimizer whose
    package is missing here (bitsandbytes, torchao, ...) is missing on the GPU node too.
    """
    import torch
    from transformers import Trainer

    with tempfile.TemporaryDirectory() as output_dir:
        try:
            args = _training_arguments(config, output_dir, lr_scheduler_type="constant")
            optimizer_class, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, torch.nn.Linear(2, 2))
            optimizer_class(torch.nn.Linear(2, 2).parameters(), **kwargs)
        except (ImportError, ValueError, TypeError, RuntimeError) as err:
            return f"{type(err).__name__}: {err}"
    return ""


def scheduler_problem(config: TrainConfig) -> str:
    """Why transformers cannot schedule the learning rate of ``config``; "" when it can.

    As train_model runs it: no evaluation set, no ``lr_scheduler_kwargs``.
    """
    import torch
    from transformers import get_scheduler

    with tempfile.TemporaryDirectory() as output_dir:
        try:
            args = _training_arguments(config, output_dir, optim="sgd")
            optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=config.learning_rate)
            get_scheduler(
                args.lr_scheduler_type,
                optimizer,
                num_warmup_steps=args.get_warmup_steps(config.max_steps),
                num_training_steps=config.max_steps,
                scheduler_specific_kwargs=args.lr_scheduler_kwargs,
            )
        except (ValueError, TypeError) as err:
            return f"{type(err).__name__}: {err}"
    return ""


def check_training_arguments(config: TrainConfig) -> None:
    """Raise ``GridError`` unless transformers accepts the optimizer and LR scheduler of ``config``.

    The names are checked against transformers' ``OptimizerNames`` and ``SchedulerType``; a known
    name is then built for real on the CPU, so a missing package or a scheduler that needs an
    evaluation set or extra arguments is refused with transformers' own reason.
    """
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    checks = (
        ("optim", OptimizerNames, optimizer_problem),
        ("lr_scheduler_type", SchedulerType, scheduler_problem),
    )
    for name, known, problem_of in checks:
        value = getattr(config, name)
        names = [member.value for member in known]
        problem = "not a name transformers knows" if value not in names else problem_of(config)
        if problem:
            usable = [candidate for candidate in names if not problem_of(_with(config, **{name: candidate}))]
            raise GridError(f"{name}: {value!r} cannot be used ({problem}); accepted here: {usable}")


def check_gradient_checkpointing(items: Iterable[dict], model_info: Mapping[str, Any]) -> None:
    """Raise ``GridError`` when ``gradient_checkpointing`` is on for a model class that cannot do it.

    ``model_info`` is download_model's metadata; its ``model_type`` names the causal LM class.
    """
    if not any(item["gradient_checkpointing"] for item in items):
        return
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    class_name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_info["model_type"]]
    if not getattr(transformers, class_name).supports_gradient_checkpointing:
        raise GridError(
            f"base_config: gradient_checkpointing: true, but transformers' {class_name} (model "
            f"{model_info.get('name', '')!r}) does not support it; accepted: false for this model"
        )


def _with(config: TrainConfig, **changes: Any) -> TrainConfig:
    return TrainConfig.from_dict({**config.to_dict(), **changes})


def rows_problem(n_rows: int, config: TrainConfig) -> str:
    """Why ``n_rows`` training rows cannot fill every optimizer step of ``config``; "" when they can.

    The Trainer drops a last partial batch (``dataloader_drop_last``) and starts a new epoch when
    the rows run out. Every step is then full when one epoch holds at least one step's batches
    (batch size × gradient accumulation), and, when the run needs more than one epoch, a whole
    number of steps (otherwise the Trainer ends each epoch with a step of fewer micro-batches).
    A run of several GPUs splits the rows between its ranks: each rank must fill its own steps.
    """
    batch, accumulation = config.per_device_train_batch_size, config.gradient_accumulation_steps
    rows = n_rows // config.world_size
    batches_per_epoch = rows // batch
    if batches_per_epoch < accumulation:
        split = f" over {config.world_size} GPUs ({rows} each)" if config.world_size > 1 else ""
        return (
            f"{n_rows} rows{split} cannot fill one optimizer step of per_device_train_batch_size={batch} × "
            f"gradient_accumulation_steps={accumulation} = {batch * accumulation} rows; accepted: batch sizes "
            f"<= {rows // accumulation}, or a dataset with more rows"
        )
    if batches_per_epoch < accumulation * config.max_steps and batches_per_epoch % accumulation:
        return (
            f"{rows} rows{' per GPU' if config.world_size > 1 else ''} give {batches_per_epoch} batches of {batch} "
            "per epoch, not a multiple of "
            f"gradient_accumulation_steps={accumulation}: each epoch would end with a smaller step; accepted: a "
            "gradient_accumulation_steps that divides the batches per epoch, or more rows"
        )
    return ""


def check_against_data(items: Iterable[dict], dataset_info: Mapping[str, Any]) -> None:
    """Raise ``GridError`` for a grid point whose steps the dataset's rows cannot fill (``rows_problem``).

    ``dataset_info`` is download_dataset's metadata; ``rows`` counts the rows with a completion.
    Rows whose completion a short ``max_seq_length`` cuts away entirely are only known once the
    rows are tokenised (``tasks.check_training_rows``, and train_model), which apply the same rule again.
    """
    n_rows = int(dataset_info["rows"])
    for item in items:
        problem = rows_problem(n_rows, TrainConfig.from_dict(item))
        if problem:
            raise GridError(
                f"per_device_train_batch_size: {item['per_device_train_batch_size']} and dataset "
                f"{dataset_info.get('name', '')!r}: {problem}"
            )


def check_distinct_sequence_lengths(seq_lengths: Iterable[int], longest_row: int, dataset_name: str) -> None:
    """Raise ``GridError`` when several ``max_seq_length`` values are at least the longest row.

    No row is truncated at any of them, so their runs train identical batches under different labels.
    ``longest_row`` is the longest tokenised row (prompt, completion and EOS) that the runs of the
    largest value train on.
    """
    untruncated = sorted(value for value in set(seq_lengths) if value >= longest_row)
    if len(untruncated) > 1:
        raise GridError(
            f"max_seq_length: {untruncated} all reach the longest row of dataset {dataset_name!r} "
            f"({longest_row} tokens), so their runs would train identical batches; accepted: at most one "
            f"value >= {longest_row}, the others below it"
        )


def check_min_success_ratio(value: Any) -> float:
    """``min_success_ratio`` as a float in [0, 1]; raise ``GridError`` otherwise (NaN included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise GridError(f"min_success_ratio: {value!r} is out of range; accepted: a number in [0, 1]")
    return float(value)


def check_gpu_hour_price(value: Any) -> float:
    """``gpu_hour_price`` as a float >= 0 (0: no price given); raise ``GridError`` otherwise (NaN, infinity too)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < math.inf:
        raise GridError(
            f"gpu_hour_price: {value!r} is not a price; accepted: a number >= 0, the price of one GPU-hour "
            "in any currency (0: no cost figures)"
        )
    return float(value)


def non_finite_numbers(value: Any, path: str) -> list[str]:
    """Paths (``name``, ``name.key``, ``name[0]``) of NaN and infinite numbers inside ``value``."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [path]
    if isinstance(value, Mapping):
        return [p for key, item in value.items() for p in non_finite_numbers(item, f"{path}.{key}")]
    if isinstance(value, (list, tuple)):
        return [p for index, item in enumerate(value) for p in non_finite_numbers(item, f"{path}[{index}]")]
    return []


def pipeline_arguments(params: Mapping[str, Any], input_types: Mapping[str, str]) -> dict[str, Any]:
    """Pipeline arguments as kfp accepts them: JSON integers for ``float`` parameters become floats.

    Raises ``ValueError`` naming every NaN or infinite number (kfp cannot serialise them, and no
    parameter accepts them). ``input_types`` maps parameter names to kfp's type names
    (``pipeline.component_spec.inputs[name].type``).
    """
    bad = [p for name, value in params.items() for p in non_finite_numbers(value, name)]
    if bad:
        raise ValueError(f"{', '.join(bad)}: NaN and infinity are not accepted; give finite numbers")
    return {
        name: float(value)
        if input_types.get(name) == KFP_FLOAT and isinstance(value, int) and not isinstance(value, bool)
        else value
        for name, value in params.items()
    }


def pin_local_revisions(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with the content hash as the revision of a local model folder or dataset path.

    The revision is an argument of the download task, so a changed local file changes kfp's cache
    key and is downloaded again instead of silently reused. A revision already given is kept (the
    download task refuses it when the content no longer matches); a missing path is left to the
    download task to refuse.
    """
    from liger_bench.inputs.hub import is_local
    from liger_bench.inputs.localfiles import content_revision

    pinned = dict(params)
    for kind in ("model", "dataset"):
        name, revision = pinned.get(f"{kind}_name", ""), f"{kind}_revision"
        if name and is_local(name) and Path(name).expanduser().exists() and not pinned.get(revision):
            pinned[revision] = content_revision(name)
    return pinned
