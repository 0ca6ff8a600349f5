"""The report's HTML page and Markdown summary, laid out from an ``Analysis`` and its wording.

Each table column is declared once (``Column``): the analysis field it shows, its header, how its
values are written and how they align. The page makes no network request (figures are PNG data URIs,
styles inline, no script) so it renders the same from disk, in the Kubeflow UI's sandboxed iframe
and on an air-gapped cluster. Every text that comes from run results is escaped.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from liger_bench.analysis import Analysis
from liger_bench.figures import Drawing
from liger_bench.metrics import STEADY_DRIFT_TOLERANCE
from liger_bench.narrative import BASELINE_DEFINITION, LABELS, number
from liger_bench.vocabulary import VARIANTS

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


def digits(n: int) -> Callable[[Any], str]:
    """A formatter writing numbers with ``n`` decimals (see ``narrative.number``)."""
    return lambda value: number(value, n)


def percent_of(n: int) -> Callable[[Any], str]:
    """A formatter writing fractions as percentages with ``n`` decimals."""
    return lambda value: number(100 * value, n)


def interval(n: int = 0) -> Callable[[tuple[float, float]], str]:
    """A formatter writing a (low, high) pair as ``low to high``, or ``unavailable``."""

    def render(bounds: tuple[float, float]) -> str:
        low, high = bounds
        if not (math.isfinite(low) and math.isfinite(high)):
            return "unavailable"
        return f"{low:,.{n}f} to {high:,.{n}f}"

    return render


def _verdict(passed: Any) -> str:
    return "n/a" if passed is pd.NA else "pass" if passed else "FAIL"


def _failed(passed: Any) -> bool:
    return passed is not pd.NA and not passed


@dataclass(frozen=True)
class Column:
    """One table column: the analysis field it shows, its header, how a value is written and aligned."""

    field: str | tuple[str, str]  # a column of the analysis table, or the (low, high) columns of an interval
    label: str
    formatter: Callable[[Any], str] = number
    align: Literal["number", "text"] = "number"
    alarm: Callable[[Any], bool] | None = None  # cells whose value it holds for are marked as failures

    def value(self, row: pd.Series) -> Any:
        """The field's value in ``row``; a pair for an interval."""
        return row[self.field] if isinstance(self.field, str) else (row[self.field[0]], row[self.field[1]])


def _text(field: str, label: str, formatter: Callable[[Any], str] = number, **kwargs: Any) -> Column:
    return Column(field, label, formatter, align="text", **kwargs)


def _variant(label: str = "variant") -> Column:
    return _text("variant", label, LABELS.get)


