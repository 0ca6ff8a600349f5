"""The ``TrainingArguments`` of a run, as train_model trains with them and prepare_grid checks them on the CPU."""

from __future__ import annotations

from typing import Any

from liger_bench.plan.config import TrainConfig


def training_arguments(config: TrainConfig, output_dir: str, bf16: bool, sharding: dict[str, Any] | None = None):
    """The ``TrainingArguments`` of a run; prepare_grid builds them too, to check them on the CPU.

    ``sharding``: FSDP's keywords (``distributed.fsdp_settings``) for a run of several ranks.
    """
    import torch
    from transformers import TrainingArguments

    sharding = sharding or {}
    return TrainingArguments(
        **sharding,
        output_dir=output_dir,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        activation_checkpointing=config.gradient_checkpointing and not sharding,
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
        torch_compile=config.torch_compile,
        # Only a compiled run names a mode or backend: either one alone turns torch_compile on in the Trainer.
        torch_compile_mode=(config.torch_compile_mode or None) if config.torch_compile else None,
        torch_compile_backend=(config.torch_compile_backend or None) if config.torch_compile else None,
        # accelerate forms a process group of CPU ranks (gloo) only when told the run is on the CPU.
        use_cpu=bool(sharding) and not torch.cuda.is_available(),
    )
