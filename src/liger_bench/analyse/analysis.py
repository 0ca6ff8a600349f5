"""Statistics over all runs of a grid: throughput, memory, gains, compile cost, frontier, cost, energy, parity, advice.

Each run contributes its own aggregates (median over its measured steps, see ``metrics.aggregate``).
A grid cell is one (variant, batch size, sequence length); its throughput is the mean of its ok
runs with a 95% Student-t interval over repeats. Runs of two variants at the same batch size,
sequence length and repeat form a pair; a gain is the mean of the per-pair ratios, again with a
t-interval. Every variant is compared with the baseline (stock, eager), and Liger with compile head
to head. One room although it is long: the recommendation reads the cells, gains and compile cost
exactly as the tables show them, so that no sentence says what a table does not.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from liger_bench.analyse.attribution import attribution, interaction
from liger_bench.analyse.frontier import (
    fit_rates,
    frontier_gains,
    probes_table,
    searches_table,
    sequence_gains,
    sequence_searches_table,
)
from liger_bench.analyse.intervals import mean_ci
from liger_bench.analyse.runtables import CELL, recommendable, runs_table, steps_table
from liger_bench.records import RunResult, StepHistory
from liger_bench.vocabulary import BASELINE, RUN_STATUSES, VARIANTS, RunStatus, Variant, ablated_kernel, variant_order

DEFAULT_PARITY_TOLERANCE = 0.02
TOKENS_PER_COST_UNIT = 1e6  # cost and energy are reported per million non-padding tokens
PAIR = ["batch_size", "seq_len"]
# Config keys that tell the runs of a grid apart; every other key is a setting they share.
RUN_AXES = {"run_key", "repeat", "use_liger", "torch_compile", "ablation", "per_device_train_batch_size"}
RUN_AXES.add("max_seq_length")
# The comparisons the report makes, (variant, against): every variant with the baseline, then Liger with
# compile head to head (a positive gain: Liger is the faster).
COMPARISONS: tuple[tuple[Variant, Variant], ...] = (
    *((variant, BASELINE) for variant in VARIANTS[1:]),
    ("liger", "compile"),
)


def comparisons(variants: set[str]) -> list[tuple[Variant, Variant]]:
    """``COMPARISONS`` of the ``variants`` run, then every kernel-ablation arm with the baseline."""
    arms = sorted((v for v in variants if ablated_kernel(v) is not None), key=variant_order)
    fixed = [(variant, against) for variant, against in COMPARISONS if {variant, against} <= variants]
    return fixed + [(arm, BASELINE) for arm in arms if BASELINE in variants]  # type: ignore[misc] - arms are variants


@dataclass
class Analysis:
    """Everything the report shows; every frame has its columns even when it has no rows."""

    runs: pd.DataFrame  # one row per run: axes, status, reason, the run's aggregates
    steps: pd.DataFrame  # one row per recorded step of every run, with the run's axes
    cells: pd.DataFrame  # one row per grid cell
    gains: pd.DataFrame  # one row per (variant, against, batch size, seq len): paired gain, COMPARISONS' order
    recommendations: pd.DataFrame  # one row per (batch size, seq len): fastest and leanest variant that trained
    frontier: pd.DataFrame  # one row per (variant, seq len): largest batch that trained
    searches: pd.DataFrame  # one row per frontier search (variant, seq len): largest fit, smallest oom, peak
    probes: pd.DataFrame  # one row per probe of every frontier search
    frontier_gains: pd.DataFrame  # one row per (variant, seq len) whose largest fit differs from the baseline's
    fit_rates: pd.DataFrame  # one row per (variant, seq len) trained at its own largest fit: tokens/s, gain there
    sequence_searches: pd.DataFrame  # one row per longest-sequence search (variant, batch): longest fit, shortest oom
    sequence_gains: pd.DataFrame  # one row per (variant, batch) whose longest fit differs from the baseline's
    parity: pd.DataFrame  # one row per (variant, baseline) pair of ok runs: loss agreement
    attribution: pd.DataFrame  # one row per (kernel, batch size, seq len) of a kernel ablation (attribution.py)
    interaction: pd.DataFrame  # one row per (batch size, seq len): sum of the single kernels' gains vs all together
    problems: pd.DataFrame  # runs that did not finish ok (oom, failed, skipped, diverged) with their reasons
    divergences: pd.DataFrame  # one row per diverged run: where, and what its pair's other variant did
    environments: list[dict[str, Any]]  # environment of each run, in run order
    parity_tolerance: float
    environment: dict[str, Any]  # of the first ok run that recorded one (else of any run)
    model: dict[str, Any]  # likewise
    dataset: dict[str, Any]  # likewise
    liger_kernels: dict[str, int]  # modules each kernel patched, of the first Liger run that recorded them
    attention: dict[Variant, list[str]]  # attention implementations each variant trained with
    settings: dict[str, Any]  # config values all runs share, by key
    varying_settings: list[str]  # config keys (besides the grid axes) whose value differs between runs
    untracked: dict[str, str]  # run key to why MLflow did not log the run, for runs it should have logged
    gpu_hour_price: float | None  # the price of one GPU-hour the costs use; None: no price given, no cost


def _outcome(statuses: pd.Series) -> str:
    if (statuses == "ok").all():
        return "ok"
    if (statuses == "ok").any():
        return "partial"
    for status in RUN_STATUSES[1:]:  # the first that occurs of oom, failed, skipped, diverged
        if (statuses == status).any():
            return status
    return "none"


# Decimals of a cost per million tokens on the page: a fast GPU's million tokens cost cents, and
# two decimals would hide the differences between variants (0.058 against 0.046 at 3.50 per GPU-hour).
COST_DIGITS = 3


def cost_per_mtok(gpu_hour_price: float, gpus: int, tokens_per_s: float) -> float:
    """What a million non-padding tokens cost: ``gpus`` GPUs at ``gpu_hour_price`` for as long as they take.

    Args:
        gpu_hour_price: The price of one GPU-hour (any currency).
        gpus: GPUs that train the run together.
        tokens_per_s: The run's non-padding tokens per second, all GPUs together.
    """
    return gpu_hour_price * gpus * (TOKENS_PER_COST_UNIT / tokens_per_s) / 3600.0


def _ci_at_least_zero(values: Iterable[float]) -> tuple[float, float, float]:
    """``mean_ci`` of a quantity that is never negative: a low bound below zero is zero."""
    mean, low, high = mean_ci(values)
    return mean, max(low, 0.0) if math.isfinite(low) else low, high


def _cost_and_energy(ok: pd.DataFrame, gpu_hour_price: float | None) -> dict[str, Any]:
    """A cell's cost and kWh per million non-padding tokens with 95% CIs over its ok runs, and its mean power."""
    row: dict[str, Any] = {}
    costs = [
        cost_per_mtok(gpu_hour_price, gpus, rate)
        for gpus, rate in zip(ok["gpus"], ok["tokens_per_s_nonpad"], strict=True)
        if gpu_hour_price is not None and rate > 0
    ]
    kwh = [TOKENS_PER_COST_UNIT / per_kwh for per_kwh in ok["tokens_per_kwh"] if per_kwh > 0]
    for name, values in (("cost_per_mtok", costs), ("kwh_per_mtok", kwh)):
        mean, low, high = _ci_at_least_zero(values)
        row.update({name: mean, f"{name}_ci_low": low, f"{name}_ci_high": high})
    row["mean_power_w"] = ok["mean_power_w"].mean()
    # Energy counts only when every ok run measured it: a mean over some repeats would be another cell.
    unmeasured = ok.loc[ok["tokens_per_kwh"].isna(), "energy_unavailable"]
    if len(unmeasured):
        row.update(kwh_per_mtok=math.nan, kwh_per_mtok_ci_low=math.nan, kwh_per_mtok_ci_high=math.nan)
        row["mean_power_w"] = math.nan
    row["energy_unavailable"] = unmeasured.iloc[0] if len(unmeasured) else ""
    return row


