"""The report's tables, each column declared once: the analysis field it shows, its header, format and alignment.

Text columns are left-aligned and number columns right-aligned, in the HTML page and the Markdown
summary alike, whatever a cell's text looks like ("unavailable", "–").
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from liger_bench.analyse.analysis import COST_DIGITS
from liger_bench.analyse.narrative import LABELS, label, number


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
    """One table column: the analysis field it shows, its header, how a value is written and aligned.

    A cell's text stays on one line (a run key must not break at its hyphens) unless the column
    ``wraps``: free text such as a failure's reason.
    """

    field: str | tuple[str, str]  # a column of the analysis table, or a pair: an interval's (low, high), …
    label: str
    formatter: Callable[[Any], str] = number
    align: Literal["number", "text"] = "number"
    alarm: Callable[[Any], bool] | None = None  # cells whose value it holds for are marked as failures
    wraps: bool = False

    def value(self, row: pd.Series) -> Any:
        """The field's value in ``row``; a pair for a pair of fields."""
        return row[self.field] if isinstance(self.field, str) else (row[self.field[0]], row[self.field[1]])


def _text(field: str, label: str, formatter: Callable[[Any], str] = number, **kwargs: Any) -> Column:
    return Column(field, label, formatter, align="text", **kwargs)


def _variant(header: str = "variant") -> Column:
    return _text("variant", header, label)


def _mfu(values: tuple[float, float]) -> str:
    """MFU, or ``unknown`` where the GPU's peak FLOP/s is (a missing MFU is not a measured zero)."""
    mfu, peak_tflops = values
    return number(mfu, 3) if isinstance(peak_tflops, float) and math.isfinite(peak_tflops) else "unknown"


# Columns of a run's measurements, shared by the per-cell and per-run tables.
_NONPAD_RATE = Column("tokens_per_s_nonpad", "tokens/s non-pad", digits(0))
_PADDED_RATE = Column("tokens_per_s_padded", "tokens/s padded", digits(0))
_PER_GPU_RATE = Column("tokens_per_s_nonpad_per_gpu", "tokens/s non-pad per GPU", digits(0))
_STEP_TIME = Column("step_time_s", "median step s", digits(3))
_MEMORY_AND_MFU = [
    Column("peak_mem_allocated_gb", "peak alloc GiB", digits(2)),
    Column("peak_mem_reserved_gb", "peak reserved GiB", digits(2)),
    Column(("mfu", "peak_tflops"), "MFU", _mfu),
]
_STEADINESS = [_text("steady_state", "steady state"), Column("drift", "drift %", percent_of(1))]
_FIRST_SHAPES = [
    Column("n_first_shape_steps", "first-shape steps", digits(0)),
    Column("first_shape_excess_s", "first-shape extra s", digits(2)),
]
_COMPILE = [
    Column("n_compile_steps", "compile steps", digits(0)),
    Column("recompiles", "recompiles", digits(0)),
    Column("compile_time_s", "compile s", digits(1)),
]
GAIN_COLUMNS = [
    _variant(),
    _text("against", "against", label),
    Column("batch_size", "batch"),
    Column("seq_len", "seq len"),
    _text("variant_outcome", "variant outcome"),
    _text("against_outcome", "against outcome"),
    _text("steady_state", "steady state"),
    Column("n_pairs", "pairs"),
    Column("gain_pct", "tokens/s gain %", digits(1)),
    Column(("gain_ci_low_pct", "gain_ci_high_pct"), "95% CI %", interval(1)),
    Column("mem_reserved_reduction_pct", "reserved mem reduction %", digits(1)),
    Column("mem_allocated_reduction_pct", "allocated mem reduction %", digits(1)),
    Column("payback_steps", "compile paid back after steps", digits(0)),
]
RECOMMENDATION_COLUMNS = [
    Column("batch_size", "batch"),
    Column("seq_len", "seq len"),
    _text("fastest", "fastest", lambda v: label(v) if v else "none"),
    Column("fastest_tokens_per_s", "its tokens/s", digits(0)),
    Column(("fastest_ci_low", "fastest_ci_high"), "95% CI", interval()),
    _text("fastest_ties", "indistinguishable from", lambda v: ", ".join(label(x) for x in v.split(", ") if x) or "–"),
    _text("leanest", "leanest", lambda v: label(v) if v else "none"),
    Column("leanest_peak_mem_reserved_gb", "its peak reserved GiB", digits(2)),
    _text("excluded", "not recommended (why)", lambda v: v or "–", wraps=True),
    _text("cheapest", "cheapest per token", lambda v: label(v) if v else "–"),
    Column("cheapest_cost_per_mtok", "its cost per M tokens", digits(COST_DIGITS)),
]
# The per-cell and per-run results are two tables each, so that every column fits a 1280 px window.
_CELL_IDENTITY = [_variant(), Column("batch_size", "batch"), Column("seq_len", "seq len"), _text("outcome", "outcome")]
CELL_RATE_COLUMNS = [
    *_CELL_IDENTITY,
    Column("n_ok", "ok"),
    Column("n_runs", "runs"),
    _NONPAD_RATE,
    Column(("tokens_per_s_nonpad_ci_low", "tokens_per_s_nonpad_ci_high"), "95% CI", interval()),
    _PADDED_RATE,  # its interval is in the CSV table: the gains and the headline are of non-padding tokens
    Column("gpus", "GPUs per run"),
    _PER_GPU_RATE,
    _STEP_TIME,
]
CELL_MEMORY_COLUMNS = [
    *_CELL_IDENTITY,
    *_MEMORY_AND_MFU,
    Column("step_time_cv_max", "max step CV %", percent_of(1)),
    *_STEADINESS,
]


