"""A `liger-bench local` run's report, rendered again from the runs' own records by today's analysis.

The report's words and tables change after a GPU run (a headline fixed, a table added); the runs'
measurements do not. `gpu_local_pipeline.sh` packs each run's result and step history and
find_frontier's searches from kfp's pipeline root into OUT_DIR/records.tgz; this renders them as
analyze_results does, without MLflow, into a folder of report.html, summary.md and analysis.csv.
The records hold no gpu_hour_price: give the run's again (--gpu-hour-price) to keep its cost columns.

    python benchmarks/rerender_local.py pack PIPELINE_RUN_DIR RECORDS.tgz
    python benchmarks/rerender_local.py render RECORDS.tgz OUT_DIR [--gpu-hour-price P]
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
from pathlib import Path

from liger_bench import tasks

# Where kfp's local runner leaves them under a pipeline run's folder: a training task per ParallelFor iteration.
RESULT, HISTORY, FRONTIER = "for-loop-*/train-model/result", "for-loop-*/train-model/history", "find-frontier/frontier"


def pack(run_dir: Path, records: Path) -> int:
    """Put the run's result, history and frontier files into ``records``; how many runs it holds."""
    results = sorted(run_dir.glob(RESULT))
    part = records.with_name(records.name + ".part")  # a pack that fails leaves no records.tgz
    with tarfile.open(part, "w:gz") as tar:
        for path in [*results, *sorted(run_dir.glob(HISTORY)), run_dir / FRONTIER]:
            tar.add(path, arcname=str(path.relative_to(run_dir)))
    part.replace(records)
    return len(results)


def render(records: Path, out: Path, gpu_hour_price: float = 0.0) -> str:
    """Render ``records`` into ``out`` as analyze_results does; the headline."""
    if not hasattr(tarfile, "data_filter"):
        raise SystemExit("rerender_local.py needs tarfile's extraction filters: Python >= 3.10.12, 3.11.4 or 3.12")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with tarfile.open(records) as tar:
            tar.extractall(root, filter="data")
        return tasks.analyze_results(
            result_paths=[str(p) for p in sorted(root.glob(RESULT))],
            history_paths=[str(p) for p in sorted(root.glob(HISTORY))],
            frontier_path=str(root / FRONTIER),
            html_path=str(out / "report.html"),
            markdown_path=str(out / "summary.md"),
            table_path=str(out / "analysis.csv"),
            log_metric=lambda _name, _value: None,
            min_success_ratio=0.0,
            mlflow_tracking_uri="",
            mlflow_parent_run_id="",
            gpu_hour_price=gpu_hour_price,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="pack a pipeline run's records")
    packing.add_argument("run_dir", type=Path)
    packing.add_argument("records", type=Path)
    rendering = commands.add_parser("render", help="render packed records")
    rendering.add_argument("records", type=Path)
    rendering.add_argument("out", type=Path)
    rendering.add_argument("--gpu-hour-price", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.command == "pack":
        print(f"{pack(args.run_dir, args.records)} runs' records in {args.records}")
    else:
        print(render(args.records, args.out, args.gpu_hour_price))


if __name__ == "__main__":
    main()
