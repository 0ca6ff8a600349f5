"""Issue 24's GPU proof: the searched memory frontier against a brute-force sweep, and the memory model's error.

For Phi-3-mini's architecture (the embedded ``phi3-mini`` preset: ``Phi3Config`` sizes, random
weights, so no hub is needed) at each ``--seq-lens`` and each ``--variants`` (baseline, liger), on
one GPU:

1. **The search** find_frontier runs: ``search_frontier`` over ``supervised_probe``, exactly what
   ``liger_bench.measure.frontier_probe.find_frontier`` does for a grid point: each probe trains
   ``frontier_probe_steps`` full steps of rows packed to the sequence length, in a fresh supervised
   process. Its settings are the pipeline's defaults (``FrontierSettings``) unless given, and it starts
   where find_frontier starts on the pipeline's default grid at that sequence length (``pipeline_start``)
   unless ``--start`` says (the committed ``benchmarks/results/h200-frontier`` searched from 1).
2. **The sweep**: the same probe, each batch in a fresh process again, at the batches
   ``sweep_batches`` names for a resolved search with largest fit F, step r (``frontier_resolution``):
   F − 3r, F − 2r, F − r, F, F + r and F + 2r (those ≥ 1). Why that is enough: memory grows with the
   batch, so if a batch trains every smaller one does (monotonicity), and the frontier E (the largest
   batch that trains) is within one search step of F, F ≤ E < F + r, exactly when F trains and F + r
   runs out of memory. The sweep re-probes those two in fresh processes; F − 3r … F − r show the fits
   below F were not a fluke of one process (an OOM among them would break monotonicity, and the
   table says so), and F + 2r that the out-of-memory above persists. The sweep's frontier is the
   largest swept batch that trained below the first swept batch that ran out of memory; the two agree
   when it is at most one step from F and some swept batch ran out of memory. Batches far below F are
   not swept: under monotonicity they cannot move the frontier, and each costs a probe (~20 s).
   A search that did not resolve (bound, nothing fits, a failed probe, time budget) is not swept.
3. **The memory model** (``benchmarks/memory_model.py``): its predicted allocated peak at F against
   the probe's measured allocated peak, and the largest batch it predicts under the GPU's capacity.

Each (variant, seq) writes ``<out>/<variant>-seq<seq>.json`` after its search and after every sweep
probe (``complete`` says whether the sweep finished), and the log prints every probe's outcome, so a
device call cut at its 10-minute limit keeps every probe that finished; ``--resume`` keeps a document's
search and swept batches and probes only the rest. Split the work with ``--variants`` and ``--seq-lens``
(the plan printed first estimates each part; probes took 15-27 s each on an H200) and combine with ``--table``::

    source benchmarks/device_env.sh; keep_out /tmp/fc &
    python benchmarks/frontier_check.py --variants baseline --seq-lens 512 --out /tmp/fc; keep_out /tmp/fc once
    ...
    python benchmarks/frontier_check.py --table DIR   # one table from every part's JSON

It prints per (variant, seq): the searched largest fit and first out-of-memory batch, the sweep's,
agreement yes/no, probes and seconds, and the predicted against the measured peak with its error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from memory_model import ARCHES, Arch, frontier_check, predicted_frontier

from liger_bench.measure.frontier import Frontier, Probe, ProbeRunner, search_frontier
from liger_bench.measure.frontier_probe import batch_axis
from liger_bench.plan.config import TrainConfig
from liger_bench.plan.frontier import FrontierSettings, batch_start
from liger_bench.plan.grid import GridError, GridSpec, expand_grid

# A probe's wall time on an H200 with Phi-3-mini: process start, model load, 3 steps; a mean of
# 20.2 s (14.9-26.5) over the 50 probes of benchmarks/results/h200-frontier (the plan once assumed 15 s).
SECONDS_PER_PROBE = 20.0
# The sweep's batches, in search steps from the searched largest fit (see the module docstring).
SWEEP_STEPS = range(-3, 3)
VARIANTS = ("baseline", "liger")
GPU_BENCHMARK = Path(__file__).with_name("gpu_benchmark.py")


def point_config(variant: str, seq: int) -> TrainConfig:
    """The training config of a (variant, seq) point: the pipeline's defaults, eager."""
    return TrainConfig(run_key=f"{variant}-seq{seq}", use_liger=variant == "liger", max_seq_length=seq)


def pipeline_start(variant: str, seq: int, settings: FrontierSettings) -> int:
    """Where find_frontier starts (variant, seq)'s batch search on the pipeline's default grid at that length.

    Args:
        variant: ``baseline`` or ``liger``.
        seq: The sequence length, the grid's only one.
        settings: The search's settings (its bound caps the start).
    """
    grid = expand_grid(GridSpec(use_liger=[variant == "liger"], torch_compile=[False], max_seq_length=[seq]))
    return batch_start(grid, point_config(variant, seq), settings.frontier_max_batch_size)


