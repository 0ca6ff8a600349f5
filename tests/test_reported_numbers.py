"""Every number of the analysis' tables, the headline and the KFP metrics, pinned to a value computed by hand.

Issue 23: a test that checks "a number is present" lets a wrong number through. Each expected value
here is computed from the fixture's own inputs (the rates, memory and step counts asked of
``synthetic_results``, whose docstring says how its quantities are kept apart), never read back from
the code under test; each table's test also checks that it covers every column the table has, so a
new column cannot appear unpinned. docs/number-map.md maps every reported number to its test.
"""

from __future__ import annotations

import math
import statistics

import pandas as pd
import pytest
from synthetic_results import (
    ABLATION_ALONE,
    ABLATION_BASELINE,
    ABLATION_KERNELS,
    ABLATION_LEFT_OUT,
    ABLATION_LIGER,
    DIVERGED_AT_STEP,
    FIRST_COMPILE_GRAPHS,
    FLOPS_PER_TOKEN,
    FRONTIER,
    H100_ENV,
    JITTER,
    LIGER_FAILED,
    NOISY,
    NONPAD_FRACTION,
    SEQUENCE_BATCH,
    SEQUENCE_FRONTIER,
    Run,
    ablation_scenario,
    allocated_fraction,
    baseline_memory,
    baseline_power,
    baseline_rate,
    build,
    cpu_scenario,
    four_variant_scenario,
    frontier_searches,
    gpu_scenario,
    liger_memory,
    liger_power,
    liger_rate,
    loss_at,
    sequence_searches,
)

from liger_bench.analyse.analysis import analyze_results
from liger_bench.analyse.narrative import caveats, headline_metrics, make_headline
from liger_bench.render import tables
from liger_bench.render.tables import markdown_table

SEQ = 512
STEPS, WARMUP = 20, 3  # make_run's defaults
MEASURED = STEPS - WARMUP
PEAK_TFLOPS = 989.0
# Published two-sided 95% Student-t quantiles, by number of values (dof + 1).
T975 = {2: 12.706, 3: 4.303}
OOM_REASON = "OutOfMemoryError: CUDA out of memory. Tried to allocate 3.91 GiB."
FAILED_REASON = "RuntimeError: NCCL watchdog timeout"
NAN = math.nan
PRICE = 3.25  # gpu_hour_price of the GPU scenario
WARMUP_TIME = 3.0  # a warm-up step takes this many nominal step times (make_steps)


def ci(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval, by hand."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, NAN, NAN
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    half = T975[len(values)] * sd / math.sqrt(len(values))
    return mean, mean - half, mean + half


def tokens(batch: int, seq: int = SEQ) -> dict[str, int]:
    padded = batch * seq
    return {"padded": padded, "nonpad": int(padded * NONPAD_FRACTION)}


def rate(variant: str, batch: int, repeat: int) -> float:
    return (liger_rate if variant == "liger" else baseline_rate)(batch, repeat)


def power(variant: str, batch: int, repeat: int) -> float:
    return (liger_power if variant == "liger" else baseline_power)(batch, repeat)


def memory(variant: str, batch: int, repeat: int) -> float:
    return (liger_memory if variant == "liger" else baseline_memory)(batch, repeat)


def ok_repeats(variant: str, batch: int) -> list[int]:
    if variant == "baseline":
        return [] if batch == 24 else [0, 1, 2]
    return [r for r in range(3) if (batch, r) not in LIGER_FAILED]


def run_of(variant: str, batch: int, repeat: int) -> dict[str, float]:
    """The aggregates of one ok run of the GPU scenario, by hand."""
    counts = tokens(batch)
    nominal = counts["nonpad"] / rate(variant, batch, repeat)  # the mean measured step time
    # 16 measured steps at jitter × nominal, the last one making up the rest: CV = (1 - jitter) × sqrt(16).
    jitter = NOISY[3] if (variant, batch, repeat) == NOISY[:3] else JITTER
    median = jitter * nominal
    return {
        "tokens_per_s_nonpad": rate(variant, batch, repeat),
        "tokens_per_s_padded": counts["padded"] / nominal,
        "step_time_s": median,
        "step_time_cv": (1 - jitter) * math.sqrt(MEASURED - 1),
        "peak_mem_reserved_gb": memory(variant, batch, repeat),
        "peak_mem_allocated_gb": allocated_fraction(variant == "liger") * memory(variant, batch, repeat),
        # The median step's padded rate (the median time's), not the run's rate.
        "mfu": counts["padded"] / median * FLOPS_PER_TOKEN / (PEAK_TFLOPS * 1e12),
        "final_loss": loss_at(STEPS, SEQ, repeat) * (1.05 if (variant, batch, repeat) == ("liger", 16, 1) else 1.0),
        # The measured steps take MEASURED nominal step times together (jitter keeps the total), warm-up 3 × 3.
        "energy_j": power(variant, batch, repeat) * MEASURED * nominal,
        "energy_per_token_j": power(variant, batch, repeat) / rate(variant, batch, repeat),
        "tokens_per_kwh": rate(variant, batch, repeat) * 3.6e6 / power(variant, batch, repeat),
        "mean_power_w": power(variant, batch, repeat),
        "run_energy_j": power(variant, batch, repeat) * (MEASURED + WARMUP * WARMUP_TIME) * nominal,
        "cost_per_mtok": PRICE * 1e6 / rate(variant, batch, repeat) / 3600,
        "kwh_per_mtok": 1e6 * power(variant, batch, repeat) / rate(variant, batch, repeat) / 3.6e6,
    }


def assert_row(actual: pd.Series, expected: dict) -> None:
    """Every column of ``actual`` equals ``expected``'s (numbers to 1e-9 relative, NaN for NaN)."""
    assert set(actual.index) == set(expected), set(actual.index) ^ set(expected)
    for column, want in expected.items():
        got = actual[column]
        if isinstance(want, float) and math.isnan(want):
            assert got is pd.NA or (isinstance(got, float) and math.isnan(got)), (column, got)
        elif isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-9), column
        else:
            assert got == want, (column, got, want)


def one(frame: pd.DataFrame, **where) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for column, value in where.items():
        mask &= frame[column] == value
    assert mask.sum() == 1, where
    return frame[mask].iloc[0]


@pytest.fixture(scope="module")
def gpu():
    return analyze_results(*build(gpu_scenario()), gpu_hour_price=PRICE)


CELLS = [(variant, batch) for batch in (8, 16, 24) for variant in ("baseline", "liger")]


@pytest.mark.parametrize(("variant", "batch"), CELLS, ids=[f"{v}-bs{b}" for v, b in CELLS])
def test_every_column_of_a_cell(gpu, variant, batch):
    repeats = ok_repeats(variant, batch)
    runs = [run_of(variant, batch, r) for r in repeats]
    oom = variant == "baseline" and batch == 24
    n_failed = sum((batch, r) in LIGER_FAILED for r in range(3)) if variant == "liger" else 0
    nonpad, low, high = ci([r["tokens_per_s_nonpad"] for r in runs]) if runs else (NAN, NAN, NAN)
    padded, padded_low, padded_high = ci([r["tokens_per_s_padded"] for r in runs]) if runs else (NAN, NAN, NAN)

    def over_runs(key: str, fn) -> float:
        return fn([r[key] for r in runs]) if runs else NAN

    expected = {
        "variant": variant,
        "use_liger": variant == "liger",
        "torch_compile": False,
        "batch_size": batch,
        "seq_len": SEQ,
        "n_runs": 3,
        "n_ok": len(repeats),
        "n_oom": 3 if oom else 0,
        "n_failed": n_failed,
        "n_skipped": 0,
        "n_diverged": 0,
        "outcome": "oom" if oom else "partial" if n_failed else "ok",
        "reason": OOM_REASON if oom else FAILED_REASON if n_failed else "",
        "tokens_per_s_nonpad": nonpad,
        "tokens_per_s_nonpad_ci_low": low,
        "tokens_per_s_nonpad_ci_high": high,
        "tokens_per_s_padded": padded,
        "tokens_per_s_padded_ci_low": padded_low,
        "tokens_per_s_padded_ci_high": padded_high,
        "gpus": 1,
        "tokens_per_s_nonpad_per_gpu": nonpad,
        "step_time_s": over_runs("step_time_s", statistics.median),
        "step_time_cv_max": over_runs("step_time_cv", max),
        "peak_mem_allocated_gb": over_runs("peak_mem_allocated_gb", max),
        "peak_mem_reserved_gb": over_runs("peak_mem_reserved_gb", max),
        "mfu": over_runs("mfu", statistics.fmean),
        "peak_tflops": PEAK_TFLOPS,
        "final_loss": over_runs("final_loss", statistics.fmean),
        "steady_state": "unknown" if oom else "steady",
        "drift": NAN if oom else 0.0,
        "steps_needed": NAN,
        "n_first_shape_steps": NAN if oom else 0.0,
        "first_shape_excess_s": NAN,
        "n_compile_steps": NAN if oom else 0.0,
        "recompiles": NAN,
        "compile_time_s": NAN,
    }
    for name in ("cost_per_mtok", "kwh_per_mtok"):
        mean, low, high = ci([r[name] for r in runs]) if runs else (NAN, NAN, NAN)
        expected |= {name: mean, f"{name}_ci_low": low, f"{name}_ci_high": high}
    expected |= {"mean_power_w": over_runs("mean_power_w", statistics.fmean), "energy_unavailable": ""}
    assert_row(one(gpu.cells, variant=variant, batch_size=batch), expected)


