"""What the numbers say, in words: headline, recommendation, caveats, the baseline's definition, KFP metrics.

The page's names of the variants live here ("Liger + compile" for ``liger-compile``); the data keeps its names.
Every sentence is read off the analysis' tables (cells, gains, recommendations): a variant is recommended
only from a cell that trained in every repeat at steady state, and two variants whose 95% intervals
overlap are said to be indistinguishable.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from liger_bench.analyse.analysis import COST_DIGITS, Analysis, status_counts, success_ratio
from liger_bench.analyse.attribution import supported_carriers
from liger_bench.analyse.runtables import recommendable
from liger_bench.plan.frontier import SEQ_GRANULE
from liger_bench.vocabulary import BASELINE, RUN_STATUSES, RunStatus, Variant, ablated_kernel

HIGH_CV = 0.10
# The page's names of the variants; the data names stay in run keys, CSV and metrics.
LABELS: dict[Variant, str] = {
    "baseline": "baseline",
    "liger": "Liger",
    "compile": "torch.compile",
    "liger-compile": "Liger + torch.compile",
}
BASELINE_DEFINITION = (
    "The baseline is stock, eager transformers: the same model, data and settings without Liger and without "
    "torch.compile (its run keys start with baseline-). Every gain is against it; Liger is also compared with "
    "torch.compile head to head."
)
SEARCH_RULE = (
    "Per variant and sequence length, before the grid's runs: the largest per-device batch that trains "
    "frontier_probe_steps full steps (forward, backward, optimizer) of rows packed to max_seq_length tokens, each "
    "probe in a fresh process (one whose process died is run once more), searched from the largest batch the grid "
    'trains there (1 where it has only "max"), doubling the batch (or halving it while it runs out of memory) '
    "and then bisecting between the largest that fit and the first that ran out of memory. A variant fits more "
    "sequences than the baseline only where it trained a batch at which the baseline ran out of memory."
)
FIT_RATE_TEXT = (
    'Each variant the grid ran at its own largest fit ("max"), against the baseline at its own: what each '
    "does with all of the GPU's memory. A rate is shown where the variant trained there in every repeat and "
    "was not found unsteady; the gain pairs the runs by repeat: the mean of the per-repeat ratios with a 95% "
    "Student-t interval."
)
SEQUENCE_SEARCH_RULE = (
    "Per variant, at the batch frontier_seq_batch_size: the longest max_seq_length that trains the same probe "
    f"steps, every sequence packed full to that length, searched in multiples of {SEQ_GRANULE} tokens from the "
    "variant's longest grid max_seq_length, doubling (or halving while it runs out of memory) and "
    "then bisecting, up to the model's context length. A dataset too short to fill the lengths ends the search "
    "with that reason, never with shorter sequences."
)
RECOMMENDATION_RULE = (
    "Per batch size and sequence length: the fastest variant (mean non-padding tokens/s, 95% CI over repeats) "
    "and the leanest (peak reserved memory) among those that trained in every repeat at steady state; a "
    "variant whose CI overlaps the fastest's cannot be told apart from it. Failed, out-of-memory, skipped and "
    "unsteady variants are never recommended and are named with the reason. With a gpu_hour_price, the "
    "cheapest per token is named only when its cost's 95% CI is apart from every other candidate's."
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


def label(variant: str) -> str:
    """The page's name of a variant: ``LABELS``, or the issue's notation for an ablation arm (``Liger [rope]``)."""
    arm = ablated_kernel(variant)
    if arm is None:
        return LABELS[variant]  # type: ignore[index] - not an arm: one of VARIANTS
    kernel, alone = arm
    return f"Liger [{'' if alone else chr(0x2212)}{kernel}]"


def _headline_cell(analysis: Analysis) -> pd.Series | None:
    """The recommendation the headline states: of the largest (batch, then seq) cell with one.

    Cells where the baseline trained and another variant ran come first, so that a gain (or why there
    is none) can be stated: with ``"max"`` in the grid, a variant's own largest fit is a cell it ran
    alone, and a "fastest" of one says nothing (``_fit_rate_phrase`` compares the variants at their fits).
    """
    recommended = analysis.recommendations[analysis.recommendations["fastest"] != ""]
    cells = analysis.cells
    baseline = cells[(cells["variant"] == BASELINE) & recommendable(cells)]
    others = cells.loc[cells["variant"] != BASELINE, ["batch_size", "seq_len"]].drop_duplicates()
    compared_cells = baseline[["batch_size", "seq_len"]].merge(others, on=["batch_size", "seq_len"])
    compared = recommended.merge(compared_cells, on=["batch_size", "seq_len"])
    # Else a cell where variants met (one that failed there is named as not recommended); any, with one variant.
    ran = cells.groupby(["batch_size", "seq_len"])["variant"].nunique()
    met = recommended.merge(ran[ran > 1].reset_index()[["batch_size", "seq_len"]], on=["batch_size", "seq_len"])
    if len(compared):
        chosen = compared
    elif len(met):
        chosen = met
    elif cells["variant"].nunique() == 1:
        chosen = recommended
    else:
        return None
    return chosen.sort_values(["batch_size", "seq_len"]).iloc[-1] if len(chosen) else None


def _gain_row(analysis: Analysis, variant: Variant, against: Variant, batch: int, seq: int) -> pd.Series | None:
    gains = analysis.gains
    rows = gains[
        (gains["variant"] == variant)
        & (gains["against"] == against)
        & (gains["batch_size"] == batch)
        & (gains["seq_len"] == seq)
        & (gains["n_pairs"] > 0)
    ]
    return rows.iloc[0] if len(rows) else None


def _ci(low: float, high: float, digits: int = 0, unit: str = "") -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no 95% CI: one repeat"
    return f"95% CI {low:,.{digits}f}{unit} to {high:,.{digits}f}{unit}"


def recommendation(analysis: Analysis, row: pd.Series) -> str:
    """The recommendation of one (batch, seq) row of ``analysis.recommendations``, in sentences.

    Args:
        analysis: The analysed runs.
        row: A row of ``analysis.recommendations``.
    """
    where = _where(analysis, row.batch_size, row.seq_len)
    parts = []
    if row.fastest:
        text = (
            f"At {where} the fastest variant that trained is {label(row.fastest)}: "
            f"{number(row.fastest_tokens_per_s, 0)} tokens/s ({_ci(row.fastest_ci_low, row.fastest_ci_high)})"
        )
        gain = _gain_row(analysis, row.fastest, BASELINE, row.batch_size, row.seq_len)
        if gain is not None:
            text += (
                f", {percent(gain.gain_pct)} vs the baseline "
                f"({_ci(gain.gain_ci_low_pct, gain.gain_ci_high_pct, 1, '%')})"
            )
        ties = [variant for variant in row.fastest_ties.split(", ") if variant]
        if ties:
            text += f"; indistinguishable from {_join([label(v) for v in ties])} (overlapping 95% CIs)"
        elif not row.ranked:
            text += "; one repeat, so the ranking has no confidence interval (use n_runs >= 3)"
        parts.append(text + ".")
        if row.leanest:
            parts.append(
                f"Leanest: {label(row.leanest)}, {number(row.leanest_peak_mem_reserved_gb, 1)} GiB peak reserved."
            )
        if row.cheapest:
            parts.append(
                f"Cheapest per token: {label(row.cheapest)}, {number(row.cheapest_cost_per_mtok, COST_DIGITS)} "
                f"per million tokens at {number(analysis.gpu_hour_price, 2)} per GPU-hour."
            )
    if row.excluded:
        parts.append(f"Not recommended at {where}: {row.excluded}.")
    return " ".join(parts)


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _unsteady_phrase(analysis: Analysis) -> str:
    """Which cells were left out of the recommendation for not being steady, and what they need."""
    cells = analysis.cells[(analysis.cells["steady_state"] == "unsteady") & (analysis.cells["outcome"] == "ok")]
    if cells.empty:
        return ""
    needed = cells["steps_needed"].max()
    where = _join(sorted({_where(analysis, row.batch_size, row.seq_len) for row in cells.itertuples()}))
    advice = f"about {int(needed)} steps would be needed" if math.isfinite(needed) else "run more steps"
    return f" Not at steady state, so never recommended: {where} ({advice})."


def _where(analysis: Analysis, batch: int, seq: int) -> str:
    """'batch 16', plus the sequence length when the grid has several."""
    return f"batch {batch}" + (f" (seq {seq})" if analysis.runs["seq_len"].nunique() > 1 else "")


def _lone_divergence_phrase(analysis: Analysis) -> str:
    """The pairs where one variant diverged and the other trained: a numerical difference, not a setting."""
    lone = analysis.divergences[analysis.divergences["pair_status"] == "ok"]
    phrases = []
    for variant, rows in lone.groupby("variant", sort=False):
        other = "the baseline" if variant != BASELINE else LABELS["liger"]
        where = ", ".join(f"{_where(analysis, r.batch_size, r.seq_len)} repeat {r.repeat}" for r in rows.itertuples())
        phrases.append(f" {label(variant)} diverged where {other} trained ({where}): the variants differ numerically.")
    return "".join(phrases)


def _memory_frontier_phrase(analysis: Analysis) -> str:
    """The largest batch some variant trains where the baseline runs out of memory."""
    gains = analysis.gains[analysis.gains["against"] == BASELINE]
    beyond = gains[(gains["variant_outcome"].isin(["ok", "partial"])) & (gains["against_outcome"] == "oom")]
    if beyond.empty:
        return ""
    batch, seq = beyond.sort_values(["batch_size", "seq_len"]).iloc[-1][["batch_size", "seq_len"]]
    variants = beyond[(beyond["batch_size"] == batch) & (beyond["seq_len"] == seq)]["variant"]
    return (
        f" {_join([label(v) for v in variants])} {'trains' if len(variants) == 1 else 'train'} "
        f"{_where(analysis, batch, seq)} where the baseline runs out of memory."
    )


def searched_frontier_phrase(analysis: Analysis) -> str:
    """Each variant that fits more (or fewer) sequences than the baseline, by search, e.g. '+20%'."""
    phrases = []
    for row in analysis.frontier_gains.itertuples():
        least = "at least " if row.at_least else ""
        phrases.append(
            f" {label(row.variant)} fits {least}{row.largest_fit:,} sequences of {row.seq_len:,} tokens where the "
            f"baseline fits {row.baseline_largest_fit:,} ({percent(row.gain_pct, 0)}{' or more' if least else ''})."
        )
    for row in analysis.sequence_gains.itertuples():
        least = "at least " if row.at_least else ""
        phrases.append(
            f" {label(row.variant)} fits {least}{row.longest_fit:,}-token sequences at batch {row.batch_size:,} where "
            f"the baseline fits {row.baseline_longest_fit:,} ({percent(row.gain_pct, 0)}{' or more' if least else ''})."
        )
    return "".join(phrases)


def _fit_rate_phrase(analysis: Analysis, headline_cell: pd.Series | None) -> str:
    """Each variant at its own largest fit against the baseline at its own, where both trained there.

    Left out where both fit the same batch and that is the headline's cell: its gain says it already.
    """
    rows = analysis.fit_rates
    several = analysis.runs["seq_len"].nunique() > 1
    phrases = []
    for seq, group in rows.groupby("seq_len", sort=True):
        base = group[group["variant"] == BASELINE]
        paired = group[(group["variant"] != BASELINE) & (group["n_pairs"] > 0)]
        said = headline_cell is not None and headline_cell.seq_len == seq
        if said and base["largest_fit"].max() == headline_cell.batch_size:
            paired = paired[paired["largest_fit"] != headline_cell.batch_size]
        for row in paired.itertuples():
            tokens = f" of {seq:,} tokens" if several else ""
            phrases.append(
                f" At its own largest fit, {label(row.variant)} trains {number(row.tokens_per_s_nonpad, 0)} tokens/s "
                f"(batch {row.largest_fit:,}{tokens}), {percent(row.gain_pct)} vs the baseline at its own "
                f"({number(base['tokens_per_s_nonpad'].iloc[0], 0)} tokens/s at batch {base['largest_fit'].iloc[0]:,}; "
                f"{_ci(row.gain_ci_low_pct, row.gain_ci_high_pct, 1, '%')})."
            )
    return "".join(phrases)


def _attribution_phrase(analysis: Analysis) -> str:
    """Which kernels carry the gain and the memory saving, at the largest (batch, then seq) cell with a pair.

    A kernel is named only when its gain (its memory reduction) alone is above zero by its 95% CI; the
    interaction is named only when its CI excludes zero.
    """
    rows = analysis.attribution[analysis.attribution["alone_n_pairs"] > 0]
    if rows.empty:
        return ""
    batch, seq = rows.sort_values(["batch_size", "seq_len"]).iloc[-1][["batch_size", "seq_len"]]
    cell = rows[(rows["batch_size"] == batch) & (rows["seq_len"] == seq)]
    where = _where(analysis, batch, seq)
    if not cell["alone_gain_pct_ci_low"].notna().any():
        return f" Kernel ablation at {where}: one repeat, so no kernel is named as carrying the gain (use n_runs >= 3)."
    carriers = supported_carriers(cell)
    if carriers:
        text = (
            f" At {where}, the gain is carried by {_kernels_with_ci(cell, carriers, 'alone_gain_pct', signed=True)}: "
            "alone, faster than the baseline by their 95% CIs." + _interaction_clause(analysis, batch, seq)
        )
    else:
        text = f" Kernel ablation at {where}: no kernel alone is faster than the baseline by its 95% CI."
    return text + _memory_carriers(cell)


def _interaction_clause(analysis: Analysis, batch: int, seq: int) -> str:
    """All kernels' gain against the sum of the singles' at one cell, where its 95% CI excludes zero; else ""."""
    together = analysis.interaction[
        (analysis.interaction["batch_size"] == batch) & (analysis.interaction["seq_len"] == seq)
    ]
    if not len(together):
        return ""
    row = together.iloc[0]
    if not (row.interaction_pct_ci_low > 0 or row.interaction_pct_ci_high < 0):
        return ""
    more = "more" if row.interaction_pct > 0 else "less"
    return (
        f" All kernels together gain {percent(row.all_kernels_gain_pct, 1)}, {abs(row.interaction_pct):.1f} "
        f"points {more} than the sum of the singles "
        f"({_ci(row.interaction_pct_ci_low, row.interaction_pct_ci_high, 1)})."
    )


def _kernels_with_ci(cell: pd.DataFrame, kernels: list[str], value: str, signed: bool) -> str:
    """``kernel (+G%, 95% CI L% to H%)`` (``G%`` when not ``signed``), joined: ``value`` per kernel of one cell."""
    by_kernel = cell.set_index("kernel")
    named = []
    for kernel in kernels:
        mean = by_kernel.at[kernel, value]
        shown = percent(mean, 1) if signed else f"{mean:.1f}%"
        ci = _ci(by_kernel.at[kernel, f"{value}_ci_low"], by_kernel.at[kernel, f"{value}_ci_high"], 1, "%")
        named.append(f"{kernel} ({shown}, {ci})")
    return _join(named)


def _memory_carriers(cell: pd.DataFrame) -> str:
    """The kernels whose peak allocated memory alone is below the baseline's by their 95% CIs; "" when none."""
    savers = supported_carriers(cell, "alone_mem_reduction_pct")
    if not savers:
        return ""
    named = _kernels_with_ci(cell, savers, "alone_mem_reduction_pct", signed=False)
    return (
        f" The memory saving is carried by {named}: alone, less peak allocated memory than the baseline by their "
        "95% CIs."
    )


