"""The report's figures: matplotlib/seaborn drawings embedded as PNG data URIs.

A figure the data cannot support is not drawn; its place says why (the loss of paired runs is left
out without a pair: the parity table above it says so). Each figure has one legend, above its
panels, where it hides no data. The PNGs carry no timestamp, so the same analysis draws the same bytes.

The figures by batch size and of the frontier search draw the four variants; a kernel ablation's arms
(up to ten more) would crowd them past reading, so those figures' captions say where the arms are: the
kernel ablation's own table and figure, and the table of searches.
"""

from __future__ import annotations

import base64
import io
import math
from typing import NamedTuple

from liger_bench.analyse.analysis import Analysis
from liger_bench.analyse.narrative import LABELS
from liger_bench.vocabulary import VARIANTS, ablated_kernel

MAX_CURVE_PANELS = 12
PAGE_WIDTH_IN = 12.4  # figure width in inches: at 90 dpi about the page's 1150 px text width


class Drawing(NamedTuple):
    """One figure of the page."""

    caption: str
    data_uri: str  # "" when there is nothing to draw
    missing: str  # why there is nothing to draw; "" when the figure is left out without a word


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


def _arms_shown_in(variants, where: str) -> str:
    """That the kernel-ablation arms among ``variants`` are not drawn but ``where``; "" when there are none."""
    return f"the kernel-ablation arms are in {where}" if any(ablated_kernel(v) is not None for v in variants) else ""


def _caption(title: str, *notes: str) -> str:
    """``title (note; note)``, of the notes that say something."""
    said = [note for note in notes if note]
    return f"{title} ({'; '.join(said)})" if said else title


def _legend_outside(fig) -> None:
    """One legend for the whole figure, above its panels: a legend inside a panel can hide a data point.

    The entries are those of every panel, once each (a panel may lack a variant), with the page's labels.
    """
    entries: dict[str, object] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(LABELS.get(label, label), handle)
        if ax.get_legend():
            ax.get_legend().remove()
    fig.legend(list(entries.values()), list(entries), loc="outside upper center", ncols=len(entries), fontsize=10)


def _bars(analysis: Analysis, value: str, ylabel: str, capacity: float = 0.0):
    """Grouped bars per batch size, one panel per sequence length.

    A cell without an ok run gets no bar (a made-up height would read as a value): a cross on the
    axis and its outcome written above it.
    """
    import seaborn as sns

    cells = analysis.cells
    seqs = sorted(cells["seq_len"].unique())
    variants = [v for v in VARIANTS if v in set(cells["variant"])]
    colors = dict(zip(VARIANTS, sns.color_palette("colorblind", len(VARIANTS)), strict=True))
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
    _legend_outside(fig)
    return fig


def _curve_runs(analysis: Analysis, paired: bool) -> list[tuple[int, int, int]]:
    """(batch, seq, repeat) per cell to draw step by step: a parity failure first, else the first repeat.

    ``paired``: of a Liger/baseline pair of ok runs (cells without a pair are left out); else of an ok run.
    """
    failing = analysis.parity[analysis.parity["passed"] == False]  # noqa: E712
    chosen = {(r.batch_size, r.seq_len): r.repeat for r in failing.itertuples()}
    candidates = analysis.parity if paired else analysis.runs[analysis.runs["status"] == "ok"]
    for r in candidates.sort_values("repeat").itertuples():
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