@pytest.mark.parametrize("batch", [8, 16, 24])
def test_every_column_of_a_gain(gpu, batch):
    pairs = sorted(set(ok_repeats("liger", batch)) & set(ok_repeats("baseline", batch)))
    ratios = [rate("liger", batch, r) / rate("baseline", batch, r) - 1 for r in pairs]
    reserved = [1 - memory("liger", batch, r) / memory("baseline", batch, r) for r in pairs]
    allocated = [1 - 0.8 * memory("liger", batch, r) / (0.9 * memory("baseline", batch, r)) for r in pairs]
    gain, low, high = (100 * v for v in ci(ratios)) if pairs else (NAN, NAN, NAN)
    expected = {
        "variant": "liger",
        "against": "baseline",
        "batch_size": batch,
        "seq_len": SEQ,
        "variant_outcome": "partial" if batch in (8, 24) else "ok",
        "against_outcome": "oom" if batch == 24 else "ok",
        "steady_state": "unknown" if batch == 24 else "steady",  # the baseline's cell has no ok run at 24
        "n_pairs": len(pairs),
        "gain_pct": gain,
        "gain_ci_low_pct": low,
        "gain_ci_high_pct": high,
        "mem_reserved_reduction_pct": 100 * statistics.fmean(reserved) if pairs else NAN,
        "mem_allocated_reduction_pct": 100 * statistics.fmean(allocated) if pairs else NAN,
        "payback_steps": NAN,  # nothing compiled: nothing to pay back
    }
    assert_row(one(gpu.gains, batch_size=batch), expected)


def test_every_column_of_the_recommendations(gpu):
    def cell_ci(variant: str, batch: int) -> tuple[float, float, float]:
        return ci([rate(variant, batch, r) for r in ok_repeats(variant, batch)])

    rows = {batch: one(gpu.recommendations, batch_size=batch) for batch in (8, 16, 24)}
    # Batch 8: Liger lost a repeat, so the baseline is the only candidate.
    mean, low, high = cell_ci("baseline", 8)
    assert_row(
        rows[8],
        {
            "batch_size": 8,
            "seq_len": SEQ,
            "fastest": "baseline",
            "fastest_tokens_per_s": mean,
            "fastest_ci_low": low,
            "fastest_ci_high": high,
            "fastest_ties": "",
            "ranked": True,
            "leanest": "baseline",
            "leanest_peak_mem_reserved_gb": baseline_memory(8, 2),
            "excluded": f"liger: partial ({FAILED_REASON})",
            "cheapest": "",  # one candidate: nothing to be cheaper than
            "cheapest_cost_per_mtok": NAN,
        },
    )
    mean, low, high = cell_ci("liger", 16)
    assert high > low > cell_ci("baseline", 16)[2]  # the intervals do not overlap: no tie
    liger_cost = ci([run_of("liger", 16, r)["cost_per_mtok"] for r in range(3)])
    assert liger_cost[2] < ci([run_of("baseline", 16, r)["cost_per_mtok"] for r in range(3)])[1]  # apart
    assert_row(
        rows[16],
        {
            "batch_size": 16,
            "seq_len": SEQ,
            "fastest": "liger",
            "fastest_tokens_per_s": mean,
            "fastest_ci_low": low,
            "fastest_ci_high": high,
            "fastest_ties": "",
            "ranked": True,
            "leanest": "liger",
            "leanest_peak_mem_reserved_gb": liger_memory(16, 2),
            "excluded": "",
            "cheapest": "liger",
            "cheapest_cost_per_mtok": liger_cost[0],
        },
    )
    assert_row(
        rows[24],
        {
            "batch_size": 24,
            "seq_len": SEQ,
            "fastest": "",
            "fastest_tokens_per_s": NAN,
            "fastest_ci_low": NAN,
            "fastest_ci_high": NAN,
            "fastest_ties": "",
            "ranked": False,
            "leanest": "",
            "leanest_peak_mem_reserved_gb": NAN,
            "excluded": f"baseline: oom ({OOM_REASON}); liger: partial ({FAILED_REASON})",
            "cheapest": "",
            "cheapest_cost_per_mtok": NAN,
        },
    )


def test_every_column_of_the_frontier(gpu):
    """Liger's top cell trained in two of three repeats: it still counts as a batch that trained."""
    assert_row(
        one(gpu.frontier, variant="liger"),
        {"variant": "liger", "seq_len": SEQ, "largest_ok_batch": 24, "smallest_oom_batch": NAN},
    )
    assert_row(
        one(gpu.frontier, variant="baseline"),
        {"variant": "baseline", "seq_len": SEQ, "largest_ok_batch": 16, "smallest_oom_batch": 24},
    )


def test_every_column_of_the_parity_table(gpu):
    keys = [(batch, r) for batch in (8, 16) for r in ok_repeats("liger", batch)]
    assert [(row.batch_size, row.repeat) for row in gpu.parity.itertuples()] == keys
    for batch, repeat in keys:
        drifting = (batch, repeat) == (16, 1)
        actual = one(gpu.parity, batch_size=batch, repeat=repeat)
        expected = {
            "variant": "liger",
            "batch_size": batch,
            "seq_len": SEQ,
            "repeat": repeat,
            "variant_run": f"liger-bs{batch}-seq{SEQ}-r{repeat}",
            "baseline_run": f"baseline-bs{batch}-seq{SEQ}-r{repeat}",
            "n_steps_compared": MEASURED,
            "max_rel_diff": 0.05 if drifting else 0.0,
            "passed": not drifting,
        }
        # Every step differs by the same 5%, so the step of the largest is float noise: pin the set it is in.
        assert WARMUP < actual["step_of_max"] <= STEPS
        assert_row(actual.drop("step_of_max"), {k: v for k, v in expected.items() if k != "max_rel_diff"} | {
            "max_rel_diff": pytest.approx(expected["max_rel_diff"], abs=1e-12)})  # fmt: skip


def run_columns(variant: str, batch: int, repeat: int, status: str) -> dict:
    """Every column of the runs table for one run of the GPU scenario, by hand."""
    trained = status == "ok"
    measured = run_of(variant, batch, repeat) if trained else {}

    def value(key: str) -> float:
        return measured.get(key, NAN)

    return {
        "run_key": f"{variant}-bs{batch}-seq{SEQ}-r{repeat}",
        "status": status,
        "reason": {"ok": "", "oom": OOM_REASON, "failed": FAILED_REASON}[status],
        "use_liger": variant == "liger",
        "torch_compile": False,
        "ablation": "",  # no kernel-ablation arm
        "batch_size": batch,
        "seq_len": SEQ,
        "repeat": repeat,
        "warmup_steps_to_skip": WARMUP,
        "variant": variant,
        "tokens_per_s_nonpad": value("tokens_per_s_nonpad"),
        "tokens_per_s_padded": value("tokens_per_s_padded"),
        "tokens_per_s_nonpad_per_gpu": value("tokens_per_s_nonpad"),
        "step_time_s": value("step_time_s"),
        "step_time_cv": value("step_time_cv"),
        "peak_mem_allocated_gb": value("peak_mem_allocated_gb"),
        "peak_mem_reserved_gb": value("peak_mem_reserved_gb"),
        "mfu": value("mfu"),
        "final_loss": value("final_loss") if trained else loss_at(2, SEQ, repeat) if status == "failed" else NAN,
        "n_measured_steps": float(MEASURED if trained else 0),
        "oom_peak_mem_reserved_gb": 78.6 if status == "oom" else NAN,
        "drift": 0.0 if trained else NAN,
        "steps_needed": NAN,
        "n_shapes": 1.0 if trained or status == "failed" else 0.0,  # one shape ("") in every history with steps
        "n_first_shape_steps": 0.0,
        "first_shape_excess_s": NAN,
        "first_nonfinite_loss_step": NAN,
        "peak_tflops": PEAK_TFLOPS,
        "n_compile_steps": 0.0,
        "recompiles": NAN,
        "compile_time_s": NAN,
        "steady_state": "steady" if trained else "unknown",
        "pad_to_multiple_of": 16,
        "packing": False,
        "precision": "bf16",
        "n_truncated": 12,
        "gpus": 1,
        "attn_implementation": "sdpa",
        "energy_j": value("energy_j"),
        "energy_per_token_j": value("energy_per_token_j"),
        "tokens_per_kwh": value("tokens_per_kwh"),
        "mean_power_w": value("mean_power_w"),
        # A failed run's two steps are warm-up steps: their energy is the run's, none is measured.
        "run_energy_j": value("run_energy_j") if trained else NAN if status == "oom" else failed_run_energy(batch),
        "energy_unavailable": "" if trained else "no measured step",
    }