GAIN_COLUMNS = [
    Column("batch_size", "batch"),
    Column("seq_len", "seq len"),
    _text("liger_outcome", LABELS["liger"]),
    _text("vanilla_outcome", LABELS["vanilla"]),
    _text("steady_state", "steady state"),
    Column("n_pairs", "pairs"),
    Column("gain_pct", "tokens/s gain %", digits(1)),
    Column(("gain_ci_low_pct", "gain_ci_high_pct"), "95% CI %", interval(1)),
    Column("mem_reserved_reduction_pct", "reserved mem reduction %", digits(1)),
    Column("mem_allocated_reduction_pct", "allocated mem reduction %", digits(1)),
]
CELL_COLUMNS = [
    _variant(),
    Column("batch_size", "batch"),
    Column("seq_len", "seq len"),
    _text("outcome", "outcome"),
    Column("n_ok", "ok"),
    Column("n_runs", "runs"),
    Column("tokens_per_s_nonpad", "tokens/s non-pad", digits(0)),
    Column(("tokens_per_s_nonpad_ci_low", "tokens_per_s_nonpad_ci_high"), "95% CI", interval()),
    Column("tokens_per_s_padded", "tokens/s padded", digits(0)),
    Column(("tokens_per_s_padded_ci_low", "tokens_per_s_padded_ci_high"), "95% CI", interval()),
    Column("gpus", "GPUs per run"),
    Column("tokens_per_s_nonpad_per_gpu", "tokens/s non-pad per GPU", digits(0)),
    Column("step_time_s", "median step s", digits(3)),
    Column("peak_mem_allocated_gb", "peak alloc GiB", digits(2)),
    Column("peak_mem_reserved_gb", "peak reserved GiB", digits(2)),
    Column("mfu", "MFU", digits(3)),
    Column("step_time_cv_max", "max step CV %", percent_of(1)),
    _text("steady_state", "steady state"),
    Column("drift", "drift %", percent_of(1)),
    Column("n_first_shape_steps", "first-shape steps", digits(0)),
    Column("first_shape_excess_s", "first-shape extra s", digits(2)),
]
FRONTIER_COLUMNS = [
    _variant(),
    Column("seq_len", "seq len"),
    Column("largest_ok_batch", "largest batch that trained", digits(0)),
    Column("smallest_oom_batch", "smallest batch out of memory", digits(0)),
]
PARITY_COLUMNS = [
    Column("batch_size", "batch"),
    Column("seq_len", "seq len"),
    Column("repeat", "repeat"),
    _text("liger_run", f"{LABELS['liger']} run"),
    _text("vanilla_run", f"{LABELS['vanilla']} run"),
    Column("n_steps_compared", "steps compared"),
    Column("max_rel_diff", "max rel. loss diff %", percent_of(2)),
    Column("step_of_max", "at step", digits(0)),
    _text("passed", "parity", _verdict, alarm=_failed),
]
_RUN_IDENTITY = [
    _text("run_key", "run key"),
    _variant(),
    Column("batch_size", "batch size"),
    Column("seq_len", "seq len"),
    Column("repeat", "repeat"),
]
PROBLEM_COLUMNS = [*_RUN_IDENTITY, _text("status", "status"), _text("reason", "reason")]
RUN_COLUMNS = [
    _RUN_IDENTITY[0],
    _text("status", "status"),
    *_RUN_IDENTITY[1:],
    Column("tokens_per_s_nonpad", "tokens/s non-pad", digits(0)),
    Column("tokens_per_s_padded", "tokens/s padded", digits(0)),
    Column("gpus", "GPUs"),
    Column("tokens_per_s_nonpad_per_gpu", "tokens/s non-pad per GPU", digits(0)),
    Column("step_time_s", "median step s", digits(3)),
    Column("step_time_cv", "step CV %", percent_of(1)),
    Column("peak_mem_allocated_gb", "peak alloc GiB", digits(2)),
    Column("peak_mem_reserved_gb", "peak reserved GiB", digits(2)),
    Column("mfu", "MFU", digits(3)),
    Column("final_loss", "final loss", digits(4)),
    Column("n_measured_steps", "measured steps", digits(0)),
    _text("steady_state", "steady state"),
    Column("drift", "drift %", percent_of(1)),
    Column("n_shapes", "batch shapes", digits(0)),
    Column("n_first_shape_steps", "first-shape steps", digits(0)),
    Column("first_shape_excess_s", "first-shape extra s", digits(2)),
]


@dataclass(frozen=True)
class Table:
    """The columns of one table and what the page says when it has no rows."""

    columns: list[Column]
    empty: str


GAINS = Table(GAIN_COLUMNS, "No grid cell was run.")
CELLS = Table(CELL_COLUMNS, "No grid cell was run.")
FRONTIER = Table(FRONTIER_COLUMNS, "No grid cell was run.")
PARITY = Table(PARITY_COLUMNS, "No Liger/baseline pair of successful runs to compare.")
PROBLEMS = Table(PROBLEM_COLUMNS, "Every run trained.")
RUNS = Table(RUN_COLUMNS, "No run results were collected.")


def _cells(frame: pd.DataFrame, table: Table) -> list[list[tuple[Column, Any, str]]]:
    """Per row, per column: the column, the value and its text."""
    rows = []
    for _, row in frame.iterrows():
        values = [column.value(row) for column in table.columns]
        rows.append(
            [(column, value, column.formatter(value)) for column, value in zip(table.columns, values, strict=True)]
        )
    return rows


def html_table(frame: pd.DataFrame, table: Table) -> str:
    """``frame`` as an HTML table of ``table``'s columns; text columns left-aligned, numbers right-aligned."""
    if frame.empty:
        return f'<p class="missing">{html.escape(table.empty)}</p>'

    def cell(tag: str, column: Column, text: str, failed: bool = False) -> str:
        kinds = " ".join(kind for kind, on in (("text", column.align == "text"), ("fail", failed)) if on)
        kind = f' class="{kinds}"' if kinds else ""
        return f"<{tag}{kind}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", column, column.label) for column in table.columns)
    body = [
        "<tr>" + "".join(cell("td", c, text, bool(c.alarm and c.alarm(value))) for c, value, text in row) + "</tr>"
        for row in _cells(frame, table)
    ]
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _md_escape(text: str) -> str:
    for char in "\\`*_[]|":
        text = text.replace(char, "\\" + char)
    return html.escape(text.replace("\n", " "), quote=False)


