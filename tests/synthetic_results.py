"""Realistic synthetic run results and step histories, built with the project's own record types.

Results are ``RunResult.to_dict()`` with metrics from the real ``metrics.aggregate`` over step
records that carry exactly the keys ``StepMetricsCallback`` writes. Numbers are deterministic:
throughput and memory are what the caller asks for, so tests can compute expected gains by hand.

Quantities a bug could confuse differ here (issue 23): measured step times are uneven, so the
median step time (``JITTER`` times the nominal) differs from the mean (the nominal) and the CV is
not 0, while the rate stays the one asked for; allocated memory is a different fraction of reserved
memory for Liger and for the rest (``allocated_fraction``); warm-up steps peak higher and the run's
peak step is neither its first nor its last measured step; and the GPU scenario's memory and rates
differ from repeat to repeat, with a partly failed Liger cell at the top of its batch range. Its memory
frontier searches (``frontier_searches``) are the real search over fixed probe answers, whose largest
fits, first out-of-memory batches, probe counts, peaks and search times all differ.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from liger_bench.measure.energy import NO_NVIDIA_GPU
from liger_bench.measure.frontier import Probe, search_frontier
from liger_bench.measure.frontier_probe import batch_axis, sequence_axis
from liger_bench.measure.metrics import aggregate
from liger_bench.measure.training import NO_CUDA_REASON, diverged_reason, world_metrics
from liger_bench.plan.config import TrainConfig
from liger_bench.plan.frontier import FrontierSettings, batch_start, sequence_bound, sequence_start
from liger_bench.plan.grid import GridSpec, expand_grid, run_key
from liger_bench.records import RunResult
from liger_bench.vocabulary import variant_of

H100_ENV = {
    "python": "3.11.9",
    "hostname": "liger-bench-train-7f9c",
    "libraries": {"torch": "2.7.1", "transformers": "5.24.0", "trl": "1.16.0", "liger-kernel": "0.8.5"},
    "cuda_available": True,
    "device": "cuda",
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "gpu_count": 1,
    "gpu_memory_gb": 79.19,
    "driver": "570.124.06",
    "cuda": "12.8",
    "bf16_supported": True,
}
CPU_ENV = {**H100_ENV, "cuda_available": False, "device": "cpu", "gpu_name": "", "gpu_count": 0}
CPU_ENV.update(gpu_memory_gb=0.0, driver="", cuda="", bf16_supported=False)
MODEL = {"name": "microsoft/Phi-3-mini-4k-instruct", "revision": "0a67737cc96d2554230f90338b163bc6380a2a85"}
MODEL.update(model_type="phi3", context_length=4096)
DATASET = {"name": "tatsu-lab/alpaca", "revision": "dce01c9b08f87459cf36a430d809084718273017", "rows": 52002}
FLOPS_PER_TOKEN = 2.3e10
DIVERGED_AT_STEP = 5
NONPAD_FRACTION = 0.8
# Every measured step but the last takes JITTER times its nominal time; the last makes up the rest.
# With m measured steps the CV is then (1 - JITTER) * sqrt(m - 1): 0.04 for 17.
JITTER = 0.99
# Warm-up steps reserve this much more than the run's peak (left out of it); measured steps other than
# the second reserve OFF_PEAK of it.
WARMUP_MEMORY = 1.1
OFF_PEAK = 0.97
# Graphs a compiled run's first step compiles (graph breaks): compiled graphs, compile steps and recompiles differ.
FIRST_COMPILE_GRAPHS = 3


@dataclass
class Run:
    """What one synthetic run should look like; ``tokens_per_s`` is the non-padding rate of measured steps."""

    use_liger: bool
    batch_size: int
    seq_len: int
    repeat: int = 0
    status: str = "ok"
    tokens_per_s: float = 10_000.0
    mem_reserved_gb: float | None = 40.0
    loss_scale: float = 1.0
    reason: str = ""
    key: str = ""
    torch_compile: bool = False
    # A compiled run compiles FIRST_COMPILE_GRAPHS graphs in step 1 (warm-up) and recompiles one in the first
    # step after warm-up + 1, costing this many seconds (the recompile half of it) on top of the step's own time.
    compile_s: float = 0.0
    # The first ``slow_first`` measured steps take ``slow_factor`` times as long: a run still speeding up.
    slow_first: int = 0
    slow_factor: float = 2.0
    jitter: float = JITTER
    # GPUs that train the run together (gpus_per_run): tokens are summed over them, MFU is per GPU.
    gpus: int = 1
    # The GPU's dense bf16 peak; None: unknown (no MFU).
    peak_tflops: float | None = 989.0
    # A measured step whose batch shape is new in the run (a shape that never repeats), taking
    # ``first_shape_s`` beyond the nominal step time; left out of the aggregates, reported as a one-off cost.
    first_shape_step: int | None = None
    first_shape_s: float = 0.0
    # A kernel-ablation arm (TrainConfig.ablation): "rope" (rope alone), "no_rope" (every default but rope).
    ablation: str = ""
    # Power each GPU draws in every step (its energy counter advances by this × the step's time); a CPU has none.
    power_w: float = 500.0


def allocated_fraction(use_liger: bool) -> float:
    """Peak allocated over peak reserved memory of a run: Liger's allocator keeps less of its reserve in use."""
    return 0.8 if use_liger else 0.9