def _energy(values: tuple[float, str]) -> str:
    """Energy per million tokens in kWh, or ``unavailable (why)``: a missing energy is not a measured zero."""
    kwh, unavailable = values
    return number(kwh, 4) if unavailable == "" and math.isfinite(kwh) else f"unavailable ({unavailable or 'no run'})"


# What a million non-padding tokens cost at gpu_hour_price, and the energy they took (NVML's counter).
CELL_COST_COLUMNS = [
    *_CELL_IDENTITY,
    Column("cost_per_mtok", "cost per M tokens", digits(COST_DIGITS)),
    Column(("cost_per_mtok_ci_low", "cost_per_mtok_ci_high"), "95% CI", interval(COST_DIGITS)),
    Column(("kwh_per_mtok", "energy_unavailable"), "kWh per M tokens", _energy),
    Column(("kwh_per_mtok_ci_low", "kwh_per_mtok_ci_high"), "95% CI", interval(4)),
    Column("mean_power_w", "mean power W (all GPUs)", digits(0)),
]
# One-off costs left out of the rates: steps of a new batch shape and steps in which torch.compile compiled.
CELL_ONE_OFF_COLUMNS = [*_CELL_IDENTITY, *_FIRST_SHAPES, *_COMPILE]
FRONTIER_COLUMNS = [
    _variant(),
    Column("seq_len", "seq len"),
    Column("largest_ok_batch", "largest batch that trained", digits(0)),
    Column("smallest_oom_batch", "smallest batch out of memory", digits(0)),
]
SEARCH_COLUMNS = [
    _variant(),
    Column("seq_len", "seq len"),
    Column("largest_fit", "largest batch that fits", digits(0)),
    Column("smallest_oom", "first batch out of memory", digits(0)),
    Column("peak_mem_reserved_gb", "peak reserved GiB at largest fit", digits(2)),
    Column("gpu_memory_gb", "GPU capacity GiB", digits(1)),
    Column("capacity_share", "of capacity %", percent_of(1)),
    Column("n_probes", "probes", digits(0)),
    Column("search_time_s", "search s", digits(0)),
    _text("end", "search ended"),
    _text("reason", "why", wraps=True),
]
FIT_RATE_COLUMNS = [
    _variant(),
    Column("seq_len", "seq len"),
    Column("largest_fit", "largest batch that fits", digits(0)),
    _text("outcome", "outcome"),
    _text("steady_state", "steady state"),
    _NONPAD_RATE,
    Column(("tokens_per_s_nonpad_ci_low", "tokens_per_s_nonpad_ci_high"), "95% CI", interval()),
    Column("n_pairs", "pairs"),
    Column("gain_pct", "tokens/s gain vs the baseline at its largest fit %", digits(1)),
    Column(("gain_ci_low_pct", "gain_ci_high_pct"), "95% CI %", interval(1)),
]
SEQUENCE_SEARCH_COLUMNS = [
    _variant(),
    Column("batch_size", "batch size"),
    Column("longest_fit", "longest sequence that fits", digits(0)),
    Column("shortest_oom", "first sequence out of memory", digits(0)),
    Column("peak_mem_reserved_gb", "peak reserved GiB at longest fit", digits(2)),
    *SEARCH_COLUMNS[5:],
]
PARITY_COLUMNS = [
    _variant(),
    Column("batch_size", "batch"),
    Column("seq_len", "seq len"),
    Column("repeat", "repeat"),
    _text("variant_run", "variant run"),
    _text("baseline_run", f"{LABELS['baseline']} run"),
    Column("n_steps_compared", "steps compared"),
    Column("max_rel_diff", "max rel. loss diff %", percent_of(2)),
    Column("step_of_max", "at step", digits(0)),
    _text("passed", "parity", _verdict, alarm=_failed),
]
_RUN_KEY, _STATUS = _text("run_key", "run key"), _text("status", "status")
_RUN_AXES = [_variant(), Column("batch_size", "batch size"), Column("seq_len", "seq len"), Column("repeat", "repeat")]
PROBLEM_COLUMNS = [_RUN_KEY, *_RUN_AXES, _STATUS, _text("reason", "reason", wraps=True)]
RUN_RATE_COLUMNS = [
    _RUN_KEY,
    _STATUS,
    *_RUN_AXES,
    _NONPAD_RATE,
    _PADDED_RATE,
    Column("gpus", "GPUs"),
    _PER_GPU_RATE,
    _STEP_TIME,
    Column("step_time_cv", "step CV %", percent_of(1)),
]
RUN_MEMORY_COLUMNS = [
    _RUN_KEY,
    _STATUS,
    *_MEMORY_AND_MFU,
    Column("final_loss", "final loss", digits(4)),
    Column("n_measured_steps", "measured steps", digits(0)),
    *_STEADINESS,
]
RUN_ONE_OFF_COLUMNS = [_RUN_KEY, _STATUS, Column("n_shapes", "batch shapes", digits(0)), *_FIRST_SHAPES, *_COMPILE]
# Kernel ablation (issue 25): per kernel alone against the baseline and left out of all-kernels Liger.
ATTRIBUTION_COLUMNS = [
    _text("kernel", "kernel"),
    Column("batch_size", "batch"),
    Column("seq_len", "seq len"),
    Column("alone_n_pairs", "pairs alone"),
    Column("alone_gain_pct", "alone: tokens/s gain %", digits(1)),
    Column(("alone_gain_pct_ci_low", "alone_gain_pct_ci_high"), "gain 95% CI %", interval(1)),
    Column("alone_mem_reduction_pct", "alone: alloc mem reduction %", digits(1)),
    Column(("alone_mem_reduction_pct_ci_low", "alone_mem_reduction_pct_ci_high"), "reduction 95% CI %", interval(1)),
    Column("left_out_n_pairs", "pairs left out"),
    Column("left_out_loss_pct", "left out: tokens/s lost %", digits(1)),
    Column(("left_out_loss_pct_ci_low", "left_out_loss_pct_ci_high"), "loss 95% CI %", interval(1)),
    Column("left_out_mem_increase_pct", "left out: alloc mem added %", digits(1)),
    Column(("left_out_mem_increase_pct_ci_low", "left_out_mem_increase_pct_ci_high"), "added 95% CI %", interval(1)),
]
INTERACTION_COLUMNS = [
    Column("batch_size", "batch"),
    Column("seq_len", "seq len"),
    _text("kernels", "single kernels", wraps=True),
    Column("n_repeats", "repeats"),
    Column("sum_of_singles_gain_pct", "sum of singles' gains %", digits(1)),
    Column(("sum_of_singles_gain_pct_ci_low", "sum_of_singles_gain_pct_ci_high"), "sum 95% CI %", interval(1)),
    Column("all_kernels_gain_pct", "all kernels' gain %", digits(1)),
    Column(("all_kernels_gain_pct_ci_low", "all_kernels_gain_pct_ci_high"), "all 95% CI %", interval(1)),
    Column("interaction_pct", "interaction (all − sum) points", digits(1)),
    Column(("interaction_pct_ci_low", "interaction_pct_ci_high"), "interaction 95% CI", interval(1)),
    Column("sum_of_singles_mem_reduction_pct", "sum of singles' alloc mem reduction %", digits(1)),
    Column("all_kernels_mem_reduction_pct", "all kernels' alloc mem reduction %", digits(1)),
]


