"""Does the pipeline's default measurement agree with a long run on variable-length data?

Reads ``gpu_benchmark.py --workload variable`` outputs (a default-settings run and a long reference
run per batch size), re-derives every run's aggregates from its step history with the current
``metrics.aggregate`` (so all numbers come from one code path), and prints per batch size: the
Liger gain at the defaults and in the long run (the report's statistic: mean of paired per-repeat
ratios), their difference against the ±3-point target, what a naive window (first 3 steps
skipped, next 20 measured, median of per-step rates, no shape bookkeeping) would have said, the
gain over consecutive windows of the long run, the first-shape steps and their one-off cost, and
every run the steady-state test flags. CPU only::

    python benchmarks/steady_state.py benchmarks/results/h100-variable
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from liger_bench.analyse.analysis import analyze_results
from liger_bench.measure.metrics import aggregate, is_measured

TARGET_POINTS = 3.0
NAIVE_WARMUP, NAIVE_STEPS = 3, 20
WINDOW = 50


def load_runs(path: Path) -> list[dict]:
    """Every run of a benchmark output, its aggregates re-derived from its steps."""
    runs = []
    for cell in json.loads(path.read_text())["cells"].values():
        for run in cell["runs"]:
            result = dict(run["result"])
            result["metrics"] = {**result["metrics"], **aggregate(run["steps"])}
            runs.append({"result": result, "steps": run["steps"]})
    return runs


def gain_pct(runs: list[dict], batch_size: int) -> float:
    """The report's Liger gain for ``batch_size``: mean of paired per-repeat ratios, in percent."""
    histories = [{"run_key": r["result"]["run_key"], "steps": r["steps"]} for r in runs]
    gains = analyze_results([r["result"] for r in runs], histories).gains
    return float(gains.loc[gains["batch_size"] == batch_size, "gain_pct"].iloc[0])


def _rate(steps: list[dict]) -> float:
    return sum(s["tokens_nonpad"] for s in steps) / sum(s["step_time_s"] for s in steps)


def naive_gain_pct(runs: list[dict]) -> float:
    """Gain from steps 4-23 of repeat 0, median of per-step rates, every shape counted (the old way)."""

    def rate(run):
        window = [s for s in run["steps"] if NAIVE_WARMUP < s["step"] <= NAIVE_WARMUP + NAIVE_STEPS]
        return statistics.median(s["tokens_nonpad"] / s["step_time_s"] for s in window)

    first = {r["result"]["config"]["use_liger"]: r for r in runs if r["result"]["config"]["repeat"] == 0}
    return 100.0 * (rate(first[True]) / rate(first[False]) - 1.0)


def window_gains_pct(runs: list[dict]) -> list[float]:
    """Gain over consecutive windows of ``WINDOW`` steps of the long run (measured steps only)."""
    by_variant = {r["result"]["config"]["use_liger"]: r["steps"] for r in runs}
    n_steps = len(by_variant[False])
    out = []
    for start in range(0, n_steps - WINDOW + 1, WINDOW):
        window = {v: [s for s in steps[start : start + WINDOW] if is_measured(s)] for v, steps in by_variant.items()}
        out.append(100.0 * (_rate(window[True]) / _rate(window[False]) - 1.0))
    return out


def describe(runs: list[dict]) -> list[str]:
    """Per run: steady-state verdict and drift, first-shape steps and their excess time."""
    lines = []
    for run in runs:
        m = run["result"]["metrics"]
        drift = "—" if m["drift"] is None else f"{m['drift']:+.1%}"
        excess = "—" if m["first_shape_excess_s"] is None else f"{m['first_shape_excess_s']:.2f} s"
        lines.append(
            f"  {run['result']['run_key']}: {m['steady_state']} (drift {drift}), {m['n_measured_steps']} measured, "
            f"{m['n_shapes']} shapes, {m['n_first_shape_steps']} first-shape steps after warm-up, excess {excess}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="folder with default-bsN.json and long-bsN.json files")
    args = parser.parse_args()
    rows = ["| bs | default gain | long-run gain | difference | naive 20-step window | long run by 50-step windows |"]
    rows.append("|---|---|---|---|---|---|")
    details = []
    for default_path in sorted(args.results.glob("default-bs*.json")):
        batch_size = int(default_path.stem.split("-bs")[1])
        default, long = load_runs(default_path), load_runs(args.results / f"long-bs{batch_size}.json")
        ok = abs(gain_pct(default, batch_size) - gain_pct(long, batch_size)) <= TARGET_POINTS
        rows.append(
            f"| {batch_size} | {gain_pct(default, batch_size):+.1f}% | {gain_pct(long, batch_size):+.1f}% | "
            f"{gain_pct(default, batch_size) - gain_pct(long, batch_size):+.1f} points "
            f"({'within' if ok else 'outside'} ±{TARGET_POINTS:.0f}) | {naive_gain_pct(default):+.1f}% | "
            f"{', '.join(f'{g:+.1f}%' for g in window_gains_pct(long))} |"
        )
        details += [f"bs {batch_size}, default settings:", *describe(default), f"bs {batch_size}, long run:"]
        details += describe(long)
    print("\n".join(rows + [""] + details))


if __name__ == "__main__":
    main()