def markdown_table(frame: pd.DataFrame, table: Table) -> str:
    """``frame`` as a Markdown table of ``table``'s columns, aligned like the HTML one."""
    if frame.empty:
        return f"_{_md_escape(table.empty)}_"
    lines = ["| " + " | ".join(_md_escape(column.label) for column in table.columns) + " |"]
    lines.append("|" + "".join("---|" if column.align == "text" else "---:|" for column in table.columns))
    lines += ["| " + " | ".join(_md_escape(text) for _, _, text in row) + " |" for row in _cells(frame, table)]
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


def _grid(analysis: Analysis) -> dict[str, Any]:
    runs = analysis.runs
    grid: dict[str, Any] = {
        "variants": ", ".join(LABELS[v] for v in VARIANTS if v in set(runs["variant"])),
        "per_device_train_batch_size": ", ".join(str(b) for b in sorted(runs["batch_size"].unique())),
        "max_seq_length": ", ".join(str(s) for s in sorted(runs["seq_len"].unique())),
        "repeats": int(runs["repeat"].nunique()),
        "runs": len(runs),
    }
    for key in sorted([*analysis.settings, *analysis.varying_settings]):
        grid[key] = analysis.settings.get(key, "varies between runs")
    return grid


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
        out[f"attention, {LABELS[variant]}"] = ", ".join(used)
    kernels = analysis.liger_kernels
    if kernels:
        out["Liger kernels applied (modules patched)"] = ", ".join(f"{k} ({n})" for k, n in kernels.items() if n)
        out["Liger kernels not applied"] = ", ".join(k for k, n in kernels.items() if not n) or "none"
    return out


def _figure(drawing: Drawing) -> str:
    esc = html.escape
    if drawing.data_uri:
        body = f'<img src="{drawing.data_uri}" alt="{esc(drawing.caption)}">'
    else:
        body = f'<p class="missing">{esc(drawing.missing)}</p>'
    return f"<h3>{esc(drawing.caption)}</h3>{body}"


def render_html(analysis: Analysis, title: str, headline: str, notes: list[str], drawings: list[Drawing]) -> str:
    """The self-contained report page.

    Args:
        analysis: What ``analyze_results`` returned.
        title: Page title.
        headline: ``narrative.make_headline``'s sentences.
        notes: ``narrative.caveats``.
        drawings: ``figures.draw_figures``: throughput, memory, loss and per-step throughput.

    Returns:
        The HTML document.

    """
    esc = html.escape
    throughput_figure, memory_figure, loss_figure, steps_figure = (_figure(d) for d in drawings)
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
        html_table(analysis.gains, GAINS),
        throughput_figure,
        memory_figure,
        "<h2>Out-of-memory frontier</h2>",
        html_table(analysis.frontier, FRONTIER),
        f"<h2>Loss parity (tolerance {analysis.parity_tolerance:.1%})</h2>",
        "<p>Relative difference of per-step losses of a Liger run and the baseline run of the same cell "
        "and repeat, over the measured steps (after warm-up).</p>",
        html_table(analysis.parity, PARITY),
        loss_figure,
        steps_figure,
        "<h2>Per-cell results</h2>",
        "<p>Each run contributes its tokens/s over its measured steps; a cell shows the mean over its ok "
        "repeats with a 95% Student-t interval (unavailable with one repeat), the largest peak memory, "
        "the drift of its least steady run and its steps with a new batch shape.</p>",
        html_table(analysis.cells, CELLS),
        "<h2>Runs that did not train</h2>",
        html_table(analysis.problems, PROBLEMS),
        "<h2>All runs</h2>",
        html_table(analysis.runs, RUNS),
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
        f"# {_md_escape(title)}",
        f"**{_md_escape(headline)}**",
        _md_escape(BASELINE_DEFINITION),
        "## Liger vs baseline",
        markdown_table(analysis.gains, GAINS),
        "## Out-of-memory frontier",
        markdown_table(analysis.frontier, FRONTIER),
        f"## Loss parity (tolerance {analysis.parity_tolerance:.1%})",
        markdown_table(analysis.parity, PARITY),
        "## Runs that did not train",
        markdown_table(analysis.problems, PROBLEMS),
        "## Architecture",
        "\n".join(f"- {_md_escape(k)}: {_md_escape(str(v))}" for k, v in _architecture(analysis).items()),
        "## Caveats",
        "\n".join(f"- {_md_escape(n)}" for n in notes) or "None.",
    ]
    return "\n\n".join(sections) + "\n"
