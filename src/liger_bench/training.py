"""One grid point: fine-tune with or without Liger, measure every step, never raise for outcomes.

The baseline is the stock transformers model trained by transformers' ``Trainer`` (whose forward
is the model's own); trl supplies the SFT collator. trl's SFTTrainer is not used because it
wraps the forward with its own LM-head loss, which would make "vanilla" something else than stock
transformers. The only difference between variants is ``apply_liger``.
"""

from __future__ import annotations

import gc
import json
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from liger_bench.config import TrainConfig
from liger_bench.metrics import GIB
from liger_bench.records import RunResult

NO_CUDA_REASON = (
    "Liger kernels are Triton GPU kernels and this node has no CUDA device; the run was skipped "
    "rather than silently trained without Liger"
)


HOST_ALLOCATOR_OOM = "DefaultCPUAllocator: can't allocate memory"


def _use_bf16(config: TrainConfig) -> bool:
    import torch

    if config.precision == "fp32":
        return False
    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if config.precision == "bf16" and not supported:
        raise ValueError("precision='bf16' was requested but this device does not support bf16")
    return supported


def training_arguments(config: TrainConfig, output_dir: str, bf16: bool):
    """The ``TrainingArguments`` of a run; prepare_grid builds them too, to check them on the CPU."""
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        activation_checkpointing=config.gradient_checkpointing,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,
        optim=config.optim,
        bf16=bf16,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_drop_last=True,  # a last partial batch would be measured as a step of the full batch size
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=True,
        logging_nan_inf_filter=False,  # a diverging loss must show as NaN/inf, not as 0.0
        use_cpu=False,
    )


def train_measured(
    config: TrainConfig,
    model,
    rows: list[dict],
    pad_token_id: int,
    step_metrics,
    callbacks: Sequence[Any],
    bf16: bool,
) -> None:
    """Train ``model`` on tokenised ``rows`` with transformers' Trainer, measured by ``step_metrics``.

    ``step_metrics`` (a ``StepMetricsCallback``) sees every micro-batch, to count its tokens.
    """
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    class MeasuredTrainer(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            step_metrics.record_batch(inputs)
            return super().training_step(model, inputs, num_items_in_batch)

    collator = DataCollatorForLanguageModeling(
        pad_token_id=pad_token_id,
        pad_to_multiple_of=config.pad_to_multiple_of if config.pad_to_multiple_of > 1 else None,
    )
    with tempfile.TemporaryDirectory(prefix="liger-bench-trainer-") as output_dir:
        trainer = MeasuredTrainer(
            model=model,
            args=training_arguments(config, output_dir, bf16),
            train_dataset=rows,
            data_collator=collator,
            callbacks=[step_metrics, *callbacks],
        )
        trainer.remove_callback(PrinterCallback)  # one log line per step is noise; the history has it all
        trainer.train()


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
    from liger_bench.liger import apply_liger, patched_kernels

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


def load_training_rows(model_dir: str, dataset_dir: str, max_seq_length: int):
    """The model's tokenizer and the prepared dataset tokenised for SFT: ``(tokenizer, TokenizedData)``."""
    from transformers import AutoTokenizer

    from liger_bench.data import load_prepared, tokenize

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, tokenize(load_prepared(dataset_dir), tokenizer, max_seq_length)


def _train(
    config: TrainConfig,
    model_dir: str,
    dataset_dir: str,
    result: RunResult,
    step_metrics: Any,
    callbacks: Sequence[Any],
) -> None:
    """The training itself; fills ``result`` and ``step_metrics.steps`` as it goes."""
    import torch
    from transformers import set_seed

    from liger_bench.data import DatasetError
    from liger_bench.metrics import FlopModel, peak_tflops_for
    from liger_bench.modelio import context_length
    from liger_bench.validation import rows_problem

    bf16 = _use_bf16(config)
    result.metrics["precision"] = "bf16" if bf16 else "fp32"
    set_seed(config.seed)
    tokenizer, tokenized = load_training_rows(model_dir, dataset_dir, config.max_seq_length)
    result.data = tokenized.summary()
    rows = pack(tokenized.rows, config.max_seq_length) if config.packing else tokenized.rows
    result.data["n_training_sequences"] = len(rows)
    # prepare_grid checked the dataset's rows; truncation (or packing) at this max_seq_length changes their number.
    problem = rows_problem(len(rows), config)
    if problem:
        raise DatasetError(
            f"after tokenising{' and packing' if config.packing else ''} at max_seq_length={config.max_seq_length}, "
            f"{problem}"
        )

    model = load_model(model_dir, bf16, config.attn_implementation)
    result.metrics["attn_implementation"] = model.config._attn_implementation
    context = context_length(model.config.to_dict())
    if context and config.max_seq_length > context:
        raise ValueError(f"max_seq_length={config.max_seq_length} exceeds the model's context length {context}")
    result.liger_kernels = apply_variant(model, config)

    flop_model = FlopModel(n_params_non_embedding(model), model.config.num_hidden_layers, model.config.hidden_size)
    gpu_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    peak = config.peak_tflops or peak_tflops_for(gpu_name)
    result.metrics.update(model_flops_per_token=flop_model.per_token(config.max_seq_length), peak_tflops=peak or None)
    step_metrics.flop_model, step_metrics.peak_tflops = flop_model, peak

    train_measured(config, model, rows, tokenizer.pad_token_id, step_metrics, callbacks, bf16)


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


def run_training(
    config: TrainConfig,
    model_dir: str,
    dataset_dir: str,
    extra_callbacks: Sequence[Any] = (),
    steps_file: Path | None = None,
) -> tuple[RunResult, list[dict]]:
    """Train one grid point and return ``(result, step_history)``; outcomes never raise.

    ``ok``: trained all steps. ``skipped``: Liger requested on a node without CUDA. ``oom``: CUDA
    or host out of memory (``MemoryError``) anywhere in the run; memory is released before
    returning. ``failed``: any other exception, recorded with its type and message. With
    ``steps_file``, every step is also appended to that JSON-lines file as soon as it completes.
    """
    import torch

    from liger_bench.envinfo import capture_environment
    from liger_bench.metrics import StepMetricsCallback, aggregate

    result = RunResult(run_key=config.run_key, status="ok", config=config.to_dict(), environment=capture_environment())
    # Steps completed before an OOM or a failure stay in the history.
    step_metrics = StepMetricsCallback(config.warmup_steps_to_skip)
    if steps_file is not None:
        extra_callbacks = (*extra_callbacks, step_stream(step_metrics.steps, steps_file))
    if config.use_liger and not torch.cuda.is_available():
        result.status, result.reason = "skipped", NO_CUDA_REASON
    else:
        try:
            _train(config, model_dir, dataset_dir, result, step_metrics, extra_callbacks)
        except Exception as err:  # noqa: BLE001 - any failure of one grid point is recorded, not raised
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
    # The exception (and its frames holding the model) is gone here, so memory can really be freed.
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    steps = step_metrics.steps
    result.metrics["steps_completed"] = len(steps)
    result.metrics.update(aggregate(steps))
    if result.status == "ok" and result.metrics["n_measured_steps"] == 0:
        result.status, result.reason = (
            "failed",
            ("no measured step: every step was a warm-up step or the first of its batch shape; raise max_steps"),
        )
    return result, steps
