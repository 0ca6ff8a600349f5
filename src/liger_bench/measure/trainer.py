"""transformers' Trainer as the benchmark runs it: a Trainer that measures every step.

The baseline is the stock transformers model trained by transformers' ``Trainer`` (whose forward
is the model's own); trl supplies the SFT collator. trl's SFTTrainer is not used because it
wraps the forward with its own LM-head loss, which would make the baseline something else than stock
transformers. ``torch.compile`` goes through the Trainer's own flag (accelerate compiles the model
as it prepares it), never through a wrapper of ours.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

from liger_bench.plan.arguments import training_arguments
from liger_bench.plan.config import TrainConfig


def train_measured(
    config: TrainConfig,
    model,
    rows: list[dict],
    pad_token_id: int,
    step_metrics,
    callbacks: Sequence[Any],
    bf16: bool,
    sharding: dict[str, Any] | None = None,
) -> float:
    """Train ``model`` on tokenised ``rows`` with transformers' Trainer, measured by ``step_metrics``.

    ``step_metrics`` (a ``StepMetricsCallback``) sees every micro-batch, to count its tokens.
    ``sharding``: FSDP's ``TrainingArguments`` keywords when this process is one rank of several.
    Returns the fraction of the trained model's parameters that FSDP sharded (0.0 unsharded).
    """
    from torch.distributed.tensor import DTensor
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    class MeasuredTrainer(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            step_metrics.record_batch(inputs)
            return super().training_step(model, inputs, num_items_in_batch)

        def create_accelerator_and_postprocess(self):
            super().create_accelerator_and_postprocess()
            if sharding:
                shard_cpu_ranks_too(self)

    collator = DataCollatorForLanguageModeling(
        pad_token_id=pad_token_id,
        pad_to_multiple_of=config.pad_to_multiple_of if config.pad_to_multiple_of > 1 else None,
    )
    with tempfile.TemporaryDirectory(prefix="liger-bench-trainer-") as output_dir:
        trainer = MeasuredTrainer(
            model=model,
            args=training_arguments(config, output_dir, bf16, sharding),
            train_dataset=rows,
            data_collator=collator,
            callbacks=[step_metrics, *callbacks],
        )
        trainer.remove_callback(PrinterCallback)  # one log line per step is noise; the history has it all
        trainer.train()
        parameters = list(trainer.model.parameters())
        return sum(isinstance(p, DTensor) for p in parameters) / len(parameters)


def shard_cpu_ranks_too(trainer) -> None:
    """Let FSDP shard CPU ranks as it shards GPU ranks: accelerate turns FSDP on for GPU process groups only.

    accelerate 1.15 gives a process group of CPU ranks (gloo) plain DDP even when the Trainer asks
    for FSDP; this enables the same FSDP2 preparation there, so that a CPU run (CI) trains through
    the sharded code a GPU run takes. Inert on GPUs, where accelerate enables FSDP itself.
    """
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if state.distributed_type == DistributedType.MULTI_CPU:
        state.distributed_type = DistributedType.FSDP
        state.fsdp_plugin = FullyShardedDataParallelPlugin(**trainer.args.fsdp_plugin_args)
        trainer.is_fsdp_enabled = True