def make_headline(analysis: Analysis) -> str:
    """A few plain sentences: which variant to turn on at the largest measured batch, and why, from the numbers."""
    runs = analysis.runs
    if runs.empty:
        return "No run results were collected."
    counts = runs["status"].value_counts()
    if counts.get("ok", 0) == 0:
        parts = [f"{counts[s]} {'out of memory' if s == 'oom' else s}" for s in RUN_STATUSES[1:] if s in counts]
        return f"No run trained successfully ({', '.join(parts)} of {len(runs)} runs); see the reasons below."
    text = ""
    if is_cpu(analysis):
        liger = runs[runs["use_liger"]]
        skipped = (
            f", so its {len(liger)} runs were skipped" if len(liger) and (liger["status"] == "skipped").all() else ""
        )
        text = (
            "Liger was not measured: this was a CPU run. CPU numbers check the pipeline's plumbing and are not "
            f"a Liger or GPU measurement (Liger's Triton kernels need a CUDA GPU{skipped}). "
        )
    cell = _headline_cell(analysis)
    at_fits = _fit_rate_phrase(analysis, cell)
    if cell is not None:
        text += recommendation(analysis, cell)
    elif at_fits:
        pass  # each variant ran at its own largest fit only: the clause below compares them there
    elif (analysis.recommendations["fastest"] != "").any():
        text += (
            "No batch size and sequence length trained more than one variant, so no cell compares them; "
            "each variant's rate is in the tables below."
        )
    elif (analysis.cells["outcome"] == "ok").any():
        text += "No variant trained at steady state in every repeat, so none is recommended; see the caveats."
    else:
        text += "No variant trained in every repeat of a cell, so none is recommended; see the reasons below."
    text += _memory_frontier_phrase(analysis) + searched_frontier_phrase(analysis) + at_fits
    if set(analysis.cells["variant"]) == {BASELINE}:
        text += " Only the baseline was run, so there is no comparison."
    text += _attribution_phrase(analysis) + _unsteady_phrase(analysis) + _lone_divergence_phrase(analysis)
    failures = analysis.parity[analysis.parity["passed"] == False]  # noqa: E712 - nullable boolean column
    if len(failures):
        text += (
            f" Loss parity FAILED for {len(failures)} of {len(analysis.parity)} variant/baseline pairs "
            f"(max relative difference {failures['max_rel_diff'].max():.1%}, tolerance "
            f"{analysis.parity_tolerance:.0%})."
        )
    return text.strip()


