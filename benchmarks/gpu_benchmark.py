"""Liger vs stock transformers on one GPU, through train_model's own code path, with a ceiling.

Phi-3-mini's architecture (``Phi3Config()`` defaults, random weights: no hub is needed), an
alpaca-format dataset, batch sizes × variants × repeats. Two workloads: ``fixed`` (rows of 400-600
words, all truncated to ``--seq-len``: every batch has one shape, no padding) and ``variable``
(rows with alpaca's long-tailed lengths, padded per batch to a multiple of ``--pad-to-multiple-of``:
the shapes a real fine-tuning run sees). Each (batch size, variant) runs in a fresh process, like a
train_model pod: its repeats go through ``liger_bench.measure.training.run_training``, then the same
process times a plain PyTorch loop (same model and batch shape, fused AdamW, no Trainer) as the
ceiling for that variant.

Run on a GPU machine::

    python benchmarks/gpu_benchmark.py --out benchmarks/results/h100
    python benchmarks/gpu_benchmark.py --workload variable --max-steps 200 --no-ceiling --out ...

It prints per batch size: tokens/s per variant, ratio to the ceiling, Liger gain next to the
ceiling's gain, peak memory, the OOM frontier, MFU, loss parity and the agreement between the
callback's step times and an independent synchronised timer; and writes ``benchmark.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from liger_bench.measure.metrics import GIB
from liger_bench.plan.config import TrainConfig


class IndependentTimer(TrainerCallback):
    """Synchronised clock at every step end: full step-to-step intervals, data loading included."""

    def __init__(self):
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        """Record the synchronised time at the end of the step."""
        import torch

        if torch.cuda.is_available():  # a CPU run checks the script, not the numbers
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def plain_loop(model_dir: str, dataset_dir: str, use_liger: bool, batch_size: int, seq_len: int, steps: int):
    """The ceiling: the bare forward/backward/fused-AdamW loop on the same model and batches."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from liger_bench.measure.training import load_model, load_tokenizer, training_rows
    from liger_bench.plan.config import TrainConfig
    from liger_bench.plan.liger import apply_liger

    config = TrainConfig(per_device_train_batch_size=batch_size, max_seq_length=seq_len, max_steps=steps)
    tokenizer = load_tokenizer(model_dir)
    rows = training_rows(config, tokenizer, dataset_dir).rows
    collate = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
    model = load_model(model_dir, bf16=True).cuda()
    if use_liger:
        apply_liger(model, config.liger_flags())
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, fused=True
    )
    times, tokens, peaks, losses = [], [], [], []
    try:
        for step in range(steps):
            batch = collate(rows[step * batch_size : (step + 1) * batch_size])
            batch = {k: v.cuda(non_blocking=True) for k, v in batch.items()}
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            tokens.append(int(batch["attention_mask"].sum()))
            peaks.append(torch.cuda.max_memory_reserved() / GIB)
            losses.append(loss.item())
        status = "ok"
    except torch.OutOfMemoryError:
        status = "oom"
    del model, optimizer
    torch.cuda.empty_cache()
    return {
        "status": status,
        "step_times": times,
        "tokens": tokens,
        "peak_reserved_gb": peaks,
        "losses": losses,
    }


# ensure_embedded's dataset arguments per workload: enough rows that no run sees a row twice.
WORKLOADS = {
    "fixed": {"n_rows": 1024, "min_output_words": 400, "max_output_words": 600},
    "variable": {"n_rows": 8192, "min_output_words": 1, "max_output_words": 800, "lengths": "alpaca"},
}


def prepare_assets(cache: Path, preset: str, workload: str) -> None:
    """Generate the model and the workload's dataset (see ``WORKLOADS``)."""
    from liger_bench.inputs.embedded import ensure_embedded
    from liger_bench.tasks import download_dataset

    model_dir, raw_dir = ensure_embedded(cache, preset=preset, **WORKLOADS[workload])
    dataset_dir = cache / f"prepared-dataset-{workload}"
    if not dataset_dir.exists():
        download_dataset(str(raw_dir), "train", "", dataset_dir)
    (cache / "assets.json").write_text(json.dumps([str(model_dir), str(dataset_dir)]))