def sweep_batches(largest_fit: int | None, step: int) -> list[int]:
    """The batches the sweep probes around a resolved search's largest fit: F − 3r … F + 2r, those ≥ 1.

    Args:
        largest_fit: The search's largest fit F (None: nothing to sweep).
        step: The search's resolution r.
    """
    if largest_fit is None:
        return []
    return [largest_fit + k * step for k in SWEEP_STEPS if largest_fit + k * step >= 1]


def sweep_frontier(probes: list[Probe]) -> dict:
    """The sweep's answer: the largest batch that trained below the first out of memory, and whether it is monotone.

    Args:
        probes: The sweep's probes, any order.

    Returns:
        ``largest_fit`` and ``smallest_oom`` (None where no swept batch did), and ``monotone``: every
        swept batch ended ok or oom, and none trained above one that ran out of memory.
    """
    ordered = sorted(probes, key=lambda p: p.per_device_train_batch_size)
    first_oom = next((p.per_device_train_batch_size for p in ordered if p.status == "oom"), None)
    below = [
        p.per_device_train_batch_size for p in ordered if first_oom is None or p.per_device_train_batch_size < first_oom
    ]
    fits = [
        p.per_device_train_batch_size for p in ordered if p.status == "ok" and p.per_device_train_batch_size in below
    ]
    monotone = all(p.status == ("ok" if p.per_device_train_batch_size in below else "oom") for p in ordered)
    return {"largest_fit": max(fits, default=None), "smallest_oom": first_oom, "monotone": monotone}


def agrees(search_fit: int | None, sweep: dict, step: int) -> bool:
    """Whether the sweep's frontier is within one search step of the search's, and the sweep saw the edge.

    Args:
        search_fit: The search's largest fit.
        sweep: ``sweep_frontier``'s answer.
        step: The search's resolution.
    """
    if search_fit is None or sweep["largest_fit"] is None or sweep["smallest_oom"] is None:
        return False
    return abs(sweep["largest_fit"] - search_fit) <= step


def check_point(
    variant: str,
    seq: int,
    probe: ProbeRunner,
    settings: FrontierSettings,
    arch: Arch | None,
    start: int,
    clock: Callable[[], float] = time.monotonic,
    saved: dict | None = None,
    save: Callable[[dict], None] = lambda document: None,
) -> dict:
    """Search one (variant, seq), sweep around what it found with the same probe, and check the memory model.

    Args:
        variant: ``baseline`` or ``liger``.
        seq: The sequence length.
        probe: ``supervised_probe`` of the point (a fresh process per call); the tests pass fakes.
        settings: The search's settings.
        arch: The model's sizes for the memory model (None: a preset it has none for, no check).
        start: The search's first batch (``pipeline_start`` unless ``--start`` says).
        clock: Seconds on a monotonic clock.
        saved: A document ``save`` was given before, by a call cut short (``--resume``): its search and swept
            batches are kept, only what it lacks is probed.
        save: Called with the document after the search and after every sweep probe, so a device call cut
            at its time limit keeps every probe that finished.

    Returns:
        The JSON document of the point: the search's record as find_frontier writes it, the sweep's probes
        and frontier, the agreement, the memory model's check, probe counts and seconds, and ``complete``.
    """
    started = clock()
    if saved:
        fields = {k: v for k, v in saved["search"].items() if k not in ("variant", "max_seq_length")}
        frontier = Frontier(**{**fields, "probes": [Probe(**p) for p in fields["probes"]]})
        search_s = saved["seconds"]["search"]
        swept = [Probe(**p) for p in saved["sweep"]["probes"]]
        before_s = saved["seconds"]["sweep"]
    else:
        frontier = search_frontier(probe, batch_axis(settings, start), settings.frontier_time_budget_s, clock)
        search_s, swept, before_s = clock() - started, [], 0.0
    sweep_started = clock()
    record = {"variant": variant, "max_seq_length": seq, **frontier.to_dict()}
    step = settings.frontier_resolution
    batches = sweep_batches(frontier.largest_fit, step) if frontier.end == "resolved" else []

    def document() -> dict:
        answer = sweep_frontier(swept)
        model = frontier_check([record], arch) if arch else []
        complete = {p.per_device_train_batch_size for p in swept} == set(batches)
        return {
            "variant": variant,
            "seq_len": seq,
            "settings": asdict(settings),
            "search": record,
            "sweep": {"batches": batches, "probes": [asdict(p) for p in swept], **answer},
            "agree": agrees(frontier.largest_fit, answer, step) if batches and complete else None,
            "complete": complete,
            "memory_model": model[0] if model else None,
            "n_probes": {"search": len(frontier.probes), "sweep": len(swept)},
            "seconds": {"search": search_s, "sweep": before_s + clock() - sweep_started},
        }

    save(document())
    done = {p.per_device_train_batch_size for p in swept}
    for batch in (b for b in batches if b not in done):
        swept.append(probe(batch, settings.frontier_time_budget_s))
        save(document())
    return document()


