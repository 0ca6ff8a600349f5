"""Per-step measurement of a training run, and the aggregates computed from it.

Known failure modes of naive throughput callbacks that this module avoids:
the clock is read only after ``torch.cuda.synchronize()`` at both ends of a step; padding is
counted separately from real tokens; every warm-up step (``warmup_steps_to_skip``) is excluded from
every aggregate, not just the first one; a step whose padded batch shape is new in the run (a
*first-shape* step: kernel selection, autotuning and allocator growth for that shape) is excluded
too and reported on its own; so is a *compile* step, in which ``torch.compile`` compiled or
recompiled graphs (torch's own counter), whose one-off cost ``compile_cost`` reports; a run whose
measured steps still speed up or slow down is flagged ``unsteady`` (``steady_state``) instead of
being averaged as if it had settled; and a loss that becomes NaN or infinite stops training at
once and marks the step where the run diverged.

The callback and the aggregates share this module: what the callback records and what
``aggregate`` counts are one definition of a measured step (``is_measured``), and the steady-state
test and first-shape cost share its grouping of step times by shape; split, a change to one side
would silently miss the other. The FLOP model, fixed before the first step, is ``flops``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

from liger_bench.measure.energy import EnergyCounter, energy_metrics, nvml_energy_counter, ranks_energy, step_energy
from liger_bench.measure.flops import FlopModel
from liger_bench.records import TOKEN_KINDS, StepRecord

GIB = 2**30

# A run is steady when the shape-normalised step time of the second half of its measured steps is
# within this fraction of the first half's. Fixed-shape H100 runs vary by 0.2% (CV) step to step.
STEADY_DRIFT_TOLERANCE = 0.05
# Fewer measured steps than this cannot show a drift: the verdict is "unknown".
MIN_STEPS_FOR_STEADY_TEST = 8


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


def compiled_graph_count() -> int:
    """Graphs ``torch.compile`` has compiled in this process so far (torch's own counter of unique graphs)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def synchronize_cuda() -> None:
    """Wait for all queued CUDA work; a no-op without a CUDA device."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepMetricsCallback(TrainerCallback):
    """Records one dict per optimizer step; feed it every micro-batch through ``record_batch``.

    ``clock`` and ``sync`` are the step timer's parts: the defaults are the only ones production
    uses; tests pass a fake device whose queued work only ``sync`` lets the clock see. ``energy`` is
    the GPU's energy counter (``liger_bench.measure.energy``; NVML's by default), read right after the
    clock at both ends of a step. ``barrier``
    and ``gather`` join the ranks of a sharded run (``liger_bench.measure.distributed``, no-ops with one
    process): each step's tokens and FLOPs are the sums over ranks, its time and peak memory the
    maxima, and ``ranks`` keeps what each rank measured.
    """

    def __init__(
        self,
        warmup_steps_to_skip: int,
        flop_model: FlopModel | None = None,
        peak_tflops: float = 0.0,
        clock: Callable[[], float] = time.perf_counter,
        sync: Callable[[], None] = synchronize_cuda,
        barrier: Callable[[], None] | None = None,
        gather: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None,
        energy: EnergyCounter | None = None,
    ):
        self.warmup_steps_to_skip = warmup_steps_to_skip
        self.flop_model = flop_model
        self.peak_tflops = peak_tflops
        self._flops = 0.0
        self.steps: list[StepRecord] = []
        self._tokens = dict.fromkeys(TOKEN_KINDS, 0)
        self._totals = dict(self._tokens)
        self._start = 0.0
        self._graphs_at_start = 0
        self._shapes: list[str] = []
        self._seen_shapes: set[str] = set()
        self._clock = clock
        self._sync = sync
        self._energy = energy or nvml_energy_counter()
        self._energy_at_start: int | None = None
        from liger_bench.measure import distributed

        # With several ranks, every rank's clock starts and stops at a barrier after its device is
        # idle, so a step's time is the time of the slowest rank; tokens are summed over ranks.
        self._barrier = barrier or distributed.barrier
        self._gather = gather or distributed.gather

    def record_batch(self, inputs: dict[str, Any]) -> None:
        """Add the tokens of one micro-batch to the current step."""
        tokens = count_tokens(inputs)
        for kind in TOKEN_KINDS:
            self._tokens[kind] += tokens[f"tokens_{kind}"]
        self._shapes.append("x".join(str(n) for n in inputs["input_ids"].shape))
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
        self._shapes = []
        self._barrier()
        self._graphs_at_start = compiled_graph_count()
        self._start = self._clock()
        self._energy_at_start = self._read_energy()

    def _read_energy(self) -> int | None:
        return self._energy.read() if self._energy.read else None

    def on_step_end(self, args, state, control, **kwargs):
        """Synchronise, stop the clock and record the step (summed over ranks)."""
        import torch

        self._sync()
        self._barrier()
        local: dict[str, Any] = {"step_time_s": self._clock() - self._start, "flops": self._flops}
        local.update(step_energy(self._energy_at_start, self._read_energy(), self._energy.unavailable))
        local["compiled_graphs"] = compiled_graph_count() - self._graphs_at_start
        local.update({f"tokens_{kind}": count for kind, count in self._tokens.items()})
        local["shape"] = "+".join(self._shapes)
        cuda = torch.cuda.is_available()
        local["peak_mem_allocated_gb"] = torch.cuda.max_memory_allocated() / GIB if cuda else None
        local["peak_mem_reserved_gb"] = torch.cuda.max_memory_reserved() / GIB if cuda else None
        ranks = self._gather(local)
        elapsed = max(r["step_time_s"] for r in ranks)
        step = state.global_step
        # One "BxS" per micro-batch ("+"-joined with gradient accumulation): the padded input shape.
        # With several ranks, rank 0's decides whether the step is a first-shape step (each rank's is in ``ranks``).
        shape = ranks[0]["shape"]
        tokens = {kind: sum(r[f"tokens_{kind}"] for r in ranks) for kind in TOKEN_KINDS}
        for kind, count in tokens.items():
            self._totals[kind] += count
        peaks = {
            key: max((r[key] for r in ranks if r[key] is not None), default=None)
            for key in ("peak_mem_allocated_gb", "peak_mem_reserved_gb")
        }
        flops = sum(r["flops"] for r in ranks)

        def rate(count: float) -> float:
            return count / elapsed if elapsed > 0 else 0.0

        record = StepRecord(
            step=step,
            warmup=step <= self.warmup_steps_to_skip,
            shape=shape,
            first_shape=shape not in self._seen_shapes,
            compiled_graphs=max(r["compiled_graphs"] for r in ranks),
            step_time_s=elapsed,
            tokens_padded=tokens["padded"],
            tokens_per_s_padded=rate(tokens["padded"]),
            total_tokens_padded=self._totals["padded"],
            tokens_nonpad=tokens["nonpad"],
            tokens_per_s_nonpad=rate(tokens["nonpad"]),
            total_tokens_nonpad=self._totals["nonpad"],
            tokens_trained=tokens["trained"],
            tokens_per_s_trained=rate(tokens["trained"]),
            total_tokens_trained=self._totals["trained"],
            peak_mem_allocated_gb=peaks["peak_mem_allocated_gb"],
            peak_mem_reserved_gb=peaks["peak_mem_reserved_gb"],
            mfu=flops / elapsed / (self.peak_tflops * 1e12 * len(ranks))
            if self.flop_model and self.peak_tflops and elapsed > 0
            else None,
            loss=None,
            learning_rate=None,
            **ranks_energy(ranks),
        )
        self._seen_shapes.add(shape)
        if len(ranks) > 1:
            record["ranks"] = [{k: v for k, v in r.items() if k != "flops"} for r in ranks]
        self.steps.append(record)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Attach the loss and learning rate the Trainer logs right after each step; stop at a non-finite loss.

        A NaN or infinite loss makes NaN gradients and weights: the run has diverged, and every
        further step would time arithmetic on NaN. Training stops after that step (the Trainer's own flag, on
        every rank alike: the logged loss is the mean over ranks).
        """
        if logs and self.steps and self.steps[-1]["step"] == state.global_step:
            if "loss" in logs:
                self.steps[-1]["loss"] = float(logs["loss"])
                if not math.isfinite(self.steps[-1]["loss"]):
                    control.should_training_stop = True
            if "learning_rate" in logs:
                self.steps[-1]["learning_rate"] = float(logs["learning_rate"])
        return control