def worker(args: argparse.Namespace) -> None:
    """One (variant, batch size): the repeats through run_training, then the ceiling."""
    from liger_bench.measure.training import run_training
    from liger_bench.plan.config import TrainConfig
    from liger_bench.plan.grid import run_key

    runs = []
    for repeat in range(args.repeats):
        config = TrainConfig(
            run_key=run_key(args.use_liger, args.batch_size, args.seq_len, repeat),
            repeat=repeat,
            use_liger=args.use_liger,
            per_device_train_batch_size=args.batch_size,
            max_seq_length=args.seq_len,
            max_steps=args.max_steps,
            warmup_steps_to_skip=args.warmup,
            pad_to_multiple_of=args.pad_to_multiple_of,
            packing=args.packing,
            **({"optim": args.optim} if args.optim else {}),
        )
        timer = IndependentTimer()
        result, steps = run_training(config, args.model_dir, args.dataset_dir, extra_callbacks=[timer])
        runs.append({"result": result.to_dict(), "steps": steps, "independent_step_ends": timer.ends})
        print(f"  {config.run_key}: {result.status} {result.reason[:120]}", flush=True)
        if result.status == "oom":
            break
    ceiling = (
        {"status": "not run"}
        if args.no_ceiling
        else plain_loop(args.model_dir, args.dataset_dir, args.use_liger, args.batch_size, args.seq_len, args.max_steps)
    )
    Path(args.worker_out).write_text(json.dumps({"runs": runs, "ceiling": ceiling}))


def merge(parts: list[Path], out: Path, warmup: int) -> None:
    """One table, JSON and report from the outputs of several calls of this script."""
    loaded = [json.loads(part.read_text()) for part in parts]
    cells = {key: cell for part in loaded for key, cell in part["cells"].items()}
    batch_sizes = sorted({int(key.split("-bs")[1]) for key in cells})
    summary = {key: summarize(cell, warmup) for key, cell in cells.items()}
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "commands": [part["command"] for part in loaded],
        "dates": sorted({part["date"] for part in loaded}),
        "environment": loaded[0]["environment"],
        "summary": summary,
        "table": print_table(summary, batch_sizes),
        "cells": cells,
    }
    (out / "benchmark.json").write_text(json.dumps(payload, indent=1))
    write_report(cells, out)


def write_report(cells: dict, out: Path) -> None:
    """The same HTML report analyze_results makes, from the runs of this benchmark."""
    from liger_bench.records import RunResult, history_document
    from liger_bench.render.report import build_report, write_bundle

    results = [run["result"] for cell in cells.values() for run in cell["runs"]]
    histories = [
        history_document(RunResult.from_dict(run["result"]), run["steps"])
        for cell in cells.values()
        for run in cell["runs"]
    ]
    bundle = build_report(results, histories, title="Liger Kernel benchmark: Phi-3-mini architecture, one GPU")
    write_bundle(bundle, out / "report.html", out / "summary.md", out / "analysis.csv")
    print(bundle.headline, flush=True)


def _median_measured(values: list[float], warmup: int) -> float | None:
    measured = values[warmup:]
    return statistics.median(measured) if measured else None