def is_cpu(analysis: Analysis) -> bool:
    """Whether any run trained on a CPU: then Liger was skipped and nothing it measured is a Liger result."""
    return any(env.get("device") == "cpu" for env in analysis.environments)


def headline_metrics(analysis: Analysis) -> dict[str, float]:
    """Flat, finite numbers for a KFP Metrics artifact."""
    out: dict[str, Any] = {f"n_{status}": count for status, count in status_counts(analysis).items()}
    out["n_runs"] = len(analysis.runs)
    out["success_ratio"] = success_ratio(analysis)
    for row in analysis.gains.itertuples():
        suffix = f"{row.variant}_vs_{row.against}_bs{row.batch_size}_seq{row.seq_len}"
        out[f"gain_pct_{suffix}"] = row.gain_pct
        out[f"gain_ci_low_pct_{suffix}"] = row.gain_ci_low_pct
        out[f"gain_ci_high_pct_{suffix}"] = row.gain_ci_high_pct
        out[f"mem_reduction_pct_{suffix}"] = row.mem_reserved_reduction_pct
        out[f"payback_steps_{suffix}"] = row.payback_steps
    for row in analysis.cells.itertuples():
        suffix = f"{row.variant}_bs{row.batch_size}_seq{row.seq_len}"
        out[f"tokens_per_s_{suffix}"] = row.tokens_per_s_nonpad
        out[f"peak_mem_reserved_gb_{suffix}"] = row.peak_mem_reserved_gb
        out[f"compile_time_s_{suffix}"] = row.compile_time_s
        out[f"recompiles_{suffix}"] = row.recompiles
        out[f"cost_per_mtok_{suffix}"] = row.cost_per_mtok
        out[f"kwh_per_mtok_{suffix}"] = row.kwh_per_mtok
    headline = _headline_cell(analysis)
    if headline is not None and headline.cheapest:
        # The headline's cost figure: what a million tokens cost with the variant it names as cheapest.
        out["cheapest_cost_per_mtok"] = headline.cheapest_cost_per_mtok
    for row in analysis.searches.itertuples():
        if row.largest_fit is not pd.NA:
            out[f"largest_fit_{row.variant}_seq{row.seq_len}"] = row.largest_fit
    for row in analysis.fit_rates.itertuples():
        out[f"fit_gain_pct_{row.variant}_seq{row.seq_len}"] = row.gain_pct
    for row in analysis.sequence_searches.itertuples():
        if row.longest_fit is not pd.NA:
            out[f"longest_fit_{row.variant}_bs{row.batch_size}"] = row.longest_fit
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
            "GPU training, nor about torch.compile on a GPU."
        )
    skipped = analysis.searches[analysis.searches["end"] == "skipped"]
    if len(skipped):
        notes.append(
            f"The memory frontier was not searched ({'; '.join(sorted(set(skipped['reason'])))}): the frontier "
            "table shows no largest batch."
        )
    if analysis.model.get("embedded"):
        notes.append(
            f"The model is {analysis.model['embedded']}: its numbers check the pipeline and say nothing about "
            "fine-tuning a real model."
        )
    for row in analysis.parity[analysis.parity["passed"] == False].itertuples():  # noqa: E712
        notes.append(
            f"Loss parity failed: {row.variant_run} vs {row.baseline_run} differ by up to "
            f"{row.max_rel_diff:.1%} "
            f"(step {row.step_of_max}; tolerance {analysis.parity_tolerance:.0%})."
        )
    for row in analysis.cells[analysis.cells["steady_state"] == "unsteady"].itertuples():
        needed = f"about {int(row.steps_needed)}" if math.isfinite(row.steps_needed) else "more than twice as many"
        notes.append(
            f"Not steady: {label(row.variant)} at {_where(analysis, row.batch_size, row.seq_len)} still changed "
            f"speed by {percent(100 * row.drift, 1)} (shape-normalised step time, second half of the measured steps "
            f"vs the first); {needed} steps would be needed (raise max_steps and warmup_steps_to_skip)."
        )
    first_shape = analysis.cells.dropna(subset=["first_shape_excess_s"])
    first_shape = first_shape[first_shape["n_first_shape_steps"] > 0]
    if len(first_shape):
        per_variant = first_shape.groupby("variant")[["n_first_shape_steps", "first_shape_excess_s"]].mean()
        parts = [
            f"{label(variant)} {row.n_first_shape_steps:.0f} steps, {row.first_shape_excess_s:.1f} s extra per run"
            for variant, row in per_variant.iterrows()
        ]
        notes.append(
            "Steps whose batch shape was new in the run (compilation, autotuning, allocation for that shape) are "
            f"left out of every aggregate and cost once: {'; '.join(parts)} (mean over cells)."
        )
    notes += _compile_notes(analysis)
    notes += _cost_and_energy_notes(analysis)
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


