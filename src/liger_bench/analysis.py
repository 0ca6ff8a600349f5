"""Statistics over all runs of a grid: throughput, memory, Liger's paired gain, OOM frontier, loss parity.

Each run contributes its own aggregates (median over its measured steps, see ``metrics.aggregate``).
A grid cell is one (variant, batch size, sequence length); its throughput is the mean of its ok
runs with a 95% Student-t interval over repeats. Liger and baseline runs of the same cell and repeat
form a pair; the gain is the mean of the per-pair ratios, again with a t-interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from liger_bench.config import coerce
from liger_bench.metrics import is_measured
from liger_bench.vocabulary import variant_of

DEFAULT_PARITY_TOLERANCE = 0.02
CELL = ["use_liger", "batch_size", "seq_len"]
PAIR = ["batch_size", "seq_len"]
# Two-sided 95% Student-t quantiles for 1..30 degrees of freedom; beyond, a Cornish-Fisher expansion.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)  # fmt: skip
_Z975 = 1.959964
RUN_METRICS = {
    "tokens_per_s_nonpad": "tokens_per_s_nonpad",
    "tokens_per_s_padded": "tokens_per_s_padded",
    "tokens_per_s_nonpad_per_gpu": "tokens_per_s_nonpad_per_gpu",
    "step_time_s": "median_step_time_s",
    "step_time_cv": "step_time_cv",
    "peak_mem_allocated_gb": "peak_mem_allocated_gb",
    "peak_mem_reserved_gb": "peak_mem_reserved_gb",
    "mfu": "median_mfu",
    "final_loss": "final_loss",
    "n_measured_steps": "n_measured_steps",
    "oom_peak_mem_reserved_gb": "oom_peak_mem_reserved_gb",
    "drift": "drift",
    "steps_needed": "steps_needed",
    "n_shapes": "n_shapes",
    "n_first_shape_steps": "n_first_shape_steps",
    "first_shape_excess_s": "first_shape_excess_s",
}
STEADY_STATES = ("steady", "unsteady", "unknown")
RUN_COLUMNS = [
    "run_key",
    "status",
    "reason",
    "use_liger",
    "batch_size",
    "seq_len",
    "repeat",
    "warmup_steps_to_skip",
]
RUN_COLUMNS += ["variant", *RUN_METRICS, "steady_state", "pad_to_multiple_of", "packing", "precision", "n_truncated"]
RUN_COLUMNS += ["gpus"]
STEP_NUMBERS = (
    "step_time_s",
    "tokens_per_s_nonpad",
    "tokens_per_s_padded",
    "peak_mem_reserved_gb",
    "loss",
    "mfu",
)


def t_quantile_975(dof: int) -> float:
    """Upper 97.5% quantile of Student's t with ``dof`` degrees of freedom (``dof`` >= 1)."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