def _stat(values: list[float], fn) -> float | None:
    return fn(values) if values else None


def is_measured(step: dict[str, Any]) -> bool:
    """A step that counts in the aggregates: past warm-up, of a shape seen earlier in the run, nothing compiled."""
    return not step["warmup"] and not step.get("first_shape", False) and not step.get("compiled_graphs", 0)


def _times_by_shape(steps: list[dict[str, Any]]) -> dict[str, list[float]]:
    by_shape: dict[str, list[float]] = defaultdict(list)
    for s in steps:
        by_shape[s.get("shape", "")].append(s["step_time_s"])
    return by_shape


def _shape_normalised_times(steps: list[dict[str, Any]]) -> list[float]:
    """Each step's time over the median time of the steps of its shape; shape-independent.

    Falls back to time per padded token when too few shapes repeat (every step a different shape).
    """
    medians = {shape: statistics.median(times) for shape, times in _times_by_shape(steps).items() if len(times) > 1}
    repeated = [s["step_time_s"] / medians[s.get("shape", "")] for s in steps if s.get("shape", "") in medians]
    if len(repeated) >= MIN_STEPS_FOR_STEADY_TEST:
        return repeated
    return [s["step_time_s"] / s["tokens_padded"] for s in steps if s.get("tokens_padded")]