def loss_at(step: int, seq_len: int, repeat: int) -> float:
    """Loss of a healthy run: the same for both variants of a cell and repeat."""
    return 2.0 + 0.8 * math.exp(-step / 8) + 0.01 * math.sin(step + seq_len + repeat)


def make_run(run: Run, *, max_steps: int = 20, warmup: int = 3, cuda: bool = True) -> tuple[dict, dict]:
    """One ``(result, history)`` pair; non-ok runs carry the fields train_model gives them."""
    config = TrainConfig(
        run_key=run.key
        or run_key(variant_of(run.use_liger, run.torch_compile, run.ablation), run.batch_size, run.seq_len, run.repeat),
        repeat=run.repeat,
        ablation=run.ablation,
        use_liger=run.use_liger,
        torch_compile=run.torch_compile,
        per_device_train_batch_size=run.batch_size,
        max_seq_length=run.seq_len,
        max_steps=max_steps,
        warmup_steps_to_skip=warmup,
        gpus_per_run=run.gpus,
    )
    result = RunResult(config.run_key, run.status, config.to_dict(), reason=run.reason)
    result.environment = dict(H100_ENV if cuda else CPU_ENV)
    result.model, result.dataset = dict(MODEL), dict(DATASET)
    if run.use_liger and run.status != "skipped":
        result.liger_kernels = {
            "rope": 1,
            "rms_norm": 65,
            "swiglu": 32,
            "fused_linear_cross_entropy": 1,
            "cross_entropy": 0,
        }
    steps: list[dict] = []
    if run.status == "skipped":
        result.reason = run.reason or NO_CUDA_REASON
    else:
        # A diverged run stops after its first non-finite loss, here its fifth step (the second measured one).
        n_steps = {"ok": max_steps, "oom": 0, "failed": 2, "diverged": DIVERGED_AT_STEP}[run.status]
        steps = make_steps(run, n_steps, warmup, cuda)
        if run.status == "diverged":
            steps[-1]["loss"] = math.nan
        result.data = {
            "n_rows": 1000,
            "n_source_rows": 1000,
            "n_truncated": 12,
            "n_dropped_no_completion_tokens": 0,
        }
        result.metrics = {
            "precision": "bf16" if cuda else "fp32",
            "attn_implementation": "sdpa",
            "model_flops_per_token": FLOPS_PER_TOKEN,
        }
        result.metrics.update(peak_tflops=run.peak_tflops if cuda else None, steps_completed=n_steps)
    if run.status == "oom":
        result.reason = run.reason or "OutOfMemoryError: CUDA out of memory. Tried to allocate 3.91 GiB."
        result.metrics.update(oom_peak_mem_reserved_gb=78.6, oom_peak_mem_allocated_gb=76.2)
    if run.status == "failed":
        result.reason = run.reason or "RuntimeError: NCCL watchdog timeout"
        result.metrics["traceback"] = 'Traceback (most recent call last):\n  File "training.py"\nRuntimeError'
    if run.status == "diverged":
        result.reason = run.reason or diverged_reason(steps, DIVERGED_AT_STEP, config)
    result.metrics.update(aggregate(steps))
    result.metrics.update(world_metrics(config, result.metrics))
    history = {"run_key": config.run_key, "warmup_steps_to_skip": warmup, "steps": steps}
    return result.to_dict(), history


