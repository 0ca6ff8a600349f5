"""docs/number-map.md names every reported number, and only tests that exist (issue 23).

The numbers come from the code that reports them, on the synthetic results: a new table column,
CSV column, KFP metric, MLflow tag or aggregate that the map does not name fails here.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from synthetic_results import (
    Run,
    build,
    four_variant_scenario,
    frontier_searches,
    gpu_scenario,
    make_run,
    sequence_searches,
)

from liger_bench import tracking
from liger_bench.analyse.analysis import analyze_results
from liger_bench.analyse.narrative import headline_metrics
from liger_bench.measure.phases import PHASES
from liger_bench.records import STEP_METRICS
from liger_bench.render import tables

ROOT = Path(__file__).resolve().parent.parent
MAP = ROOT / "docs" / "number-map.md"
ALIASES = {"R": "tests/test_reported_numbers.py"}


def sections() -> dict[str, list[list[str]]]:
    """Each heading of the map, with the rows of its table (cells of each row)."""
    out: dict[str, list[list[str]]] = {}
    heading = ""
    for line in MAP.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            out[heading] = []
        elif line.startswith("|") and not line.startswith("|---"):
            out[heading].append([cell.strip() for cell in line.strip("|").split(" | ")])
    return out


def first_column(heading_start: str) -> set[str]:
    """The backticked names in the first column of the section whose heading starts with ``heading_start``."""
    [rows] = [rows for heading, rows in sections().items() if heading.startswith(heading_start)]
    return {name for row in rows[1:] for name in re.findall(r"`([^`]+)`", row[0])}


def matches(patterns: set[str], key: str) -> bool:
    return any(re.fullmatch(re.sub(r"\\\{\w+\\\}", ".+", re.escape(p)), key) for p in patterns)


@pytest.fixture(scope="module")
def analyses():
    # The GPU scenario priced, so that the cost numbers are there to find (issue 27).
    return [
        analyze_results(*build(gpu_scenario()), frontier_searches(), sequence_searches(), gpu_hour_price=3.25),
        analyze_results(*build(four_variant_scenario())),
        # "max": each variant at its searched fit (the baseline's 22, Liger's 36), so the fit numbers are there too.
        analyze_results(
            *build([Run(liger, 36 if liger else 22, 512, r) for r in range(3) for liger in (False, True)]),
            frontier_searches(),
        ),
    ]


@pytest.mark.parametrize("name", [name for name in dir(tables) if isinstance(getattr(tables, name), tables.Table)])
def test_every_column_of_every_report_table_is_in_the_map(name):
    labels = {column.label for column in getattr(tables, name).columns}
    assert first_column(f"`{name}`") == labels


def test_every_csv_column_is_in_the_map(analyses):
    assert first_column("CSV table") == set(analyses[0].cells.columns)


def test_every_kfp_metric_is_in_the_map_and_every_pattern_occurs(analyses):
    patterns = first_column("KFP metrics")
    keys = set().union(*(headline_metrics(analysis) for analysis in analyses))
    assert {key for key in keys if not matches(patterns, key)} == set()
    assert {p for p in patterns if not any(matches({p}, key) for key in keys)} == set()


def test_every_mlflow_tag_and_metric_of_a_child_run_is_in_the_map():
    result, history = make_run(Run(True, 8, 512, torch_compile=True, compile_s=10.0, first_shape_step=7))
    tag_patterns = first_column("Tags")
    cpu_result, _ = make_run(Run(False, 8, 512), cuda=False)  # its tags say why it has no energy
    tags = set(tracking._child_tags(result, "parent-run-id")) | set(tracking._child_tags(cpu_result, ""))
    assert {tag for tag in tags if not matches(tag_patterns, tag)} == set()
    assert {p for p in tag_patterns if not any(matches({p}, tag) for tag in tags)} == set()
    finite = {
        name
        for run in (
            Run(True, 8, 512, status="oom"),
            Run(True, 8, 512, status="diverged"),
            Run(True, 8, 512, slow_first=8),
        )
        for name, value in make_run(run, max_steps=40)[0]["metrics"].items()
        if isinstance(value, (int, float)) and math.isfinite(value)
    }
    finite |= {name for name, value in result["metrics"].items() if isinstance(value, (int, float))}
    logged = {tracking.SUMMARY_PREFIX + name for name in finite} | set(STEP_METRICS)
    logged |= {name for name, *_ in tracking._child_metrics({"phases_s": dict.fromkeys(PHASES, 1.0)}, [])}
    assert logged - first_column("Metrics") == set()


def test_every_test_the_map_names_exists():
    text = MAP.read_text(encoding="utf-8")
    named = re.findall(r"`((?:R|tests/[\w/]+\.py))::(\w+)`", text)
    assert len(named) > 100
    missing = []
    for path, test in set(named):
        source = (ROOT / ALIASES.get(path, path)).read_text(encoding="utf-8")
        if not re.search(rf"^def {test}\(", source, re.MULTILINE):
            missing.append(f"{path}::{test}")
    assert sorted(missing) == []