def summarize(cell: dict, warmup: int) -> dict:
    """Numbers of one (variant, batch size) cell."""
    ok = [run for run in cell["runs"] if run["result"]["status"] == "ok"]
    out = {"status": "ok" if ok else (cell["runs"][-1]["result"]["status"] if cell["runs"] else "missing")}
    if ok:
        rates = [run["result"]["metrics"]["tokens_per_s_nonpad"] for run in ok]
        out["tokens_per_s"] = statistics.median(rates)
        out["repeat_cv"] = statistics.pstdev(rates) / statistics.fmean(rates) if len(rates) > 1 else None
        out["peak_reserved_gb"] = max(run["result"]["metrics"]["peak_mem_reserved_gb"] for run in ok)
        out["mfu"] = statistics.median(run["result"]["metrics"]["median_mfu"] or 0.0 for run in ok)
        agreements, full_cycle_rates = [], []
        for run in ok:
            measured = [s for s in run["steps"] if not s["warmup"]]
            callback = statistics.median(s["step_time_s"] for s in measured)
            ends = run["independent_step_ends"]
            interval = statistics.median(b - a for a, b in zip(ends[warmup - 1 : -1], ends[warmup:], strict=True))
            agreements.append(callback / interval - 1.0)
            # Step end to step end: batch fetch and logging included, as a user's wall clock sees it.
            full_cycle_rates.append(statistics.median(s["tokens_nonpad"] for s in measured) / interval)
        out["callback_vs_timer"] = max(agreements, key=abs)
        out["full_cycle_tokens_per_s"] = statistics.median(full_cycle_rates)
        out["losses"] = [[s["loss"] for s in run["steps"] if not s["warmup"]] for run in ok]
        steady_keys = ("steady_state", "drift", "settle_step", "steps_needed", "n_shapes", "n_first_shape_steps")
        for key in (*steady_keys, "first_shape_excess_s"):
            out[key] = [run["result"]["metrics"].get(key) for run in ok]
    ceiling = cell["ceiling"]
    if ceiling["status"] == "ok":
        rates = [t / dt for t, dt in zip(ceiling["tokens"], ceiling["step_times"], strict=True)]
        out["ceiling_tokens_per_s"] = _median_measured(rates, warmup)
        out["ceiling_peak_reserved_gb"] = max(ceiling["peak_reserved_gb"])
    out["ceiling_status"] = ceiling["status"]
    return out


def loss_parity(liger: dict, vanilla: dict) -> float | None:
    """Largest relative per-step loss difference between paired repeats (measured steps)."""
    pairs = zip(liger.get("losses", []), vanilla.get("losses", []), strict=False)  # a variant may have OOMed
    diffs = [abs(a - b) / abs(b) for la, lb in pairs for a, b in zip(la, lb, strict=True) if a is not None and b]
    return max(diffs) if diffs else None


