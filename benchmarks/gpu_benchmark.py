"""Baseline, Liger, compile and Liger + compile on one GPU, through train_model's own code path, with a ceiling.

Phi-3-mini's architecture (``Phi3Config()`` defaults, random weights: no hub is needed), an
alpaca-format dataset, batch sizes × variants × repeats. Two workloads: ``fixed`` (rows of 400-600
words, all truncated to ``--seq-len``: every batch has one shape, no padding) and ``variable``
(rows with alpaca's long-tailed lengths, padded per batch to a multiple of ``--pad-to-multiple-of``:
the shapes a real fine-tuning run sees). Each (batch size, variant) runs in a fresh process, like a
train_model pod: its repeats go through ``liger_bench.measure.training.run_training``; then another fresh
process times a plain PyTorch loop (same model and batches, the Trainer's gradient clipping, fused
AdamW, no Trainer; ``torch.compile`` with torch's defaults for a compiled variant, as accelerate
applies it) as the ceiling for that variant. A process that crashes (a device fault poisons its CUDA context) is
recorded as ``failed`` with its exit code and last stderr line; the next cell runs regardless. A
variant that trained in no repeat gets no ceiling (there is no rate to hold against it).

Run on a GPU machine::

    python benchmarks/gpu_benchmark.py --out benchmarks/results/h100
    python benchmarks/gpu_benchmark.py --workload variable --max-steps 200 --no-ceiling --out ...

It prints per batch size: tokens/s per variant, ratio to the ceiling, Liger gain next to the
ceiling's gain, peak memory, the OOM frontier, MFU, loss parity and the agreement between the
callback's step times and an independent synchronised timer; and writes ``benchmark.json``.

``--sample-power`` (issue 27) also runs ``nvidia-smi --query-gpu=power.draw -lms 100`` beside every
run and prints, per cell, the energy per token and mean power from NVML's energy counter (what the
report shows) next to the mean of the power sampled during the same measured steps, and their
agreement (within 10% is the issue's bar).

The device machine returns at most 8 files, and this script writes one per cell: write ``--out``
outside ``$OUT`` and let ``keep_out`` (``benchmarks/device_env.sh``) return it as one tarball, which
also keeps every finished run of a call cut at its time limit, e.g.::

    keep_out /tmp/res & python benchmarks/gpu_benchmark.py --sample-power --batch-sizes 16 \
        --workload fixed --out /tmp/res/energy-fixed; keep_out /tmp/res once
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from liger_bench.inputs.embedded import MODEL_PRESETS
from liger_bench.measure.metrics import GIB, is_measured
from liger_bench.plan.config import TrainConfig
from liger_bench.vocabulary import BASELINE, VARIANTS, variant_parts


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


class PowerSampler(TrainerCallback):
    """``nvidia-smi``'s power draw of this process's GPU every ``period_ms``, and each step's start and end.

    Both clocks are ``time.perf_counter``; a sample is timed when its line arrives. The step times are
    taken after the Trainer's other callbacks, so after ``StepMetricsCallback`` synchronised the device.
    """

    def __init__(self, period_ms: int = 100):
        self.period_ms = period_ms
        self.samples: list[tuple[float, float]] = []
        self.windows: list[tuple[float, float]] = []
        self._begin = 0.0
        self._process: subprocess.Popen | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        """Start nvidia-smi and a thread that reads its lines."""
        import threading

        import torch

        uuid = f"GPU-{torch.cuda.get_device_properties(torch.cuda.current_device()).uuid}"
        query = ["--query-gpu=power.draw", "--format=csv,noheader,nounits", f"--loop-ms={self.period_ms}"]
        try:
            self._process = subprocess.Popen(["nvidia-smi", *query, f"--id={uuid}"], stdout=subprocess.PIPE, text=True)
        except FileNotFoundError:  # no nvidia-smi: no samples, and the cell says "sampled —"
            return

        def read(stream) -> None:
            for line in stream:
                try:
                    self.samples.append((time.perf_counter(), float(line.strip())))
                except ValueError:  # "[N/A]": this GPU reports no power draw
                    continue

        threading.Thread(target=read, args=(self._process.stdout,), daemon=True).start()

    def on_step_begin(self, args, state, control, **kwargs):
        """Note when the step starts."""
        self._begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        """Note the step's window."""
        self.windows.append((self._begin, time.perf_counter()))

    def on_train_end(self, args, state, control, **kwargs):
        """Stop nvidia-smi."""
        if self._process:
            self._process.terminate()
            self._process.wait(timeout=10)


