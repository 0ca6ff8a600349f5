"""Where FSDP2's one-rank cost goes: a bare training loop, unsharded and then fully sharded over one rank.

The Trainer runs of ``fsdp_one_gpu.py`` show a fixed per-step cost of FSDP with one rank. This
loop, with no Trainer, loads the same model (the folder ``fsdp_one_gpu.py`` generates), trains it
on one fixed random batch with the project's recipe (bf16 weights, fused AdamW, gradient clipping
at 1.0, as the Trainer does) and times each phase of a step (forward, backward, clipping, optimizer
step, zero_grad; the device synchronised around each), first unsharded, then after ``fully_shard``
applied as accelerate applies it (each decoder layer; the input embedding; the final norm and LM
head as one unit that is not resharded after forward; the root). It also times whole steps with
no synchronisation in between, and profiles two steps of each mode (the CUDA kernels' total time
per step by name, the largest first), so the extra time can be named: FSDP2's copies of
parameters and gradients, or host-side work.

Run on a GPU machine (after ``source benchmarks/device_env.sh``), one GPU::

    python benchmarks/fsdp_overhead.py --model-dir DIR --out $OUT/overhead.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

PHASES = ("forward", "backward", "clip", "optimizer", "zero_grad")


def shard_like_accelerate(model) -> None:
    """``fully_shard`` with accelerate 1.15's units (``fsdp2_prepare_model``), full shard."""
    from torch.distributed.fsdp import fully_shard

    for layer in model.model.layers:
        fully_shard(layer, reshard_after_forward=True)
    fully_shard(model.get_input_embeddings(), reshard_after_forward=True)
    fully_shard([model.model.norm, model.get_output_embeddings()], reshard_after_forward=False)
    fully_shard(model)


def timed_steps(model, batch, n_warmup: int, n_steps: int) -> dict:
    """Median seconds per phase (synchronised) and per whole step (unsynchronised) after warm-up."""
    import torch

    cuda = torch.cuda.is_available()

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize()

    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-6, weight_decay=0.05, fused=True)

    def step(phase_times: dict | None) -> None:
        marks = [time.perf_counter()]

        def mark() -> None:
            if phase_times is not None:
                synchronize()
                marks.append(time.perf_counter())

        loss = model(**batch).loss
        mark()
        loss.backward()
        mark()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        mark()
        optimizer.step()
        mark()
        optimizer.zero_grad(set_to_none=True)
        mark()
        if phase_times is not None:
            for name, start, end in zip(PHASES, marks[:-1], marks[1:], strict=True):
                phase_times[name].append(end - start)

    for _ in range(n_warmup):
        step(None)
    synchronize()
    phase_times: dict[str, list[float]] = {name: [] for name in PHASES}
    for _ in range(n_steps):
        step(phase_times)
    synchronize()
    started = time.perf_counter()
    for _ in range(n_steps):
        step(None)
    synchronize()
    whole = (time.perf_counter() - started) / n_steps

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            step(None)
        synchronize()
    kernels: dict[str, float] = {}
    for event in prof.key_averages():
        device_us = getattr(event, "self_device_time_total", 0) or 0
        if device_us > 0:
            kernels[event.key] = kernels.get(event.key, 0.0) + device_us / 2 / 1e3  # ms per step
    return {
        "phase_s": {name: statistics.median(times) for name, times in phase_times.items()},
        "synchronised_step_s": statistics.median(
            [sum(phase_times[name][i] for name in PHASES) for i in range(n_steps)]
        ),
        "step_s": whole,
        "kernel_ms_per_step": dict(sorted(kernels.items(), key=lambda kv: -kv[1])),
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON file")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM

    cuda = torch.cuda.is_available()  # the CPU path (gloo) is for a smoke test of the script only
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", store=dist.HashStore(), rank=0, world_size=1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.bfloat16).to(device)
    model.train()
    ids = torch.randint(0, 512, (args.batch_size, args.seq_len), device=device)
    batch = {"input_ids": ids, "labels": ids.clone()}
    results = {}
    for mode in ("unsharded", "fsdp-1-rank"):
        if mode == "fsdp-1-rank":
            shard_like_accelerate(model)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        results[mode] = timed_steps(model, batch, args.warmup, args.steps)
        if cuda:
            torch.cuda.empty_cache()
        print(f"{mode}: {results[mode]['step_s'] * 1e3:.1f} ms per step", flush=True)

    plain, fsdp = results["unsharded"], results["fsdp-1-rank"]
    lines = [f"\nbare loop, bs {args.batch_size} x seq {args.seq_len}, median of {args.steps} steps (ms)"]
    lines.append("| phase | unsharded | FSDP 1 rank | difference |")
    lines.append("|---|---|---|---|")
    for name in PHASES:
        a, b = plain["phase_s"][name] * 1e3, fsdp["phase_s"][name] * 1e3
        lines.append(f"| {name} (synchronised) | {a:.1f} | {b:.1f} | {b - a:+.1f} |")
    for key, label in (("synchronised_step_s", "sum of phases"), ("step_s", "whole step, unsynchronised")):
        a, b = plain[key] * 1e3, fsdp[key] * 1e3
        lines.append(f"| {label} | {a:.1f} | {b:.1f} | {b - a:+.1f} ({b / a:.3f}x) |")
    a, b = sum(plain["kernel_ms_per_step"].values()), sum(fsdp["kernel_ms_per_step"].values())
    lines.append(f"| GPU kernel time per step (profiler) | {a:.1f} | {b:.1f} | {b - a:+.1f} |")
    lines.append("\nkernels whose time per step differs most (ms per step: unsharded, FSDP 1 rank)")
    names = set(plain["kernel_ms_per_step"]) | set(fsdp["kernel_ms_per_step"])
    diffs = sorted(
        names, key=lambda n: -abs(fsdp["kernel_ms_per_step"].get(n, 0) - plain["kernel_ms_per_step"].get(n, 0))
    )
    for name in diffs[:12]:
        a, b = plain["kernel_ms_per_step"].get(name, 0.0), fsdp["kernel_ms_per_step"].get(name, 0.0)
        lines.append(f"  {b - a:+7.2f}  ({a:7.2f} -> {b:7.2f})  {name[:110]}")
    print("\n".join(lines), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1, default=str))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
