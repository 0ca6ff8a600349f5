"""What the numbers say, in words: the headline, the caveats, the baseline's definition and the KFP metrics.

The page's names of the variants live here ("baseline" for ``vanilla``); the data keeps its names.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from liger_bench.analyse.analysis import Analysis, status_counts, success_ratio
from liger_bench.vocabulary import RUN_STATUSES, VARIANTS, RunStatus, Variant

HIGH_CV = 0.10
# The page's names of the variants; "vanilla" stays the data name (run keys, CSV, metrics).
LABELS: dict[Variant, str] = {"liger": "Liger", "vanilla": "baseline"}
BASELINE_DEFINITION = (
    "The baseline is stock transformers: the same model, data and settings without Liger "
    "(its run keys start with vanilla-)."
)
PROBLEMS_HEADING = "Runs that did not finish"
# How a caveat counts the runs of each status but ok: "3 of 24 runs ran out of memory".
STATUS_VERBS: dict[RunStatus, str] = {
    "oom": "ran out of memory",
    "failed": "failed",
    "skipped": "were skipped",
    "diverged": "diverged (their loss became NaN or infinite; training stopped at that step)",
}


def percent(value: float, digits: int = 0) -> str:
    """A signed percentage with a true minus sign: ``+29%``, ``\u221225%``."""
    sign = "+" if value >= 0 else "\u2212"
    return f"{sign}{abs(value):.{digits}f}%"


def number(value: Any, digits: int = 1) -> str:
    """A table or sentence number: ``–`` when missing, thousands separated, whole counts without decimals."""
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def _headline_cell(analysis: Analysis) -> pd.Series | None:
    """The largest paired batch (then the longest sequence) whose gain was measured at steady state."""
    gains = analysis.gains
    paired = gains[(gains["n_pairs"] > 0) & (gains["steady_state"] != "unsteady")]
    return paired.sort_values(["batch_size", "seq_len"]).iloc[-1] if len(paired) else None


def _unsteady_phrase(analysis: Analysis) -> str:
    """Which paired cells were left out of the headline for not being steady, and what they need."""
    gains = analysis.gains
    unsteady = gains[(gains["n_pairs"] > 0) & (gains["steady_state"] == "unsteady")]
    if unsteady.empty:
        return ""
    cells = analysis.cells[analysis.cells["steady_state"] == "unsteady"]
    needed = cells["steps_needed"].max()
    where = ", ".join(_where(analysis, row.batch_size, row.seq_len) for row in unsteady.itertuples())
    advice = f"about {int(needed)} steps would be needed" if math.isfinite(needed) else "run more steps"
    return f" Not at steady state, so left out of the headline: {where} ({advice})."


def _where(analysis: Analysis, batch: int, seq: int) -> str:
    """'batch 16', plus the sequence length when the grid has several."""
    return f"batch {batch}" + (f" (seq {seq})" if analysis.runs["seq_len"].nunique() > 1 else "")


def _lone_divergence_phrase(analysis: Analysis) -> str:
    """The pairs where one variant diverged and the other trained: a numerical difference, not a setting."""
    lone = analysis.divergences[analysis.divergences["pair_status"] == "ok"]
    phrases = []
    for variant, rows in lone.groupby("variant", sort=False):
        other = "the baseline" if variant == "liger" else LABELS["liger"]
        where = ", ".join(f"{_where(analysis, r.batch_size, r.seq_len)} repeat {r.repeat}" for r in rows.itertuples())
        phrases.append(f" {LABELS[variant]} diverged where {other} trained ({where}): the variants differ numerically.")
    return "".join(phrases)


def _memory_frontier_phrase(analysis: Analysis) -> str:
    gains = analysis.gains
    liger_only = gains[(gains["liger_outcome"].isin(["ok", "partial"])) & (gains["vanilla_outcome"] == "oom")]
    vanilla_only = gains[(gains["vanilla_outcome"].isin(["ok", "partial"])) & (gains["liger_outcome"] == "oom")]
    if len(liger_only):
        row = liger_only.sort_values(["batch_size", "seq_len"]).iloc[-1]
        return f"trains {_where(analysis, row.batch_size, row.seq_len)} where the baseline runs out of memory"
    if len(vanilla_only):
        row = vanilla_only.sort_values(["batch_size", "seq_len"]).iloc[-1]
        return f"runs out of memory at {_where(analysis, row.batch_size, row.seq_len)} where the baseline trains"
    return ""


def _best_ok(analysis: Analysis, variant: Variant) -> pd.Series | None:
    ok = analysis.cells[(analysis.cells["variant"] == variant) & (analysis.cells["n_ok"] > 0)]
    return ok.sort_values(["batch_size", "seq_len"]).iloc[-1] if len(ok) else None


def make_headline(analysis: Analysis) -> str:
    """One or two plain sentences: what Liger did to throughput, memory and the largest batch."""
    runs, cells = analysis.runs, analysis.cells
    if runs.empty:
        return "No run results were collected."
    counts = runs["status"].value_counts()
    if counts.get("ok", 0) == 0:
        parts = [f"{counts[s]} {'out of memory' if s == 'oom' else s}" for s in RUN_STATUSES[1:] if s in counts]
        return f"No run trained successfully ({', '.join(parts)} of {len(runs)} runs); see the reasons below."
    cell = _headline_cell(analysis)
    variants = set(cells["variant"])
    if is_cpu(analysis):
        liger = runs[runs["variant"] == "liger"]
        skipped = (
            f", so its {len(liger)} runs were skipped" if len(liger) and (liger["status"] == "skipped").all() else ""
        )
        text = (
            "Liger was not measured: this was a CPU run. CPU numbers check the pipeline's plumbing and are not "
            f"a Liger measurement (Liger's Triton kernels need a CUDA GPU{skipped})."
        )
    elif cell is not None:
        text = f"Liger: {percent(cell.gain_pct)} tokens/s"
        if math.isfinite(cell.mem_reserved_reduction_pct):
            text += f" and {percent(-cell.mem_reserved_reduction_pct)} peak memory"
        text += f" at {_where(analysis, cell.batch_size, cell.seq_len)}"
        frontier = _memory_frontier_phrase(analysis)
        text += f"; {frontier}." if frontier else "."
    elif (analysis.gains["n_pairs"] > 0).any():
        text = "No Liger/baseline comparison reached a steady state; see the caveats."
    elif variants == set(VARIANTS):
        liger = runs[runs["variant"] == "liger"]
        baseline = _best_ok(analysis, "vanilla")
        if (liger["status"] == "skipped").all() and baseline is not None:
            text = (
                f"Liger was not measured: all its {len(liger)} runs were skipped (see the reasons below). "
                f"Baseline only: {number(baseline.tokens_per_s_nonpad, 0)} tokens/s at "
                f"{_where(analysis, baseline.batch_size, baseline.seq_len)}."
            )
        else:
            frontier = _memory_frontier_phrase(analysis)
            text = "No batch size trained with both Liger and the baseline" + (
                f"; Liger {frontier}." if frontier else "."
            )
    else:
        variant = next(iter(variants))
        best = _best_ok(analysis, variant)
        text = (
            f"Only {'the baseline' if variant == 'vanilla' else LABELS[variant]} was run, so there is no comparison: "
            f"{number(best.tokens_per_s_nonpad, 0)} tokens/s "
            f"at {_where(analysis, best.batch_size, best.seq_len)}."
        )
    text += _unsteady_phrase(analysis) + _lone_divergence_phrase(analysis)
    failures = analysis.parity[analysis.parity["passed"] == False]  # noqa: E712 - nullable boolean column
    if len(failures):
        text += (
            f" Loss parity FAILED for {len(failures)} of {len(analysis.parity)} Liger/baseline pairs "
            f"(max relative difference {failures['max_rel_diff'].max():.1%}, tolerance "
            f"{analysis.parity_tolerance:.0%})."
        )
    return text


def is_cpu(analysis: Analysis) -> bool:
    """Whether any run trained on a CPU: then Liger was skipped and nothing it measured is a Liger result."""
    return any(env.get("device") == "cpu" for env in analysis.environments)


def headline_metrics(analysis: Analysis) -> dict[str, float]:
    """Flat, finite numbers for a KFP Metrics artifact."""
    out: dict[str, Any] = {f"n_{status}": count for status, count in status_counts(analysis).items()}
    out["n_runs"] = len(analysis.runs)
    out["success_ratio"] = success_ratio(analysis)
    cell = _headline_cell(analysis)
    if cell is not None:
        out["headline_gain_pct"], out["headline_mem_reduction_pct"] = (
            cell.gain_pct,
            cell.mem_reserved_reduction_pct,
        )
    for row in analysis.gains.itertuples():
        suffix = f"bs{row.batch_size}_seq{row.seq_len}"
        out[f"liger_gain_pct_{suffix}"] = row.gain_pct
        out[f"liger_gain_ci_low_pct_{suffix}"] = row.gain_ci_low_pct
        out[f"liger_gain_ci_high_pct_{suffix}"] = row.gain_ci_high_pct
        out[f"mem_reduction_pct_{suffix}"] = row.mem_reserved_reduction_pct
    for row in analysis.cells.itertuples():
        suffix = f"{row.variant}_bs{row.batch_size}_seq{row.seq_len}"
        out[f"tokens_per_s_{suffix}"] = row.tokens_per_s_nonpad
        out[f"peak_mem_reserved_gb_{suffix}"] = row.peak_mem_reserved_gb
    for row in analysis.frontier.itertuples():
        if row.largest_ok_batch is not pd.NA:
            out[f"largest_ok_batch_{row.variant}_seq{row.seq_len}"] = row.largest_ok_batch
    out["parity_pairs"] = len(analysis.parity)
    out["parity_failures"] = int((analysis.parity["passed"] == False).sum())  # noqa: E712
    out["parity_max_rel_diff"] = analysis.parity["max_rel_diff"].max() if len(analysis.parity) else math.nan
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}


def caveats(analysis: Analysis) -> list[str]:
    """Plain-language warnings about what the numbers do not show."""
    runs, notes = analysis.runs, []
    if is_cpu(analysis):
        notes.append(
            "CPU run: Liger skipped (its kernels need a CUDA GPU); no GPU memory was measured, and the "
            "throughput checks the pipeline's plumbing: it is not a Liger measurement and says nothing about "
            "GPU training."
        )
    if analysis.model.get("embedded"):
        notes.append(
            f"The model is {analysis.model['embedded']}: its numbers check the pipeline and say nothing about "
            "fine-tuning a real model."
        )
    for row in analysis.parity[analysis.parity["passed"] == False].itertuples():  # noqa: E712
        notes.append(
            f"Loss parity failed: {row.liger_run} vs {row.vanilla_run} differ by up to "
            f"{row.max_rel_diff:.1%} "
            f"(step {row.step_of_max}; tolerance {analysis.parity_tolerance:.0%})."
        )
    for row in analysis.cells[analysis.cells["steady_state"] == "unsteady"].itertuples():
        needed = f"about {int(row.steps_needed)}" if math.isfinite(row.steps_needed) else "more than twice as many"
        notes.append(
            f"Not steady: {LABELS[row.variant]} at {_where(analysis, row.batch_size, row.seq_len)} still changed "
            f"speed by {percent(100 * row.drift, 1)} (shape-normalised step time, second half of the measured steps "
            f"vs the first); {needed} steps would be needed (raise max_steps and warmup_steps_to_skip)."
        )
    first_shape = analysis.cells.dropna(subset=["first_shape_excess_s"])
    first_shape = first_shape[first_shape["n_first_shape_steps"] > 0]
    if len(first_shape):
        per_variant = first_shape.groupby("variant")[["n_first_shape_steps", "first_shape_excess_s"]].mean()
        parts = [
            f"{LABELS[variant]} {row.n_first_shape_steps:.0f} steps, {row.first_shape_excess_s:.1f} s extra per run"
            for variant, row in per_variant.iterrows()
        ]
        notes.append(
            "Steps whose batch shape was new in the run (compilation, autotuning, allocation for that shape) are "
            f"left out of every aggregate and cost once: {'; '.join(parts)} (mean over cells)."
        )
    noisy = runs[runs["step_time_cv"] > HIGH_CV]
    if len(noisy):
        notes.append(
            f"High step-time variation (step CV > {HIGH_CV:.0%}) in {len(noisy)} runs, e.g. "
            f"{', '.join(noisy['run_key'].head(5))}: the node may have been shared or throttled."
        )
    ok = runs[runs["status"] == "ok"]
    if len(ok) and ok.groupby(["variant", "batch_size", "seq_len"]).size().max() < 2:
        notes.append("One repeat per cell: confidence intervals are unavailable; use n_runs >= 3 for them.")
    for status in RUN_STATUSES[1:]:
        n = int((runs["status"] == status).sum())
        if n:
            verb = STATUS_VERBS[status]
            notes.append(f"{n} of {len(runs)} runs {verb}; their reasons are listed under '{PROBLEMS_HEADING}'.")
    diverged = analysis.divergences
    if len(diverged):
        notes.append(
            "Diverged runs are left out of every gain, the headline and loss parity; the first non-finite loss: "
            + ", ".join(f"{row.run_key} at step {row.first_nonfinite_loss_step:.0f}" for row in diverged.itertuples())
            + "."
        )
    gpus = {env.get("gpu_name") for env in analysis.environments if env.get("gpu_name")}
    if len(gpus) > 1:
        notes.append(f"Runs ran on different GPUs ({', '.join(sorted(gpus))}); compare cells with care.")
    if len(ok) and ok["mfu"].isna().all() and not is_cpu(analysis):
        notes.append("MFU not reported: the GPU's peak FLOP/s is unknown (set peak_tflops).")
    if (ok["n_truncated"] > 0).any():
        notes.append(f"Up to {int(ok['n_truncated'].max())} training rows were truncated at max_seq_length.")
    if analysis.untracked:
        first = next(iter(analysis.untracked.values()))
        notes.append(f"{len(analysis.untracked)} of {len(runs)} runs not in MLflow. {first}.")
    return notes
