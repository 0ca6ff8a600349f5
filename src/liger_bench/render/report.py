"""The benchmark report: analyse the runs once, then word, draw and lay out what the analysis found.

``build_report`` is analyze_results' one call: ``analysis`` makes the numbers, ``narrative`` the
headline, caveats and KFP metrics, ``figures`` the drawings and ``page`` the HTML page and Markdown
summary; ``write_bundle`` writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from liger_bench.analyse.analysis import DEFAULT_PARITY_TOLERANCE, Analysis, analyze_results
from liger_bench.analyse.narrative import caveats, headline_metrics, make_headline
from liger_bench.records import write_text_atomic
from liger_bench.render.figures import draw_figures
from liger_bench.render.page import render_html, render_markdown

DEFAULT_TITLE = "Liger Kernel fine-tuning benchmark"


@dataclass
class ReportBundle:
    """Everything analyze_results writes."""

    html: str
    markdown: str
    metrics: dict[str, float]
    table: pd.DataFrame
    headline: str
    analysis: Analysis


def build_report(
    results: Sequence[dict[str, Any]],
    histories: Sequence[dict[str, Any]],
    frontiers: Sequence[dict[str, Any]] = (),
    sequence_frontiers: Sequence[dict[str, Any]] = (),
    *,
    title: str = DEFAULT_TITLE,
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE,
    gpu_hour_price: float | None = None,
) -> ReportBundle:
    """Analyse all runs and render the report.

    Args:
        results: Run results (``RunResult.to_dict()``), any order.
        histories: Step histories, any order, joined to results by ``run_key``.
        frontiers: find_frontier's records of the memory frontier searches (none: no search).
        sequence_frontiers: find_frontier's records of the longest-sequence searches (none: no search).
        title: Page title.
        parity_tolerance: Largest relative per-step loss difference at which a pair passes parity.
        gpu_hour_price: The price of one GPU-hour, for the cost per million tokens; None: no cost.

    Returns:
        The HTML page, Markdown summary, headline metrics, per-cell table and headline.

    """
    analysis = analyze_results(
        results,
        histories,
        frontiers,
        sequence_frontiers,
        parity_tolerance=parity_tolerance,
        gpu_hour_price=gpu_hour_price,
    )
    headline = make_headline(analysis)
    notes = caveats(analysis)
    return ReportBundle(
        html=render_html(analysis, title, headline, notes, draw_figures(analysis)),
        markdown=render_markdown(analysis, title, headline, notes),
        metrics=headline_metrics(analysis),
        table=analysis.cells,
        headline=headline,
        analysis=analysis,
    )


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