def sampled_power_w(samples: list[list[float]], windows: list[list[float]]) -> float | None:
    """Mean of the power samples taken inside any of ``windows`` (the measured steps); None without one."""
    inside = [watts for at, watts in samples if any(begin <= at <= end for begin, end in windows)]
    return statistics.fmean(inside) if inside else None


def span_power_w(run: dict) -> tuple[float | None, float | None]:
    """NVML's and nvidia-smi's mean power over one wall-clock span: the measured steps' first start to last end.

    ``sampled_power_w`` holds the counter's in-step power against samples taken inside the measured
    steps; but a ``power.draw`` sample averages over a window longer than a short step, so on
    variable-length rows it takes in the unmeasured steps (new shapes) and the host's work between
    steps. Here both read the same span: the counter's energy of every step in it, measured or not,
    over the span's time (the time between steps counted at 0 W, so a floor), against every sample
    taken in it. Returns ``(counter W, sampled W)``, None where there is nothing to read.
    """
    measured = [w for w, s in zip(run["step_windows"], run["steps"], strict=True) if is_measured(s)]
    if not measured:
        return None, None
    begin, end = measured[0][0], measured[-1][1]
    energies = [
        s.get("energy_j")
        for (start, stop), s in zip(run["step_windows"], run["steps"], strict=True)
        if begin <= start and stop <= end
    ]
    counter = sum(energies) / (end - begin) if None not in energies and end > begin else None
    inside = [watts for at, watts in run["power_samples"] if begin <= at <= end]
    return counter, statistics.fmean(inside) if inside else None


def trainer_batches(config: TrainConfig, rows: list[dict], collate, bf16: bool):
    """The batches a run's Trainer feeds its model, in its order, and the gradient clipping it applies.

    The ceiling must time the very batches the run timed. On variable-length rows the Trainer's
    seeded shuffle decides each step's shape and token count, so rows taken in file order would make
    another workload (and a ceiling of other shapes). It must also do the run's training math: the
    Trainer clips the gradients' norm at ``max_grad_norm`` every step (transformers' default 1.0;
    a pass over every gradient, some milliseconds per step on a 3.8B model), so the ceiling does too.

    Returns:
        The Trainer's own dataloader, seeded as the run seeds it, and the run's ``max_grad_norm``.
    """
    import tempfile

    import torch
    from transformers import Trainer, set_seed

    from liger_bench.plan.arguments import training_arguments

    set_seed(config.seed)
    with tempfile.TemporaryDirectory(prefix="liger-bench-ceiling-") as output_dir:
        trainer = Trainer(
            model=torch.nn.Linear(1, 1),  # the dataloader does not depend on the model
            args=training_arguments(config, output_dir, bf16),
            train_dataset=rows,
            data_collator=collate,
        )
        return trainer.get_train_dataloader(), trainer.args.max_grad_norm