def _curves(analysis: Analysis, picks: list[tuple[int, int, int]], value: str, ylabel: str, shade: bool):
    import seaborn as sns

    palette = dict(zip(VARIANTS, sns.color_palette("colorblind", len(VARIANTS)), strict=True))
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
        variants = [v for v in VARIANTS if v in set(data["variant"])]
        sns.lineplot(
            data=data, x="step", y=value, hue="variant", hue_order=variants, palette=palette, ax=ax, marker=".",
            errorbar=None,
        )  # fmt: skip
        ax.set(title=f"batch {batch}, seq {seq}, repeat {repeat}", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_outside(fig)
    return fig


def _frontier_probes(analysis: Analysis):
    """Peak reserved memory of every frontier probe against its batch, one panel per sequence length.

    A probe that trained is a dot (joined per variant in batch order); one that ran out of memory a
    cross at the peak it had reached, or on the capacity line where it recorded none.
    """
    import seaborn as sns
    from matplotlib.ticker import FuncFormatter

    probes = analysis.probes
    seqs = sorted(probes["seq_len"].unique())
    colors = dict(zip(VARIANTS, sns.color_palette("colorblind", len(VARIANTS)), strict=True))
    capacity = float(probes["gpu_memory_gb"].max())
    fig, axes = _figure(len(seqs), 2, 4.2)
    for ax, seq in zip(axes, seqs, strict=True):
        panel = probes[probes["seq_len"] == seq]
        for variant in [v for v in VARIANTS if v in set(panel["variant"])]:
            mine = panel[panel["variant"] == variant]
            fits = mine[mine["status"] == "ok"].sort_values("batch_size")
            ax.plot(fits["batch_size"], fits["peak_mem_reserved_gb"], marker="o", color=colors[variant], label=variant)
            ooms = mine[mine["status"] == "oom"]
            ax.plot(
                ooms["batch_size"],
                ooms["peak_mem_reserved_gb"].fillna(capacity),
                linestyle="none",
                marker="X",
                markersize=9,
                color=colors[variant],
            )
        if math.isfinite(capacity):
            ax.axhline(capacity, color="#b00020", linestyle="--", linewidth=1.2, label=f"GPU memory {capacity:g} GiB")
        ax.plot([], [], linestyle="none", marker="X", color="#555", label="out of memory")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))  # batch 32, not 2^5
        ax.set(xlabel="per-device batch size (probe)", ylabel="peak reserved memory (GiB)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"sequence length {seq}")
    _legend_outside(fig)
    return fig


# The attribution figure's bar series: the label, then per panel (tokens/s, allocated memory) the columns of
# ``analysis.attribution`` (per kernel) or ``analysis.interaction`` (the last group, all kernels).
ATTRIBUTION_SERIES = (
    ("alone, against the baseline", ("alone_gain_pct", "alone_mem_reduction_pct")),
    ("left out of all kernels, against Liger", ("left_out_loss_pct", "left_out_mem_increase_pct")),
)
INTERACTION_SERIES = (
    ("sum of the single kernels", ("sum_of_singles_gain_pct", "sum_of_singles_mem_reduction_pct")),
    ("all kernels together", ("all_kernels_gain_pct", "all_kernels_mem_reduction_pct")),
)
ATTRIBUTION_PANELS = ("tokens/s: % gained alone, % lost left out", "allocated memory: % saved alone, % added left out")


def _attribution_bars(analysis: Analysis):
    """Per (batch, seq len) cell, two panels: tokens/s and peak allocated memory.

    In each, two bars per kernel (alone against the baseline, left out against Liger with all of them),
    then a last group, "all kernels": the sum of the single kernels against all of them together, which is
    the interaction (left out where no repeat trained every arm). A bar carries its 95% CI over the repeats
    where the analysis has one (the memory sums have none); a comparison without a pair gets no bar, and
    the legend names only the series drawn.
    """
    import seaborn as sns

    rows, whole = analysis.attribution, analysis.interaction
    whole = whole[whole["n_repeats"] > 0]
    cells = sorted(set(zip(rows["batch_size"], rows["seq_len"], strict=True)))
    series = [*ATTRIBUTION_SERIES, *INTERACTION_SERIES]
    colors = dict(zip((name for name, _ in series), sns.color_palette("colorblind", len(series)), strict=True))
    drawn: set[str] = set()
    fig, axes = _figure(2 * len(cells), 2, 4.2)
    for i, (batch, seq) in enumerate(cells):
        kernels = rows[(rows["batch_size"] == batch) & (rows["seq_len"] == seq)]
        together = whole[(whole["batch_size"] == batch) & (whole["seq_len"] == seq)]
        groups = [(row["kernel"], ATTRIBUTION_SERIES, row) for _, row in kernels.iterrows()]
        groups += [("all kernels", INTERACTION_SERIES, row) for _, row in together.iterrows()]
        for which, ax in enumerate(axes[2 * i : 2 * i + 2]):
            for x, (_, pair, row) in enumerate(groups):
                for j, (name, columns) in enumerate(pair):
                    value, low, high = (row.get(columns[which] + end, math.nan) for end in ("", "_ci_low", "_ci_high"))
                    if not math.isfinite(value):
                        continue
                    err = [[value - low], [high - value]] if math.isfinite(low) else None
                    ax.bar(x - 0.2 + 0.4 * j, value, 0.4, color=colors[name], yerr=err, capsize=3)
                    drawn.add(name)
            ax.axhline(0, color="#333", linewidth=0.8)
            ax.set(xticks=range(len(groups)), ylabel="%")
            ax.set_xticklabels([label for label, _, _ in groups], rotation=20, ha="right")
            ax.set_title(f"{ATTRIBUTION_PANELS[which]} (batch {batch}, sequence length {seq})", fontsize=10)
    for name in (name for name in colors if name in drawn):
        axes[0].bar(0, 0, 0, color=colors[name], label=name)  # the legend's entry, in the series' order
    _legend_outside(fig)
    return fig


def draw_figures(analysis: Analysis) -> list[Drawing]:
    """The report's six figures: cell throughput and memory, step loss and throughput, probes, kernel attribution.

    Args:
        analysis: What ``analyze_results`` returned.

    Returns:
        Throughput, memory, loss, per-step throughput, the frontier search's probes and the kernel
        attribution, each drawn or with the reason it is not; the loss of paired runs, without a
        Liger/baseline pair, neither (the parity table says why), nor the probes without a search, nor
        the attribution without a kernel ablation (its table says why).

    """
    import seaborn as sns

    ok = analysis.runs[analysis.runs["status"] == "ok"]
    capacity = max((float(e.get("gpu_memory_gb") or 0) for e in analysis.environments), default=0.0)
    pairs, picks = _curve_runs(analysis, paired=True), _curve_runs(analysis, paired=False)
    no_run = "No run trained successfully, so there is nothing to draw."
    cell_arms = _arms_shown_in(analysis.cells["variant"], "the kernel ablation's table and figure")
    probe_arms = _arms_shown_in(analysis.probes["variant"], "the table of searches above")
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        throughput = _data_uri(_bars(analysis, "tokens_per_s_nonpad", "tokens/s (non-padding)")) if len(ok) else ""
        memory = ""
        if ok["peak_mem_reserved_gb"].notna().any():
            memory = _data_uri(_bars(analysis, "peak_mem_reserved_gb", "peak reserved memory (GiB)", capacity))
        loss = _data_uri(_curves(analysis, pairs, "loss", "loss", False)) if pairs else ""
        steps = _data_uri(_curves(analysis, picks, "tokens_per_s_nonpad", "tokens/s", True)) if picks else ""
        measured = analysis.probes["peak_mem_reserved_gb"].notna().any()
        frontier = _data_uri(_frontier_probes(analysis)) if measured else ""
        paired = analysis.attribution[(analysis.attribution[["alone_n_pairs", "left_out_n_pairs"]] > 0).any(axis=1)]
        kernels = _data_uri(_attribution_bars(analysis)) if len(paired) else ""
    return [
        Drawing(_caption("Throughput vs batch size", "95% CI over repeats", cell_arms), throughput, no_run),
        Drawing(
            _caption("Peak reserved GPU memory vs batch size", cell_arms),
            memory,
            "Peak GPU memory was not measured (no run trained on a CUDA device)." if len(ok) else no_run,
        ),
        Drawing("Loss per step of paired runs", loss, ""),
        Drawing("Throughput per step (warm-up steps shaded)", steps, no_run),
        Drawing(
            _caption("Memory frontier search: peak reserved GPU memory of every probe vs its batch size", probe_arms),
            frontier,
            "No probe measured GPU memory (the search ran without a CUDA device)." if len(analysis.probes) else "",
        ),
        Drawing(
            "Which kernels pay: tokens/s and peak allocated memory, each kernel alone vs the baseline and left out "
            "of all kernels, and the sum of the singles vs all kernels together (95% CI over repeats)",
            kernels,
            "No kernel-ablation arm has a pair of ok runs to compare, so there is nothing to draw."
            if len(analysis.attribution)
            else "",
        ),
    ]