def failed_run_energy(batch: int) -> float:
    """Energy of the GPU scenario's failed Liger run at ``batch``, repeat 2: two warm-up steps."""
    nominal = tokens(batch)["nonpad"] / rate("liger", batch, 2)
    return power("liger", batch, 2) * 2 * WARMUP_TIME * nominal


@pytest.mark.parametrize(
    ("variant", "batch", "repeat", "status"),
    [("baseline", 16, 2, "ok"), ("liger", 16, 1, "ok"), ("baseline", 24, 0, "oom"), ("liger", 24, 2, "failed")],
)
def test_every_column_of_a_run(gpu, variant, batch, repeat, status):
    actual = one(gpu.runs, run_key=f"{variant}-bs{batch}-seq{SEQ}-r{repeat}")
    assert_row(actual, run_columns(variant, batch, repeat, status))


def gpu_metrics() -> dict[str, float]:
    """Every KFP metric of the GPU scenario, by hand."""
    expected = {"n_ok": 13.0, "n_oom": 3.0, "n_failed": 2.0, "n_skipped": 0.0, "n_diverged": 0.0, "n_runs": 18.0}
    expected["success_ratio"] = 13 / 18
    for batch in (8, 16):
        pairs = sorted(set(ok_repeats("liger", batch)) & set(ok_repeats("baseline", batch)))
        gain, low, high = ci([rate("liger", batch, r) / rate("baseline", batch, r) - 1 for r in pairs])
        suffix = f"liger_vs_baseline_bs{batch}_seq{SEQ}"
        expected[f"gain_pct_{suffix}"] = 100 * gain
        expected[f"gain_ci_low_pct_{suffix}"] = 100 * low
        expected[f"gain_ci_high_pct_{suffix}"] = 100 * high
        expected[f"mem_reduction_pct_{suffix}"] = 100 * statistics.fmean(
            1 - memory("liger", batch, r) / memory("baseline", batch, r) for r in pairs
        )
    for variant, batch in CELLS:
        repeats = ok_repeats(variant, batch)
        if repeats:
            suffix = f"{variant}_bs{batch}_seq{SEQ}"
            expected[f"tokens_per_s_{suffix}"] = statistics.fmean(rate(variant, batch, r) for r in repeats)
            expected[f"peak_mem_reserved_gb_{suffix}"] = max(memory(variant, batch, r) for r in repeats)
            for name in ("cost_per_mtok", "kwh_per_mtok"):
                expected[f"{name}_{suffix}"] = statistics.fmean(run_of(variant, batch, r)[name] for r in repeats)
    # The headline's cost figure: batch 16, where Liger is the cheapest per token.
    expected["cheapest_cost_per_mtok"] = statistics.fmean(run_of("liger", 16, r)["cost_per_mtok"] for r in range(3))
    expected |= {f"largest_ok_batch_liger_seq{SEQ}": 24.0, f"largest_ok_batch_baseline_seq{SEQ}": 16.0}
    expected |= {"parity_pairs": 5.0, "parity_failures": 1.0, "parity_max_rel_diff": 0.05}
    return expected


def test_every_kfp_metric(gpu):
    assert headline_metrics(gpu) == pytest.approx(gpu_metrics(), rel=1e-9)


def gpu_headline(searched: str = "") -> str:
    """The GPU scenario's headline by hand, with ``searched`` (the searched frontier's clause) where it goes."""
    mean, low, high = ci([rate("liger", 16, r) for r in range(3)])
    gain, gain_low, gain_high = ci([rate("liger", 16, r) / rate("baseline", 16, r) - 1 for r in range(3)])
    cost = statistics.fmean(PRICE * 1e6 / rate("liger", 16, r) / 3600 for r in range(3))
    return (
        f"At batch 16 the fastest variant that trained is Liger: {mean:,.0f} tokens/s (95% CI {low:,.0f} to "
        f"{high:,.0f}), +{100 * gain:.0f}% vs the baseline (95% CI {100 * gain_low:.1f}% to {100 * gain_high:.1f}%). "
        f"Leanest: Liger, {liger_memory(16, 2):.1f} GiB peak reserved. Cheapest per token: Liger, {cost:.3f} per "
        f"million tokens at {PRICE:.2f} per GPU-hour. Liger trains batch 24 where the baseline runs "
        f"out of memory.{searched} Loss parity FAILED for 1 of 5 variant/baseline pairs (max relative difference "
        "5.0%, tolerance 2%)."
    )


def test_every_number_of_the_headline(gpu):
    assert make_headline(gpu) == gpu_headline()


@pytest.fixture(scope="module")
def searched():
    """The GPU scenario, its memory frontier and longest sequences searched (``FRONTIER``, ``SEQUENCE_FRONTIER``)."""
    return analyze_results(*build(gpu_scenario()), frontier_searches(), sequence_searches(), gpu_hour_price=PRICE)


# What each search probed, in order, by hand from FRONTIER's largest fits: from the grid's largest batch, 24,
# halving while out of memory (the baseline's 22) or doubling while it trains (Liger's 36), then bisecting to
# resolution 1.
PROBED = {
    "baseline": [24, 12, 18, 21, 22, 23],
    "liger": [24, 48, 36, 42, 39, 37],
}


def search_columns(variant: str) -> dict:
    """Every column of the searched frontier table for ``variant``, by hand."""
    spec = FRONTIER[variant]
    fit = spec["largest_fit"]
    peak = spec["peak"][0] + spec["peak"][1] * fit
    return {
        "variant": variant,
        "seq_len": SEQ,
        "largest_fit": fit,
        "smallest_oom": fit + 1,
        "peak_mem_reserved_gb": peak,
        "gpu_memory_gb": H100_ENV["gpu_memory_gb"],
        "capacity_share": peak / H100_ENV["gpu_memory_gb"],
        "n_probes": len(PROBED[variant]),
        "search_time_s": sum(spec["seconds"][0] + spec["seconds"][1] * batch for batch in PROBED[variant]),
        "end": "resolved",
        "reason": f"batch {fit} trained and batch {fit + 1} ran out of memory (frontier_resolution=1)",
    }


@pytest.mark.parametrize("variant", ["baseline", "liger"])
def test_every_column_of_the_searched_frontier(searched, variant):
    assert list(searched.searches["variant"]) == ["baseline", "liger"]
    assert_row(one(searched.searches, variant=variant), search_columns(variant))
    probes = searched.probes[searched.probes["variant"] == variant]
    assert list(probes["batch_size"]) == PROBED[variant]


def test_every_column_of_the_searched_frontier_gain(searched):
    """Liger trained 36 where the baseline ran out of memory at 23: +64% sequences per step."""
    assert_row(
        one(searched.frontier_gains, variant="liger"),
        {
            "variant": "liger",
            "seq_len": SEQ,
            "largest_fit": 36,
            "baseline_largest_fit": 22,
            "at_least": False,
            "gain_pct": 100 * (36 / 22 - 1),
        },
    )
    assert len(searched.frontier_gains) == 1


def test_every_kfp_metric_and_the_headline_of_a_searched_frontier(searched):
    expected = gpu_metrics() | {
        f"largest_fit_baseline_seq{SEQ}": 22.0,
        f"largest_fit_liger_seq{SEQ}": 36.0,
        "longest_fit_baseline_bs4": 1984.0,
        "longest_fit_liger_bs4": 3712.0,
    }
    assert headline_metrics(searched) == pytest.approx(expected, rel=1e-9)
    gain = 100 * (36 / 22 - 1)
    longer = 100 * (3712 / 1984 - 1)
    assert make_headline(searched) == gpu_headline(
        f" Liger fits 36 sequences of 512 tokens where the baseline fits 22 (+{gain:.0f}%)."
        f" Liger fits 3,712-token sequences at batch 4 where the baseline fits 1,984 (+{longer:.0f}%)."
    )
    assert gain == pytest.approx(63.64, abs=0.01)  # "+64%"
    assert longer == pytest.approx(87.10, abs=0.01)  # "+87%"