def _cost_and_energy_notes(analysis: Analysis) -> list[str]:
    """What the cost per token counts, and why energy is missing where it is."""
    notes = []
    if analysis.gpu_hour_price is not None:
        notes.append(
            f"Cost per million non-padding tokens: {number(analysis.gpu_hour_price, 2)} per GPU-hour × the run's "
            "GPUs × the time its measured steps take for a million tokens; warm-up, new batch shapes, "
            "torch.compile and the pipeline's other tasks are not counted."
        )
    trained = analysis.cells[analysis.cells["n_ok"] > 0]
    for reason, group in trained[trained["energy_unavailable"] != ""].groupby("energy_unavailable", sort=False):
        notes.append(f"Energy unavailable ({reason}) for {len(group)} of {len(trained)} cells that trained.")
    return notes


def _compile_notes(analysis: Analysis) -> list[str]:
    """torch.compile's one-off cost per compiled cell: time, recompiles, and the steps that pay it back."""
    compiled = analysis.cells[analysis.cells["torch_compile"] & (analysis.cells["n_ok"] > 0)]
    gains = analysis.gains[analysis.gains["against"] == BASELINE].set_index(["variant", "batch_size", "seq_len"])
    notes = []
    for row in compiled.itertuples():
        key = (row.variant, row.batch_size, row.seq_len)
        payback = gains["payback_steps"].get(key, math.nan)
        if math.isinf(payback):
            paid = "it never pays back: its steady rate is not above the baseline's"
        elif math.isfinite(payback):
            paid = f"paid back after about {math.ceil(payback):,} steps at its gain over the baseline's steady rate"
        else:
            paid = "no payback without a baseline to compare with"
        notes.append(
            f"torch.compile's one-off cost, left out of every aggregate: {label(row.variant)} at "
            f"{_where(analysis, row.batch_size, row.seq_len)} spent {number(row.compile_time_s, 1)} s compiling "
            f"({number(row.n_compile_steps, 0)} steps, {number(row.recompiles, 0)} recompiles per run); {paid}."
        )
    return notes
