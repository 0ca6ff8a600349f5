"""One grid point: fine-tune one variant, measure every step, never raise for outcomes.

The data, the model and its variant are prepared here; ``liger_bench.measure.trainer`` trains them with
transformers' Trainer. Variants differ only by ``apply_liger`` and the Trainer's ``torch_compile``.
"""

from __future__ import annotations

import gc
import json
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liger_bench.measure.metrics import GIB
from liger_bench.measure.phases import PhaseClock
from liger_bench.plan.config import TrainConfig
from liger_bench.records import RunResult

NO_CUDA_REASON = (
    "Liger kernels are Triton GPU kernels and this node has no CUDA device; the run was skipped "
    "rather than silently trained without Liger"
)


HOST_ALLOCATOR_OOM = "DefaultCPUAllocator: can't allocate memory"


def import_training_libraries() -> None:
    """Import the libraries a run trains with now, so that their cost is a phase of its own (``imports``).

    Imported where first used, each would count in the phase that first needs it.
    """
    import datasets  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer  # noqa: F401
    from trl.data_utils import pack_dataset  # noqa: F401
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling  # noqa: F401


def _use_bf16(config: TrainConfig) -> bool:
    import torch

    if config.precision == "fp32":
        return False
    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if config.precision == "bf16" and not supported:
        raise ValueError("precision='bf16' was requested but this device does not support bf16")
    return supported


def pack(rows: list[dict], max_seq_length: int) -> list[dict]:
    """Rows packed by trl's ``pack_dataset`` ('wrapped') into sequences of exactly ``max_seq_length``.

    Consecutive rows are concatenated and cut at ``max_seq_length`` (labels travel with their
    tokens, so prompts stay untrained); the short remainder is dropped, so every batch has one
    shape. Rows of one sequence attend to each other, as in trl's wrapped packing.
    """
    from datasets import Dataset
    from trl.data_utils import pack_dataset

    packed = pack_dataset(Dataset.from_list(rows), max_seq_length, strategy="wrapped")
    full = [row for row in packed.to_list() if len(row["input_ids"]) == max_seq_length]
    if not full:
        total = sum(len(row["input_ids"]) for row in rows)
        raise ValueError(f"packing: the dataset's {total} tokens fill no sequence of max_seq_length={max_seq_length}")
    return [{"input_ids": row["input_ids"], "labels": row["labels"]} for row in full]


def load_model(model_dir: str, bf16: bool, attn_implementation: str = ""):
    """The stock transformers causal LM from a local folder, weights in bf16 or fp32.

    ``attn_implementation`` "" lets transformers choose as it would for the architecture (sdpa
    where supported, else eager); the choice is ``model.config._attn_implementation``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if bf16 else torch.float32
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=attn_implementation or None)


def apply_variant(model, config: TrainConfig) -> dict[str, int]:
    """Make ``model`` the run's variant; return the Liger kernels patched (``{}`` for the baseline).

    Liger runs are patched with ``config``'s per-kernel flags; a baseline model is checked to carry
    no Liger patch.
    """
    from liger_bench.plan.liger import apply_liger, patched_kernels

    if config.use_liger:
        return apply_liger(model, config.liger_flags())
    if any(patched_kernels(model).values()):
        # liger-kernel also patches module-level classes; a baseline must never inherit them.
        raise RuntimeError(
            f"baseline model carries Liger patches from earlier in this process: {patched_kernels(model)}"
        )
    return {}


def n_params_non_embedding(model) -> int:
    """Parameters that take part in matrix products: all but the input embedding, LM head included.

    With tied embeddings ``parameters()`` lists the shared matrix once; it still counts as the LM head.
    """
    embedding = model.get_input_embeddings().weight
    total = sum(p.numel() for p in model.parameters()) - embedding.numel()
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() == embedding.data_ptr():
        total += head.weight.numel()
    return total


def load_tokenizer(model_dir: str):
    """The model's tokenizer, padding with EOS when it has no pad token (as every run pads)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def training_rows(config: TrainConfig, tokenizer, dataset_dir: str):
    """The rows ``config``'s run trains on, tokenised (``data.tokenize``): the same for both variants of a cell."""
    from liger_bench.inputs.data import load_prepared, tokenize

    return tokenize(
        load_prepared(dataset_dir),
        tokenizer,
        config.max_seq_length,
        config.sequences_per_run,
        config.packing,
        config.seed,
    )


@dataclass
class PreparedRun:
    """A run ready to train: the variant's model, its training rows and what measures its steps.

    Args:
        model: The model, Liger-patched for a Liger run.
        rows: The tokenised (and possibly packed) training sequences.
        pad_token_id: The tokenizer's padding token.
        bf16: Whether the weights are bf16.
        flop_model: The model's FLOPs per token, for the steps' MFU.
        peak_tflops: The GPU's dense bf16 peak (0.0: unknown).
    """

    model: Any
    rows: list[dict]
    pad_token_id: int
    bf16: bool
    flop_model: Any
    peak_tflops: float


