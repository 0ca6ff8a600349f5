"""Configuration of one training run: a grid point.

A grid item travels through KFP as a plain dict (``dataclasses.asdict``) and is read back with
``TrainConfig.from_dict``, which restores the field types: KFP hands integers inside loop items
over as floats.

The fields that are pipeline parameters (the axes, ``max_steps``, ``warmup_steps_to_skip``) or compile
options (``gpus_per_run``, ``nodes_per_run``) take their defaults from where those are declared: the
pipeline signature and ``ClusterOptions``. A lone ``TrainConfig`` (a test, one run) is the smallest
point of the pipeline's default grid: the baseline variant, the smallest batch, the shortest sequence.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from liger_bench.cluster import ClusterOptions
from liger_bench.plan.signature import pipeline_default
from liger_bench.vocabulary import Variant, variant_of

# Every kernel flag liger-kernel's per-architecture functions take (tests/test_architectures.py
# checks this against its registry); which of them a model type offers, and their defaults, are
# read from liger-kernel itself (liger_bench.plan.liger).
LIGER_KERNELS = (
    "rope",
    "rms_norm",
    "layer_norm",
    "swiglu",
    "geglu",
    "relu_squared",
    "fused_linear_cross_entropy",
    "cross_entropy",
)
EXPERIMENT_AXES = ("use_liger", "torch_compile", "per_device_train_batch_size", "max_seq_length")
# The values transformers' TrainingArguments.torch_compile_mode accepts (torch.compile's modes); "" is torch's default.
TORCH_COMPILE_MODES = ("", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# What transformers, torch and numpy accept for the numeric settings, checked before any GPU:
# (lowest, highest, the accepted values in words). NaN and infinities are never accepted.
NUMBER_RANGES: dict[str, tuple[float, float, str]] = {
    "repeat": (0, math.inf, "integers >= 0"),
    "per_device_train_batch_size": (1, math.inf, "integers >= 1"),
    "max_seq_length": (1, math.inf, "integers >= 1"),
    "pad_to_multiple_of": (1, math.inf, "integers >= 1 (1: no rounding)"),
    "max_steps": (1, math.inf, "integers >= 1"),
    "learning_rate": (0.0, math.inf, "finite numbers >= 0"),
    "weight_decay": (0.0, math.inf, "finite numbers >= 0"),
    # The Trainer reads warmup_steps >= 1 as a count of steps: a ratio of 1 or more would silently be one.
    "warmup_ratio": (0.0, math.nextafter(1.0, 0.0), "a fraction of max_steps in [0, 1)"),
    "gradient_accumulation_steps": (1, math.inf, "integers >= 1"),
    "seed": (0, 2**32 - 1, "integers in [0, 2**32 - 1] (numpy's seed range)"),
    "warmup_steps_to_skip": (0, math.inf, "integers >= 0"),
    "peak_tflops": (0.0, math.inf, "finite numbers >= 0 (0: looked up from the GPU's name)"),
    "gpus_per_run": (1, math.inf, "integers >= 1"),
    "nodes_per_run": (1, math.inf, "integers >= 1"),
}


def _smallest_of_axis(name: str, help_text: str) -> Any:
    return field(default=min(pipeline_default(name)), metadata={"help": help_text})


def _pipeline_parameter(name: str, help_text: str) -> Any:
    return field(default=pipeline_default(name), metadata={"help": help_text})


def _compile_option(name: str, help_text: str) -> Any:
    return field(default=getattr(ClusterOptions(), name), metadata={"help": help_text})


def _kernel_flag(help_text: str) -> Any:
    return field(default=None, metadata={"help": help_text + " Unset: liger-kernel's default.", "kind": bool})


@dataclass
class TrainConfig:
    """Everything one train_model task needs to know.

    Variants differ only by ``use_liger`` and ``torch_compile``, and a kernel-ablation arm by ``ablation``
    and its kernel flags.
    """

    # Identity of the grid point.
    run_key: str = field(default="run", metadata={"help": "Stable key, e.g. 'liger-bs16-seq512-r2'."})
    repeat: int = field(default=0, metadata={"help": "Repeat index of this grid cell (0-based)."})
    at_frontier: bool = field(
        default=False,
        metadata={
            "help": 'The batch axis said "max": per_device_train_batch_size is this variant\'s searched memory '
            "frontier (find_frontier sets it; prepare_grid leaves 1)."
        },
    )

    # Experiment axes.
    use_liger: bool = _smallest_of_axis("use_liger", "Apply Liger kernels to the model.")
    torch_compile: bool = _smallest_of_axis(
        "torch_compile", "Compile the model with torch.compile through the Trainer's own torch_compile flag."
    )
    ablation: str = field(
        default="",
        metadata={
            "help": "Kernel-ablation arm, set by the grid from kernel_ablation (eager Liger, every kernel flag "
            "set): a kernel (it alone), 'no_<kernel>' (liger-kernel's defaults but it); '': no ablation arm."
        },
    )
    per_device_train_batch_size: int = _smallest_of_axis("per_device_train_batch_size", "Sequences per step.")
    max_seq_length: int = _smallest_of_axis("max_seq_length", "Tokens per sequence after truncation.")

    # Batch shapes.
    pad_to_multiple_of: int = field(
        default=16,
        metadata={
            "help": "Pad every batch to a multiple of this many tokens, like the reference's collator (1: no "
            "rounding); fewer distinct shapes mean fewer one-off compile/allocation steps."
        },
    )
    packing: bool = field(
        default=False,
        metadata={
            "help": "Pack rows into sequences of exactly max_seq_length tokens with trl's pack_dataset "
            "('wrapped'), so every batch has one shape; off: one row per sequence, padded per batch."
        },
    )

    # Liger kernels, used when use_liger is true. None: liger-kernel's own default for the model
    # type (the defaults of its apply_liger_kernel_to_<arch>); true/false: only for kernels that
    # architecture offers, which prepare_grid checks.
    liger_rope: bool | None = _kernel_flag("Liger rotary position embedding.")
    liger_rms_norm: bool | None = _kernel_flag("Liger RMSNorm.")
    liger_layer_norm: bool | None = _kernel_flag("Liger LayerNorm.")
    liger_swiglu: bool | None = _kernel_flag("Liger SwiGLU MLP (Llama-like architectures).")
    liger_geglu: bool | None = _kernel_flag("Liger GeGLU MLP (Gemma).")
    liger_relu_squared: bool | None = _kernel_flag("Liger squared-ReLU activation (Nemotron).")
    liger_fused_linear_cross_entropy: bool | None = _kernel_flag(
        "Fused LM head + cross-entropy (logits never materialised)."
    )
    liger_cross_entropy: bool | None = _kernel_flag("Liger cross-entropy (exclusive with the fused variant).")
    attn_implementation: str = field(
        default="",
        metadata={
            "help": "transformers attention implementation for both variants ('eager', 'sdpa', ...); "
            "'' lets transformers choose (sdpa where the architecture supports it, else eager)."
        },
    )

    # torch.compile, used when torch_compile is true: the Trainer's own options ("": torch's default).
    # Dynamic shapes are torch's default (automatic: a dimension that changes is recompiled once as
    # dynamic), so variable-length batches cost a bounded number of recompiles; pad_to_multiple_of
    # keeps the number of shapes small.
    torch_compile_mode: str = field(
        default="", metadata={"help": f"torch.compile mode, one of {TORCH_COMPILE_MODES}; '': torch's default."}
    )
    torch_compile_backend: str = field(
        default="", metadata={"help": "torch.compile backend, e.g. 'inductor'; '': the Trainer's default (inductor)."}
    )

    # Training arguments of the reference experiment.
    max_steps: int = _pipeline_parameter("max_steps", "Optimizer steps per run.")
    learning_rate: float = field(default=6e-6, metadata={"help": "Peak learning rate."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers scheduler name."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Fraction of steps of LR warm-up."})
    # AdamW with torch's fused kernel: transformers' default since torch 2.8 and the same update as
    # the reference's "adamw_torch" (foreach), which measured 7% slower per step on an H100 at
    # batch 16 (benchmarks/results/README.md). Set "adamw_torch" to reproduce the reference exactly.
    optim: str = field(default="adamw_torch_fused", metadata={"help": "transformers optimizer name."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per step."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations."})
    precision: str = field(
        default="auto", metadata={"help": "'auto' (bf16 where supported, else fp32), 'bf16' or 'fp32'."}
    )
    seed: int = field(default=42, metadata={"help": "Seed for weights of new heads, data order, dropout."})

    # Scale: one process per GPU; more than one shards the model with FSDP (full shard).
    gpus_per_run: int = _compile_option(
        "gpus_per_run", "GPUs of one node that train the run together (torchrun processes)."
    )
    nodes_per_run: int = _compile_option(
        "nodes_per_run", "Nodes that train the run together (more than 1: a Kubeflow Trainer TrainJob)."
    )

    # Measurement.
    warmup_steps_to_skip: int = _pipeline_parameter(
        "warmup_steps_to_skip", "First steps excluded from every aggregate (compilation, autotune)."
    )
    peak_tflops: float = field(
        default=0.0, metadata={"help": "Dense bf16 peak of the GPU for MFU; 0 looks it up by GPU name."}
    )

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        if self.torch_compile_mode not in TORCH_COMPILE_MODES:
            raise ValueError(
                f"torch_compile_mode: {self.torch_compile_mode!r} is not a mode; accepted: {TORCH_COMPILE_MODES}"
            )
        for name, (low, high, accepted) in NUMBER_RANGES.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"{name}: {value!r} is out of range; accepted: {accepted}")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all fields, the keys a grid item or a ``base_config`` override may use."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build a config from a grid item, restoring types and rejecting unknown keys."""
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; accepted: {sorted(cls.field_names())}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                value = values[f.name]
                unset = f.default is None and value is None
                kwargs[f.name] = None if unset else coerce(f.name, value, cls.field_kind(f.name))
        return cls(**kwargs)

    @classmethod
    def field_kind(cls, name: str) -> type:
        """The type the values of field ``name`` are converted to (``bool`` for the kernel flags).

        Args:
            name: A field's name.
        """
        declared = cls.__dataclass_fields__[name]
        return declared.metadata.get("kind", type(declared.default))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON-serialisable), unset kernel flags left out.

        KFP parameters cannot carry null; ``from_dict`` restores a missing flag as unset.
        """
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    @property
    def variant(self) -> Variant:
        """The variant this run measures, named after its parts (``vocabulary.variant_of``)."""
        return variant_of(self.use_liger, self.torch_compile, self.ablation)

    @property
    def world_size(self) -> int:
        """Training processes of the run, one per GPU: ``gpus_per_run × nodes_per_run``."""
        return self.gpus_per_run * self.nodes_per_run

    @property
    def sequences_per_run(self) -> int:
        """Training sequences the run consumes: ``max_steps`` × batch × gradient accumulation × world size."""
        return self.max_steps * self.per_device_train_batch_size * self.gradient_accumulation_steps * self.world_size

    def liger_flags(self) -> dict[str, bool]:
        """The kernel flags set, in the names liger-kernel's ``apply_liger_kernel_to_*`` take; unset ones left out."""
        flags = {kernel: getattr(self, f"liger_{kernel}") for kernel in LIGER_KERNELS}
        return {kernel: on for kernel, on in flags.items() if on is not None}


def coerce(name: str, value: Any, kind: type) -> Any:
    """Convert ``value`` to ``kind`` without losing information; raise naming the field otherwise."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
    elif kind is int:
        if isinstance(value, bool):
            pass
        elif isinstance(value, int):
            return value
        elif isinstance(value, float) and value.is_integer():
            return int(value)
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ValueError(f"{name}: expected {kind.__name__}, got {value!r} ({type(value).__name__})")