def mean_ci(values: Iterable[float]) -> tuple[float, float, float]:
    """Mean and two-sided 95% t-interval; the bounds are NaN with fewer than two finite values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, math.nan
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    half = t_quantile_975(len(finite) - 1) * sd / math.sqrt(len(finite))
    return mean, mean - half, mean + half


@dataclass
class Analysis:
    """All tables the report is made of; every frame has its columns even when it has no rows."""

    runs: pd.DataFrame  # one row per run: axes, status, reason, the run's aggregates
    steps: pd.DataFrame  # one row per recorded step of every run, with the run's axes
    cells: pd.DataFrame  # one row per grid cell
    gains: pd.DataFrame  # one row per (batch size, seq len): Liger vs baseline over paired repeats
    frontier: pd.DataFrame  # one row per (variant, seq len): largest batch that trained
    parity: pd.DataFrame  # one row per Liger/baseline pair of ok runs: loss agreement
    problems: pd.DataFrame  # oom, failed and skipped runs with their reasons
    environments: list[dict[str, Any]]  # environment of each run, in run order
    parity_tolerance: float


def _run_row(result: dict[str, Any]) -> dict[str, Any]:
    config, metrics = result.get("config") or {}, result.get("metrics") or {}
    key = result.get("run_key", "")
    try:
        row = {
            "run_key": key,
            "status": result["status"],
            "reason": result.get("reason") or "",
            "use_liger": coerce("use_liger", config["use_liger"], bool),
            "batch_size": coerce("per_device_train_batch_size", config["per_device_train_batch_size"], int),
            "seq_len": coerce("max_seq_length", config["max_seq_length"], int),
            "repeat": coerce("repeat", config.get("repeat", 0), int),
            "warmup_steps_to_skip": coerce("warmup_steps_to_skip", config.get("warmup_steps_to_skip", 0), int),
        }
    except (KeyError, ValueError) as err:
        raise ValueError(f"run result {key!r} lacks a valid config value: {err}") from err
    row["variant"] = variant_of(row["use_liger"])
    for column, name in RUN_METRICS.items():
        value = metrics.get(name)
        row[column] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    row["steady_state"] = metrics.get("steady_state") if metrics.get("steady_state") in STEADY_STATES else "unknown"
    row["pad_to_multiple_of"] = coerce("pad_to_multiple_of", config.get("pad_to_multiple_of", 1), int)
    row["packing"] = coerce("packing", config.get("packing", False), bool)
    row["precision"] = metrics.get("precision") or ""
    row["n_truncated"] = (result.get("data") or {}).get("n_truncated", 0) or 0
    # GPUs that trained the run together (one process each): gpus_per_run × nodes_per_run.
    row["gpus"] = coerce("gpus_per_run", config.get("gpus_per_run", 1), int) * coerce(
        "nodes_per_run", config.get("nodes_per_run", 1), int
    )
    return row


def _steps_frame(runs: pd.DataFrame, histories: Sequence[dict[str, Any]]) -> pd.DataFrame:
    known = set(runs["run_key"])
    rows = [
        {**step, "run_key": history["run_key"], "measured": is_measured(step)}
        for history in histories
        if history.get("run_key") in known
        for step in history.get("steps") or ()
    ]
    steps = pd.DataFrame(rows)
    for column in ("run_key", "step", "warmup", "measured", *STEP_NUMBERS):
        if column not in steps:
            steps[column] = pd.Series(dtype=object)
    for column in STEP_NUMBERS:
        steps[column] = pd.to_numeric(steps[column], errors="coerce").astype(float)
    steps["step"] = pd.to_numeric(steps["step"]).astype(int)
    axes = runs[["run_key", "variant", *CELL, "repeat", "warmup_steps_to_skip"]]
    steps = steps.merge(axes, on="run_key", how="inner")
    steps["measured"] = steps["measured"].astype(bool)
    return steps


def _outcome(statuses: pd.Series) -> str:
    if (statuses == "ok").all():
        return "ok"
    if (statuses == "ok").any():
        return "partial"
    for status in ("oom", "failed", "skipped"):
        if (statuses == status).any():
            return status
    return "none"


def _cells(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (use_liger, batch, seq), group in runs.groupby(CELL, sort=True):
        ok = group[group["status"] == "ok"]
        row = {
            "variant": variant_of(use_liger),
            "use_liger": use_liger,
            "batch_size": batch,
            "seq_len": seq,
        }
        row.update({f"n_{s}": int((group["status"] == s).sum()) for s in ("ok", "oom", "failed", "skipped")})
        row["n_runs"], row["outcome"] = len(group), _outcome(group["status"])
        for kind in ("nonpad", "padded"):
            mean, low, high = mean_ci(ok[f"tokens_per_s_{kind}"])
            # A rate is never negative; a t-interval over a few noisy repeats can still reach below zero.
            low = max(low, 0.0) if math.isfinite(low) else low
            row.update({f"tokens_per_s_{kind}": mean, f"tokens_per_s_{kind}_ci_low": low})
            row[f"tokens_per_s_{kind}_ci_high"] = high
        row["gpus"] = int(group["gpus"].max())
        row["tokens_per_s_nonpad_per_gpu"] = row["tokens_per_s_nonpad"] / row["gpus"]
        row["step_time_s"] = ok["step_time_s"].median()
        row["step_time_cv_max"] = ok["step_time_cv"].max()
        row["peak_mem_allocated_gb"] = ok["peak_mem_allocated_gb"].max()
        row["peak_mem_reserved_gb"] = ok["peak_mem_reserved_gb"].max()
        row["mfu"] = ok["mfu"].mean()
        row["final_loss"] = ok["final_loss"].mean()
        row["steady_state"] = _steady_state(ok["steady_state"])
        row["drift"] = ok["drift"].loc[ok["drift"].abs().idxmax()] if ok["drift"].notna().any() else math.nan
        row["steps_needed"] = ok["steps_needed"].max()
        row["n_first_shape_steps"] = ok["n_first_shape_steps"].max()
        row["first_shape_excess_s"] = ok["first_shape_excess_s"].mean()
        rows.append(row)
    columns = [
        "variant",
        "use_liger",
        "batch_size",
        "seq_len",
        "n_runs",
        "n_ok",
        "n_oom",
        "n_failed",
        "n_skipped",
    ]
    columns += [
        "outcome",
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
        "final_loss",
        "steady_state",
        "drift",
        "steps_needed",
        "n_first_shape_steps",
        "first_shape_excess_s",
    ]
    return pd.DataFrame(rows, columns=columns)


def _steady_state(states: pd.Series) -> str:
    """A cell is unsteady when any of its runs is, steady when all are, unknown otherwise."""
    if (states == "unsteady").any():
        return "unsteady"
    return "steady" if len(states) and (states == "steady").all() else "unknown"


def _pairs(runs: pd.DataFrame) -> pd.DataFrame:
    ok = runs[runs["status"] == "ok"]
    return ok[ok["use_liger"]].merge(ok[~ok["use_liger"]], on=[*PAIR, "repeat"], suffixes=("_liger", "_vanilla"))


def _gains(cells: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    outcomes = cells.set_index(["variant", *PAIR])["outcome"]
    steadiness = cells.set_index(["variant", *PAIR])["steady_state"]
    for batch, seq in sorted(set(zip(cells["batch_size"], cells["seq_len"], strict=True))):
        group = pairs[(pairs["batch_size"] == batch) & (pairs["seq_len"] == seq)]
        gain = group["tokens_per_s_nonpad_liger"] / group["tokens_per_s_nonpad_vanilla"] - 1.0
        reserved = 1.0 - group["peak_mem_reserved_gb_liger"] / group["peak_mem_reserved_gb_vanilla"]
        allocated = 1.0 - group["peak_mem_allocated_gb_liger"] / group["peak_mem_allocated_gb_vanilla"]
        mean, low, high = (100.0 * v for v in mean_ci(gain))
        rows.append(
            {
                "batch_size": batch,
                "seq_len": seq,
                "liger_outcome": outcomes.get(("liger", batch, seq), "not run"),
                "vanilla_outcome": outcomes.get(("vanilla", batch, seq), "not run"),
                # A gain is only as steady as the less steady of its two cells.
                "steady_state": _steady_state(
                    pd.Series([steadiness.get((v, batch, seq), "unknown") for v in ("liger", "vanilla")])
                ),
                "n_pairs": len(group),
                "gain_pct": mean,
                "gain_ci_low_pct": low,
                "gain_ci_high_pct": high,
                "mem_reserved_reduction_pct": 100.0 * mean_ci(reserved)[0],
                "mem_allocated_reduction_pct": 100.0 * mean_ci(allocated)[0],
            }
        )
    columns = [
        "batch_size",
        "seq_len",
        "liger_outcome",
        "vanilla_outcome",
        "steady_state",
        "n_pairs",
        "gain_pct",
        "gain_ci_low_pct",
    ]
    columns += ["gain_ci_high_pct", "mem_reserved_reduction_pct", "mem_allocated_reduction_pct"]
    return pd.DataFrame(rows, columns=columns)


def _frontier(cells: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (variant, seq), group in cells.groupby(["variant", "seq_len"], sort=True):
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


def _parity(steps: pd.DataFrame, pairs: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    keys = [*PAIR, "repeat"]
    columns = [*keys, "liger_run", "vanilla_run", "n_steps_compared", "max_rel_diff", "step_of_max", "passed"]
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    measured = steps[steps["measured"] & steps["loss"].notna()][["run_key", "step", "loss"]]
    joined = pairs[[*keys, "run_key_liger", "run_key_vanilla"]]
    joined = joined.merge(measured.add_suffix("_l"), left_on="run_key_liger", right_on="run_key_l")
    joined = joined.merge(
        measured.add_suffix("_v"), left_on=["run_key_vanilla", "step_l"], right_on=["run_key_v", "step_v"]
    )
    joined["rel_diff"] = (joined["loss_l"] - joined["loss_v"]).abs() / joined["loss_v"].abs().clip(lower=1e-12)
    worst = (
        joined.loc[joined.groupby(keys)["rel_diff"].idxmax(), [*keys, "rel_diff", "step_l"]] if len(joined) else None
    )
    counts = joined.groupby(keys).size().rename("n_steps_compared").reset_index()
    out = pairs[[*keys, "run_key_liger", "run_key_vanilla"]].merge(counts, on=keys, how="left")
    if worst is not None:
        out = out.merge(worst, on=keys, how="left")
    else:
        out["rel_diff"], out["step_l"] = math.nan, math.nan
    out = out.rename(
        columns={"run_key_liger": "liger_run", "run_key_vanilla": "vanilla_run", "rel_diff": "max_rel_diff"}
    ).rename(columns={"step_l": "step_of_max"})
    out["n_steps_compared"] = out["n_steps_compared"].fillna(0).astype(int)
    out["passed"] = (out["max_rel_diff"] <= tolerance).astype("boolean").mask(out["n_steps_compared"] == 0)
    return out[columns].sort_values(keys, ignore_index=True)


def analyze_results(
    results: Sequence[dict[str, Any]],
    histories: Sequence[dict[str, Any]],
    *,
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE,
) -> Analysis:
    """Analyse run results (``RunResult.to_dict()``) and step histories, joined by ``run_key``.

    Args:
        results: One result dict per run, any order.
        histories: One history dict per run (``{"run_key", "warmup_steps_to_skip", "steps"}``), any
            order; a run without a history simply has no steps.
        parity_tolerance: Largest relative difference of per-step losses (measured steps only) at
            which a Liger/baseline pair still passes loss parity.

    Returns:
        The tables of an ``Analysis``.

    Raises:
        ValueError: A tolerance outside [0, 1), two results with the same run key, or a result
            without the grid axes in its config.

    """
    if not 0.0 <= parity_tolerance < 1.0:
        raise ValueError(f"parity_tolerance must be in [0, 1), got {parity_tolerance!r}")
    keys = [r.get("run_key") for r in results]
    duplicates = sorted({k for k in keys if keys.count(k) > 1}, key=str) if len(set(keys)) < len(keys) else []
    if duplicates:
        raise ValueError(f"duplicate run_key values in the results: {duplicates}; each run must report once")
    runs = pd.DataFrame([_run_row(r) for r in results], columns=RUN_COLUMNS)
    runs = runs.astype({"use_liger": bool}).sort_values(
        ["seq_len", "batch_size", "use_liger", "repeat"], ignore_index=True
    )
    steps = _steps_frame(runs, histories)
    cells = _cells(runs)
    pairs = _pairs(runs)
    problems = runs.loc[runs["status"] != "ok", ["run_key", "variant", *PAIR, "repeat", "status", "reason"]]
    return Analysis(
        runs=runs,
        steps=steps,
        cells=cells,
        gains=_gains(cells, pairs),
        frontier=_frontier(cells),
        parity=_parity(steps, pairs, parity_tolerance),
        problems=problems.reset_index(drop=True),
        environments=[r.get("environment") or {} for r in results],
        parity_tolerance=parity_tolerance,
    )


def success_ratio(results: Sequence[dict[str, Any]]) -> float:
    """Fraction of runs with status ``ok``; 0.0 when there is no run at all."""
    return sum(r.get("status") == "ok" for r in results) / len(results) if results else 0.0


def check_success_ratio(results: Sequence[dict[str, Any]], min_success_ratio: float) -> float:
    """Raise when fewer than ``min_success_ratio`` of the runs trained; call it after writing the report.

    Args:
        results: The run results.
        min_success_ratio: Required fraction of ``ok`` runs, in [0, 1].

    Returns:
        The measured success ratio.

    Raises:
        ValueError: ``min_success_ratio`` is outside [0, 1], or the measured ratio is below it.

    """
    if not 0.0 <= min_success_ratio <= 1.0:
        raise ValueError(f"min_success_ratio must be in [0, 1], got {min_success_ratio!r}")
    ratio = success_ratio(results)
    if ratio < min_success_ratio:
        counts = {s: sum(r.get("status") == s for r in results) for s in ("ok", "oom", "failed", "skipped")}
        raise ValueError(
            f"success ratio {ratio:.2f} ({counts['ok']} of {len(results)} runs ok; {counts['oom']} oom, "
            f"{counts['failed']} failed, {counts['skipped']} skipped) is below min_success_ratio="
            f"{min_success_ratio}; the report was written, see it for the reasons"
        )
    return ratio