@dataclass(frozen=True)
class Table:
    """The columns of one table and what the page says when it has no rows."""

    columns: list[Column]
    empty: str


GAINS = Table(GAIN_COLUMNS, "No two variants were run.")
RECOMMENDATIONS = Table(RECOMMENDATION_COLUMNS, "No grid cell was run.")
CELL_RATES = Table(CELL_RATE_COLUMNS, "No grid cell was run.")
CELL_MEMORY = Table(CELL_MEMORY_COLUMNS, "No grid cell was run.")
CELL_ONE_OFF = Table(CELL_ONE_OFF_COLUMNS, "No grid cell was run.")
CELL_COST = Table(CELL_COST_COLUMNS, "No grid cell was run.")
FRONTIER = Table(FRONTIER_COLUMNS, "No grid cell was run.")
SEARCHES = Table(SEARCH_COLUMNS, "No memory frontier search was recorded.")
FIT_RATES = Table(
    FIT_RATE_COLUMNS,
    'No variant ran at its own largest fit: "max" in per_device_train_batch_size trains each variant there.',
)
SEQUENCE_SEARCHES = Table(SEQUENCE_SEARCH_COLUMNS, "No longest-sequence search was run (frontier_seq_batch_size 0).")
PARITY = Table(PARITY_COLUMNS, "No variant/baseline pair of successful runs to compare.")
PROBLEMS = Table(PROBLEM_COLUMNS, "Every run finished ok.")
RUN_RATES = Table(RUN_RATE_COLUMNS, "No run results were collected.")
RUN_MEMORY = Table(RUN_MEMORY_COLUMNS, "No run results were collected.")
RUN_ONE_OFF = Table(RUN_ONE_OFF_COLUMNS, "No run results were collected.")
ATTRIBUTION = Table(ATTRIBUTION_COLUMNS, "No kernel ablation was run (kernel_ablation 'off').")
INTERACTION = Table(INTERACTION_COLUMNS, "No single-kernel arm was run (kernel_ablation 'each' or 'both' has them).")


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
        kinds = " ".join(
            kind for kind, on in (("text", column.align == "text"), ("wrap", column.wraps), ("fail", failed)) if on
        )
        kind = f' class="{kinds}"' if kinds else ""
        return f"<{tag}{kind}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", column, column.label) for column in table.columns)
    body = [
        "<tr>" + "".join(cell("td", c, text, bool(c.alarm and c.alarm(value))) for c, value, text in row) + "</tr>"
        for row in _cells(frame, table)
    ]
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def md_escape(text: str) -> str:
    """``text`` safe inside a Markdown table or list: Markdown's and HTML's special characters escaped."""
    for char in "\\`*_[]|":
        text = text.replace(char, "\\" + char)
    return html.escape(text.replace("\n", " "), quote=False)


def markdown_table(frame: pd.DataFrame, table: Table) -> str:
    """``frame`` as a Markdown table of ``table``'s columns, aligned like the HTML one."""
    if frame.empty:
        return f"_{md_escape(table.empty)}_"
    lines = ["| " + " | ".join(md_escape(column.label) for column in table.columns) + " |"]
    lines.append("|" + "".join("---|" if column.align == "text" else "---:|" for column in table.columns))
    lines += ["| " + " | ".join(md_escape(text) for _, _, text in row) + " |" for row in _cells(frame, table)]
    return "\n".join(lines)
