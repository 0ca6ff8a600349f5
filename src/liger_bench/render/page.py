"""The report's HTML page and Markdown summary, laid out from an ``Analysis``, its wording and figures.

The page makes no network request (figures are PNG data URIs, styles inline, no script) so it
renders the same from disk, in the Kubeflow UI's sandboxed iframe and on an air-gapped cluster.
Every text that comes from run results is escaped.
"""

from __future__ import annotations

import html
import json
from typing import Any

from liger_bench.analyse.analysis import Analysis
from liger_bench.analyse.narrative import (
    BASELINE_DEFINITION,
    FIT_RATE_TEXT,
    PROBLEMS_HEADING,
    RECOMMENDATION_RULE,
    SEARCH_RULE,
    SEQUENCE_SEARCH_RULE,
    label,
    number,
)
from liger_bench.measure.metrics import STEADY_DRIFT_TOLERANCE
from liger_bench.render.figures import Drawing
from liger_bench.render.tables import (
    ATTRIBUTION,
    CELL_COST,
    CELL_MEMORY,
    CELL_ONE_OFF,
    CELL_RATES,
    FIT_RATES,
    FRONTIER,
    GAINS,
    INTERACTION,
    PARITY,
    PROBLEMS,
    RECOMMENDATIONS,
    RUN_MEMORY,
    RUN_ONE_OFF,
    RUN_RATES,
    SEARCHES,
    SEQUENCE_SEARCHES,
    html_table,
    markdown_table,
    md_escape,
)
from liger_bench.vocabulary import variant_order

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;background:#fff}
main{max-width:1150px;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.headline{font-size:1.2rem;font-weight:600;background:#eef5ff;border-left:4px solid #2a6fdb;
padding:.6rem .9rem}
.caveats li{margin:.2rem 0}.fail{color:#b00020;font-weight:600}.pass{color:#1b7f3b}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.2rem .45rem;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.text,th.text{text-align:left}td{white-space:nowrap}
td.wrap{white-space:normal;overflow-wrap:anywhere;min-width:12rem}
.scroll{overflow-x:auto}img{max-width:100%;height:auto;display:block;margin:.5rem 0}
.missing{font-style:italic;color:#555}
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _integral(value: Any) -> Any:
    """``value`` with whole floats as integers: KFP metadata turns 512 into 512.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def _setting_text(value: Any) -> str:
    """A recorded setting or fact as text; an empty or missing one reads "–", never a blank."""
    if value is None or value == "" or value == [] or value == {}:
        return "–"
    return value if isinstance(value, str) else json.dumps(_integral(value), sort_keys=True, default=str)


def _key_values(values: dict[str, Any]) -> str:
    """A two-column table of names and values (``_setting_text``)."""
    rows = []
    for key, value in values.items():
        text = html.escape(_setting_text(value))
        rows.append(f'<tr><th class="text">{html.escape(str(key))}</th><td class="text wrap">{text}</td></tr>')
    return f"<table>{''.join(rows)}</table>" if rows else '<p class="missing">Not recorded.</p>'


def _grid(analysis: Analysis) -> dict[str, Any]:
    runs = analysis.runs
    grid: dict[str, Any] = {
        "variants": ", ".join(label(v) for v in sorted(runs["variant"].unique(), key=variant_order)),
        "per_device_train_batch_size": ", ".join(str(b) for b in sorted(runs["batch_size"].unique())),
        "max_seq_length": ", ".join(str(s) for s in sorted(runs["seq_len"].unique())),
        "repeats": int(runs["repeat"].nunique()),
        "runs": len(runs),
        "kernel-ablation runs": _ablation_runs(analysis),
    }
    for key in sorted([*analysis.settings, *analysis.varying_settings]):
        grid[key] = analysis.settings.get(key, "varies between runs")
    if analysis.settings.get("peak_tflops") == 0:
        grid["peak_tflops"] = _looked_up_peak(analysis)
    return grid


def _looked_up_peak(analysis: Analysis) -> str:
    """What ``peak_tflops`` 0 became: the peak looked up from the GPU's name, or unknown (then no MFU)."""
    peaks = sorted(set(analysis.runs["peak_tflops"].dropna()))
    if peaks:
        return f"{', '.join(f'{peak:g}' for peak in peaks)} (0 given: looked up from the GPU's name)"
    return "unknown, so MFU is not reported (0 given, and the GPU's peak is not known by its name; set peak_tflops)"


ENVIRONMENT_SHOWN = ("device", "gpu_name", "gpu_count", "gpu_memory_gb", "driver", "cuda", "python", "bf16_supported")


def _environment(analysis: Analysis) -> dict[str, Any]:
    env = analysis.environment
    out = {k: env[k] for k in ENVIRONMENT_SHOWN if k in env}
    out.update({f"library {name}": version for name, version in (env.get("libraries") or {}).items()})
    return out


def _architecture(analysis: Analysis) -> dict[str, Any]:
    """The model's architecture, the attention implementation of each variant, what Liger patched."""
    out: dict[str, Any] = {
        "model type": analysis.model.get("model_type", ""),
        "architecture": ", ".join(analysis.model.get("architectures") or []),
    }
    for variant, used in analysis.attention.items():
        out[f"attention, {label(variant)}"] = ", ".join(used)
    kernels = analysis.liger_kernels
    if kernels:
        out["Liger kernels applied (modules patched)"] = ", ".join(f"{k} ({n})" for k, n in kernels.items() if n)
        out["Liger kernels not applied"] = ", ".join(k for k, n in kernels.items() if not n) or "none"
    return out


def _figure(drawing: Drawing) -> str:
    esc = html.escape
    if not drawing.data_uri and not drawing.missing:
        return ""
    if drawing.data_uri:
        body = f'<img src="{drawing.data_uri}" alt="{esc(drawing.caption)}">'
    else:
        body = f'<p class="missing">{esc(drawing.missing)}</p>'
    return f"<h3>{esc(drawing.caption)}</h3>{body}"


COST_HEADING = "Cost and energy per million non-padding tokens"


def _cost_text(analysis: Analysis) -> str:
    """How the cost and energy columns are computed, and at which price."""
    price = (
        f"at {number(analysis.gpu_hour_price, 2)} per GPU-hour (gpu_hour_price)"
        if analysis.gpu_hour_price is not None
        else "not shown: no gpu_hour_price was given"
    )
    return (
        f"Cost: gpu_hour_price × GPUs × (1,000,000 / tokens/s) / 3600, {price}. Energy: NVML's energy counter of "
        "each GPU, read at both ends of every measured step and summed over the run's GPUs. Both are means over "
        "a cell's ok repeats with a 95% Student-t interval; mean power is of the run's GPUs together."
    )


def _split_table(frame: Any, rates: Any, memory: tuple[str, Any], one_off: Any) -> list[str]:
    """One table of cells or runs as three that each fit the page: throughput, memory, one-off costs."""
    memory_heading, memory_columns = memory
    return [
        "<h3>Throughput</h3>",
        html_table(frame, rates),
        f"<h3>{memory_heading}</h3>",
        html_table(frame, memory_columns),
        "<h3>One-off costs: new batch shapes and torch.compile</h3>",
        html_table(frame, one_off),
    ]


SEARCHES_HEADING = "Memory frontier, searched"
SEQUENCE_SEARCH_HEADING = "Longest sequence that fits, searched"
KERNEL_ABLATION_HEADING = "Which kernels pay (kernel ablation)"
KERNEL_ABLATION_TEXT = (
    "Each kernel liger-kernel enables by default for the model type, alone against the baseline, and left out "
    "of Liger with all of them, in eager runs paired by repeat: the mean of the per-pair ratios with a 95% "
    "Student-t interval. Memory is peak allocated. The interaction is all kernels' gain minus the sum of the "
    "single kernels' gains, per repeat in which every one of them trained."
)


def _ablation_runs(analysis: Analysis) -> int:
    return int((analysis.runs["ablation"] != "").sum())


def _kernel_ablation_html(analysis: Analysis, figure: str) -> list[str]:
    """The kernel-ablation section: how many runs it added, its two tables and its figure; nothing without one."""
    if not _ablation_runs(analysis):
        return []
    return [
        f"<h2>{KERNEL_ABLATION_HEADING}</h2>",
        f"<p>{html.escape(KERNEL_ABLATION_TEXT)} The ablation added {_ablation_runs(analysis)} runs.</p>",
        html_table(analysis.attribution, ATTRIBUTION),
        html_table(analysis.interaction, INTERACTION),
        figure,
    ]


def _not_searched(analysis: Analysis) -> str:
    """Why no batch search ran, where every one was skipped for one reason ("" otherwise).

    The section then says so in a sentence instead of a row per variant that repeats it.
    """
    searches = analysis.searches
    if searches.empty or not searches["end"].eq("skipped").all() or searches["reason"].nunique() != 1:
        return ""
    return f"Not searched: {searches['reason'].iloc[0]}."


def _found_a_fit(analysis: Analysis) -> bool:
    """Whether some search found a batch that fits: then the page says how each variant trained there, if it did."""
    return bool(analysis.searches["largest_fit"].notna().any())


def _searches_html(analysis: Analysis, figure: str) -> list[str]:
    """The batch search's section: its rule, table and figure, or why nothing was searched."""
    if why := _not_searched(analysis):
        return [f"<h2>{SEARCHES_HEADING}</h2>", f"<p>{html.escape(why)}</p>"]
    fits = [f"<p>{html.escape(FIT_RATE_TEXT)}</p>", html_table(analysis.fit_rates, FIT_RATES)]
    return [
        f"<h2>{SEARCHES_HEADING}</h2>",
        f"<p>{html.escape(SEARCH_RULE)}</p>",
        html_table(analysis.searches, SEARCHES),
        *(fits if _found_a_fit(analysis) else []),
        figure,
    ]


def _searches_markdown(analysis: Analysis) -> list[str]:
    if why := _not_searched(analysis):
        return [f"## {SEARCHES_HEADING}", md_escape(why)]
    fits = [md_escape(FIT_RATE_TEXT), markdown_table(analysis.fit_rates, FIT_RATES)]
    return [
        f"## {SEARCHES_HEADING}",
        md_escape(SEARCH_RULE),
        markdown_table(analysis.searches, SEARCHES),
        *(fits if _found_a_fit(analysis) else []),
    ]


def _sequence_search_html(analysis: Analysis) -> list[str]:
    """The longest-sequence section; nothing where none was searched (frontier_seq_batch_size 0)."""
    if analysis.sequence_searches.empty:
        return []
    return [
        f"<h2>{SEQUENCE_SEARCH_HEADING}</h2>",
        f"<p>{html.escape(SEQUENCE_SEARCH_RULE)}</p>",
        html_table(analysis.sequence_searches, SEQUENCE_SEARCHES),
    ]


def _sequence_search_markdown(analysis: Analysis) -> list[str]:
    if analysis.sequence_searches.empty:
        return []
    return [
        f"## {SEQUENCE_SEARCH_HEADING}",
        md_escape(SEQUENCE_SEARCH_RULE),
        markdown_table(analysis.sequence_searches, SEQUENCE_SEARCHES),
    ]


def _kernel_ablation_markdown(analysis: Analysis) -> list[str]:
    if not _ablation_runs(analysis):
        return []
    return [
        f"## {KERNEL_ABLATION_HEADING}",
        md_escape(f"{KERNEL_ABLATION_TEXT} The ablation added {_ablation_runs(analysis)} runs."),
        markdown_table(analysis.attribution, ATTRIBUTION),
        markdown_table(analysis.interaction, INTERACTION),
    ]


def render_html(analysis: Analysis, title: str, headline: str, notes: list[str], drawings: list[Drawing]) -> str:
    """The self-contained report page.

    Args:
        analysis: What ``analyze_results`` returned.
        title: Page title.
        headline: ``narrative.make_headline``'s sentences.
        notes: ``narrative.caveats``.
        drawings: ``figures.draw_figures``: throughput, memory, loss, per-step throughput, frontier probes
            and kernel attribution.

    Returns:
        The HTML document.

    """
    esc = html.escape
    throughput_figure, memory_figure, loss_figure, steps_figure, frontier_figure, kernels_figure = (
        _figure(d) for d in drawings
    )
    caveat_html = "".join(f"<li>{esc(n)}</li>" for n in notes) or "<li>None.</li>"
    sections = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="headline">{esc(headline)}</p>',
        f"<p>{esc(BASELINE_DEFINITION)}</p>",
        f'<h2>Caveats</h2><ul class="caveats">{caveat_html}</ul>',
        "<h2>Which variant to turn on</h2>",
        f"<p>{esc(RECOMMENDATION_RULE)}</p>",
        html_table(analysis.recommendations, RECOMMENDATIONS),
        "<h2>Variants vs baseline, and Liger vs torch.compile</h2>",
        "<p>Gain: mean over repeats of the paired ratio of non-padding tokens/s (variant run / run it is "
        "compared with, of the same cell and repeat, which train on the same batches in the same order) with a "
        "95% Student-t interval. A run's tokens/s is its non-padding tokens over the time of its measured steps: "
        "warm-up steps, steps whose batch shape was new in the run and steps in which torch.compile compiled "
        "are left out. A compiled variant's compile time is paid back after compile s / (its step time × its "
        "gain) steps. A cell is steady when "
        f"every run's shape-normalised step time changed by at most {STEADY_DRIFT_TOLERANCE:.0%} between the "
        "first and second half of its measured steps. Memory: peak reserved and allocated CUDA memory after "
        "warm-up.</p>",
        html_table(analysis.gains, GAINS),
        throughput_figure,
        memory_figure,
        *_kernel_ablation_html(analysis, kernels_figure),
        *_searches_html(analysis, frontier_figure),
        *_sequence_search_html(analysis),
        "<h2>Out-of-memory frontier of the grid's batch sizes</h2>",
        html_table(analysis.frontier, FRONTIER),
        f"<h2>Loss parity (tolerance {analysis.parity_tolerance:.1%})</h2>",
        "<p>Relative difference of per-step losses of a variant's run and the baseline run of the same cell "
        "and repeat, over the measured steps.</p>",
        html_table(analysis.parity, PARITY),
        loss_figure,
        steps_figure,
        "<h2>Per-cell results</h2>",
        "<p>Each run contributes its tokens/s over its measured steps; a cell shows the mean over its ok "
        "repeats with a 95% Student-t interval (unavailable with one repeat), the largest peak memory, "
        "the drift of its least steady run, its steps with a new batch shape and torch.compile's one-off "
        "cost (steps that compiled, recompiles, seconds beyond the steady step time).</p>",
        *_split_table(analysis.cells, CELL_RATES, ("Memory, MFU and steadiness", CELL_MEMORY), CELL_ONE_OFF),
        f"<h3>{COST_HEADING}</h3>",
        f"<p>{esc(_cost_text(analysis))}</p>",
        html_table(analysis.cells, CELL_COST),
        f"<h2>{PROBLEMS_HEADING}</h2>",
        html_table(analysis.problems, PROBLEMS),
        "<h2>All runs</h2>",
        *_split_table(analysis.runs, RUN_RATES, ("Memory, MFU, loss and steadiness", RUN_MEMORY), RUN_ONE_OFF),
        "<h2>Environment</h2>",
        _key_values(_environment(analysis)),
        "<h3>Architecture</h3>",
        _key_values(_architecture(analysis)),
        "<h3>Model</h3>",
        _key_values(analysis.model),
        "<h3>Dataset</h3>",
        _key_values(analysis.dataset),
        "<h2>Grid</h2>",
        _key_values(_grid(analysis)),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body><main>\n"
        + "\n".join(sections)
        + "\n</main></body></html>\n"
    )


def render_markdown(analysis: Analysis, title: str, headline: str, notes: list[str]) -> str:
    """The Markdown summary: headline, the comparison tables, the architecture and the caveats.

    Args:
        analysis: What ``analyze_results`` returned.
        title: Summary title.
        headline: ``narrative.make_headline``'s sentences.
        notes: ``narrative.caveats``.

    Returns:
        The Markdown document.

    """
    sections = [
        f"# {md_escape(title)}",
        f"**{md_escape(headline)}**",
        md_escape(BASELINE_DEFINITION),
        "## Which variant to turn on",
        md_escape(RECOMMENDATION_RULE),
        markdown_table(analysis.recommendations, RECOMMENDATIONS),
        "## Variants vs baseline, and Liger vs torch.compile",
        markdown_table(analysis.gains, GAINS),
        *_kernel_ablation_markdown(analysis),
        *_searches_markdown(analysis),
        *_sequence_search_markdown(analysis),
        "## Out-of-memory frontier of the grid's batch sizes",
        markdown_table(analysis.frontier, FRONTIER),
        f"## Loss parity (tolerance {analysis.parity_tolerance:.1%})",
        markdown_table(analysis.parity, PARITY),
        f"## {COST_HEADING}",
        md_escape(_cost_text(analysis)),
        markdown_table(analysis.cells, CELL_COST),
        f"## {PROBLEMS_HEADING}",
        markdown_table(analysis.problems, PROBLEMS),
        "## Architecture",
        "\n".join(f"- {md_escape(k)}: {md_escape(_setting_text(v))}" for k, v in _architecture(analysis).items()),
        "## Caveats",
        "\n".join(f"- {md_escape(n)}" for n in notes) or "None.",
    ]
    return "\n\n".join(sections) + "\n"