def make_steps(run: Run, n_steps: int, warmup: int, cuda: bool) -> list[dict]:
    """Step records with the keys of ``StepMetricsCallback``; warm-up steps are three times slower.

    Measured steps (past warm-up, nothing compiled) are uneven (``JITTER``) with the same total time,
    so the run's rate is ``tokens_per_s`` (``slow_first`` steps aside) while its median step time is not its mean.
    """
    padded = run.batch_size * run.seq_len
    counts = {"padded": padded, "nonpad": int(padded * NONPAD_FRACTION), "trained": int(padded * 0.5)}
    totals = dict.fromkeys(counts, 0)
    steps = []
    compiles = {1: run.compile_s, warmup + 2: run.compile_s / 2} if run.torch_compile else {}
    nominal = counts["nonpad"] / run.tokens_per_s
    one_off = set(compiles) | {run.first_shape_step}
    measured = [step for step in range(warmup + 1, n_steps + 1) if step not in one_off]
    times = {step: nominal * (run.slow_factor if i < run.slow_first else 1.0) for i, step in enumerate(measured)}
    if len(measured) > 1:
        saved = sum(times[step] * (1 - run.jitter) for step in measured[:-1])
        times = {step: t * run.jitter for step, t in times.items()} | {measured[-1]: times[measured[-1]] + saved}
    for step in range(1, n_steps + 1):
        step_time = times.get(step, nominal * (3.0 if step <= warmup else 1.0)) + compiles.get(step, 0.0)
        new_shape = step == run.first_shape_step
        step_time += run.first_shape_s if new_shape else 0.0
        record = {"step": step, "warmup": step <= warmup, "step_time_s": step_time}
        # Shapes are "BxS"; the new shape's rows are 16 tokens shorter (its token counts are kept, for simple sums).
        record["shape"] = f"{run.batch_size}x{run.seq_len - 16 if new_shape else run.seq_len}"
        record["first_shape"] = step == 1 or new_shape
        record["compiled_graphs"] = (FIRST_COMPILE_GRAPHS if step == 1 else 1) if step in compiles else 0
        for kind, tokens in counts.items():
            totals[kind] += tokens
            record[f"tokens_{kind}"] = tokens
            record[f"tokens_per_s_{kind}"] = tokens / step_time
            record[f"total_tokens_{kind}"] = totals[kind]
        scale = WARMUP_MEMORY if step <= warmup else 1.0 if step == warmup + 2 else OFF_PEAK
        reserved = run.mem_reserved_gb * scale if cuda and run.mem_reserved_gb is not None else None
        record["peak_mem_allocated_gb"] = None if reserved is None else allocated_fraction(run.use_liger) * reserved
        record["peak_mem_reserved_gb"] = reserved
        peak = run.peak_tflops if cuda else None
        record["mfu"] = record["tokens_per_s_padded"] * FLOPS_PER_TOKEN / (peak * 1e12 * run.gpus) if peak else None
        record["loss"] = loss_at(step, run.seq_len, run.repeat) * run.loss_scale
        record["learning_rate"] = 6e-6 * min(1.0, step / 2)
        record["energy_j"] = run.power_w * run.gpus * step_time if cuda else None
        record["energy_unavailable"] = "" if cuda else NO_NVIDIA_GPU
        steps.append(record)
    return steps


def build(runs: list[Run], **kwargs) -> tuple[list[dict], list[dict]]:
    """Results and histories of ``runs``; histories come back in reverse order, as a collection may."""
    pairs = [make_run(run, **kwargs) for run in runs]
    return [p[0] for p in pairs], [p[1] for p in reversed(pairs)]


def baseline_rate(batch_size: int, repeat: int) -> float:
    """Baseline tokens/s of the GPU scenario."""
    return 1000.0 * batch_size * (1 + 0.02 * repeat)


def liger_rate(batch_size: int, repeat: int) -> float:
    """Liger tokens/s of the GPU scenario: about 30% faster, with its own repeat-to-repeat spread."""
    return 1300.0 * batch_size * (1 + 0.01 * ((repeat * 7) % 3))


def baseline_power(batch_size: int, repeat: int) -> float:
    """Baseline GPU power (W) of the GPU scenario, growing with the batch and from repeat to repeat."""
    return 300.0 + 20.0 * batch_size + 4.0 * repeat


def liger_power(batch_size: int, repeat: int) -> float:
    """Liger GPU power (W) of the GPU scenario: its own growth with the batch and its own spread over repeats."""
    return 290.0 + 18.0 * batch_size + 9.0 * repeat


def baseline_memory(batch_size: int, repeat: int) -> float:
    """Baseline peak reserved GiB of the GPU scenario; the last repeat reserves the most."""
    return 3.0 * batch_size * (1 + 0.01 * repeat)