# What each longest-sequence search probed, in order, by hand from SEQUENCE_FRONTIER's longest fits: doubling
# from the grid's longest sequence, 512 tokens, to the first length out of memory, then bisecting on 64-token steps.
PROBED_LENGTHS = {
    "baseline": [512, 1024, 2048, 1536, 1792, 1920, 1984],
    "liger": [512, 1024, 2048, 4096, 3072, 3584, 3840, 3712, 3776],
}


def sequence_search_columns(variant: str) -> dict:
    """Every column of the longest-sequence table for ``variant``, by hand."""
    spec = SEQUENCE_FRONTIER[variant]
    fit = spec["longest_fit"]
    peak = spec["peak"][0] + spec["peak"][1] * fit / 1024
    return {
        "variant": variant,
        "batch_size": SEQUENCE_BATCH,
        "longest_fit": fit,
        "shortest_oom": fit + 64,
        "peak_mem_reserved_gb": peak,
        "gpu_memory_gb": H100_ENV["gpu_memory_gb"],
        "capacity_share": peak / H100_ENV["gpu_memory_gb"],
        "n_probes": len(PROBED_LENGTHS[variant]),
        "search_time_s": sum(spec["seconds"][0] + spec["seconds"][1] * s / 1024 for s in PROBED_LENGTHS[variant]),
        "end": "resolved",
        "reason": f"max_seq_length {fit} trained and max_seq_length {fit + 64} ran out of memory "
        "(resolution 64 tokens)",
    }


@pytest.mark.parametrize("variant", ["baseline", "liger"])
def test_every_column_of_the_longest_sequence_search(searched, variant):
    assert list(searched.sequence_searches["variant"]) == ["baseline", "liger"]
    assert_row(one(searched.sequence_searches, variant=variant), sequence_search_columns(variant))


def test_every_column_of_the_longest_sequence_gain(searched):
    """Liger trained 3,712 tokens where the baseline ran out of memory at 2,048: +87% tokens per sequence."""
    assert_row(
        one(searched.sequence_gains, variant="liger"),
        {
            "variant": "liger",
            "batch_size": SEQUENCE_BATCH,
            "longest_fit": 3712,
            "baseline_longest_fit": 1984,
            "at_least": False,
            "gain_pct": 100 * (3712 / 1984 - 1),
        },
    )
    assert len(searched.sequence_gains) == 1


def test_every_column_of_the_longest_sequence_search_as_rendered(searched):
    for variant in ("baseline", "liger"):
        want = sequence_search_columns(variant)
        label = {"baseline": "baseline", "liger": "Liger"}[variant]
        reason = want["reason"].replace("_", r"\_")  # Markdown's escape
        frame = searched.sequence_searches[searched.sequence_searches["variant"] == variant]
        assert md_row(frame, tables.SEQUENCE_SEARCHES) == (
            f"| {label} | 4 | {want['longest_fit']:,} | {want['shortest_oom']:,} | "
            f"{want['peak_mem_reserved_gb']:.2f} | "
            f"{want['gpu_memory_gb']:.1f} | {100 * want['capacity_share']:.1f} | {want['n_probes']} | "
            f"{want['search_time_s']:,.0f} | resolved | {reason} |"
        )


def test_every_column_of_the_searched_frontier_as_rendered(searched):
    for variant in ("baseline", "liger"):
        want = search_columns(variant)
        label = {"baseline": "baseline", "liger": "Liger"}[variant]
        reason = want["reason"].replace("_", r"\_")  # Markdown's escape
        assert md_row(searched.searches[searched.searches["variant"] == variant], tables.SEARCHES) == (
            f"| {label} | 512 | {want['largest_fit']} | {want['smallest_oom']} | {want['peak_mem_reserved_gb']:.2f} | "
            f"{want['gpu_memory_gb']:.1f} | {100 * want['capacity_share']:.1f} | {want['n_probes']} | "
            f"{want['search_time_s']:,.0f} | resolved | {reason} |"
        )


def test_every_number_of_the_caveats(gpu):
    assert caveats(gpu) == [
        "Loss parity failed: liger-bs16-seq512-r1 vs baseline-bs16-seq512-r1 differ by up to 5.0% "
        f"(step {one(gpu.parity, batch_size=16, repeat=1).step_of_max}; tolerance 2%).",
        f"Cost per million non-padding tokens: {PRICE:.2f} per GPU-hour × the run's GPUs × the time its measured "
        "steps take for a million tokens; warm-up, new batch shapes, torch.compile and the pipeline's other tasks "
        "are not counted.",
        "High step-time variation (step CV > 10%) in 1 runs, e.g. baseline-bs16-seq512-r0: the node may have been "
        "shared or throttled.",
        "3 of 18 runs ran out of memory; their reasons are listed under 'Runs that did not finish'.",
        "2 of 18 runs failed; their reasons are listed under 'Runs that did not finish'.",
        "Up to 12 training rows were truncated at max_seq_length.",
    ]


def unsteady_scenario() -> list[Run]:
    """40 steps, 3 warm-up: 37 measured. Liger's runs are still speeding up: their first ``slow_first`` measured
    steps take ``slow_factor`` times as long (UNSTEADY: batch to (slow_first, slow_factor) per repeat). The
    baseline is steady."""
    runs = []
    for batch, repeats in UNSTEADY.items():
        for repeat, (slow, factor) in enumerate(repeats):
            runs.append(Run(False, batch, SEQ, repeat, tokens_per_s=1000.0 * batch))
            runs.append(Run(True, batch, SEQ, repeat, tokens_per_s=1300.0 * batch, slow_first=slow, slow_factor=factor))
    return runs


UNSTEADY = {8: ((10, 2.0), (10, 2.0)), 16: ((10, 2.0), (14, 4.0))}


def test_unsteady_cells_report_their_drift_and_the_most_steps_any_of_their_runs_needs():
    """Hand computation of ``steady_state`` over 37 measured steps (halves of 18), times normalised by their median.

    10 or 14 slow steps: the first half's median is slow (10 of 18), the second half's fast: drift 1/factor - 1
    (-50% for twice as slow, -75% for four times; a cell reports its runs' drift of largest magnitude).
    The run has settled from the measured step whose remaining window's first half (floor(L/2) of L steps)
    holds at most (half - 1) // 2 slow steps: 10 slow steps, from the 3rd (step 6: 8 slow in 17) → 6 - 1 + 37 = 42;
    14 slow steps, from the 8th (step 11: 7 slow in 15) → 11 - 1 + 37 = 47.
    """
    results, histories = build(unsteady_scenario(), max_steps=40)
    settled = {r["run_key"]: r["metrics"]["settle_step"] for r in results if r["run_key"].startswith("liger-bs16")}
    assert settled == {"liger-bs16-seq512-r0": 6, "liger-bs16-seq512-r1": 11}
    analysis = analyze_results(results, histories)
    runs = analysis.runs.set_index("run_key")
    assert runs.loc["liger-bs16-seq512-r0", "steps_needed"] == 42
    assert runs.loc["liger-bs16-seq512-r1", "steps_needed"] == 47
    for batch, needed in ((8, 42), (16, 47)):
        cell = one(analysis.cells, variant="liger", batch_size=batch)
        assert (cell.steady_state, cell.steps_needed) == ("unsteady", needed)
        assert cell.drift == pytest.approx(-0.75 if batch == 16 else -0.5)
        # 37 measured steps, the first `slow` of them `factor` times as long: the rate over all of them.
        rates = [1300.0 * batch * 37 / (37 + (factor - 1) * slow) for slow, factor in UNSTEADY[batch]]
        assert cell.tokens_per_s_nonpad == pytest.approx(statistics.fmean(rates))
        assert one(analysis.gains, batch_size=batch).steady_state == "unsteady"
    headline = make_headline(analysis)
    assert headline.endswith(
        "Not at steady state, so never recommended: batch 16 and batch 8 (about 47 steps would be needed)."
    )
    notes = [note for note in caveats(analysis) if note.startswith("Not steady")]
    assert notes == [
        f"Not steady: Liger at batch {batch} still changed speed by \u2212{drift} (shape-normalised step time, second "
        f"half of the measured steps vs the first); about {needed} steps would be needed (raise max_steps and "
        "warmup_steps_to_skip)."
        for batch, needed, drift in ((8, 42, "50.0%"), (16, 47, "75.0%"))
    ]