COST_COLUMNS = [f"{name}{s}" for name in ("cost_per_mtok", "kwh_per_mtok") for s in ("", "_ci_low", "_ci_high")]
COST_COLUMNS += ["mean_power_w", "energy_unavailable"]


def _cells(runs: pd.DataFrame, gpu_hour_price: float | None) -> pd.DataFrame:
    rows = []
    for (variant, batch, seq), group in runs.groupby(CELL, sort=False):  # runs come sorted, baseline first
        ok = group[group["status"] == "ok"]
        row = {
            "variant": variant,
            "use_liger": bool(group["use_liger"].iloc[0]),
            "torch_compile": bool(group["torch_compile"].iloc[0]),
            "batch_size": batch,
            "seq_len": seq,
        }
        row.update({f"n_{s}": int((group["status"] == s).sum()) for s in RUN_STATUSES})
        row["n_runs"], row["outcome"] = len(group), _outcome(group["status"])
        # The first line of the first reason: a CUDA error's message goes on for lines of advice.
        row["reason"] = next((r.splitlines()[0] for r in group["reason"] if r), "")
        for kind in ("nonpad", "padded"):
            # A rate is never negative; a t-interval over a few noisy repeats can still reach below zero.
            mean, low, high = _ci_at_least_zero(ok[f"tokens_per_s_{kind}"])
            row.update({f"tokens_per_s_{kind}": mean, f"tokens_per_s_{kind}_ci_low": low})
            row[f"tokens_per_s_{kind}_ci_high"] = high
        row["gpus"] = int(group["gpus"].max())
        row["tokens_per_s_nonpad_per_gpu"] = row["tokens_per_s_nonpad"] / row["gpus"]
        row["step_time_s"] = ok["step_time_s"].median()
        row["step_time_cv_max"] = ok["step_time_cv"].max()
        row["peak_mem_allocated_gb"] = ok["peak_mem_allocated_gb"].max()
        row["peak_mem_reserved_gb"] = ok["peak_mem_reserved_gb"].max()
        row["mfu"] = ok["mfu"].mean()
        row["peak_tflops"] = group["peak_tflops"].max()
        row["final_loss"] = ok["final_loss"].mean()
        row["steady_state"] = _steady_state(ok["steady_state"])
        row["drift"] = ok["drift"].loc[ok["drift"].abs().idxmax()] if ok["drift"].notna().any() else math.nan
        row["steps_needed"] = ok["steps_needed"].max()
        row["n_first_shape_steps"] = ok["n_first_shape_steps"].max()
        row["first_shape_excess_s"] = ok["first_shape_excess_s"].mean()
        row["n_compile_steps"] = ok["n_compile_steps"].max()
        row["recompiles"] = ok["recompiles"].max()
        row["compile_time_s"] = ok["compile_time_s"].mean()
        row.update(_cost_and_energy(ok, gpu_hour_price))
        rows.append(row)
    columns = ["variant", "use_liger", "torch_compile", "batch_size", "seq_len", "n_runs"]
    columns += [f"n_{s}" for s in RUN_STATUSES]
    columns += [
        "outcome",
        "reason",
        *(f"tokens_per_s_{k}{s}" for k in ("nonpad", "padded") for s in ("", "_ci_low", "_ci_high")),
    ]
    columns += [
        "gpus",
        "tokens_per_s_nonpad_per_gpu",
        "step_time_s",
        "step_time_cv_max",
        "peak_mem_allocated_gb",
        "peak_mem_reserved_gb",
        "mfu",
        "peak_tflops",
        "final_loss",
        "steady_state",
        "drift",
        "steps_needed",
        "n_first_shape_steps",
        "first_shape_excess_s",
        "n_compile_steps",
        "recompiles",
        "compile_time_s",
    ]
    columns += COST_COLUMNS
    return pd.DataFrame(rows, columns=columns)


