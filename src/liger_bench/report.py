"""The benchmark report: a self-contained HTML page, a Markdown summary, headline metrics and a table.

The page makes no network request (figures are PNG data URIs, styles inline, no script) so it
renders the same from disk, in the Kubeflow UI's sandboxed iframe and on an air-gapped cluster.
Every text that comes from run results is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from liger_bench.analysis import DEFAULT_PARITY_TOLERANCE, Analysis, analyze_results
from liger_bench.metrics import STEADY_DRIFT_TOLERANCE
from liger_bench.records import write_text_atomic

DEFAULT_TITLE = "Liger Kernel fine-tuning benchmark"
HIGH_CV = 0.10
MAX_CURVE_PANELS = 12
# The page's names of the variants; "vanilla" stays the data name (run keys, CSV, metrics).
LABELS = {"liger": "Liger", "vanilla": "baseline"}
BASELINE_DEFINITION = (
    "The baseline is stock transformers: the same model, data and settings without Liger "
    "(its run keys start with vanilla-)."
)
PAGE_WIDTH_IN = 12.4  # figure width in inches: at 90 dpi about the page's 1150 px text width
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;background:#fff}
main{max-width:1150px;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.headline{font-size:1.2rem;font-weight:600;background:#eef5ff;border-left:4px solid #2a6fdb;
padding:.6rem .9rem}
.caveats li{margin:.2rem 0}.fail{color:#b00020;font-weight:600}.pass{color:#1b7f3b}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.2rem .45rem;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.text,th.text{text-align:left}
.scroll{overflow-x:auto}img{max-width:100%;height:auto;display:block;margin:.5rem 0}
.missing{font-style:italic;color:#555}
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass
class ReportBundle:
    """Everything analyze_results writes."""

    html: str
    markdown: str
    metrics: dict[str, float]
    table: pd.DataFrame
    headline: str


def _pct(value: float, digits: int = 0) -> str:
    sign = "+" if value >= 0 else "\u2212"
    return f"{sign}{abs(value):.{digits}f}%"


def _num(value: Any, digits: int = 1) -> str:
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


def _best_ok(analysis: Analysis, variant: str) -> pd.Series | None:
    ok = analysis.cells[(analysis.cells["variant"] == variant) & (analysis.cells["n_ok"] > 0)]
    return ok.sort_values(["batch_size", "seq_len"]).iloc[-1] if len(ok) else None


def make_headline(analysis: Analysis) -> str:
    """One or two plain sentences: what Liger did to throughput, memory and the largest batch."""
    runs, cells = analysis.runs, analysis.cells
    if runs.empty:
        return "No run results were collected."
    counts = runs["status"].value_counts()
    if counts.get("ok", 0) == 0:
        parts = [
            f"{counts[s]} {'out of memory' if s == 'oom' else s}" for s in ("oom", "failed", "skipped") if s in counts
        ]
        return f"No run trained successfully ({', '.join(parts)} of {len(runs)} runs); see the reasons below."
    cell = _headline_cell(analysis)
    variants = set(cells["variant"])
    if _is_cpu(analysis):
        liger = runs[runs["variant"] == "liger"]
        skipped = (
            f", so its {len(liger)} runs were skipped" if len(liger) and (liger["status"] == "skipped").all() else ""
        )
        text = (
            "Liger was not measured: this was a CPU run. CPU numbers check the pipeline's plumbing and are not "
            f"a Liger measurement (Liger's Triton kernels need a CUDA GPU{skipped})."
        )
    elif cell is not None:
        text = f"Liger: {_pct(cell.gain_pct)} tokens/s"
        if math.isfinite(cell.mem_reserved_reduction_pct):
            text += f" and {_pct(-cell.mem_reserved_reduction_pct)} peak memory"
        text += f" at {_where(analysis, cell.batch_size, cell.seq_len)}"
        frontier = _memory_frontier_phrase(analysis)
        text += f"; {frontier}." if frontier else "."
    elif (analysis.gains["n_pairs"] > 0).any():
        text = "No Liger/baseline comparison reached a steady state; see the caveats."
    elif variants == {"liger", "vanilla"}:
        liger = runs[runs["variant"] == "liger"]
        baseline = _best_ok(analysis, "vanilla")
        if (liger["status"] == "skipped").all() and baseline is not None:
            text = (
                f"Liger was not measured: all its {len(liger)} runs were skipped (see the reasons below). "
                f"Baseline only: {_num(baseline.tokens_per_s_nonpad, 0)} tokens/s at "
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
            f"{_num(best.tokens_per_s_nonpad, 0)} tokens/s "
            f"at {_where(analysis, best.batch_size, best.seq_len)}."
        )
    text += _unsteady_phrase(analysis)
    failures = analysis.parity[analysis.parity["passed"] == False]  # noqa: E712 - nullable boolean column
    if len(failures):
        text += (
            f" Loss parity FAILED for {len(failures)} of {len(analysis.parity)} Liger/baseline pairs "
            f"(max relative difference {failures['max_rel_diff'].max():.1%}, tolerance "
            f"{analysis.parity_tolerance:.0%})."
        )
    return text


def _is_cpu(analysis: Analysis) -> bool:
    return any(env.get("device") == "cpu" for env in analysis.environments)


def headline_metrics(analysis: Analysis) -> dict[str, float]:
    """Flat, finite numbers for a KFP Metrics artifact."""
    runs = analysis.runs
    out: dict[str, Any] = {f"n_{s}": (runs["status"] == s).sum() for s in ("ok", "oom", "failed", "skipped")}
    out["n_runs"] = len(runs)
    out["success_ratio"] = out["n_ok"] / len(runs) if len(runs) else 0.0
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
    if _is_cpu(analysis):
        notes.append(
            "CPU run: Liger skipped (its kernels need a CUDA GPU); no GPU memory was measured, and the "
            "throughput checks the pipeline's plumbing: it is not a Liger measurement and says nothing about "
            "GPU training."
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
            f"speed by {_pct(100 * row.drift, 1)} (shape-normalised step time, second half of the measured steps "
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
    for status, verb in (("failed", "failed"), ("oom", "ran out of memory"), ("skipped", "were skipped")):
        n = int((runs["status"] == status).sum())
        if n:
            notes.append(f"{n} of {len(runs)} runs {verb}; their reasons are listed under 'Runs that did not train'.")
    gpus = {env.get("gpu_name") for env in analysis.environments if env.get("gpu_name")}
    if len(gpus) > 1:
        notes.append(f"Runs ran on different GPUs ({', '.join(sorted(gpus))}); compare cells with care.")
    if len(ok) and ok["mfu"].isna().all() and not _is_cpu(analysis):
        notes.append("MFU not reported: the GPU's peak FLOP/s is unknown (set peak_tflops).")
    if (ok["n_truncated"] > 0).any():
        notes.append(f"Up to {int(ok['n_truncated'].max())} training rows were truncated at max_seq_length.")
    return notes


def _data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(n_panels: int, n_cols: int, height: float):
    """Panels filling the page's width, ``n_cols`` at most per row."""
    from matplotlib.figure import Figure

    n_cols = min(n_cols, n_panels)
    n_rows = math.ceil(n_panels / n_cols)
    fig = Figure(figsize=(PAGE_WIDTH_IN, height * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _bars(analysis: Analysis, value: str, ylabel: str, capacity: float = 0.0) -> str:
    """Grouped bars per batch size, one panel per sequence length.

    A cell without an ok run gets no bar (a made-up height would read as a value): a cross on the
    axis and its outcome written above it.
    """
    import seaborn as sns

    cells = analysis.cells
    seqs = sorted(cells["seq_len"].unique())
    variants = [v for v in ("vanilla", "liger") if v in set(cells["variant"])]
    colors = dict(zip(("vanilla", "liger"), sns.color_palette("colorblind", 2), strict=True))
    fig, axes = _figure(len(seqs), 2, 4.2)
    for ax, seq in zip(axes, seqs, strict=True):
        panel = cells[cells["seq_len"] == seq]
        batches = sorted(panel["batch_size"].unique())
        highs = [panel[value], panel.get(f"{value}_ci_high", panel[value])]
        top = max([float(h.max()) for h in highs if h.notna().any()] + [capacity, 1e-9])
        width = 0.8 / len(variants)
        for i, variant in enumerate(variants):
            for x, batch in enumerate(batches):
                row = panel[(panel["variant"] == variant) & (panel["batch_size"] == batch)]
                if row.empty:
                    continue
                row = row.iloc[0]
                pos = x - 0.4 + width * (i + 0.5)
                if row.n_ok > 0 and math.isfinite(row[value]):
                    low, high = row.get(f"{value}_ci_low", math.nan), row.get(f"{value}_ci_high", math.nan)
                    err = [[row[value] - low], [high - row[value]]] if math.isfinite(low) else None
                    ax.bar(pos, row[value], width, color=colors[variant], yerr=err, capsize=3)
                    continue
                label = "out of memory" if row.outcome == "oom" else row.outcome if row.n_ok == 0 else "no data"
                ax.plot(pos, 0, marker="X", markersize=10, color=colors[variant], clip_on=False, zorder=3)
                ax.annotate(
                    label,
                    (pos, 0),
                    xytext=(0, 9),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    rotation=90,
                    fontsize=10,
                    weight="bold",
                    color=colors[variant],
                )
        if capacity:
            ax.axhline(capacity, color="#b00020", linestyle="--", linewidth=1.2, label=f"GPU memory {capacity:g} GiB")
        for variant in variants:
            ax.bar(0, 0, 0, color=colors[variant], label=LABELS[variant])
        ax.set(xticks=range(len(batches)), xticklabels=batches, xlabel="per-device batch size", ylabel=ylabel)
        ax.set_ylim(0, top * 1.15)
        ax.set_title(f"sequence length {seq}")
        ax.legend(fontsize=10, loc="upper left")
    return _data_uri(fig)


def _curve_runs(analysis: Analysis) -> list[tuple[int, int, int]]:
    """(batch, seq, repeat) per cell: a parity failure first, else the first repeat with an ok run."""
    failing = analysis.parity[analysis.parity["passed"] == False]  # noqa: E712
    chosen = {(r.batch_size, r.seq_len): r.repeat for r in failing.itertuples()}
    ok = analysis.runs[analysis.runs["status"] == "ok"].sort_values("repeat")
    for r in ok.itertuples():
        chosen.setdefault((r.batch_size, r.seq_len), r.repeat)
    order = sorted(
        chosen,
        key=lambda cell: (
            cell not in {(r.batch_size, r.seq_len) for r in failing.itertuples()},
            cell[1],
            cell[0],
        ),
    )
    return [(*cell, chosen[cell]) for cell in order[:MAX_CURVE_PANELS]]


def _curves(analysis: Analysis, picks: list[tuple[int, int, int]], value: str, ylabel: str, shade: bool) -> str:
    import seaborn as sns

    palette = dict(zip(("vanilla", "liger"), sns.color_palette("colorblind", 2), strict=True))
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure(len(picks), 3, 3.2)
    steps = analysis.steps
    for ax, (batch, seq, repeat) in zip(axes, picks, strict=True):
        data = steps[(steps["batch_size"] == batch) & (steps["seq_len"] == seq) & (steps["repeat"] == repeat)]
        if shade and len(data):
            ax.axvspan(
                0.5,
                data["warmup_steps_to_skip"].max() + 0.5,
                color="#999",
                alpha=0.25,
                label="warm-up (excluded)",
            )
        sns.lineplot(data=data, x="step", y=value, hue="variant", palette=palette, ax=ax, marker=".", errorbar=None)
        ax.set(title=f"batch {batch}, seq {seq}, repeat {repeat}", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles, [LABELS.get(label, label) for label in labels], fontsize=9)
    return _data_uri(fig)


def _figures(analysis: Analysis) -> list[tuple[str, str, str]]:
    """(title, data URI or '', message saying why there is nothing to draw)."""
    import seaborn as sns

    ok = analysis.runs[analysis.runs["status"] == "ok"]
    capacity = max((float(e.get("gpu_memory_gb") or 0) for e in analysis.environments), default=0.0)
    picks = _curve_runs(analysis)
    picked_steps = analysis.steps[analysis.steps["run_key"].isin(ok["run_key"])]
    no_run = "No run trained successfully, so there is nothing to draw."
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        throughput = _bars(analysis, "tokens_per_s_nonpad", "tokens/s (non-padding)") if len(ok) else ""
        memory = ""
        if ok["peak_mem_reserved_gb"].notna().any():
            memory = _bars(analysis, "peak_mem_reserved_gb", "peak reserved memory (GiB)", capacity)
        loss = _curves(analysis, picks, "loss", "loss", False) if picked_steps["loss"].notna().any() else ""
        steps = _curves(analysis, picks, "tokens_per_s_nonpad", "tokens/s", True) if picks else ""
    return [
        ("Throughput vs batch size (95% CI over repeats)", throughput, no_run),
        (
            "Peak reserved GPU memory vs batch size",
            memory,
            "Peak GPU memory was not measured (no run trained on a CUDA device)." if len(ok) else no_run,
        ),
        ("Loss per step of paired runs", loss, "No successful run recorded a loss." if len(ok) else no_run),
        ("Throughput per step (warm-up steps shaded)", steps, no_run),
    ]


def _fmt(digits: int = 1) -> Callable[[Any], str]:
    return lambda value: _num(value, digits)


def _ci(low: str, high: str, scale: float = 1.0, digits: int = 0) -> Callable[[pd.Series], str]:
    def render(row: pd.Series) -> str:
        lo, hi = row[low], row[high]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return "unavailable"
        return f"{lo * scale:,.{digits}f} to {hi * scale:,.{digits}f}"

    return render


# (source column, or a function of the whole row; header label; formatter of the source value)
Column = tuple[str | Callable[[pd.Series], str], str, Callable[[Any], str] | None]
GAIN_COLUMNS: list[Column] = [
    ("batch_size", "batch", None),
    ("seq_len", "seq len", None),
    ("liger_outcome", "Liger", None),
    ("vanilla_outcome", "baseline", None),
    ("steady_state", "steady state", None),
    ("n_pairs", "pairs", None),
    ("gain_pct", "tokens/s gain %", _fmt(1)),
    (_ci("gain_ci_low_pct", "gain_ci_high_pct", digits=1), "95% CI %", None),
    ("mem_reserved_reduction_pct", "reserved mem reduction %", _fmt(1)),
    ("mem_allocated_reduction_pct", "allocated mem reduction %", _fmt(1)),
]
CELL_COLUMNS: list[Column] = [
    ("variant", "variant", LABELS.get),
    ("batch_size", "batch", None),
    ("seq_len", "seq len", None),
    ("outcome", "outcome", None),
    ("n_ok", "ok", None),
    ("n_runs", "runs", None),
    ("tokens_per_s_nonpad", "tokens/s non-pad", _fmt(0)),
    (_ci("tokens_per_s_nonpad_ci_low", "tokens_per_s_nonpad_ci_high"), "95% CI", None),
    ("tokens_per_s_padded", "tokens/s padded", _fmt(0)),
    (_ci("tokens_per_s_padded_ci_low", "tokens_per_s_padded_ci_high"), "95% CI", None),
    ("gpus", "GPUs per run", None),
    ("tokens_per_s_nonpad_per_gpu", "tokens/s non-pad per GPU", _fmt(0)),
    ("step_time_s", "median step s", _fmt(3)),
    ("peak_mem_allocated_gb", "peak alloc GiB", _fmt(2)),
    ("peak_mem_reserved_gb", "peak reserved GiB", _fmt(2)),
    ("mfu", "MFU", _fmt(3)),
    ("step_time_cv_max", "max step CV %", lambda v: _num(100 * v, 1)),
    ("steady_state", "steady state", None),
    ("drift", "drift %", lambda v: _num(100 * v, 1)),
    ("n_first_shape_steps", "first-shape steps", _fmt(0)),
    ("first_shape_excess_s", "first-shape extra s", _fmt(2)),
]
FRONTIER_COLUMNS: list[Column] = [
    ("variant", "variant", LABELS.get),
    ("seq_len", "seq len", None),
    ("largest_ok_batch", "largest batch that trained", _fmt(0)),
    ("smallest_oom_batch", "smallest batch out of memory", _fmt(0)),
]
PARITY_COLUMNS: list[Column] = [
    ("batch_size", "batch", None),
    ("seq_len", "seq len", None),
    ("repeat", "repeat", None),
    ("liger_run", "Liger run", None),
    ("vanilla_run", "baseline run", None),
    ("n_steps_compared", "steps compared", None),
    ("max_rel_diff", "max rel. loss diff %", lambda v: _num(100 * v, 2)),
    ("step_of_max", "at step", _fmt(0)),
    ("passed", "parity", lambda v: "n/a" if v is pd.NA else "pass" if v else "FAIL"),
]
PROBLEM_COLUMNS: list[Column] = [
    ("run_key", "run key", None),
    ("variant", "variant", LABELS.get),
    ("batch_size", "batch size", None),
    ("seq_len", "seq len", None),
]
PROBLEM_COLUMNS += [("repeat", "repeat", None), ("status", "status", None), ("reason", "reason", None)]
RUN_COLUMNS: list[Column] = [
    ("run_key", "run key", None),
    ("status", "status", None),
    ("variant", "variant", LABELS.get),
    ("batch_size", "batch size", None),
    ("seq_len", "seq len", None),
]
RUN_COLUMNS += [
    ("repeat", "repeat", None),
    ("tokens_per_s_nonpad", "tokens/s non-pad", _fmt(0)),
    ("tokens_per_s_padded", "tokens/s padded", _fmt(0)),
    ("gpus", "GPUs", None),
    ("tokens_per_s_nonpad_per_gpu", "tokens/s non-pad per GPU", _fmt(0)),
    ("step_time_s", "median step s", _fmt(3)),
    ("step_time_cv", "step CV %", lambda v: _num(100 * v, 1)),
    ("peak_mem_allocated_gb", "peak alloc GiB", _fmt(2)),
    ("peak_mem_reserved_gb", "peak reserved GiB", _fmt(2)),
    ("mfu", "MFU", _fmt(3)),
    ("final_loss", "final loss", _fmt(4)),
    ("n_measured_steps", "measured steps", _fmt(0)),
    ("steady_state", "steady state", None),
    ("drift", "drift %", lambda v: _num(100 * v, 1)),
    ("n_shapes", "batch shapes", _fmt(0)),
    ("n_first_shape_steps", "first-shape steps", _fmt(0)),
    ("first_shape_excess_s", "first-shape extra s", _fmt(2)),
]


def _cell_values(frame: pd.DataFrame, columns: list) -> list[list[str]]:
    rows = []
    for _, row in frame.iterrows():
        values = []
        for source, _label, fmt in columns:
            if callable(source):
                values.append(source(row))
            else:
                values.append(fmt(row[source]) if fmt else _num(row[source]))
        rows.append(values)
    return rows


def _html_table(frame: pd.DataFrame, columns: list, empty: str) -> str:
    if frame.empty:
        return f'<p class="missing">{html.escape(empty)}</p>'
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in columns)
    body = []
    for values in _cell_values(frame, columns):
        cells = []
        for value in values:
            kind = "fail" if value == "FAIL" else "text" if not value[:1].isdigit() and value[:1] not in "+−-–" else ""
            cells.append(f'<td class="{kind}">{html.escape(value)}</td>' if kind else f"<td>{html.escape(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _md_escape(text: str) -> str:
    for char in "\\`*_[]|":
        text = text.replace(char, "\\" + char)
    return html.escape(text.replace("\n", " "), quote=False)


def _md_table(frame: pd.DataFrame, columns: list, empty: str) -> str:
    if frame.empty:
        return f"_{_md_escape(empty)}_"
    lines = ["| " + " | ".join(_md_escape(label) for _, label, _ in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    lines += ["| " + " | ".join(_md_escape(v) for v in values) + " |" for values in _cell_values(frame, columns)]
    return "\n".join(lines)


def _integral(value: Any) -> Any:
    """``value`` with whole floats as integers: KFP metadata turns 512 into 512.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def _key_values(values: dict[str, Any]) -> str:
    rows = []
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(_integral(value), sort_keys=True, default=str)
        rows.append(f'<tr><th class="text">{html.escape(str(key))}</th><td class="text">{html.escape(text)}</td></tr>')
    return f"<table>{''.join(rows)}</table>" if rows else '<p class="missing">Not recorded.</p>'


def _first(results: Sequence[dict[str, Any]], field: str) -> dict[str, Any]:
    ok = [r for r in results if r.get("status") == "ok" and r.get(field)]
    chosen = ok or [r for r in results if r.get(field)]
    return dict(chosen[0][field]) if chosen else {}


def _grid(results: Sequence[dict[str, Any]], analysis: Analysis) -> dict[str, Any]:
    runs = analysis.runs
    grid: dict[str, Any] = {
        "variants": ", ".join(LABELS[v] for v in ("vanilla", "liger") if v in set(runs["variant"])),
        "per_device_train_batch_size": ", ".join(str(b) for b in sorted(runs["batch_size"].unique())),
        "max_seq_length": ", ".join(str(s) for s in sorted(runs["seq_len"].unique())),
        "repeats": int(runs["repeat"].nunique()),
        "runs": len(runs),
    }
    configs = [r.get("config") or {} for r in results]
    varying = {"run_key", "repeat", "use_liger", "per_device_train_batch_size", "max_seq_length"}
    for key in sorted(set().union(*configs) - varying) if configs else ():
        values = {json.dumps(c.get(key), sort_keys=True) for c in configs}
        grid[key] = configs[0].get(key) if len(values) == 1 else "varies between runs"
    return grid


def _environment(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    env = _first(results, "environment")
    keep = ("device", "gpu_name", "gpu_count", "gpu_memory_gb", "driver", "cuda", "python", "bf16_supported")
    out = {k: env[k] for k in keep if k in env}
    out.update({f"library {name}": version for name, version in (env.get("libraries") or {}).items()})
    return out


def _architecture(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The model's architecture, the attention implementation of each variant, what Liger patched."""
    model = _first(results, "model")
    out: dict[str, Any] = {
        "model type": model.get("model_type", ""),
        "architecture": ", ".join(model.get("architectures") or []),
    }
    for variant, use_liger in (("vanilla", False), ("liger", True)):
        runs = [r for r in results if bool((r.get("config") or {}).get("use_liger")) == use_liger]
        used = sorted({(r.get("metrics") or {}).get("attn_implementation") for r in runs} - {None})
        if used:
            out[f"attention, {LABELS[variant]}"] = ", ".join(used)
    kernels = _first([r for r in results if (r.get("config") or {}).get("use_liger")], "liger_kernels")
    if kernels:
        out["Liger kernels applied (modules patched)"] = ", ".join(f"{k} ({n})" for k, n in kernels.items() if n)
        out["Liger kernels not applied"] = ", ".join(k for k, n in kernels.items() if not n) or "none"
    return out


def build_report(
    results: Sequence[dict[str, Any]],
    histories: Sequence[dict[str, Any]],
    *,
    title: str = DEFAULT_TITLE,
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE,
) -> ReportBundle:
    """Analyse all runs and render the report.

    Args:
        results: Run results (``RunResult.to_dict()``), any order.
        histories: Step histories, any order, joined to results by ``run_key``.
        title: Page title.
        parity_tolerance: Largest relative per-step loss difference at which a pair passes parity.

    Returns:
        The HTML page, Markdown summary, headline metrics, per-cell table and headline.

    """
    analysis = analyze_results(results, histories, parity_tolerance=parity_tolerance)
    headline = make_headline(analysis)
    notes = caveats(analysis)
    esc = html.escape
    figures = []
    for caption, uri, message in _figures(analysis):
        body = f'<img src="{uri}" alt="{esc(caption)}">' if uri else f'<p class="missing">{esc(message)}</p>'
        figures.append(f"<h3>{esc(caption)}</h3>{body}")
    throughput_figure, memory_figure, loss_figure, steps_figure = figures
    caveat_html = "".join(f"<li>{esc(n)}</li>" for n in notes) or "<li>None.</li>"
    sections = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="headline">{esc(headline)}</p>',
        f"<p>{esc(BASELINE_DEFINITION)}</p>",
        f'<h2>Caveats</h2><ul class="caveats">{caveat_html}</ul>',
        "<h2>Liger vs baseline</h2>",
        "<p>Gain: mean over repeats of the paired ratio of non-padding tokens/s (Liger run / baseline "
        "run of the same cell and repeat, which train on the same batches in the same order) with a 95% "
        "Student-t interval. A run's tokens/s is its non-padding tokens over the time of its measured steps: "
        "warm-up steps and steps whose batch shape was new in the run are left out. A cell is steady when "
        f"every run's shape-normalised step time changed by at most {STEADY_DRIFT_TOLERANCE:.0%} between the "
        "first and second half of its measured steps. Memory: peak reserved and allocated CUDA memory after "
        "warm-up.</p>",
        _html_table(analysis.gains, GAIN_COLUMNS, "No grid cell was run."),
        throughput_figure,
        memory_figure,
        "<h2>Out-of-memory frontier</h2>",
        _html_table(analysis.frontier, FRONTIER_COLUMNS, "No grid cell was run."),
        f"<h2>Loss parity (tolerance {parity_tolerance:.1%})</h2>",
        "<p>Relative difference of per-step losses of a Liger run and the baseline run of the same cell "
        "and repeat, over the measured steps (after warm-up).</p>",
        _html_table(analysis.parity, PARITY_COLUMNS, "No Liger/baseline pair of successful runs to compare."),
        loss_figure,
        steps_figure,
        "<h2>Per-cell results</h2>",
        "<p>Each run contributes its tokens/s over its measured steps; a cell shows the mean over its ok "
        "repeats with a 95% Student-t interval (unavailable with one repeat), the largest peak memory, "
        "the drift of its least steady run and its steps with a new batch shape.</p>",
        _html_table(analysis.cells, CELL_COLUMNS, "No grid cell was run."),
        "<h2>Runs that did not train</h2>",
        _html_table(analysis.problems, PROBLEM_COLUMNS, "Every run trained."),
        "<h2>All runs</h2>",
        _html_table(analysis.runs, RUN_COLUMNS, "No run results were collected."),
        "<h2>Environment</h2>",
        _key_values(_environment(results)),
        "<h3>Architecture</h3>",
        _key_values(_architecture(results)),
        "<h3>Model</h3>",
        _key_values(_first(results, "model")),
        "<h3>Dataset</h3>",
        _key_values(_first(results, "dataset")),
        "<h2>Grid</h2>",
        _key_values(_grid(results, analysis)),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body><main>\n"
        + "\n".join(sections)
        + "\n</main></body></html>\n"
    )
    markdown = "\n\n".join(
        [
            f"# {_md_escape(title)}",
            f"**{_md_escape(headline)}**",
            _md_escape(BASELINE_DEFINITION),
            "## Liger vs baseline",
            _md_table(analysis.gains, GAIN_COLUMNS, "No grid cell was run."),
            "## Out-of-memory frontier",
            _md_table(analysis.frontier, FRONTIER_COLUMNS, "No grid cell was run."),
            f"## Loss parity (tolerance {parity_tolerance:.1%})",
            _md_table(analysis.parity, PARITY_COLUMNS, "No Liger/baseline pair of successful runs to compare."),
            "## Runs that did not train",
            _md_table(analysis.problems, PROBLEM_COLUMNS, "Every run trained."),
            "## Architecture",
            "\n".join(f"- {_md_escape(k)}: {_md_escape(str(v))}" for k, v in _architecture(results).items()),
            "## Caveats",
            "\n".join(f"- {_md_escape(n)}" for n in notes) or "None.",
        ]
    )
    return ReportBundle(page, markdown + "\n", headline_metrics(analysis), analysis.cells, headline)


def write_bundle(
    bundle: ReportBundle, html_path: str | Path, markdown_path: str | Path, table_path: str | Path
) -> None:
    """Write the page, the summary and the per-cell table (CSV) atomically, creating parent folders.

    Args:
        bundle: What ``build_report`` returned.
        html_path: Where the HTML page goes.
        markdown_path: Where the Markdown summary goes.
        table_path: Where the per-cell table goes, as CSV.

    """
    table = bundle.table.to_csv(index=False)
    for path, text in ((html_path, bundle.html), (markdown_path, bundle.markdown), (table_path, table)):
        write_text_atomic(path, text)
