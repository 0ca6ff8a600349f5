"""Per-step measurement of a training run, and the aggregates computed from it.

Known failure modes of naive throughput callbacks that this module avoids:
the clock is read only after ``torch.cuda.synchronize()`` at both ends of a step; padding is
counted separately from real tokens; every warm-up step (``warmup_steps_to_skip``) is excluded from
every aggregate, not just the first one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback

GIB = 2**30

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' datasheets. Matched by
# substring of the CUDA device name, most specific first. Override with TrainConfig.peak_tflops.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H800", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("L4", 121.0),
    ("RTX 4090", 165.0),
    ("A6000", 155.0),
)


def peak_tflops_for(gpu_name: str) -> float:
    """Dense bf16 peak of a GPU by name, or 0.0 when it is not in the table (MFU then unreported)."""
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in gpu_name.lower():
            return tflops
    return 0.0


def model_flops_per_token(n_params_non_embedding: int, n_layers: int, hidden_size: int, seq_len: int) -> float:
    """Training FLOPs per token: 6·N for the weights plus 12·L·h·s for attention (PaLM, appendix B).

    N excludes the input embedding (a lookup) and includes the LM head. The attention term counts
    the full s×s score matrix, without a causal discount.
    """
    return 6.0 * n_params_non_embedding + 12.0 * n_layers * hidden_size * seq_len


@dataclass(frozen=True)
class FlopModel:
    """The sizes MFU needs; FLOPs per token depend on each step's padded sequence length."""

    n_params_non_embedding: int
    n_layers: int
    hidden_size: int

    def per_token(self, seq_len: int) -> float:
        """Training FLOPs per token at ``seq_len`` (see ``model_flops_per_token``)."""
        return model_flops_per_token(self.n_params_non_embedding, self.n_layers, self.hidden_size, seq_len)


def count_tokens(inputs: dict[str, Any]) -> dict[str, int]:
    """Tokens in one micro-batch: padded (input_ids elements), non-padding (attention mask), trained."""
    input_ids = inputs["input_ids"]
    padded = int(input_ids.numel())
    mask = inputs.get("attention_mask")
    nonpad = int(mask.sum().item()) if mask is not None else padded
    labels = inputs.get("labels")
    # The model shifts labels by one: the first label of each row never contributes to the loss.
    trained = int((labels[:, 1:] != -100).sum().item()) if labels is not None else nonpad
    return {"tokens_padded": padded, "tokens_nonpad": nonpad, "tokens_trained": trained}


def synchronize_cuda() -> None:
    """Wait for all queued CUDA work; a no-op without a CUDA device."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepMetricsCallback(TrainerCallback):
    """Records one dict per optimizer step; feed it every micro-batch through ``record_batch``.

    ``clock`` and ``sync`` are the step timer's parts: the defaults are the only ones production
    uses; tests pass a fake device whose queued work only ``sync`` lets the clock see.
    """

    def __init__(
        self,
        warmup_steps_to_skip: int,
        flop_model: FlopModel | None = None,
        peak_tflops: float = 0.0,
        clock: Callable[[], float] = time.perf_counter,
        sync: Callable[[], None] = synchronize_cuda,
    ):
        self.warmup_steps_to_skip = warmup_steps_to_skip
        self.flop_model = flop_model
        self.peak_tflops = peak_tflops
        self._flops = 0.0
        self.steps: list[dict[str, Any]] = []
        self._tokens = {"tokens_padded": 0, "tokens_nonpad": 0, "tokens_trained": 0}
        self._totals = dict(self._tokens)
        self._start = 0.0
        self._clock = clock
        self._sync = sync

    def record_batch(self, inputs: dict[str, Any]) -> None:
        """Add the tokens of one micro-batch to the current step."""
        tokens = count_tokens(inputs)
        for key, value in tokens.items():
            self._tokens[key] += value
        if self.flop_model:
            # The collator pads to the longest row of the batch, not to max_seq_length.
            self._flops += self.flop_model.per_token(inputs["input_ids"].shape[1]) * tokens["tokens_padded"]

    def on_step_begin(self, args, state, control, **kwargs):
        """Synchronise, reset the peak-memory counters and start the clock."""
        import torch

        self._sync()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._tokens = dict.fromkeys(self._tokens, 0)
        self._flops = 0.0
        self._start = self._clock()

    def on_step_end(self, args, state, control, **kwargs):
        """Synchronise, stop the clock and record the step."""
        import torch

        self._sync()
        elapsed = self._clock() - self._start
        step = state.global_step
        record: dict[str, Any] = {
            "step": step,
            "warmup": step <= self.warmup_steps_to_skip,
            "step_time_s": elapsed,
        }
        for key, value in self._tokens.items():
            self._totals[key] += value
            record[key] = value
            record[key.replace("tokens_", "tokens_per_s_")] = value / elapsed if elapsed > 0 else 0.0
            record[key.replace("tokens_", "total_tokens_")] = self._totals[key]
        if torch.cuda.is_available():
            record["peak_mem_allocated_gb"] = torch.cuda.max_memory_allocated() / GIB
            record["peak_mem_reserved_gb"] = torch.cuda.max_memory_reserved() / GIB
        else:
            record["peak_mem_allocated_gb"] = None
            record["peak_mem_reserved_gb"] = None
        if self.flop_model and self.peak_tflops and elapsed > 0:
            record["mfu"] = self._flops / elapsed / (self.peak_tflops * 1e12)
        else:
            record["mfu"] = None
        record["loss"] = None
        record["learning_rate"] = None
        self.steps.append(record)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Attach the loss and learning rate the Trainer logs right after each step."""
        if logs and self.steps and self.steps[-1]["step"] == state.global_step:
            if "loss" in logs:
                self.steps[-1]["loss"] = float(logs["loss"])
            if "learning_rate" in logs:
                self.steps[-1]["learning_rate"] = float(logs["learning_rate"])


def _stat(values: list[float], fn) -> float | None:
    return fn(values) if values else None


def aggregate(steps: list[dict[str, Any]], warmup_steps_to_skip: int) -> dict[str, Any]:
    """Aggregates over the measured steps only (step number > ``warmup_steps_to_skip``)."""
    measured = [s for s in steps if s["step"] > warmup_steps_to_skip]
    times = [s["step_time_s"] for s in measured]
    out: dict[str, Any] = {"n_steps": len(steps), "n_measured_steps": len(measured)}
    for kind in ("nonpad", "padded", "trained"):
        rates = [s[f"tokens_per_s_{kind}"] for s in measured]
        out[f"median_tokens_per_s_{kind}"] = _stat(rates, statistics.median)
        out[f"mean_tokens_per_s_{kind}"] = _stat(rates, statistics.fmean)
    out["median_step_time_s"] = _stat(times, statistics.median)
    out["mean_step_time_s"] = _stat(times, statistics.fmean)
    out["step_time_cv"] = statistics.pstdev(times) / statistics.fmean(times) if len(times) > 1 else None
    for key in ("peak_mem_allocated_gb", "peak_mem_reserved_gb"):
        values = [s[key] for s in measured if s.get(key) is not None]
        out[key] = max(values) if values else None
    mfus = [s["mfu"] for s in measured if s.get("mfu") is not None]
    out["median_mfu"] = _stat(mfus, statistics.median)
    losses = [s["loss"] for s in steps if s.get("loss") is not None]
    out["final_loss"] = losses[-1] if losses else None
    return out