def _steady_state(states: pd.Series) -> str:
    """A cell is unsteady when any of its runs is, steady when all are, unknown otherwise."""
    if (states == "unsteady").any():
        return "unsteady"
    return "steady" if len(states) and (states == "steady").all() else "unknown"


def _pairs(runs: pd.DataFrame, variant: Variant, against: Variant) -> pd.DataFrame:
    """Ok runs of ``variant`` joined with ``against``'s of the same cell and repeat (``against``'s suffixed)."""
    ok = runs[runs["status"] == "ok"]
    return ok[ok["variant"] == variant].merge(
        ok[ok["variant"] == against], on=[*PAIR, "repeat"], suffixes=("", "_against")
    )


def payback_steps(compile_time_s: float, step_time_s: float, gain: float) -> float:
    """Steps after which a compiled variant's faster steps have paid its one-off compile time back.

    A step of the variant takes ``step_time_s``; the baseline needs ``1 + gain`` times as long for the
    same tokens, so each step saves ``step_time_s × gain``. Infinite when the variant is not faster
    (it never pays back), NaN when a number is missing.

    Args:
        compile_time_s: The variant's compile time (its compile steps beyond their steady time).
        step_time_s: The variant's steady step time.
        gain: The variant's tokens/s over the baseline's, minus one.
    """
    if not all(math.isfinite(x) for x in (compile_time_s, step_time_s, gain)):
        return math.nan
    if gain <= 0:
        return math.inf
    return max(compile_time_s, 0.0) / (step_time_s * gain)


