"""Time analyze_results (and the whole report) on 500 runs × 50 steps of synthetic results.

Target: analysis in at most 10 s on a 2-core machine. Run from the repository root:

    python benchmarks/analysis_scale.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic_results import build, scale_scenario  # noqa: E402

from liger_bench.analyse.analysis import analyze_results  # noqa: E402
from liger_bench.render.report import build_report  # noqa: E402

TARGET_S = 10.0


def main() -> None:
    results, histories = build(scale_scenario(n_repeats=10), max_steps=50)
    n_steps = sum(len(h["steps"]) for h in histories)
    print(f"{len(results)} runs, {n_steps} step records, {os.cpu_count()} CPUs")
    start = time.perf_counter()
    analysis = analyze_results(results, histories)
    analysis_s = time.perf_counter() - start
    start = time.perf_counter()
    bundle = build_report(results, histories)
    report_s = time.perf_counter() - start
    print(f"analyze_results: {analysis_s:.2f} s (target <= {TARGET_S:.0f} s, {analysis_s / TARGET_S:.0%} of it)")
    print(f"build_report (analysis + figures + HTML): {report_s:.2f} s, page {len(bundle.html) / 1e6:.1f} MB")
    print(f"cells {len(analysis.cells)}, parity pairs {len(analysis.parity)}, headline: {bundle.headline}")


if __name__ == "__main__":
    main()