def _prepare(
    config: TrainConfig, model_dir: str, dataset_dir: str, result: RunResult, clock: PhaseClock
) -> PreparedRun:
    """Load and check the data and the model, and make the model the run's variant; fills ``result`` as it goes.

    ``clock`` marks the ``data``, ``model`` and ``variant`` phases.
    """
    import torch
    from transformers import set_seed

    from liger_bench.inputs.data import DatasetError
    from liger_bench.inputs.modelio import context_length
    from liger_bench.measure.flops import FlopModel, peak_tflops_for
    from liger_bench.plan.validation import rows_problem

    bf16 = _use_bf16(config)
    result.metrics["precision"] = "bf16" if bf16 else "fp32"
    set_seed(config.seed)
    tokenizer = load_tokenizer(model_dir)
    tokenized = training_rows(config, tokenizer, dataset_dir)
    result.data = tokenized.summary()
    rows = pack(tokenized.rows, config.max_seq_length) if config.packing else tokenized.rows
    result.data["n_training_sequences"] = len(rows)
    # prepare_grid checked these rows unpacked; packing at this max_seq_length changes their number.
    problem = rows_problem(len(rows), config)
    if problem:
        raise DatasetError(
            f"after tokenising{' and packing' if config.packing else ''} at max_seq_length={config.max_seq_length}, "
            f"{problem}"
        )
    clock.mark("data")

    model = load_model(model_dir, bf16, config.attn_implementation)
    result.metrics["attn_implementation"] = model.config._attn_implementation
    context, source = context_length(model_dir)
    if context and config.max_seq_length > context:
        raise ValueError(
            f"max_seq_length={config.max_seq_length} exceeds the model's context length {context} (from {source})"
        )
    clock.mark("model")
    result.liger_kernels = apply_variant(model, config)
    clock.mark("variant")

    flop_model = FlopModel(n_params_non_embedding(model), model.config.num_hidden_layers, model.config.hidden_size)
    gpu_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    peak = config.peak_tflops or peak_tflops_for(gpu_name)
    result.metrics.update(model_flops_per_token=flop_model.per_token(config.max_seq_length), peak_tflops=peak or None)
    return PreparedRun(model, rows, tokenizer.pad_token_id, bf16, flop_model, peak)


def _train(
    config: TrainConfig, run: PreparedRun, result: RunResult, step_metrics: Any, callbacks: Sequence[Any]
) -> None:
    """The training itself, sharded with FSDP under torchrun; fills ``result`` and ``step_metrics.steps``."""
    from liger_bench.measure import distributed
    from liger_bench.measure.trainer import train_measured

    # Liger patched this rank's model already; FSDP wraps the patched layers when the Trainer prepares it.
    sharding = None
    if distributed.launched_by_torchrun():
        sharding = distributed.fsdp_settings(run.model._no_split_modules, config.gradient_checkpointing)
        # The weights are already bf16 (or fp32). With the Trainer's bf16 flag, accelerate's FSDP2 would
        # keep fp32 master weights (16 bytes per parameter with AdamW instead of 8): another recipe than
        # the one-GPU runs, which train the bf16 weights as loaded. Without it FSDP2 shards them as they are.
    if sharding:
        result.metrics["fsdp_wrapped_layers"] = sharding["fsdp_config"]["transformer_layer_cls_to_wrap"]
    result.metrics["sharded_parameter_fraction"] = train_measured(
        config, run.model, run.rows, run.pad_token_id, step_metrics, callbacks, run.bf16 and not sharding, sharding
    )


def step_stream(steps: list[dict], path: Path) -> Any:
    """A callback that appends each completed record of ``steps`` to the JSON-lines file ``path``."""
    from transformers import TrainerCallback

    class StepStream(TrainerCallback):
        written = 0

        def on_log(self, args, state, control, **kwargs):
            # The Trainer logs right after each step: the step's loss is in its record by now.
            with path.open("a") as handle:
                handle.writelines(json.dumps(record, allow_nan=True) + "\n" for record in steps[self.written :])
            self.written = len(steps)

    return StepStream()


def phase_marks(clock: PhaseClock) -> Any:
    """A callback that marks the Trainer's phases on ``clock``: ``trainer``, ``train_setup``, ``first_step``."""
    from transformers import TrainerCallback

    class PhaseMarks(TrainerCallback):
        def on_init_end(self, args, state, control, **kwargs):
            clock.mark("trainer")

        def on_train_begin(self, args, state, control, **kwargs):
            clock.mark("train_setup")

        def on_step_end(self, args, state, control, **kwargs):
            if clock.current() == "first_step":
                clock.mark("first_step")

    return PhaseMarks()