def estimated_probes(edge: int, seq: int, settings: FrontierSettings, start: int) -> int:
    """Probes the search and the sweep take when the frontier is at ``edge`` (the search run on a fake GPU).

    Args:
        edge: The largest batch that trains (e.g. the memory model's prediction).
        seq: The sequence length.
        settings: The search's settings.
        start: The search's first batch.
    """

    def oracle(batch: int, _left: float) -> Probe:
        return Probe(batch, seq, "ok" if batch <= edge else "oom")

    frontier = search_frontier(oracle, batch_axis(settings, start), settings.frontier_time_budget_s, lambda: 0.0)
    swept = sweep_batches(frontier.largest_fit, settings.frontier_resolution) if frontier.end == "resolved" else []
    return len(frontier.probes) + len(swept)


def plan(
    variants: list[str],
    seq_lens: list[int],
    settings: FrontierSettings,
    arch: Arch | None,
    capacity_gib: float | None,
    start: int | None = None,
) -> str:
    """Lines saying, per (variant, seq), the frontier the memory model predicts, the probes and seconds to expect.

    Args:
        variants: The variants to check.
        seq_lens: The sequence lengths to check.
        settings: The search's settings.
        arch: The model's sizes (None: the memory model has none for the preset, no estimate).
        capacity_gib: The GPU's memory (None: unknown, no estimate).
        start: The search's first batch (None: ``pipeline_start`` of each point).
    """
    if arch is None or capacity_gib is None:
        return "Plan: the memory model has no sizes for this preset, or the GPU's capacity is unknown: no estimate."
    lines, total = [f"Plan at {SECONDS_PER_PROBE:.0f} s a probe, for {capacity_gib:.1f} GiB:"], 0.0
    for seq in seq_lens:
        for variant in variants:
            edge = predicted_frontier(arch, variant == "liger", 1, seq, capacity_gib)
            first = start or pipeline_start(variant, seq, settings)
            probes = estimated_probes(edge, seq, settings, first)
            total += probes * SECONDS_PER_PROBE
            lines.append(
                f"  {variant} seq {seq}: the memory model predicts a largest fit of {edge}; from batch {first}: "
                f"~{probes} probes (search and sweep), ~{probes * SECONDS_PER_PROBE:.0f} s"
            )
    lines.append(f"  total ~{total:.0f} s; one device call runs 600 s at most: split with --variants/--seq-lens")
    return "\n".join(lines)


def _or_dash(value) -> str:
    return "–" if value is None else str(value)