def plain_loop(
    model_dir: str, dataset_dir: str, variant: str, batch_size: int, seq_len: int, steps: int, pad_to_multiple_of: int
):
    """The ceiling: the bare forward/backward/clip/fused-AdamW loop on the run's batches (compiled: compile).

    It does the run's training math and nothing else: the Trainer's loss normalisation
    (``num_items_in_batch``) and gradient clipping, no callbacks, logging or scheduler.
    """
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from liger_bench.measure.training import load_model, load_tokenizer, training_rows
    from liger_bench.plan.config import TrainConfig
    from liger_bench.plan.liger import apply_liger

    config = TrainConfig(per_device_train_batch_size=batch_size, max_seq_length=seq_len, max_steps=steps)
    tokenizer = load_tokenizer(model_dir)
    rows = training_rows(config, tokenizer, dataset_dir).rows
    collate = DataCollatorForLanguageModeling(
        pad_token_id=tokenizer.pad_token_id, pad_to_multiple_of=pad_to_multiple_of if pad_to_multiple_of > 1 else None
    )
    dataloader, max_grad_norm = trainer_batches(config, rows, collate, bf16=True)
    batches = iter(dataloader)
    model = load_model(model_dir, bf16=True).cuda()
    if "liger" in variant:
        apply_liger(model, config.liger_flags())
    model.train()
    forward = torch.compile(model) if "compile" in variant else model
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, fused=True
    )
    times, tokens, peaks, losses = [], [], [], []
    try:
        for _ in range(steps):
            batch = {k: v.cuda(non_blocking=True) for k, v in next(batches).items()}
            # The Trainer's loss: summed over the batch's predicted tokens, divided by their count,
            # which it counts before the step and passes to the model. The same math, and under
            # compile the same graph inputs.
            num_items_in_batch = batch["labels"][..., 1:].ne(-100).sum()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            loss = forward(**batch, num_items_in_batch=num_items_in_batch).loss
            loss.backward()
            if max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
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


DEFAULT_PRESET = "phi3-mini"  # the embedded model a call without --preset benchmarks
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
    """One (variant, batch size): the repeats through run_training."""
    from liger_bench.measure.training import run_training
    from liger_bench.plan.config import TrainConfig
    from liger_bench.plan.grid import run_key
    from liger_bench.vocabulary import variant_of

    runs = []
    variant = variant_of(args.use_liger, args.torch_compile)
    for repeat in range(args.repeats):
        config = TrainConfig(
            run_key=run_key(variant, args.batch_size, args.seq_len, repeat),
            repeat=repeat,
            use_liger=args.use_liger,
            torch_compile=args.torch_compile,
            per_device_train_batch_size=args.batch_size,
            max_seq_length=args.seq_len,
            max_steps=args.max_steps,
            warmup_steps_to_skip=args.warmup,
            pad_to_multiple_of=args.pad_to_multiple_of,
            packing=args.packing,
            **({"optim": args.optim} if args.optim else {}),
        )
        timer = IndependentTimer()
        sampler = PowerSampler() if args.sample_power else None
        callbacks = [timer, sampler] if sampler else [timer]
        result, steps = run_training(config, args.model_dir, args.dataset_dir, extra_callbacks=callbacks)
        runs.append({"result": result.to_dict(), "steps": steps, "independent_step_ends": timer.ends})
        if sampler:
            runs[-1].update(power_samples=sampler.samples, step_windows=sampler.windows)
        print(f"  {config.run_key}: {result.status} {result.reason[:300]}", flush=True)
        Path(args.worker_out).write_text(json.dumps({"runs": runs}))
        if result.status != "ok":  # an oom stays one; a device fault leaves this process unusable
            break


def ceiling_worker(args: argparse.Namespace) -> None:
    """One (variant, batch size): the plain-loop ceiling, in a process of its own."""
    from liger_bench.vocabulary import variant_of

    variant = variant_of(args.use_liger, args.torch_compile)
    ceiling = plain_loop(
        args.model_dir,
        args.dataset_dir,
        variant,
        args.batch_size,
        args.seq_len,
        args.max_steps,
        args.pad_to_multiple_of,
    )
    Path(args.worker_out).write_text(json.dumps(ceiling))


def run_worker(command: list[str], worker_out: Path) -> tuple[Any, str]:
    """Run a worker process: ``(its record or None, "" or why it wrote none)``; its stderr goes to ours."""
    worker_out.unlink(missing_ok=True)
    process = subprocess.run(
        command, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}, stderr=subprocess.PIPE, text=True
    )
    sys.stderr.write(process.stderr[-20000:])
    record = json.loads(worker_out.read_text()) if worker_out.is_file() else None
    if process.returncode == 0:
        return record, ""
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    code = process.returncode
    ended = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    reason = f"process {ended}; its last stderr line: {lines[-1] if lines else '(none)'}"
    print(f"  {reason[:300]}", flush=True)
    return record, reason