def _gains(cells: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    by_cell = cells.set_index(["variant", *PAIR])
    for variant, against in comparisons(set(cells["variant"])):
        pairs = _pairs(runs, variant, against)
        for batch, seq in sorted(set(zip(cells["batch_size"], cells["seq_len"], strict=True))):
            group = pairs[(pairs["batch_size"] == batch) & (pairs["seq_len"] == seq)]
            gain = group["tokens_per_s_nonpad"] / group["tokens_per_s_nonpad_against"] - 1.0
            reserved = 1.0 - group["peak_mem_reserved_gb"] / group["peak_mem_reserved_gb_against"]
            allocated = 1.0 - group["peak_mem_allocated_gb"] / group["peak_mem_allocated_gb_against"]
            mean, low, high = (100.0 * v for v in mean_ci(gain))
            cell = by_cell.loc[(variant, batch, seq)] if (variant, batch, seq) in by_cell.index else None
            payback = math.nan
            if against == BASELINE and cell is not None:
                payback = payback_steps(cell["compile_time_s"], cell["step_time_s"], mean / 100.0)

            def outcome(name: Variant, batch: int = batch, seq: int = seq) -> str:
                return by_cell["outcome"].get((name, batch, seq), "not run")

            def steadiness(name: Variant, batch: int = batch, seq: int = seq) -> str:
                return by_cell["steady_state"].get((name, batch, seq), "unknown")

            rows.append(
                {
                    "variant": variant,
                    "against": against,
                    "batch_size": batch,
                    "seq_len": seq,
                    "variant_outcome": outcome(variant),
                    "against_outcome": outcome(against),
                    # A gain is only as steady as the less steady of its two cells.
                    "steady_state": _steady_state(pd.Series([steadiness(variant), steadiness(against)])),
                    "n_pairs": len(group),
                    "gain_pct": mean,
                    "gain_ci_low_pct": low,
                    "gain_ci_high_pct": high,
                    "mem_reserved_reduction_pct": 100.0 * mean_ci(reserved)[0],
                    "mem_allocated_reduction_pct": 100.0 * mean_ci(allocated)[0],
                    "payback_steps": payback,
                }
            )
    columns = ["variant", "against", "batch_size", "seq_len", "variant_outcome", "against_outcome", "steady_state"]
    columns += ["n_pairs", "gain_pct", "gain_ci_low_pct", "gain_ci_high_pct", "mem_reserved_reduction_pct"]
    columns += ["mem_allocated_reduction_pct", "payback_steps"]
    return pd.DataFrame(rows, columns=columns)


def _has_ci(cell: pd.Series) -> bool:
    return math.isfinite(cell["tokens_per_s_nonpad_ci_low"]) and math.isfinite(cell["tokens_per_s_nonpad_ci_high"])


def _overlaps(a: pd.Series, b: pd.Series) -> bool:
    """Whether two cells' 95% CIs of tokens/s overlap (both have one)."""
    return (
        a["tokens_per_s_nonpad_ci_low"] <= b["tokens_per_s_nonpad_ci_high"]
        and b["tokens_per_s_nonpad_ci_low"] <= a["tokens_per_s_nonpad_ci_high"]
    )


def _cheapest(candidates: pd.DataFrame) -> pd.Series | None:
    """The candidate whose cost per million tokens is lowest with a 95% CI apart from every other's; else None.

    None also with fewer than two candidates (nothing to compare), and when a candidate has no cost CI (no price,
    or one repeat): the order is then not established.
    """
    bounds = candidates[["cost_per_mtok_ci_low", "cost_per_mtok_ci_high"]]
    if len(candidates) < 2 or not bounds.map(math.isfinite).all().all():
        return None
    cheapest = candidates.loc[candidates["cost_per_mtok"].idxmin()]
    others = candidates.drop(cheapest.name)
    return cheapest if (cheapest["cost_per_mtok_ci_high"] < others["cost_per_mtok_ci_low"]).all() else None


def _recommendations(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (batch size, seq len): the fastest and the leanest variant among those that trained at steady state.

    A candidate cell trained in every repeat (outcome ``ok``) and is not ``unsteady``; failed, out of
    memory, skipped, partly failed and unsteady cells are never recommended, and are named with why.
    A variant whose tokens/s 95% CI overlaps the fastest's cannot be told apart from it and is listed
    as a tie; ``ranked`` is False when some candidate has no CI (one repeat), so the order is not
    established. The leanest is the smallest peak reserved memory. The cheapest per token is named only
    when its cost CI is apart from every other candidate's (``_cheapest``).
    """
    rows = []
    for (batch, seq), group in cells.groupby(PAIR, sort=True):
        candidates = group[recommendable(group)]
        left_out = group.drop(candidates.index)
        why: dict[str, list[str]] = {}  # variants sharing one verdict and reason are named together
        for r in left_out.itertuples():
            verdict = ("unsteady" if r.outcome == "ok" else r.outcome) + (f" ({r.reason})" if r.reason else "")
            why.setdefault(verdict, []).append(r.variant)
        excluded = "; ".join(f"{', '.join(variants)}: {verdict}" for verdict, variants in why.items())
        row: dict[str, Any] = {"batch_size": batch, "seq_len": seq, "fastest": "", "fastest_tokens_per_s": math.nan}
        row.update(fastest_ci_low=math.nan, fastest_ci_high=math.nan, fastest_ties="", ranked=False, leanest="")
        row.update(leanest_peak_mem_reserved_gb=math.nan, excluded=excluded)
        cheapest = _cheapest(candidates)
        row["cheapest"] = cheapest["variant"] if cheapest is not None else ""
        row["cheapest_cost_per_mtok"] = cheapest["cost_per_mtok"] if cheapest is not None else math.nan
        if len(candidates):
            fastest = candidates.loc[candidates["tokens_per_s_nonpad"].idxmax()]
            ranked = all(_has_ci(r) for _, r in candidates.iterrows())
            ties = [
                r["variant"]
                for _, r in candidates.iterrows()
                if ranked and r.name != fastest.name and _overlaps(r, fastest)
            ]
            leanest = (
                candidates.loc[candidates["peak_mem_reserved_gb"].idxmin()]
                if candidates["peak_mem_reserved_gb"].notna().any()
                else None
            )
            row.update(
                fastest=fastest["variant"],
                fastest_tokens_per_s=fastest["tokens_per_s_nonpad"],
                fastest_ci_low=fastest["tokens_per_s_nonpad_ci_low"],
                fastest_ci_high=fastest["tokens_per_s_nonpad_ci_high"],
                fastest_ties=", ".join(ties),
                ranked=ranked,
                leanest=leanest["variant"] if leanest is not None else "",
                leanest_peak_mem_reserved_gb=leanest["peak_mem_reserved_gb"] if leanest is not None else math.nan,
            )
        rows.append(row)
    columns = ["batch_size", "seq_len", "fastest", "fastest_tokens_per_s", "fastest_ci_low", "fastest_ci_high"]
    columns += ["fastest_ties", "ranked", "leanest", "leanest_peak_mem_reserved_gb", "excluded"]
    columns += ["cheapest", "cheapest_cost_per_mtok"]
    return pd.DataFrame(rows, columns=columns)


def _frontier(cells: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (variant, seq), group in cells.groupby(["variant", "seq_len"], sort=False):
        trained = group.loc[group["n_ok"] > 0, "batch_size"]
        oom = group.loc[group["n_oom"] > 0, "batch_size"]
        rows.append(
            {
                "variant": variant,
                "seq_len": seq,
                "largest_ok_batch": trained.max() if len(trained) else pd.NA,
                "smallest_oom_batch": oom.min() if len(oom) else pd.NA,
            }
        )
    frame = pd.DataFrame(rows, columns=["variant", "seq_len", "largest_ok_batch", "smallest_oom_batch"])
    return frame.astype({"largest_ok_batch": "Int64", "smallest_oom_batch": "Int64"})


def _divergences(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per diverged run: the step its loss became non-finite, and the status of its pair's other run.

    A variant's pair is the baseline run of the same cell and repeat; the baseline's is the Liger run.
    """
    keys = [*PAIR, "repeat"]
    diverged = runs[runs["status"] == "diverged"]
    partner = diverged["variant"].map(lambda variant: "liger" if variant == BASELINE else BASELINE)
    others = runs[[*keys, "variant", "status"]].rename(columns={"variant": "partner", "status": "pair_status"})
    diverged = diverged.assign(partner=partner).merge(others, on=[*keys, "partner"], how="left")
    diverged["pair_status"] = diverged["pair_status"].fillna("not run")
    columns = ["run_key", "variant", *PAIR, "repeat", "first_nonfinite_loss_step", "pair_status"]
    return diverged[columns].reset_index(drop=True)


def _parity(steps: pd.DataFrame, runs: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Loss agreement of every pair of ok runs of a variant and the baseline, over their measured steps."""
    keys = [*PAIR, "repeat"]
    columns = ["variant", *keys, "variant_run", "baseline_run", "n_steps_compared", "max_rel_diff", "step_of_max"]
    columns += ["passed"]
    pairs = pd.concat(
        [_pairs(runs, v, against) for v, against in comparisons(set(runs["variant"])) if against == BASELINE]
        + [pd.DataFrame(columns=["variant", *keys, "run_key", "run_key_against"])]
    )
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    pairs = pairs.rename(columns={"run_key": "variant_run", "run_key_against": "baseline_run"})
    measured = steps[steps["measured"] & steps["loss"].notna()][["run_key", "step", "loss"]]
    joined = pairs[["variant", *keys, "variant_run", "baseline_run"]]
    joined = joined.merge(measured.add_suffix("_v"), left_on="variant_run", right_on="run_key_v")
    joined = joined.merge(
        measured.add_suffix("_b"), left_on=["baseline_run", "step_v"], right_on=["run_key_b", "step_b"]
    )
    joined["rel_diff"] = (joined["loss_v"] - joined["loss_b"]).abs() / joined["loss_b"].abs().clip(lower=1e-12)
    pair_keys = ["variant", *keys]
    worst = (
        joined.loc[joined.groupby(pair_keys)["rel_diff"].idxmax(), [*pair_keys, "rel_diff", "step_v"]]
        if len(joined)
        else None
    )
    counts = joined.groupby(pair_keys).size().rename("n_steps_compared").reset_index()
    out = pairs[[*pair_keys, "variant_run", "baseline_run"]].merge(counts, on=pair_keys, how="left")
    if worst is not None:
        out = out.merge(worst, on=pair_keys, how="left")
    else:
        out["rel_diff"], out["step_v"] = math.nan, math.nan
    out = out.rename(columns={"rel_diff": "max_rel_diff", "step_v": "step_of_max"})
    out["n_steps_compared"] = out["n_steps_compared"].fillna(0).astype(int)
    out["passed"] = (out["max_rel_diff"] <= tolerance).astype("boolean").mask(out["n_steps_compared"] == 0)
    out["variant_order"] = out["variant"].map(variant_order)
    return out.sort_values([*keys, "variant_order"], ignore_index=True)[columns]


def analyze_results(
    results: Sequence[dict[str, Any]],
    histories: Sequence[dict[str, Any]],
    frontiers: Sequence[dict[str, Any]] = (),
    sequence_frontiers: Sequence[dict[str, Any]] = (),
    *,
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE,
    gpu_hour_price: float | None = None,
) -> Analysis:
    """Analyse run results (``RunResult.to_dict()``) and step histories, joined by ``run_key``.

    Args:
        results: One result dict per run, any order.
        histories: One history dict per run (``{"run_key", "warmup_steps_to_skip", "steps"}``), any
            order; a run without a history simply has no steps.
        frontiers: find_frontier's records, one per memory frontier search (none: no search).
        sequence_frontiers: find_frontier's records of the longest-sequence searches (none: no search).
        parity_tolerance: Largest relative difference of per-step losses (measured steps only) at
            which a variant/baseline pair still passes loss parity.
        gpu_hour_price: The price of one GPU-hour, for the cost per million tokens; None: no cost.

    Returns:
        Everything the report shows: the tables, and what the runs trained on what.

    Raises:
        ValueError: A tolerance outside [0, 1), two results with the same run key, a result with an
            unknown status or without the grid axes in its config.

    """
    if not 0.0 <= parity_tolerance < 1.0:
        raise ValueError(f"parity_tolerance must be in [0, 1), got {parity_tolerance!r}")
    parsed = [RunResult.from_dict(r) for r in results]
    keys = [r.run_key for r in parsed]
    duplicates = sorted({k for k in keys if keys.count(k) > 1}, key=str) if len(set(keys)) < len(keys) else []
    if duplicates:
        raise ValueError(f"duplicate run_key values in the results: {duplicates}; each run must report once")
    runs = runs_table(parsed)
    steps = steps_table(runs, [StepHistory.from_dict(h) for h in histories])
    cells = _cells(runs, gpu_hour_price)
    problems = runs.loc[runs["status"] != "ok", ["run_key", "variant", *PAIR, "repeat", "status", "reason"]]
    liger_keys = set(runs.loc[runs["use_liger"] & (runs["ablation"] == ""), "run_key"])
    # An ablation arm's kernel flags are its own by design: the settings are those of the other runs.
    settings, varying = _settings([r.config for r in parsed if not r.config.get("ablation")])
    return Analysis(
        runs=runs,
        steps=steps,
        cells=cells,
        gains=_gains(cells, runs),
        recommendations=_recommendations(cells),
        frontier=_frontier(cells),
        searches=(searches := searches_table(frontiers)),
        probes=probes_table(frontiers),
        frontier_gains=frontier_gains(searches),
        fit_rates=fit_rates(searches, cells, runs),
        sequence_searches=(sequence_searches := sequence_searches_table(sequence_frontiers)),
        sequence_gains=sequence_gains(sequence_searches),
        attribution=attribution(runs),
        interaction=interaction(runs),
        parity=_parity(steps, runs, parity_tolerance),
        problems=problems.reset_index(drop=True),
        divergences=_divergences(runs),
        environments=[r.environment for r in parsed],
        parity_tolerance=parity_tolerance,
        environment=_first(parsed, "environment"),
        model=_first(parsed, "model"),
        dataset=_first(parsed, "dataset"),
        liger_kernels=_first([r for r in parsed if r.run_key in liger_keys], "liger_kernels"),
        attention=_attention(runs),
        settings=settings,
        varying_settings=varying,
        untracked={
            r.run_key: r.mlflow["message"] for r in parsed if r.mlflow.get("enabled") and not r.mlflow.get("available")
        },
        gpu_hour_price=gpu_hour_price,
    )


def _first(results: Sequence[RunResult], field: str) -> dict[str, Any]:
    """``field`` of the first ok run that recorded it, else of the first run that did; {} when none did."""
    recorded = [r for r in results if getattr(r, field)]
    chosen = [r for r in recorded if r.status == "ok"] or recorded
    return dict(getattr(chosen[0], field)) if chosen else {}


def _attention(runs: pd.DataFrame) -> dict[Variant, list[str]]:
    variants = sorted(runs["variant"].unique(), key=variant_order)
    used = {v: sorted(set(runs.loc[runs["variant"] == v, "attn_implementation"].dropna())) for v in variants}
    return {variant: names for variant, names in used.items() if names}


def _settings(configs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The config values all runs share, and the keys whose value differs between runs (grid axes left out)."""
    shared, varying = {}, []
    for key in sorted(set().union(*configs) - RUN_AXES) if configs else ():
        if len({json.dumps(c.get(key), sort_keys=True) for c in configs}) == 1:
            shared[key] = configs[0].get(key)
        else:
            varying.append(key)
    return shared, varying


def status_counts(analysis: Analysis) -> dict[RunStatus, int]:
    """How many runs ended with each status (every status present, 0 where none did)."""
    statuses = analysis.runs["status"]
    return {status: int((statuses == status).sum()) for status in RUN_STATUSES}


def success_ratio(analysis: Analysis) -> float:
    """Fraction of runs with status ``ok``; 0.0 when there is no run at all.

    A ``diverged`` run trained, yet counts as no success: its numbers are left out of every gain,
    and a grid whose runs diverge (a learning rate too high) measured nothing worth a report.
    """
    return status_counts(analysis)["ok"] / len(analysis.runs) if len(analysis.runs) else 0.0


def check_success_ratio(analysis: Analysis, min_success_ratio: float) -> float:
    """Raise when fewer than ``min_success_ratio`` of the runs are ``ok``; call it after writing the report.

    Args:
        analysis: The analysed runs.
        min_success_ratio: Required fraction of ``ok`` runs, in [0, 1].

    Returns:
        The measured success ratio.

    Raises:
        ValueError: ``min_success_ratio`` is outside [0, 1], or the measured ratio is below it.

    """
    if not 0.0 <= min_success_ratio <= 1.0:
        raise ValueError(f"min_success_ratio must be in [0, 1], got {min_success_ratio!r}")
    ratio = success_ratio(analysis)
    if ratio < min_success_ratio:
        counts = status_counts(analysis)
        others = ", ".join(f"{counts[status]} {status}" for status in RUN_STATUSES[1:])
        raise ValueError(
            f"success ratio {ratio:.2f} ({counts['ok']} of {len(analysis.runs)} runs ok; {others}) is below "
            f"min_success_ratio={min_success_ratio}; the report was written, see it for the reasons"
        )
    return ratio