def table(points: list[dict]) -> str:
    """The results as a Markdown table, by sequence length then variant.

    Args:
        points: ``check_point``'s documents.
    """
    lines = [
        "| variant | seq | searched largest fit | searched first oom | search ended | swept batches "
        "| sweep largest fit | sweep first oom | monotone | agree | probes (search + sweep) | seconds (search + sweep) "
        "| predicted GiB at fit | measured allocated GiB | error % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {variant: i for i, variant in enumerate(VARIANTS)}
    for point in sorted(points, key=lambda p: (p["seq_len"], order.get(p["variant"], len(order)))):
        search, sweep, model = point["search"], point["sweep"], point["memory_model"]
        # Documents written before ``complete`` existed were written only once their sweep had finished.
        if not point.get("complete", True):
            agree = "sweep cut short"
        else:
            agree = {None: "not swept", True: "yes", False: "no"}[point["agree"]]
        peaks = (
            f"{model['predicted_gib']:.1f} | {model['measured_gib']:.1f} | {100 * model['peak_error']:+.1f}"
            if model
            else "– | – | –"
        )
        lines.append(
            f"| {point['variant']} | {point['seq_len']} | {_or_dash(search['largest_fit'])} | "
            f"{_or_dash(search['smallest_oom'])} | {search['end']} | {', '.join(map(str, sweep['batches'])) or '–'} | "
            f"{_or_dash(sweep['largest_fit'])} | {_or_dash(sweep['smallest_oom'])} | "
            f"{'yes' if sweep['monotone'] else 'no'} | {agree} | "
            f"{point['n_probes']['search']} + {point['n_probes']['sweep']} | "
            f"{point['seconds']['search']:.0f} + {point['seconds']['sweep']:.0f} | {peaks} |"
        )
    return "\n".join(lines)


def announced(probe: ProbeRunner) -> ProbeRunner:
    """``probe``, printing each probe's outcome as it ends (the log of a call cut short still says it).

    Args:
        probe: A probe runner.
    """

    def run(batch: int, left_s: float) -> Probe:
        result = probe(batch, left_s)
        peak = "–" if result.peak_mem_allocated_gb is None else f"{result.peak_mem_allocated_gb:.1f}"
        print(
            f"  batch {batch} × {result.max_seq_length}: {result.status}, peak allocated {peak} GiB, "
            f"{result.elapsed_s:.0f} s",
            flush=True,
        )
        return result

    return run


def gpu_capacity_gib() -> float | None:
    """The first GPU's memory from nvidia-smi (this process holds no CUDA context), or None."""
    if not shutil.which("nvidia-smi"):
        return None
    query = ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
    done = subprocess.run(query, capture_output=True, text=True, check=False)
    return float(done.stdout.split()[0]) / 1024 if done.returncode == 0 and done.stdout.strip() else None


def prepared_assets(cache: Path, preset: str) -> tuple[str, str]:
    """The embedded model and gpu_benchmark's ``fixed`` workload (rows of 400-600 words), made in a child process.

    The rows hold far more tokens than a probe at 2,048 tokens and the largest batches needs.
    """
    prepare = [sys.executable, str(GPU_BENCHMARK), "--prepare", "--preset", preset, "--workload", "fixed"]
    subprocess.run([*prepare, "--cache", str(cache)], check=True)
    model_dir, dataset_dir = json.loads((cache / "assets.json").read_text())
    return model_dir, dataset_dir


def main() -> None:
    defaults = FrontierSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--out", type=Path, help="folder of the per-(variant, seq) JSON documents")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/liger-bench-cache"), help="model and dataset")
    parser.add_argument(
        "--preset", default="phi3-mini", help="the embedded model (tiny: a CPU run of the script's plumbing)"
    )
    parser.add_argument("--resolution", type=int, default=defaults.frontier_resolution, help="frontier_resolution")
    parser.add_argument("--max-batch-size", type=int, default=defaults.frontier_max_batch_size)
    parser.add_argument("--probe-steps", type=int, default=defaults.frontier_probe_steps)
    parser.add_argument(
        "--start",
        type=int,
        help="the search's first batch (default: find_frontier's on the pipeline's default grid at each length, its "
        "largest batch; 1 as the committed h200-frontier results)",
    )
    parser.add_argument("--time-budget-s", type=float, default=defaults.frontier_time_budget_s)
    parser.add_argument("--capacity-gib", type=float, help="the plan's GPU memory (default: nvidia-smi's)")
    parser.add_argument("--plan-only", action="store_true", help="print the plan and stop")
    parser.add_argument(
        "--resume", action="store_true", help="keep the search and swept batches of --out's documents, probe the rest"
    )
    parser.add_argument("--table", type=Path, help="print the table of the JSON documents in this folder and stop")
    args = parser.parse_args()
    if args.table:
        print(table([json.loads(path.read_text()) for path in sorted(args.table.glob("*-seq*.json"))]))
        return
    try:
        settings = replace(
            defaults,
            frontier_resolution=args.resolution,
            frontier_max_batch_size=args.max_batch_size,
            frontier_probe_steps=args.probe_steps,
            frontier_time_budget_s=args.time_budget_s,
        )
    except GridError as refused:
        parser.error(str(refused))
    if args.start is not None:
        try:
            batch_axis(settings, args.start)  # the axis checks its own start
        except ValueError as refused:
            parser.error(f"--start: {refused}")
    arch = ARCHES.get(args.preset)
    capacity = args.capacity_gib or gpu_capacity_gib()
    print(plan(args.variants, args.seq_lens, settings, arch, capacity, args.start), flush=True)
    if args.plan_only:
        return
    if args.out is None:
        parser.error("--out is required unless --plan-only or --table")
    from liger_bench.measure.frontier_probe import supervised_probe

    args.out.mkdir(parents=True, exist_ok=True)
    model_dir, dataset_dir = prepared_assets(args.cache, args.preset)
    points = []
    for seq in args.seq_lens:
        for variant in args.variants:
            path = args.out / f"{variant}-seq{seq}.json"
            saved = json.loads(path.read_text()) if args.resume and path.exists() else None
            if not (saved and saved["complete"]):
                config = point_config(variant, seq)
                probe = announced(
                    supervised_probe(config, "per_device_train_batch_size", model_dir, dataset_dir, settings)
                )
                saved = check_point(
                    variant,
                    seq,
                    probe,
                    settings,
                    arch,
                    args.start or pipeline_start(variant, seq, settings),
                    saved=saved,
                    save=lambda document, path=path: path.write_text(json.dumps(document, indent=1)),
                )
            points.append(saved)
            print(table(points[-1:]).splitlines()[-1], flush=True)
    print(table(points))


if __name__ == "__main__":
    main()