def with_crashed_runs(cells: dict) -> dict:
    """``cells`` with a ``failed`` run for each cell whose process died before writing a repeat's result.

    A segfault or a poisoned CUDA context can end a worker before its first record, so the cell has
    its ``crash`` and no run; the report must still name that variant as failed, with the crash. All
    cells of one call share the call's settings, so the failed run's config is another run's with
    this cell's variant and batch size; a call whose every cell died has no config to report from.
    """
    from liger_bench.plan.grid import run_key

    template = next((run["result"]["config"] for cell in cells.values() for run in cell["runs"]), None)
    filled = {}
    for key, cell in cells.items():
        filled[key] = cell
        if not cell.get("crash") or template is None or any(r["result"]["status"] != "ok" for r in cell["runs"]):
            continue
        variant, batch_size = key.rsplit("-bs", 1)
        use_liger, torch_compile = variant_parts(variant)
        repeat = len(cell["runs"])
        config = {
            **template,
            "use_liger": use_liger,
            "torch_compile": torch_compile,
            "per_device_train_batch_size": int(batch_size),
            "repeat": repeat,
        }
        config["run_key"] = run_key(variant, int(batch_size), config["max_seq_length"], repeat)
        failed = {"run_key": config["run_key"], "status": "failed", "reason": cell["crash"], "config": config}
        filled[key] = {**cell, "runs": [*cell["runs"], {"result": failed, "steps": []}]}
    return filled


def merged_preset(loaded: list[dict], given: str | None) -> str:
    """The embedded preset of the parts being merged: the one their calls recorded, else ``given``.

    Raises:
        SystemExit: The parts (or they and ``given``) name different presets, or none is named.
    """
    named = {part["args"]["preset"] for part in loaded if "args" in part} | ({given} if given else set())
    if len(named) != 1:
        raise SystemExit(
            f"--merge: the parts and --preset name different presets: {sorted(named)}"
            if named
            else "--merge: no part records its preset (a call cut short leaves only cells.json): give --preset"
        )
    return named.pop()


def merge(parts: list[Path], out: Path, warmup: int, preset: str | None, gpu_hour_price: float | None) -> None:
    """One table, JSON and report (costs at ``gpu_hour_price``) from the outputs of several calls of this script.

    ``preset``: the embedded model's, for parts that do not record it (see ``merged_preset``).
    """
    loaded = [json.loads(part.read_text()) for part in parts]
    # A call cut short by its time limit leaves only cells.json: its cells, no command or environment.
    loaded = [part if "cells" in part else {"cells": part} for part in loaded]
    preset = merged_preset(loaded, preset)
    cells = with_crashed_runs({key: cell for part in loaded for key, cell in part["cells"].items()})
    batch_sizes = sorted({int(key.split("-bs")[1]) for key in cells})
    summary = {key: summarize(cell, warmup) for key, cell in cells.items()}
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "commands": [part["command"] for part in loaded if "command" in part],
        "dates": sorted({part["date"] for part in loaded if "date" in part}),
        "environment": next((part["environment"] for part in loaded if "environment" in part), None),
        "summary": summary,
        "table": print_table(summary, batch_sizes),
        "cells": cells,
    }
    (out / "benchmark.json").write_text(json.dumps(payload, indent=1))
    write_report(cells, out, preset, gpu_hour_price)


def write_report(cells: dict, out: Path, preset: str, gpu_hour_price: float | None = None) -> None:
    """The same HTML report analyze_results makes, from this benchmark's runs of the embedded ``preset``.

    Costs are at ``gpu_hour_price`` (none without one).
    """
    from liger_bench.records import RunResult, history_document
    from liger_bench.render.report import build_report, write_bundle

    results = [run["result"] for cell in cells.values() for run in cell["runs"]]
    histories = [
        history_document(RunResult.from_dict(run["result"]), run["steps"])
        for cell in cells.values()
        for run in cell["runs"]
    ]
    bundle = build_report(
        results,
        histories,
        title=f"Liger Kernel benchmark: the embedded {preset} preset, one GPU",
        gpu_hour_price=gpu_hour_price,
    )
    write_bundle(bundle, out / "report.html", out / "summary.md", out / "analysis.csv")
    print(bundle.headline, flush=True)