def world_metrics(config: TrainConfig, metrics: dict[str, Any]) -> dict[str, Any]:
    """The run's GPUs and its throughput per GPU, so that runs of different sizes compare."""
    rate = metrics.get("tokens_per_s_nonpad")
    return {"world_size": config.world_size, "tokens_per_s_nonpad_per_gpu": rate / config.world_size if rate else None}


def diverged_reason(steps: list[dict], step: int, config: TrainConfig) -> str:
    """Why a run is ``diverged``: the first non-finite loss, where training stopped, and what to change."""
    loss = next(s["loss"] for s in steps if s["step"] == step)
    return (
        f"loss {loss} at step {step} of max_steps={config.max_steps}: training diverged and was stopped there; "
        f"lower learning_rate (now {config.learning_rate:g}) or raise warmup_ratio"
    )


def run_training(
    config: TrainConfig,
    model_dir: str,
    dataset_dir: str,
    extra_callbacks: Sequence[Any] = (),
    steps_file: Path | None = None,
    clock: PhaseClock | None = None,
) -> tuple[RunResult, list[dict]]:
    """Train one grid point and return ``(result, step_history)``; outcomes never raise.

    ``ok``: trained all steps. ``diverged``: a step's loss was NaN or infinite; training stopped
    after it. ``skipped``: Liger requested on a node without CUDA. ``oom``: CUDA or host out of
    memory (``MemoryError``) anywhere in the run; memory is released before returning.
    ``failed``: any other exception, recorded with its type and message. With
    ``steps_file``, every step is also appended to that JSON-lines file as soon as it completes (by
    rank 0 only when several ranks train the run: every rank records the same global steps). ``clock``
    times the run's phases into ``result.phases_s`` (``liger_bench.measure.phases``); by default one
    started now, at ``imports``.
    """
    clock = clock or PhaseClock()  # first: ``imports`` includes torch's
    import torch

    from liger_bench.measure import distributed
    from liger_bench.measure.envinfo import capture_environment
    from liger_bench.measure.metrics import StepMetricsCallback, aggregate

    skipped = config.use_liger and not torch.cuda.is_available()
    if not skipped:  # a run that cannot train spares the seconds of transformers', trl's and datasets' imports
        import_training_libraries()
    clock.mark("imports")
    result = RunResult(run_key=config.run_key, status="ok", config=config.to_dict(), environment=capture_environment())
    clock.mark("environment")
    run, steps, device_usable = None, [], True
    if skipped:
        result.status, result.reason = "skipped", NO_CUDA_REASON
    else:
        try:
            run = _prepare(config, model_dir, dataset_dir, result, clock)
            step_metrics = StepMetricsCallback(config.warmup_steps_to_skip, run.flop_model, run.peak_tflops)
            steps = step_metrics.steps  # steps completed before an OOM or a failure stay in the history
            callbacks = (*extra_callbacks, phase_marks(clock))
            if steps_file is not None and distributed.rank() == 0:
                callbacks = (*callbacks, step_stream(steps, steps_file))
            _train(config, run, result, step_metrics, callbacks)
            clock.mark("steps")
        except Exception as err:  # noqa: BLE001 - any failure of one grid point is recorded, not raised
            clock.mark_interrupted()
            # torch's CPU allocator reports host memory exhaustion as a plain RuntimeError.
            if isinstance(err, (torch.OutOfMemoryError, MemoryError)) or HOST_ALLOCATOR_OOM in str(err):
                result.status = "oom"
                result.reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'out of memory'}"
                if torch.cuda.is_available():
                    result.metrics["oom_peak_mem_reserved_gb"] = torch.cuda.max_memory_reserved() / GIB
                    result.metrics["oom_peak_mem_allocated_gb"] = torch.cuda.max_memory_allocated() / GIB
            else:
                result.status = "failed"
                result.reason = f"{type(err).__name__}: {err}"
                result.metrics["traceback"] = traceback.format_exc(limit=8)
                # A device-side fault (an illegal memory access in a kernel) poisons this process's CUDA
                # context: every later CUDA call raises it again, so none is made; the process ends anyway.
                device_usable = not isinstance(err, torch.AcceleratorError)
    # The model (held by ``run``) and the exception (its frames hold it too) are let go here, so memory
    # can really be freed.
    del run
    gc.collect()
    if torch.cuda.is_available() and device_usable:
        torch.cuda.empty_cache()
    result.metrics["steps_completed"] = len(steps)
    result.metrics.update(aggregate(steps))
    result.metrics.update(world_metrics(config, result.metrics))
    diverged_at = result.metrics["first_nonfinite_loss_step"]
    if result.status == "ok" and diverged_at is not None:
        result.status, result.reason = "diverged", diverged_reason(steps, diverged_at, config)
    if result.status == "ok" and result.metrics["n_measured_steps"] == 0:
        result.status, result.reason = (
            "failed",
            ("no measured step: every step was a warm-up step or the first of its batch shape; raise max_steps"),
        )
    clock.mark("finish")
    result.phases_s = clock.phases_s
    return result, steps