def _fmt(value, spec: str = ".0f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def print_table(summary: dict, batch_sizes: list[int]) -> list[str]:
    """The result table, printed and returned as markdown lines."""
    header = (
        "| bs | vanilla tok/s | liger tok/s | vanilla/ceil | liger/ceil | full cycle/ceil v / l | Liger gain | "
        "ceiling gain | vanilla GiB | liger GiB | MFU v / l | loss parity | timer agreement | repeat CV v / l |"
    )
    lines = [header, "|" + "---|" * 14]
    for bs in batch_sizes:
        v, lg = summary[f"vanilla-bs{bs}"], summary[f"liger-bs{bs}"]
        gain = lg["tokens_per_s"] / v["tokens_per_s"] - 1 if "tokens_per_s" in v and "tokens_per_s" in lg else None
        ceiling_gain = None
        if v.get("ceiling_tokens_per_s") and lg.get("ceiling_tokens_per_s"):
            ceiling_gain = lg["ceiling_tokens_per_s"] / v["ceiling_tokens_per_s"] - 1

        def ratio(cell, key="tokens_per_s"):
            if cell.get(key) and cell.get("ceiling_tokens_per_s"):
                return cell[key] / cell["ceiling_tokens_per_s"]
            return None

        full_v, full_l = ratio(v, "full_cycle_tokens_per_s"), ratio(lg, "full_cycle_tokens_per_s")

        def rate(cell):
            return _fmt(cell.get("tokens_per_s")) if cell["status"] == "ok" else cell["status"].upper()

        agreement = [c.get("callback_vs_timer") for c in (v, lg) if c.get("callback_vs_timer") is not None]
        lines.append(
            f"| {bs} | {rate(v)} | {rate(lg)} | {_fmt(ratio(v), '.1%')} | {_fmt(ratio(lg), '.1%')} | "
            f"{_fmt(full_v, '.1%')} / {_fmt(full_l, '.1%')} | {_fmt(gain, '+.1%')} | {_fmt(ceiling_gain, '+.1%')} | "
            f"{_fmt(v.get('peak_reserved_gb'), '.1f')} | "
            f"{_fmt(lg.get('peak_reserved_gb'), '.1f')} | {_fmt(v.get('mfu'), '.1%')} / {_fmt(lg.get('mfu'), '.1%')} | "
            f"{_fmt(loss_parity(lg, v), '.2%')} | {_fmt(max(agreement, key=abs) if agreement else None, '+.2%')} | "
            f"{_fmt(v.get('repeat_cv'), '.2%')} / {_fmt(lg.get('repeat_cv'), '.2%')} |"
        )
    frontier = {
        variant: max((bs for bs in batch_sizes if summary[f"{variant}-bs{bs}"]["status"] == "ok"), default=None)
        for variant in ("vanilla", "liger")
    }
    lines.append("")
    lines.append(f"OOM frontier (largest batch that trained): vanilla {frontier['vanilla']}, liger {frontier['liger']}")
    for key, cell in summary.items():
        if cell.get("steady_state"):
            lines.append(
                f"{key}: steady state {cell['steady_state']}, drift {[_fmt(d, '+.1%') for d in cell['drift']]}, "
                f"settle step {cell['settle_step']}, shapes {cell['n_shapes']}, first-shape steps after warm-up "
                f"{cell['n_first_shape_steps']}, their excess "
                f"{[_fmt(x, '.2f', ' s') for x in cell['first_shape_excess_s']]}"
            )
    print("\n".join(lines), flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latest"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16, 24, 32])
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--optim", default=None, help="transformers optimizer (default: TrainConfig's)")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="fixed")
    parser.add_argument("--pad-to-multiple-of", type=int, default=TrainConfig.pad_to_multiple_of)
    parser.add_argument("--packing", action="store_true", help="pack rows to --seq-len (trl's wrapped packing)")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the plain-loop ceiling")
    parser.add_argument("--preset", default="phi3-mini")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/liger-bench-cache"))
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="combine the benchmark.json of several calls (e.g. split by batch size)",
    )
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--use-liger", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--dataset-dir", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.prepare:
        prepare_assets(args.cache, args.preset, args.workload)
        return

    if args.merge:
        merge(args.merge, args.out, args.warmup)
        return

    from liger_bench.measure.envinfo import capture_environment

    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    # In a child process, so that this one holds no GPU memory while the workers measure.
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--prepare",
            "--cache",
            str(args.cache),
            "--preset",
            args.preset,
            "--workload",
            args.workload,
        ],
        check=True,
    )
    model_dir, dataset_dir = json.loads((args.cache / "assets.json").read_text())
    print(f"assets ready in {time.monotonic() - started:.0f} s", flush=True)

    cells = {}
    for bs in args.batch_sizes:
        for use_liger in (False, True):
            key = f"{'liger' if use_liger else 'vanilla'}-bs{bs}"
            worker_out = args.cache / "cells" / f"{key}.json"
            worker_out.parent.mkdir(parents=True, exist_ok=True)
            command = [
                sys.executable,
                __file__,
                "--worker",
                "--batch-size",
                str(bs),
                "--seq-len",
                str(args.seq_len),
                "--repeats",
                str(args.repeats),
                "--max-steps",
                str(args.max_steps),
                "--warmup",
                str(args.warmup),
                "--pad-to-multiple-of",
                str(args.pad_to_multiple_of),
                *(["--packing"] if args.packing else []),
                *(["--no-ceiling"] if args.no_ceiling else []),
                *(["--optim", args.optim] if args.optim else []),
                "--model-dir",
                str(model_dir),
                "--dataset-dir",
                str(dataset_dir),
                "--worker-out",
                str(worker_out),
            ] + (["--use-liger"] if use_liger else [])
            print(f"{key} ...", flush=True)
            subprocess.run(command, check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            cells[key] = json.loads(worker_out.read_text())

    summary = {key: summarize(cell, args.warmup) for key, cell in cells.items()}
    lines = print_table(summary, args.batch_sizes)
    command = " ".join(["python", "benchmarks/gpu_benchmark.py", *sys.argv[1:]])
    payload = {
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "environment": capture_environment(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "summary": summary,
        "table": lines,
        "cells": cells,
    }
    (args.out / "benchmark.json").write_text(json.dumps(payload, indent=1))
    write_report(cells, args.out)
    print(f"total {time.monotonic() - started:.0f} s; wrote {args.out / 'benchmark.json'}", flush=True)


if __name__ == "__main__":
    main()