def ceiling_rate(ceiling: dict, run_steps: list[dict]) -> float | None:
    """The plain loop's tokens/s over the steps the run measured, computed as the run computes its rate.

    The plain loop times the run's batches in the run's order (``trainer_batches``), so step ``i`` of
    both has one shape and token count: the ceiling sums the tokens and times of exactly the steps
    the run counted (past warm-up, of a shape seen before, nothing compiled).
    """
    counted = [s["step"] - 1 for s in run_steps if is_measured(s) and s["step"] <= len(ceiling["step_times"])]
    time_s = sum(ceiling["step_times"][i] for i in counted)
    return sum(ceiling["tokens"][i] for i in counted) / time_s if time_s else None


def summarize(cell: dict, warmup: int) -> dict:
    """Numbers of one (variant, batch size) cell."""
    ok = [run for run in cell["runs"] if run["result"]["status"] == "ok"]
    last = cell["runs"][-1]["result"] if cell["runs"] else {"status": "failed", "reason": cell.get("crash", "")}
    out = {"status": "ok" if ok else last["status"], "reason": "" if ok else last.get("reason", "")}
    if ok:
        rates = [run["result"]["metrics"]["tokens_per_s_nonpad"] for run in ok]
        out["tokens_per_s"] = statistics.median(rates)
        out["repeat_cv"] = statistics.pstdev(rates) / statistics.fmean(rates) if len(rates) > 1 else None
        out["peak_reserved_gb"] = max(run["result"]["metrics"]["peak_mem_reserved_gb"] for run in ok)
        out["peak_allocated_gb"] = max(run["result"]["metrics"]["peak_mem_allocated_gb"] for run in ok)
        out["mfu"] = statistics.median(run["result"]["metrics"]["median_mfu"] or 0.0 for run in ok)
        agreements, full_cycle_rates = [], []
        for run in ok:
            measured = [s for s in run["steps"] if is_measured(s)]
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
        compile_keys = ("n_compile_steps", "compiled_graphs", "recompiles", "compile_time_s")
        energy_keys = ("energy_per_token_j", "tokens_per_kwh", "mean_power_w", "energy_unavailable")
        for key in (*steady_keys, "first_shape_excess_s", *compile_keys, *energy_keys):
            out[key] = [run["result"]["metrics"].get(key) for run in ok]
        if all("power_samples" in run for run in ok):
            # The counter's mean power against nvidia-smi's samples over the same measured steps.
            out["sampled_power_w"] = [
                sampled_power_w(
                    run["power_samples"],
                    [w for w, s in zip(run["step_windows"], run["steps"], strict=True) if is_measured(s)],
                )
                for run in ok
            ]
            out["counter_vs_sampled"] = [
                counter / sampled - 1.0 if counter and sampled else None
                for counter, sampled in zip(out["mean_power_w"], out["sampled_power_w"], strict=True)
            ]
            out["span_counter_vs_sampled"] = [
                counter / sampled - 1.0 if counter and sampled else None for counter, sampled in map(span_power_w, ok)
            ]
    ceiling = cell["ceiling"]
    if ceiling["status"] == "ok" and ok:
        out["ceiling_tokens_per_s"] = ceiling_rate(ceiling, ok[0]["steps"])
        out["ceiling_peak_reserved_gb"] = max(ceiling["peak_reserved_gb"])
    out["ceiling_status"] = ceiling["status"]
    out["ceiling_reason"] = ceiling.get("reason", "")
    return out