def liger_memory(batch_size: int, repeat: int) -> float:
    """Liger peak reserved GiB of the GPU scenario: about 25% less, growing faster from repeat to repeat."""
    return 2.25 * batch_size * (1 + 0.02 * repeat)


LIGER_FAILED = ((8, 2), (24, 2))  # (batch, repeat) of the GPU scenario's failed Liger runs
NOISY = ("baseline", 16, 0, 0.97)  # (variant, batch, repeat, jitter) of its one run with a CV of 0.12


def gpu_scenario() -> list[Run]:
    """H100, seq 512, batches 8/16/24, 3 repeats: the baseline runs out of memory at 24, Liger does not.

    Liger bs8 r2 and bs24 r2 failed (a partly failed cell at the top of the batch range), Liger
    bs16 r1 drifts 5% in loss (a parity failure), and baseline bs16 r0 is noisy (``NOISY``).
    """
    runs = []
    for repeat in range(3):
        for batch in (8, 16, 24):
            baseline_oom = batch == 24
            runs.append(
                Run(False, batch, 512, repeat, status="oom" if baseline_oom else "ok",
                    tokens_per_s=baseline_rate(batch, repeat), mem_reserved_gb=baseline_memory(batch, repeat),
                    jitter=NOISY[3] if ("baseline", batch, repeat) == NOISY[:3] else JITTER,
                    power_w=baseline_power(batch, repeat))
            )  # fmt: skip
            runs.append(
                Run(True, batch, 512, repeat, status="failed" if (batch, repeat) in LIGER_FAILED else "ok",
                    tokens_per_s=liger_rate(batch, repeat), mem_reserved_gb=liger_memory(batch, repeat),
                    loss_scale=1.05 if (batch, repeat) == (16, 1) else 1.0, power_w=liger_power(batch, repeat))
            )  # fmt: skip
    return runs


# The GPU scenario's memory frontier at seq 512 on its H100, per variant: the largest batch that trains, the
# peak reserved GiB a probe of batch b reaches (intercept, slope), its seconds (intercept, slope) and the
# reserved GiB at the out-of-memory error. Searched with resolution 1 from the grid's largest batch, 24, as
# find_frontier does (``SEARCHED_GRID``): the baseline probes 24, 12, 18, 21, 22, 23 (6 probes); Liger 24, 48,
# 36, 42, 39, 37 (6 probes).
FRONTIER = {
    "baseline": {"largest_fit": 22, "peak": (7.6, 3.1), "seconds": (12.0, 0.5), "oom_peak": 78.45},
    "liger": {"largest_fit": 36, "peak": (6.9, 1.85), "seconds": (15.1, 0.25), "oom_peak": 77.93},
}


def frontier_probe(variant: str, batch: int) -> Probe:
    """The probe of ``batch`` for ``variant`` in the GPU scenario (``FRONTIER``), as frontier_probe records one."""
    spec = FRONTIER[variant]
    fits = batch <= spec["largest_fit"]
    reserved = spec["peak"][0] + spec["peak"][1] * batch if fits else spec["oom_peak"]
    return Probe(
        per_device_train_batch_size=batch,
        max_seq_length=512,
        status="ok" if fits else "oom",
        reason="" if fits else "OutOfMemoryError: CUDA out of memory.",
        peak_mem_reserved_gb=reserved,
        peak_mem_allocated_gb=allocated_fraction(variant == "liger") * reserved,
        elapsed_s=spec["seconds"][0] + spec["seconds"][1] * batch,
        gpu_memory_gb=H100_ENV["gpu_memory_gb"],
    )


# prepare_grid's items for the GPU scenario's grid (``gpu_scenario``: both eager variants, batch 8, 16 and 24, seq
# 512), from which find_frontier's searches start.
SEARCHED_GRID = expand_grid(
    GridSpec(torch_compile=[False], per_device_train_batch_size=[8, 16, 24], max_seq_length=[512], n_runs=3)
)


def _searched_config(variant: str) -> TrainConfig:
    return TrainConfig(use_liger=variant == "liger", max_seq_length=512)