def test_a_diverged_run_reports_the_step_its_loss_became_nonfinite():
    analysis = analyze_results(*build([Run(False, 8, SEQ), Run(True, 8, SEQ, status="diverged")]))
    run = one(analysis.runs, variant="liger")
    assert (run.first_nonfinite_loss_step, run.n_measured_steps) == (DIVERGED_AT_STEP, DIVERGED_AT_STEP - WARMUP)
    assert analysis.divergences.to_dict("records") == [
        {
            "run_key": "liger-bs8-seq512-r0",
            "variant": "liger",
            "batch_size": 8,
            "seq_len": SEQ,
            "repeat": 0,
            "first_nonfinite_loss_step": float(DIVERGED_AT_STEP),
            "pair_status": "ok",
        }
    ]


def test_a_sharded_run_reports_its_gpus_its_rate_per_gpu_and_mfu_over_all_of_them():
    """Two GPUs per run, with the H100's peak FLOP/s: tokens are summed over the ranks, MFU divides by both peaks."""
    analysis = analyze_results(*build([Run(False, 8, SEQ, r, tokens_per_s=5000.0 + 100 * r, gpus=2) for r in range(3)]))
    cell = one(analysis.cells, variant="baseline")
    rates = [5000.0 + 100 * r for r in range(3)]
    assert (cell.gpus, cell.tokens_per_s_nonpad) == (2, pytest.approx(5100.0))
    assert cell.tokens_per_s_nonpad_per_gpu == pytest.approx(5100.0 / 2)
    medians = [JITTER * tokens(8)["nonpad"] / rate for rate in rates]
    mfus = [tokens(8)["padded"] / median * FLOPS_PER_TOKEN / (PEAK_TFLOPS * 1e12 * 2) for median in medians]
    assert cell.mfu == pytest.approx(statistics.fmean(mfus))
    assert analysis.runs["tokens_per_s_nonpad_per_gpu"].tolist() == pytest.approx([rate / 2 for rate in rates])
    assert analysis.runs["gpus"].tolist() == [2, 2, 2]
    # As rendered: the run's rate, its GPUs, then the rate per GPU (half of it).
    padded = [tokens(8)["padded"] * rate / tokens(8)["nonpad"] for rate in rates]
    _, low, high = ci(rates)
    assert md_row(analysis.cells, tables.CELL_RATES).startswith(
        f"| baseline | 8 | 512 | ok | 3 | 3 | 5,100 | {low:,.0f} to {high:,.0f} | {statistics.fmean(padded):,.0f} | "
        "2 | 2,550 |"
    )
    run = analysis.runs[analysis.runs["run_key"] == "baseline-bs8-seq512-r2"]
    assert md_row(run, tables.RUN_RATES).startswith(
        f"| baseline-bs8-seq512-r2 | ok | baseline | 8 | 512 | 2 | 5,200 | {padded[2]:,.0f} | 2 | 2,600 |"
    )


def test_every_compile_number_of_the_cells_gains_kfp_metrics_and_caveats():
    """Four variants at batch 8, seq 256; compile at 1,400 tokens/s (30 s + 15 s compiling), Liger + compile at
    1,600 (40 s + 20 s). Compile steps: the warm-up step 1 (3 graphs, 3x the nominal time) and step 5 (1 graph)."""
    results, histories = build(four_variant_scenario(compile_s=30.0, tokens_per_s=1600.0))
    analysis = analyze_results(results, histories)
    nonpad = tokens(8, 256)["nonpad"]
    compiled = {r["run_key"]: r["metrics"]["compiled_graphs"] for r in results if r["config"]["torch_compile"]}
    assert set(compiled.values()) == {FIRST_COMPILE_GRAPHS + 1}  # the first compile step's graphs and one recompile
    expected = {}
    for variant, base_rate, compile_s in (("compile", 1400.0, 30.0), ("liger-compile", 1600.0, 30.0)):
        rates = [base_rate * (1 + 0.01 * r) if variant == "compile" else base_rate for r in range(3)]
        # Beyond the measured steps' median (JITTER × nominal): 3 nominal + 30 s, and 1 nominal + 15 s.
        compile_time = statistics.fmean((4 - 2 * JITTER) * nonpad / rate + 1.5 * compile_s for rate in rates)
        step_time = statistics.median(JITTER * nonpad / rate for rate in rates)
        gain = statistics.fmean(rate / (1000.0 * (1 + 0.01 * r)) - 1 for r, rate in enumerate(rates))
        cell = one(analysis.cells, variant=variant)
        assert (cell.n_compile_steps, cell.recompiles) == (2, 1)
        assert cell.compile_time_s == pytest.approx(compile_time)
        assert cell.step_time_s == pytest.approx(step_time)
        payback = compile_time / (step_time * gain)
        assert one(analysis.gains, variant=variant, against="baseline").payback_steps == pytest.approx(payback)
        expected[variant] = (compile_time, payback)
    runs = analysis.runs.set_index("run_key")
    assert runs.loc["compile-bs8-seq256-r0", ["n_compile_steps", "recompiles"]].tolist() == [2, 1]
    assert runs.loc["compile-bs8-seq256-r0", "compile_time_s"] == pytest.approx((4 - 2 * JITTER) * nonpad / 1400 + 45)
    liger_vs_compile = one(analysis.gains, variant="liger", against="compile")
    assert liger_vs_compile.gain_pct == pytest.approx(100 * (1300 / 1400 - 1))
    assert math.isnan(liger_vs_compile.payback_steps)  # paid back against the baseline only
    metrics = headline_metrics(analysis)
    for variant, (compile_time, payback) in expected.items():
        assert metrics[f"compile_time_s_{variant}_bs8_seq256"] == pytest.approx(compile_time)
        assert metrics[f"recompiles_{variant}_bs8_seq256"] == 1
        assert metrics[f"payback_steps_{variant}_vs_baseline_bs8_seq256"] == pytest.approx(payback)
    assert (
        "compile_time_s_liger_bs8_seq256" not in metrics and "payback_steps_liger_vs_baseline_bs8_seq256" not in metrics
    )
    notes = [note for note in caveats(analysis) if note.startswith("torch.compile's one-off cost")]
    labels = ("torch.compile", "Liger + torch.compile")
    assert notes == [
        f"torch.compile's one-off cost, left out of every aggregate: {label} at batch 8 spent {compile_time:.1f} s "
        f"compiling (2 steps, 1 recompiles per run); paid back after about {math.ceil(payback):,} steps at its gain "
        "over the baseline's steady rate."
        for label, (compile_time, payback) in zip(labels, expected.values(), strict=True)
    ]


def md_row(frame: pd.DataFrame, table) -> str:
    """The one data line of ``frame`` (one row) rendered as a Markdown table of ``table``."""
    lines = markdown_table(frame, table).splitlines()
    assert len(lines) == 3, lines
    return lines[2]


def test_every_column_of_the_per_cell_and_per_run_tables_as_rendered(gpu):
    """The HTML page's per-cell and per-run tables (the Markdown rendering of the same columns), formatted by hand."""
    runs = [run_of("baseline", 16, r) for r in range(3)]
    mean, low, high = ci([r["tokens_per_s_nonpad"] for r in runs])
    padded = statistics.fmean(r["tokens_per_s_padded"] for r in runs)
    median = statistics.median(r["step_time_s"] for r in runs)  # repeat 0's, the noisy run's
    cell = gpu.cells[(gpu.cells["variant"] == "baseline") & (gpu.cells["batch_size"] == 16)]
    identity = "| baseline | 16 | 512 | ok |"
    assert md_row(cell, tables.CELL_RATES) == (
        f"{identity} 3 | 3 | {mean:,.0f} | {low:,.0f} to {high:,.0f} | {padded:,.0f} | 1 | {mean:,.0f} | {median:.3f} |"
    )
    alloc, reserved = 0.9 * baseline_memory(16, 2), baseline_memory(16, 2)
    mfu, cv = statistics.fmean(r["mfu"] for r in runs), max(r["step_time_cv"] for r in runs)
    assert md_row(cell, tables.CELL_MEMORY) == (
        f"{identity} {alloc:.2f} | {reserved:.2f} | {mfu:.3f} | {100 * cv:.1f} | steady | 0.0 |"
    )
    assert md_row(cell, tables.CELL_ONE_OFF) == f"{identity} 0 | – | 0 | – | – |"

    noisy = run_of("baseline", 16, 0)
    run = gpu.runs[gpu.runs["run_key"] == "baseline-bs16-seq512-r0"]
    key = "| baseline-bs16-seq512-r0 | ok |"
    assert md_row(run, tables.RUN_RATES) == (
        f"{key} baseline | 16 | 512 | 0 | 16,000 | {noisy['tokens_per_s_padded']:,.0f} | 1 | 16,000 | "
        f"{noisy['step_time_s']:.3f} | {100 * noisy['step_time_cv']:.1f} |"
    )
    assert md_row(run, tables.RUN_MEMORY) == (
        f"{key} {0.9 * baseline_memory(16, 0):.2f} | {baseline_memory(16, 0):.2f} | {noisy['mfu']:.3f} | "
        f"{noisy['final_loss']:.4f} | 17 | steady | 0.0 |"
    )
    assert md_row(run, tables.RUN_ONE_OFF) == f"{key} 1 | 0 | – | 0 | – | – |"

    analysis = analyze_results(*build(four_variant_scenario()))
    compiled = analysis.cells[analysis.cells["variant"] == "compile"]
    nonpad = tokens(8, 256)["nonpad"]
    compile_time = statistics.fmean((4 - 2 * JITTER) * nonpad / (1400 * (1 + 0.01 * r)) + 45 for r in range(3))
    assert (
        md_row(compiled, tables.CELL_ONE_OFF)
        == f"| torch.compile | 8 | 256 | ok | 0 | – | 2 | 1 | {compile_time:.1f} |"
    )