def loss_parity(variant: dict, baseline: dict) -> float | None:
    """Largest relative per-step loss difference between paired repeats (measured steps)."""
    pairs = zip(variant.get("losses", []), baseline.get("losses", []), strict=False)  # a variant may have OOMed
    diffs = [abs(a - b) / abs(b) for la, lb in pairs for a, b in zip(la, lb, strict=True) if a is not None and b]
    return max(diffs) if diffs else None


def _fmt(value, spec: str = ".0f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def print_table(summary: dict, batch_sizes: list[int]) -> list[str]:
    """The result table, one row per (batch size, variant), printed and returned as markdown lines."""
    header = (
        "| bs | variant | tok/s | /ceiling | full cycle/ceiling | vs baseline | ceiling vs baseline | peak alloc GiB | "
        "peak reserved GiB | MFU | loss parity vs baseline | timer agreement | compile s | recompiles | status |"
    )
    lines = [header, "|" + "---|" * 15]
    for bs in batch_sizes:
        base = summary.get(f"{BASELINE}-bs{bs}", {})
        for variant in VARIANTS:
            cell = summary.get(f"{variant}-bs{bs}")
            if cell is None:
                continue

            def ratio(cell, key="tokens_per_s"):
                if cell.get(key) and cell.get("ceiling_tokens_per_s"):
                    return cell[key] / cell["ceiling_tokens_per_s"]
                return None

            gain = None
            if cell.get("tokens_per_s") and base.get("tokens_per_s"):
                gain = cell["tokens_per_s"] / base["tokens_per_s"]
            ceiling_gain = None
            if cell.get("ceiling_tokens_per_s") and base.get("ceiling_tokens_per_s"):
                ceiling_gain = cell["ceiling_tokens_per_s"] / base["ceiling_tokens_per_s"]
            compile_s = [x for x in cell.get("compile_time_s", []) if x is not None]
            recompiles = [x for x in cell.get("recompiles", []) if x is not None]
            reason = (cell["reason"] or "").split("\n")[0]  # a CUDA error's advice runs on for lines
            status = cell["status"] if cell["status"] == "ok" else f"{cell['status'].upper()}: {reason[:160]}"
            if cell["ceiling_status"] not in ("ok", "not run"):
                status += f"; ceiling {cell['ceiling_status']}: {cell['ceiling_reason'][:120]}"
            lines.append(
                f"| {bs} | {variant} | {_fmt(cell.get('tokens_per_s'))} | {_fmt(ratio(cell), '.1%')} | "
                f"{_fmt(ratio(cell, 'full_cycle_tokens_per_s'), '.1%')} | "
                f"{_fmt(gain - 1 if gain else None, '+.1%')} | "
                f"{_fmt(ceiling_gain - 1 if ceiling_gain else None, '+.1%')} | "
                f"{_fmt(cell.get('peak_allocated_gb'), '.1f')} | {_fmt(cell.get('peak_reserved_gb'), '.1f')} | "
                f"{_fmt(cell.get('mfu'), '.1%')} | "
                f"{_fmt(loss_parity(cell, base) if variant != BASELINE else None, '.2%')} | "
                f"{_fmt(cell.get('callback_vs_timer'), '+.2%')} | "
                f"{_fmt(statistics.median(compile_s) if compile_s else None, '.1f')} | "
                f"{_fmt(max(recompiles) if recompiles else None, 'd')} | {status} |"
            )
    frontier = {
        variant: max(
            (bs for bs in batch_sizes if summary.get(f"{variant}-bs{bs}", {}).get("status") == "ok"), default=None
        )
        for variant in VARIANTS
    }
    lines.append("")
    lines.append("OOM frontier (largest batch that trained): " + ", ".join(f"{v} {b}" for v, b in frontier.items()))
    for key, cell in summary.items():
        if cell.get("steady_state"):
            lines.append(
                f"{key}: steady state {cell['steady_state']}, drift {[_fmt(d, '+.1%') for d in cell['drift']]}, "
                f"settle step {cell['settle_step']}, shapes {cell['n_shapes']}, first-shape steps after warm-up "
                f"{cell['n_first_shape_steps']}, their excess "
                f"{[_fmt(x, '.2f', ' s') for x in cell['first_shape_excess_s']]}, compile steps "
                f"{cell['n_compile_steps']}, graphs {cell['compiled_graphs']}"
            )
            lines.append(
                f"{key}: energy per token {[_fmt(x, '.3g', ' J') for x in cell['energy_per_token_j']]}, tokens per "
                f"kWh {[_fmt(x, '.4g') for x in cell['tokens_per_kwh']]}, mean power (counter) "
                f"{[_fmt(x, '.0f', ' W') for x in cell['mean_power_w']]}, sampled (nvidia-smi) "
                f"{[_fmt(x, '.0f', ' W') for x in cell.get('sampled_power_w', [])]}, counter vs sampled "
                f"{[_fmt(x, '+.1%') for x in cell.get('counter_vs_sampled', [])]}, over the measured span "
                f"{[_fmt(x, '+.1%') for x in cell.get('span_counter_vs_sampled', [])]}"
                + "".join(f"; energy unavailable: {r}" for r in sorted(set(cell["energy_unavailable"]) - {"", None}))
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
    parser.add_argument(
        "--sample-power", action="store_true", help="sample nvidia-smi's power.draw beside NVML's energy counter"
    )
    parser.add_argument("--gpu-hour-price", type=float, default=None, help="the report's cost per million tokens")
    parser.add_argument(
        "--preset",
        choices=sorted(MODEL_PRESETS),
        help=f"the embedded model (default {DEFAULT_PRESET}; with --merge, the one the parts record)",
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/liger-bench-cache"))
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="combine the benchmark.json of several calls (e.g. split by batch size)",
    )
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ceiling", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--use-liger", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--torch-compile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--dataset-dir", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.merge:
        args.preset = args.preset or DEFAULT_PRESET
    if args.worker:
        worker(args)
        return
    if args.ceiling:
        ceiling_worker(args)
        return
    if args.prepare:
        prepare_assets(args.cache, args.preset, args.workload)
        return

    if args.merge:
        merge(args.merge, args.out, args.warmup, args.preset, args.gpu_hour_price)
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
        for variant in args.variants:
            use_liger, torch_compile = variant_parts(variant)
            key = f"{variant}-bs{bs}"
            worker_out = args.out / "workers" / f"{key}.json"  # under --out: a call cut short still returns it
            worker_out.parent.mkdir(parents=True, exist_ok=True)
            command = [
                sys.executable,
                __file__,
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
                *(["--sample-power"] if args.sample_power else []),
                *(["--optim", args.optim] if args.optim else []),
                "--model-dir",
                str(model_dir),
                "--dataset-dir",
                str(dataset_dir),
                "--worker-out",
                str(worker_out),
                *(["--use-liger"] if use_liger else []),
                *(["--torch-compile"] if torch_compile else []),
            ]
            print(f"{key} ...", flush=True)
            cell_started = time.monotonic()
            record, crash = run_worker([*command, "--worker"], worker_out)
            cell = {"runs": (record or {}).get("runs", []), "crash": crash, "ceiling": {"status": "not run"}}
            cells[key] = cell
            (args.out / "cells.json").write_text(json.dumps(cells))  # what a later crash or timeout leaves
            trained = any(run["result"]["status"] == "ok" for run in cell["runs"])
            if trained and not args.no_ceiling:  # a ceiling for a variant that did not train has no ratio to give
                ceiling, crash = run_worker([*command, "--ceiling"], worker_out)
                cell["ceiling"] = ceiling if ceiling and not crash else {"status": "failed", "reason": crash}
            print(f"{key}: {time.monotonic() - cell_started:.0f} s", flush=True)
            (args.out / "cells.json").write_text(json.dumps(cells))  # what a later crash or timeout leaves

    cells = with_crashed_runs(cells)
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
    write_report(cells, args.out, args.preset, args.gpu_hour_price)
    print(f"total {time.monotonic() - started:.0f} s; wrote {args.out / 'benchmark.json'}", flush=True)


if __name__ == "__main__":
    main()