def frontier_searches() -> list[dict]:
    """find_frontier's records for the GPU scenario: the real search over ``frontier_probe``'s answers, from where
    find_frontier starts on the scenario's grid."""
    settings = FrontierSettings(frontier_resolution=1, frontier_max_batch_size=1024)
    records = []
    for variant in FRONTIER:
        probe = lambda batch, _left, v=variant: frontier_probe(v, batch)  # noqa: E731
        start = batch_start(SEARCHED_GRID, _searched_config(variant), settings.frontier_max_batch_size)
        frontier = search_frontier(probe, batch_axis(settings, start), settings.frontier_time_budget_s)
        records.append({"variant": variant, "max_seq_length": 512, **frontier.to_dict()})
    return records


# The GPU scenario's longest sequence at batch SEQUENCE_BATCH on its H100, per variant, up to Phi-3-mini's
# 4,096-token context: the longest max_seq_length that trains, the peak reserved GiB a probe of s tokens
# reaches (intercept, slope per 1,024 tokens), its seconds (likewise) and the reserved GiB at the error.
# Searched from the grid's longest sequence, 512 tokens, as find_frontier does: the baseline probes 512 … 2,048,
# then 1,536, 1,792, 1,920, 1,984 (7 probes); Liger 512 … 4,096, then 3,072, 3,584, 3,840, 3,712, 3,776 (9 probes).
SEQUENCE_BATCH = 4
SEQUENCE_CONTEXT = 4096
SEQUENCE_FRONTIER = {
    "baseline": {"longest_fit": 1984, "peak": (9.3, 34.6), "seconds": (13.0, 2.0), "oom_peak": 79.12},
    "liger": {"longest_fit": 3712, "peak": (8.2, 17.9), "seconds": (16.0, 1.5), "oom_peak": 78.64},
}


def sequence_probe(variant: str, seq: int) -> Probe:
    """The probe of ``seq`` tokens at ``SEQUENCE_BATCH`` for ``variant`` (``SEQUENCE_FRONTIER``), as recorded."""
    spec = SEQUENCE_FRONTIER[variant]
    fits = seq <= spec["longest_fit"]
    reserved = spec["peak"][0] + spec["peak"][1] * seq / 1024 if fits else spec["oom_peak"]
    return Probe(
        per_device_train_batch_size=SEQUENCE_BATCH,
        max_seq_length=seq,
        status="ok" if fits else "oom",
        reason="" if fits else "OutOfMemoryError: CUDA out of memory.",
        peak_mem_reserved_gb=reserved,
        peak_mem_allocated_gb=allocated_fraction(variant == "liger") * reserved,
        elapsed_s=spec["seconds"][0] + spec["seconds"][1] * seq / 1024,
        gpu_memory_gb=H100_ENV["gpu_memory_gb"],
    )


def sequence_searches() -> list[dict]:
    """find_frontier's sequence_frontiers records for the GPU scenario: the real search over ``sequence_probe``."""
    settings = FrontierSettings(frontier_seq_batch_size=SEQUENCE_BATCH)
    bound = sequence_bound(settings, SEQUENCE_CONTEXT, "config.json")
    records = []
    for variant in SEQUENCE_FRONTIER:
        probe = lambda seq, _left, v=variant: sequence_probe(v, seq)  # noqa: E731
        axis = sequence_axis(bound, sequence_start(SEARCHED_GRID, variant, bound))
        frontier = search_frontier(probe, axis, settings.frontier_time_budget_s)
        records.append({"variant": variant, "per_device_train_batch_size": SEQUENCE_BATCH, **frontier.to_dict()})
    return records


def four_variant_scenario(compile_s: float = 30.0, **liger_compile) -> list[Run]:
    """Batch 8, seq 256, 3 repeats: baseline 1,000, Liger 1,300, compile 1,400 tokens/s; Liger + compile as given."""
    runs = []
    for repeat in range(3):
        runs += [
            Run(False, 8, 256, repeat, tokens_per_s=1000.0 * (1 + 0.01 * repeat), mem_reserved_gb=40.0),
            Run(True, 8, 256, repeat, tokens_per_s=1300.0 * (1 + 0.01 * repeat), mem_reserved_gb=30.0,
                power_w=430.0 + 5.0 * repeat),
            Run(False, 8, 256, repeat, tokens_per_s=1400.0 * (1 + 0.01 * repeat), mem_reserved_gb=32.0,
                torch_compile=True, compile_s=compile_s, power_w=560.0),
            Run(True, 8, 256, repeat, torch_compile=True, compile_s=compile_s, **liger_compile),
        ]  # fmt: skip
    return runs