def test_every_column_of_the_summary_tables_as_rendered(gpu):
    """The Markdown summary's gains, recommendations, frontier, parity and problems rows, formatted by hand."""
    pairs = ok_repeats("liger", 8)
    gain, low, high = (100 * v for v in ci([rate("liger", 8, r) / rate("baseline", 8, r) - 1 for r in pairs]))
    reserved = 100 * statistics.fmean(1 - memory("liger", 8, r) / memory("baseline", 8, r) for r in pairs)
    allocated = 100 * statistics.fmean(
        1 - 0.8 * memory("liger", 8, r) / (0.9 * memory("baseline", 8, r)) for r in pairs
    )
    assert md_row(gpu.gains[gpu.gains["batch_size"] == 8], tables.GAINS) == (
        f"| Liger | baseline | 8 | 512 | partial | ok | steady | 2 | {gain:.1f} | {low:.1f} to {high:.1f} | "
        f"{reserved:.1f} | {allocated:.1f} | – |"
    )
    mean, low, high = ci([rate("baseline", 8, r) for r in range(3)])
    assert md_row(gpu.recommendations[gpu.recommendations["batch_size"] == 8], tables.RECOMMENDATIONS) == (
        f"| 8 | 512 | baseline | {mean:,.0f} | {low:,.0f} to {high:,.0f} | – | baseline | "
        f"{baseline_memory(8, 2):.2f} | liger: partial ({FAILED_REASON}) | – | – |"
    )
    assert md_row(gpu.recommendations[gpu.recommendations["batch_size"] == 24], tables.RECOMMENDATIONS) == (
        f"| 24 | 512 | none | – | unavailable | – | none | – | baseline: oom ({OOM_REASON}); liger: partial "
        f"({FAILED_REASON}) | – | – |"
    )
    assert (
        md_row(gpu.frontier[gpu.frontier["variant"] == "baseline"], tables.FRONTIER) == "| baseline | 512 | 16 | 24 |"
    )
    assert md_row(gpu.frontier[gpu.frontier["variant"] == "liger"], tables.FRONTIER) == "| Liger | 512 | 24 | – |"
    failing = gpu.parity[gpu.parity["passed"] == False]  # noqa: E712 - nullable boolean column
    assert md_row(failing, tables.PARITY) == (
        "| Liger | 16 | 512 | 1 | liger-bs16-seq512-r1 | baseline-bs16-seq512-r1 | 17 | 5.00 | "
        f"{failing.iloc[0].step_of_max} | FAIL |"
    )
    problem = gpu.problems[gpu.problems["run_key"] == "liger-bs24-seq512-r2"]
    assert (
        md_row(problem, tables.PROBLEMS)
        == f"| liger-bs24-seq512-r2 | Liger | 24 | 512 | 2 | failed | {FAILED_REASON} |"
    )


def test_every_kfp_metric_of_a_cpu_run_whose_liger_runs_were_all_skipped():
    """Skipped runs count in the success ratio's denominator: half the runs trained."""
    analysis = analyze_results(*build(cpu_scenario(), cuda=False))
    assert headline_metrics(analysis) == {
        "n_ok": 2.0,
        "n_oom": 0.0,
        "n_failed": 0.0,
        "n_skipped": 2.0,
        "n_diverged": 0.0,
        "n_runs": 4.0,
        "success_ratio": 0.5,
        "tokens_per_s_baseline_bs2_seq128": pytest.approx(600.0),
        "tokens_per_s_baseline_bs4_seq128": pytest.approx(1200.0),
        "largest_ok_batch_baseline_seq128": 4.0,
        "parity_pairs": 0.0,
        "parity_failures": 0.0,
    }
    cell = one(analysis.cells, variant="baseline", batch_size=4)
    assert math.isnan(cell.mfu) and math.isnan(cell.peak_mem_reserved_gb) and math.isnan(cell.peak_tflops)


def test_the_headline_names_a_variant_whose_interval_overlaps_the_fastests():
    runs = four_variant_scenario()
    for run in runs:
        if run.torch_compile and not run.use_liger:
            run.tokens_per_s = 1310.0 * (1 + 0.01 * run.repeat)  # as fast as Liger, within the CIs
        elif run.torch_compile:
            run.status = "failed"
    analysis = analyze_results(*build(runs))
    mean, low, high = ci([1310.0 * (1 + 0.01 * r) for r in range(3)])
    gain, gain_low, gain_high = ci([1310.0 * (1 + 0.01 * r) / (1000.0 * (1 + 0.01 * r)) - 1 for r in range(3)])
    assert make_headline(analysis) == (
        f"At batch 8 the fastest variant that trained is torch.compile: {mean:,.0f} tokens/s (95% CI {low:,.0f} to "
        f"{high:,.0f}), +{100 * gain:.0f}% vs the baseline (95% CI {100 * gain_low:.1f}% to {100 * gain_high:.1f}%); "
        f"indistinguishable from Liger (overlapping 95% CIs). Leanest: Liger, 30.0 GiB peak reserved. Not "
        f"recommended at batch 8: liger-compile: failed ({FAILED_REASON})."
    )
    [note] = [note for note in caveats(analysis) if note.startswith("torch.compile's one-off cost")]
    assert note.endswith("(2 steps, 1 recompiles per run); paid back after about " + (
        f"{math.ceil(one(analysis.gains, variant='compile', against='baseline').payback_steps):,} steps at its gain "
        "over the baseline's steady rate.")
    )  # fmt: skip


def test_the_headline_says_when_no_cell_trained_in_every_repeat():
    runs = [Run(liger, 8, SEQ, r, status="failed" if r else "ok") for liger in (False, True) for r in (0, 1)]
    assert make_headline(analyze_results(*build(runs))) == (
        "No variant trained in every repeat of a cell, so none is recommended; see the reasons below."
    )


def test_caveats_for_mixed_gpus_an_unknown_peak_new_shapes_and_compiles_that_never_pay_back():
    """Baseline and compile at batch 8, 2 repeats. The baseline's repeat 1 ran on another GPU, whose peak is not
    known; compile is slower than the baseline (it never pays back), and has a first-shape step 6 costing 2 s."""
    runs = [
        Run(False, 8, SEQ, 0, peak_tflops=None),
        Run(False, 8, SEQ, 1, peak_tflops=None),
        Run(False, 8, SEQ, 0, torch_compile=True, compile_s=10.0, tokens_per_s=9000.0, first_shape_step=6,
            first_shape_s=2.0, peak_tflops=None),
        Run(False, 8, SEQ, 1, torch_compile=True, compile_s=10.0, tokens_per_s=9000.0, first_shape_step=6,
            first_shape_s=2.0, peak_tflops=None),
        Run(True, 16, SEQ, 0, torch_compile=True, compile_s=10.0),  # a compiled cell without a baseline
    ]  # fmt: skip
    results, histories = build(runs)
    results[1]["environment"]["gpu_name"] = "NVIDIA A100-SXM4-80GB"
    analysis = analyze_results(results, histories)
    notes = caveats(analysis)
    nominal = tokens(8)["nonpad"] / 9000.0
    excess = (1 - JITTER) * nominal + 2.0  # step 6 beyond the measured steps' median time per padded token
    cell = one(analysis.cells, variant="compile")
    assert (cell.n_first_shape_steps, cell.first_shape_excess_s) == (1, pytest.approx(excess))
    assert analysis.runs.set_index("run_key").loc["compile-bs8-seq512-r0", "n_shapes"] == 2
    assert (
        f"Steps whose batch shape was new in the run (compilation, autotuning, allocation for that shape) are left "
        f"out of every aggregate and cost once: torch.compile 1 steps, {excess:.1f} s extra per run (mean over cells)."
    ) in notes
    compile_time = (4 - 2 * JITTER) * nominal + 15.0
    assert (
        f"torch.compile's one-off cost, left out of every aggregate: torch.compile at batch 8 spent "
        f"{compile_time:.1f} s compiling (2 steps, 1 recompiles per run); it never pays back: its steady rate is not "
        "above the baseline's."
    ) in notes
    assert any(
        note.startswith("torch.compile's one-off cost, left out of every aggregate: Liger + torch.compile at batch 16")
        and note.endswith("no payback without a baseline to compare with.")
        for note in notes
    )
    assert (
        "Runs ran on different GPUs (NVIDIA A100-SXM4-80GB, NVIDIA H100 80GB HBM3); compare cells with care." in notes
    )
    assert "MFU not reported: the GPU's peak FLOP/s is unknown (set peak_tflops)." not in notes  # Liger's has a peak
    without_peak = analyze_results(*build(runs[:2]))
    assert "MFU not reported: the GPU's peak FLOP/s is unknown (set peak_tflops)." in caveats(without_peak)
    row = without_peak.cells[without_peak.cells["variant"] == "baseline"]
    assert md_row(row, tables.CELL_MEMORY).split(" | ")[6] == "unknown"  # the MFU column: not a measured zero