def _drift(steps: list[dict[str, Any]]) -> float | None:
    values = _shape_normalised_times(steps)
    if len(values) < MIN_STEPS_FOR_STEADY_TEST:
        return None
    half = len(values) // 2
    early, late = statistics.median(values[:half]), statistics.median(values[-half:])
    return late / early - 1.0 if early > 0 else None


def steady_state(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether a run's measured steps ran at a stable rate, and if not, how long it would take.

    The drift is the relative change of the median shape-normalised step time from the first to
    the second half of the measured steps (negative: the run was still speeding up). A run is
    ``steady`` when ``|drift| <= STEADY_DRIFT_TOLERANCE``, ``unsteady`` otherwise, ``unknown`` with
    fewer than ``MIN_STEPS_FOR_STEADY_TEST`` measured steps. For an unsteady run, ``settle_step``
    is the first step from which the rest of the window is steady, and ``steps_needed`` the
    ``max_steps`` that would measure as many steps after it (both None when the run never settled:
    it needs more than twice its steps).
    """
    drift = _drift(measured)
    out: dict[str, Any] = {"steady_state": "unknown", "drift": drift, "settle_step": None, "steps_needed": None}
    if drift is None:
        return out
    if abs(drift) <= STEADY_DRIFT_TOLERANCE:
        out["steady_state"] = "steady"
        return out
    out["steady_state"] = "unsteady"
    for start in range(1, len(measured) - 2 * MIN_STEPS_FOR_STEADY_TEST + 1):
        rest = _drift(measured[start:])
        if rest is not None and abs(rest) <= STEADY_DRIFT_TOLERANCE:
            out["settle_step"] = measured[start]["step"]
            out["steps_needed"] = measured[start]["step"] - 1 + len(measured)
            break
    return out


def first_shape_cost(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The one-off cost of new shapes after warm-up: how many steps, their time, and the excess.

    The excess of a first-shape step is its time minus the median measured time of its shape (or,
    for a shape that never repeated, the median measured time per padded token times its tokens).
    """
    after_warmup = [s for s in steps if not s["warmup"]]
    # A first-shape step that compiled is a compile step: its cost is compile_cost's, counted once.
    first = [s for s in after_warmup if s.get("first_shape") and not s.get("compiled_graphs", 0)]
    measured = [s for s in after_warmup if is_measured(s)]
    excess = _excess_time(first, measured)
    return {
        "n_shapes": len({s.get("shape", "") for s in steps}),
        "n_first_shape_steps": len(first),
        "first_shape_time_s": sum(s["step_time_s"] for s in first),
        "first_shape_excess_s": excess if first and measured else None,
        "warmup_time_s": sum(s["step_time_s"] for s in steps if s["warmup"]),
    }


def first_nonfinite_loss_step(steps: list[dict[str, Any]]) -> int | None:
    """The first step, warm-up included, whose loss is NaN or infinite: where the run diverged; None if none."""
    return next((s["step"] for s in steps if s.get("loss") is not None and not math.isfinite(s["loss"])), None)


def _excess_time(one_off: list[dict[str, Any]], measured: list[dict[str, Any]]) -> float:
    """Time of the ``one_off`` steps beyond what measured steps of their shape take (see ``first_shape_cost``)."""
    by_shape = _times_by_shape(measured)
    per_token = _stat(
        [s["step_time_s"] / s["tokens_padded"] for s in measured if s["tokens_padded"]], statistics.median
    )
    excess = 0.0
    for s in one_off:
        if s.get("shape") in by_shape:
            excess += s["step_time_s"] - statistics.median(by_shape[s["shape"]])
        elif per_token is not None:
            excess += s["step_time_s"] - per_token * s["tokens_padded"]
    return excess


def compile_cost(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The one-off cost of ``torch.compile``: the steps that compiled (warm-up included), graphs, recompiles, time.

    ``compile_time_s`` is the compile steps' time beyond what measured steps of their shape take
    (like ``first_shape_excess_s``). A recompile is a graph compiled in a later step than the first
    one that compiled (a guard failed, e.g. on a new batch shape); the graphs of the first compile
    step are one compilation (several graphs where the model has graph breaks). All None for a run
    that compiled nothing.
    """
    compiling = [s for s in steps if s.get("compiled_graphs", 0) > 0]
    if not compiling:
        return {"n_compile_steps": 0, "compiled_graphs": 0, "recompiles": None, "compile_time_s": None}
    measured = [s for s in steps if is_measured(s)]
    return {
        "n_compile_steps": len(compiling),
        "compiled_graphs": sum(s["compiled_graphs"] for s in compiling),
        "recompiles": sum(s["compiled_graphs"] for s in compiling[1:]),
        "compile_time_s": _excess_time(compiling, measured) if measured else None,
    }


def aggregate(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregates over the measured steps (``is_measured``), their energy, the steady-state verdict, one-off costs."""
    measured = [s for s in steps if is_measured(s)]
    times = [s["step_time_s"] for s in measured]
    out: dict[str, Any] = {"n_steps": len(steps), "n_measured_steps": len(measured)}
    total_time = sum(times)
    for kind in TOKEN_KINDS:
        # Tokens over time of all measured steps: with batches of varying length this is the rate
        # the workload runs at; a median of per-step rates would be the rate of one typical shape.
        tokens = sum(s[f"tokens_{kind}"] for s in measured)
        out[f"tokens_per_s_{kind}"] = tokens / total_time if total_time > 0 else None
    out["median_step_time_s"] = _stat(times, statistics.median)
    out["mean_step_time_s"] = _stat(times, statistics.fmean)
    out["step_time_cv"] = statistics.pstdev(times) / statistics.fmean(times) if len(times) > 1 else None
    for key in ("peak_mem_allocated_gb", "peak_mem_reserved_gb"):
        # Peak memory counts every step after warm-up: a first-shape step's memory is a real need.
        values = [s[key] for s in steps if not s["warmup"] and s.get(key) is not None]
        out[key] = max(values) if values else None
    mfus = [s["mfu"] for s in measured if s.get("mfu") is not None]
    out["median_mfu"] = _stat(mfus, statistics.median)
    losses = [s["loss"] for s in steps if s.get("loss") is not None]
    out["final_loss"] = losses[-1] if losses else None
    out["first_nonfinite_loss_step"] = first_nonfinite_loss_step(steps)
    out.update(energy_metrics(measured, steps))
    out.update(steady_state(measured))
    out.update(first_shape_cost(steps))
    out.update(compile_cost(steps))
    return out
