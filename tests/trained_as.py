"""A callback that records what the Trainer really trains, for tests that must see effects, not labels."""

from __future__ import annotations

from transformers import TrainerCallback

from liger_bench.plan.liger import patched_kernels


class TrainedAs(TrainerCallback):
    """At every step: the parameters' dtypes, the Trainer's ``bf16`` argument and the Liger patches in the model."""

    def __init__(self):
        self.dtypes: set[str] = set()
        self.bf16: set[bool] = set()
        self.kernels: list[dict[str, int]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        """Look at the model the Trainer holds right after an optimizer step."""
        self.dtypes |= {str(p.dtype).removeprefix("torch.") for p in model.parameters()}
        self.bf16.add(args.bf16)
        self.kernels.append(patched_kernels(model))