def test_a_row_exactly_max_seq_length_long_is_not_truncated_and_one_token_longer_is(embedded_assets):
    """n_truncated ("Up to N training rows were truncated") at the boundary: max_seq_length equal to the longest row."""
    import datasets
    from transformers import AutoTokenizer

    from liger_bench.inputs.data import tokenize

    tokenizer = AutoTokenizer.from_pretrained(embedded_assets[0])
    rows = [{"prompt": "Say hi. ", "completion": " ".join(["hi"] * n)} for n in (3, 9, 6)]
    data = datasets.Dataset.from_list(rows)
    lengths = [len(row["input_ids"]) for row in tokenize(data, tokenizer, 10_000, 3, False, 0).rows]
    longest = max(lengths)
    assert lengths.count(longest) == 1 and sorted(lengths)[-2] < longest - 1
    whole = tokenize(data, tokenizer, longest, 3, False, 0)
    assert whole.summary()["n_truncated"] == 0 and max(len(r["input_ids"]) for r in whole.rows) == longest
    cut = tokenize(data, tokenizer, longest - 1, 3, False, 0)
    assert cut.summary()["n_truncated"] == 1 and max(len(r["input_ids"]) for r in cut.rows) == longest - 1


def test_the_grid_and_environment_sections_count_the_runs_and_repeats_and_name_the_peak():
    import html
    import re

    from liger_bench.render.report import build_report

    bundle = build_report(*build(gpu_scenario()))
    pairs = dict(re.findall(r'<tr><th class="text">([^<]+)</th><td class="text wrap">([^<]*)</td></tr>', bundle.html))
    shown = {html.unescape(key): html.unescape(value) for key, value in pairs.items()}
    expected = {"variants": "baseline, Liger", "per_device_train_batch_size": "8, 16, 24", "max_seq_length": "512"}
    expected |= {"repeats": "3", "runs": "18", "peak_tflops": "989 (0 given: looked up from the GPU's name)"}
    expected |= {"max_steps": "20", "warmup_steps_to_skip": "3", "gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": "1"}
    expected |= {"gpu_memory_gb": "79.19", "library liger-kernel": "0.8.5", "model type": "phi3"}
    assert {key: shown.get(key) for key in expected} == expected


# Kernel ablation (issue 25): ablation_scenario's attribution, interaction and headline clause, by hand. Peak
# allocated memory is 0.8 of reserved for Liger and its arms, 0.9 for the baseline (allocated_fraction).
REPEATS = range(3)


def _percent_ci(values: list[float]) -> tuple[float, float, float]:
    return tuple(100 * v for v in ci(values))  # type: ignore[return-value]


def _allocated(reserved: float, liger: bool) -> float:
    return allocated_fraction(liger) * reserved


@pytest.fixture(scope="module")
def ablation():
    return analyze_results(*build(ablation_scenario()))


@pytest.mark.parametrize("kernel", ABLATION_KERNELS)
def test_every_column_of_a_kernels_attribution(ablation, kernel):
    alone, left_out = ABLATION_ALONE[kernel], ABLATION_LEFT_OUT[kernel]
    base, liger = ABLATION_BASELINE["reserved"], ABLATION_LIGER["reserved"]
    gain = _percent_ci([alone["ratio"][r] - 1 for r in REPEATS])
    reduction = _percent_ci([1 - _allocated(alone["reserved"][r], True) / _allocated(base[r], False) for r in REPEATS])
    loss = _percent_ci([1 - left_out["ratio"][r] for r in REPEATS])
    added = _percent_ci([left_out["reserved"][r] / liger[r] - 1 for r in REPEATS])  # both allocate 0.8
    expected = {"kernel": kernel, "batch_size": 16, "seq_len": SEQ, "alone_n_pairs": 3, "left_out_n_pairs": 3}
    for name, (mean, low, high) in (
        ("alone_gain", gain),
        ("alone_mem_reduction", reduction),
        ("left_out_loss", loss),
        ("left_out_mem_increase", added),
    ):
        expected |= {f"{name}_pct": mean, f"{name}_pct_ci_low": low, f"{name}_pct_ci_high": high}
    assert_row(one(ablation.attribution, kernel=kernel), expected)
    assert list(ablation.attribution["kernel"]) == list(ABLATION_KERNELS)


def test_every_column_of_the_interaction(ablation):
    whole = [ABLATION_LIGER["ratio"][r] - 1 for r in REPEATS]
    parts = [sum(ABLATION_ALONE[k]["ratio"][r] - 1 for k in ABLATION_KERNELS) for r in REPEATS]
    base = ABLATION_BASELINE["reserved"]
    whole_memory = [1 - _allocated(ABLATION_LIGER["reserved"][r], True) / _allocated(base[r], False) for r in REPEATS]
    parts_memory = [
        sum(
            1 - _allocated(ABLATION_ALONE[k]["reserved"][r], True) / _allocated(base[r], False)
            for k in ABLATION_KERNELS
        )
        for r in REPEATS
    ]
    expected = {"batch_size": 16, "seq_len": SEQ, "kernels": ", ".join(ABLATION_KERNELS), "n_repeats": 3}
    for name, values in (
        ("sum_of_singles_gain", parts),
        ("all_kernels_gain", whole),
        ("interaction", [w - p for w, p in zip(whole, parts, strict=True)]),
    ):
        mean, low, high = _percent_ci(values)
        expected |= {f"{name}_pct": mean, f"{name}_pct_ci_low": low, f"{name}_pct_ci_high": high}
    expected["sum_of_singles_mem_reduction_pct"] = 100 * statistics.fmean(parts_memory)
    expected["all_kernels_mem_reduction_pct"] = 100 * statistics.fmean(whole_memory)
    assert_row(one(ablation.interaction, batch_size=16), expected)


def test_the_headline_names_the_kernels_whose_gain_alone_its_interval_supports(ablation):
    """rope and rms_norm gain beyond their CIs, largest first; swiglu's and the fused loss's CIs include zero."""
    named = []
    for kernel in ("rms_norm", "rope"):
        mean, low, high = _percent_ci([ABLATION_ALONE[kernel]["ratio"][r] - 1 for r in REPEATS])
        named.append(f"{kernel} (+{mean:.1f}%, 95% CI {low:.1f}% to {high:.1f}%)")
    whole = [ABLATION_LIGER["ratio"][r] - 1 for r in REPEATS]
    parts = [sum(ABLATION_ALONE[k]["ratio"][r] - 1 for k in ABLATION_KERNELS) for r in REPEATS]
    mean, low, high = _percent_ci([w - p for w, p in zip(whole, parts, strict=True)])
    clause = (
        f"At batch 16, the gain is carried by {named[0]} and {named[1]}: alone, faster than the baseline by their "
        f"95% CIs. All kernels together gain +{100 * statistics.fmean(whole):.1f}%, {mean:.1f} points more than the "
        f"sum of the singles (95% CI {low:.1f} to {high:.1f}). {_memory_clause(ABLATION_KERNELS)}"
    )
    assert make_headline(ablation).endswith(clause)


def _memory_clause(kernels) -> str:
    """The headline's memory clause for ``kernels``: each saves allocated memory alone beyond its 95% CI."""
    savings = {}
    for kernel in kernels:
        alone, base = ABLATION_ALONE[kernel]["reserved"], ABLATION_BASELINE["reserved"]
        savings[kernel] = _percent_ci([1 - _allocated(alone[r], True) / _allocated(base[r], False) for r in REPEATS])
    assert all(low > 0.05 for _, low, _ in savings.values())  # every kernel saves memory in this scenario
    named = [
        f"{kernel} ({mean:.1f}%, 95% CI {low:.1f}% to {high:.1f}%)"
        for kernel, (mean, low, high) in sorted(savings.items(), key=lambda item: -item[1][0])
    ]
    listed = ", ".join(named[:-1]) + f" and {named[-1]}" if len(named) > 1 else named[0]
    return (
        f"The memory saving is carried by {listed}: alone, less peak allocated memory than the baseline by their "
        "95% CIs."
    )