def cpu_scenario(repeats: int = 1) -> list[Run]:
    """A CPU-only run: Liger skipped everywhere, the baseline trains without memory counters."""
    runs = []
    for repeat in range(repeats):
        for batch in (2, 4):
            runs.append(Run(False, batch, 128, repeat, tokens_per_s=300.0 * batch, mem_reserved_gb=None))
            runs.append(Run(True, batch, 128, repeat, status="skipped", mem_reserved_gb=None))
    return runs


def scale_scenario(n_repeats: int = 10, max_steps: int = 50, seed: int = 0) -> list[Run]:
    """5 batch sizes × 5 sequence lengths × 2 variants × ``n_repeats`` runs (500 with the default).

    Only the baseline at batch 32 × 4096 tokens runs out of memory; every other run has all its steps.
    """
    rng = random.Random(seed)
    runs = []
    for repeat in range(n_repeats):
        for seq in (256, 512, 1024, 2048, 4096):
            for batch in (4, 8, 16, 24, 32):
                for use_liger in (False, True):
                    mem = 0.65 * batch * seq / 1024 * (0.75 if use_liger else 1.0)
                    status = "oom" if mem > 79 else "ok"
                    rate = 1000.0 * batch * (1.3 if use_liger else 1.0) * rng.uniform(0.97, 1.03)
                    runs.append(Run(use_liger, batch, seq, repeat, status, rate, mem))
    return runs


# The kernel-ablation scenario (issue 25): Phi-3's four kernels at batch 16 × 512, three repeats, each
# number its own. Per repeat: the baseline's tokens/s and reserved GiB; each arm's tokens/s as a ratio
# (alone: of the baseline's; left out: of all kernels' Liger), and its reserved GiB. rope and rms_norm
# gain alone beyond their CIs, swiglu's and the fused loss's CIs include zero; all together gain more
# than the sum of the singles.
ABLATION_KERNELS = ("rope", "rms_norm", "swiglu", "fused_linear_cross_entropy")
ABLATION_BASELINE = {"rate": (10_000.0, 10_400.0, 9_800.0), "reserved": (60.0, 61.0, 59.5)}
ABLATION_LIGER = {"ratio": (1.342, 1.312, 1.363), "reserved": (45.0, 45.8, 44.6)}
ABLATION_ALONE = {
    "rope": {"ratio": (1.13, 1.11, 1.145), "reserved": (58.9, 60.1, 58.2)},
    "rms_norm": {"ratio": (1.16, 1.175, 1.15), "reserved": (53.1, 54.0, 52.9)},
    "swiglu": {"ratio": (1.012, 0.996, 1.021), "reserved": (55.2, 56.3, 54.7)},
    "fused_linear_cross_entropy": {"ratio": (1.004, 0.993, 1.009), "reserved": (56.4, 57.2, 56.0)},
}
ABLATION_LEFT_OUT = {
    "rope": {"ratio": (0.90, 0.885, 0.905), "reserved": (46.3, 47.0, 45.9)},
    "rms_norm": {"ratio": (0.86, 0.87, 0.852), "reserved": (51.0, 51.9, 50.6)},
    "swiglu": {"ratio": (0.98, 0.972, 0.975), "reserved": (49.2, 50.1, 48.8)},
    "fused_linear_cross_entropy": {"ratio": (0.995, 0.991, 0.999), "reserved": (48.1, 48.7, 47.7)},
}


def ablation_scenario() -> list[Run]:
    """Baseline, Liger and the eight arms of kernel_ablation="both", batch 16 × 512, three repeats."""
    runs = []
    for r in range(3):
        base = ABLATION_BASELINE["rate"][r]
        liger = base * ABLATION_LIGER["ratio"][r]
        runs.append(Run(False, 16, 512, r, tokens_per_s=base, mem_reserved_gb=ABLATION_BASELINE["reserved"][r]))
        runs.append(Run(True, 16, 512, r, tokens_per_s=liger, mem_reserved_gb=ABLATION_LIGER["reserved"][r]))
        for kernel in ABLATION_KERNELS:
            alone, left_out = ABLATION_ALONE[kernel], ABLATION_LEFT_OUT[kernel]
            runs.append(
                Run(True, 16, 512, r, tokens_per_s=base * alone["ratio"][r], mem_reserved_gb=alone["reserved"][r],
                    ablation=kernel)
            )  # fmt: skip
            runs.append(
                Run(True, 16, 512, r, tokens_per_s=liger * left_out["ratio"][r],
                    mem_reserved_gb=left_out["reserved"][r], ablation=f"no_{kernel}")
            )  # fmt: skip
    return runs