def test_the_headline_names_no_kernel_without_an_interval_above_zero():
    runs = [run for run in ablation_scenario() if run.ablation in ("", "swiglu", "fused_linear_cross_entropy")]
    headline = make_headline(analyze_results(*build(runs)))
    # No kernel is faster by its CI; both save memory by theirs, so only the memory clause names them.
    memory = _memory_clause(("swiglu", "fused_linear_cross_entropy"))
    assert headline.endswith(
        f"Kernel ablation at batch 16: no kernel alone is faster than the baseline by its 95% CI. {memory}"
    )
    assert "the gain is carried by" not in headline
    one_repeat = make_headline(analyze_results(*build([run for run in ablation_scenario() if run.repeat == 0])))
    assert (
        "Kernel ablation at batch 16: one repeat, so no kernel is named as carrying the gain (use n_runs >= 3)."
        in one_repeat
    )
    assert "carried by" not in one_repeat


def test_a_saving_that_rounds_to_zero_is_not_named_though_its_interval_is_above_zero():
    """A peak is deterministic: a few MiB less in every repeat is a CI of zero width just above zero."""
    import dataclasses

    ratio = 0.9999 * allocated_fraction(False) / allocated_fraction(True)  # 0.01% less allocated, every repeat
    runs = [
        dataclasses.replace(run, mem_reserved_gb=ABLATION_BASELINE["reserved"][run.repeat] * ratio)
        if run.ablation == "rope"
        else run
        for run in ablation_scenario()
    ]
    analysis = analyze_results(*build(runs))
    rope = analysis.attribution.set_index("kernel").loc["rope"]
    assert rope["alone_mem_reduction_pct_ci_low"] == pytest.approx(0.01, abs=1e-6)
    assert make_headline(analysis).endswith(_memory_clause(("rms_norm", "swiglu", "fused_linear_cross_entropy")))


def test_the_attribution_tables_as_rendered(ablation):
    gain = _percent_ci([ABLATION_ALONE["rope"]["ratio"][r] - 1 for r in REPEATS])
    reduction = _percent_ci(
        [
            1
            - _allocated(ABLATION_ALONE["rope"]["reserved"][r], True)
            / _allocated(ABLATION_BASELINE["reserved"][r], False)
            for r in REPEATS
        ]
    )
    loss = _percent_ci([1 - ABLATION_LEFT_OUT["rope"]["ratio"][r] for r in REPEATS])
    added = _percent_ci([ABLATION_LEFT_OUT["rope"]["reserved"][r] / ABLATION_LIGER["reserved"][r] - 1 for r in REPEATS])
    cells = [f"{m:.1f} | {lo:.1f} to {hi:.1f}" for m, lo, hi in (gain, reduction)]
    cells += ["3"] + [f"{m:.1f} | {lo:.1f} to {hi:.1f}" for m, lo, hi in (loss, added)]
    rope = ablation.attribution[ablation.attribution["kernel"] == "rope"]
    assert md_row(rope, tables.ATTRIBUTION) == f"| rope | 16 | 512 | 3 | {' | '.join(cells)} |"
    row = ablation.interaction.iloc[0]
    numbers = [
        f"{row[f'{name}_pct']:.1f} | {row[f'{name}_pct_ci_low']:.1f} to {row[f'{name}_pct_ci_high']:.1f}"
        for name in ("sum_of_singles_gain", "all_kernels_gain", "interaction")
    ]
    memory = f"{row.sum_of_singles_mem_reduction_pct:.1f} | {row.all_kernels_mem_reduction_pct:.1f}"
    kernels = r"rope, rms\_norm, swiglu, fused\_linear\_cross\_entropy"
    assert (
        md_row(ablation.interaction, tables.INTERACTION)
        == f"| 16 | 512 | {kernels} | 3 | {' | '.join(numbers)} | {memory} |"
    )


def test_the_report_says_how_many_runs_the_ablation_added():
    import re

    from liger_bench.render.report import build_report

    bundle = build_report(*build(ablation_scenario()))
    assert "The ablation added 24 runs." in bundle.markdown  # 8 arms × 3 repeats
    pairs = dict(re.findall(r'<tr><th class="text">([^<]+)</th><td class="text wrap">([^<]*)</td></tr>', bundle.html))
    assert pairs["kernel-ablation runs"] == "24" and pairs["runs"] == "30"
    assert pairs["variants"].startswith("baseline, Liger, Liger [fused_linear_cross_entropy], Liger [rms_norm], ")
    assert "Liger [\u2212swiglu]" in pairs["variants"]


# Issue 27: cost and energy per million tokens.


def test_every_column_of_the_cost_and_energy_table_as_rendered(gpu):
    """The per-cell cost and energy table: a GPU cell at PRICE, a cell that never trained, a CPU cell without energy."""
    runs = [run_of("liger", 16, r) for r in range(3)]
    cost, cost_low, cost_high = ci([r["cost_per_mtok"] for r in runs])
    kwh, kwh_low, kwh_high = ci([r["kwh_per_mtok"] for r in runs])
    power_w = statistics.fmean(liger_power(16, r) for r in range(3))
    cell = gpu.cells[(gpu.cells["variant"] == "liger") & (gpu.cells["batch_size"] == 16)]
    assert md_row(cell, tables.CELL_COST) == (
        f"| Liger | 16 | 512 | ok | {cost:.3f} | {cost_low:.3f} to {cost_high:.3f} | {kwh:.4f} | "
        f"{kwh_low:.4f} to {kwh_high:.4f} | {power_w:.0f} |"
    )
    never = gpu.cells[(gpu.cells["variant"] == "baseline") & (gpu.cells["batch_size"] == 24)]
    assert md_row(never, tables.CELL_COST) == (
        "| baseline | 24 | 512 | oom | – | unavailable | unavailable (no run) | unavailable | – |"
    )
    cpu = analyze_results(*build(cpu_scenario(repeats=2), cuda=False), gpu_hour_price=PRICE)
    cpu_cell = cpu.cells[(cpu.cells["variant"] == "baseline") & (cpu.cells["batch_size"] == 2)]
    cpu_cost = ci([PRICE * 1e6 / 600.0 / 3600] * 2)  # 300 tokens/s per row of batch, no spread: a zero-width CI
    assert md_row(cpu_cell, tables.CELL_COST) == (
        f"| baseline | 2 | 128 | ok | {cpu_cost[0]:.3f} | {cpu_cost[1]:.3f} to {cpu_cost[2]:.3f} | "
        "unavailable (no NVIDIA GPU) | unavailable | – |"
    )
    assert "Energy unavailable (no NVIDIA GPU) for 2 of 2 cells that trained." in caveats(cpu)
    assert {key for key in headline_metrics(cpu) if "kwh" in key} == set()  # no energy: no metric, never 0


def test_no_cheapest_variant_when_the_cost_intervals_overlap_and_no_cost_without_a_price():
    rates = {"baseline": [1000.0, 1050.0, 1100.0], "liger": [1060.0, 1080.0, 1040.0]}
    runs = [
        Run(variant == "liger", 8, 256, repeat, tokens_per_s=rates[variant][repeat])
        for repeat in range(3)
        for variant in rates
    ]
    costs = {variant: ci([PRICE * 1e6 / r / 3600 for r in values]) for variant, values in rates.items()}
    assert costs["liger"][1] < costs["baseline"][2] and costs["baseline"][1] < costs["liger"][2]  # they overlap
    priced = analyze_results(*build(runs), gpu_hour_price=PRICE)
    row = one(priced.recommendations, batch_size=8)
    assert (row.fastest, row.fastest_ties, row.cheapest) == ("liger", "baseline", "")
    assert math.isnan(row.cheapest_cost_per_mtok)
    assert "Cheapest" not in make_headline(priced) and "cheapest_cost_per_mtok" not in headline_metrics(priced)
    assert one(priced.cells, variant="liger").cost_per_mtok == pytest.approx(costs["liger"][0], rel=1e-9)
    unpriced = analyze_results(*build(runs))
    assert unpriced.cells["cost_per_mtok"].isna().all() and unpriced.gpu_hour_price is None
    assert not any(note.startswith("Cost per million") for note in caveats(unpriced))
    assert not any(key.startswith("cost_per_mtok") for key in headline_metrics(unpriced))
