"""Issue 15 on a machine of two GPUs: real 2-rank FSDP grid points, the one-rank cost at batch 16, an 8B model.

Every training run goes through the supervisor (``liger_bench.measure.supervisor.train_supervised``), the
code path a train_model task takes: ``gpus_per_run=2`` launches ``torchrun --nproc_per_node=2``
and each rank runs the supervisor's child entry point, FSDP2 full shard. Phases, in this order
(``--phases`` picks some; each writes its results as soon as it ends):

``phi3-2gpu``
    Phi-3-mini architecture (3.8B, random weights), batch 16 per GPU, seq 512, fixed-shape rows,
    stock transformers then Liger, 2 ranks. Per-step loss parity of Liger against the baseline
    (the same batches reach the same rank in both runs), per-rank peak memory, tokens/s per GPU.
``one-gpu-bs16``
    ``fsdp_one_gpu.py --batch-size 16`` on GPU 0: the one-rank FSDP cost at twice the work per
    step of the committed batch-8 measurement.
``llama8b-2gpu``
    A Llama-3-8B-shaped model (``embedded`` preset ``llama3-8b``: 8.03B parameters, random bf16
    weights, generated and saved once), seq 2,048, batch 2 per GPU, both variants, 2 ranks; each
    rank's peak allocated memory against ``memory_model.py``'s prediction for that setting.
``overhead``
    ``fsdp_overhead.py`` on GPU 0: where the one-rank cost goes, per phase and per kernel.

Run on a GPU machine of 2 GPUs (after ``source benchmarks/device_env.sh``)::

    python benchmarks/fsdp_two_gpu.py --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from liger_bench.measure.supervisor import train_supervised
from liger_bench.plan.config import TrainConfig
from liger_bench.vocabulary import BASELINE, variant_of

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import memory_model  # noqa: E402  (benchmarks/memory_model.py)
from fsdp_one_gpu import prepare_assets  # noqa: E402

PHASES = ("phi3-2gpu", "one-gpu-bs16", "llama8b-2gpu", "overhead")
GIB = 2**30
RUN_TIMEOUT_S = 420.0


def arch_of(preset: str) -> memory_model.Arch:
    """memory_model's sizes of an embedded preset (phi3-mini: PHI3_MINI; llama3-8b: LLAMA3_8B)."""
    from liger_bench.inputs.embedded import MODEL_PRESETS

    p = MODEL_PRESETS[preset]
    kv_heads = p.num_key_value_heads or p.num_attention_heads
    kv_hidden = kv_heads * p.hidden_size // p.num_attention_heads
    return memory_model.Arch(preset, p.hidden_size, p.intermediate_size, p.num_hidden_layers, p.vocab_size, kv_hidden)


def loss_parity(baseline: list[dict], liger: list[dict]) -> float | None:
    """Largest relative per-step loss difference of ``liger`` against ``baseline`` (same steps)."""
    pairs = [(b.get("loss"), lg.get("loss")) for b, lg in zip(baseline, liger, strict=False)]
    diffs = [abs(lg - b) / abs(b) for b, lg in pairs if b is not None and lg is not None and b != 0]
    return max(diffs) if diffs else None


def rank_peaks(steps: list[dict], key: str) -> list[float]:
    """Each rank's largest ``key`` (peak memory, GiB) over the steps after warm-up."""
    ranked = [s["ranks"] for s in steps if not s.get("warmup") and s.get("ranks")]
    if not ranked:
        ranked = [[s] for s in steps if not s.get("warmup")]
    if not ranked:
        return []
    values = [[r[i].get(key) for r in ranked] for i in range(len(ranked[0]))]
    return [max(v for v in rank if v is not None) for rank in values if any(v is not None for v in rank)]


def train_pair(preset: str, model_dir: str, dataset_dir: str, batch: int, seq: int, steps: int, gpus: int) -> dict:
    """Baseline then Liger, each through the supervisor (torchrun for gpus > 1); results, steps, parity."""
    runs = {}
    for use_liger in (False, True):
        variant = variant_of(use_liger, torch_compile=False)
        config = TrainConfig(
            run_key=f"{variant}-{preset}-{gpus}gpu-bs{batch}-seq{seq}",
            use_liger=use_liger,
            per_device_train_batch_size=batch,
            max_seq_length=seq,
            max_steps=steps,
            gpus_per_run=gpus,
        )
        started = time.monotonic()
        result, step_records = train_supervised(config, model_dir, dataset_dir, RUN_TIMEOUT_S)
        runs[variant] = {"result": result.to_dict(), "steps": step_records, "wall_s": time.monotonic() - started}
        print(f"{config.run_key}: {result.status} {result.reason[:300]} ({runs[variant]['wall_s']:.0f} s)", flush=True)
    parity = loss_parity(runs[BASELINE]["steps"], runs["liger"]["steps"])
    arch = arch_of(preset)
    for variant, run in runs.items():
        m = run["result"]["metrics"]
        allocated = rank_peaks(run["steps"], "peak_mem_allocated_gb")
        predicted = memory_model.peak_bytes(arch, variant == "liger", gpus, batch * seq) / GIB
        m["rank_peak_mem_allocated_gib"] = allocated
        m["rank_peak_mem_reserved_gib"] = rank_peaks(run["steps"], "peak_mem_reserved_gb")
        m["memory_model_gib"] = predicted
        m["memory_model_error"] = predicted / max(allocated) - 1 if allocated and max(allocated) else None
    return {
        "preset": preset,
        "gpus": gpus,
        "batch_per_gpu": batch,
        "seq_len": seq,
        "steps": steps,
        "runs": runs,
        "loss_parity": parity,
    }


def pair_table(pair: dict) -> list[str]:
    lines = [
        f"\n{pair['preset']}, {pair['gpus']} GPUs (FSDP2 full shard), batch {pair['batch_per_gpu']} per GPU, "
        f"seq {pair['seq_len']}, {pair['steps']} steps",
        "| variant | status | tok/s (all GPUs) | tok/s per GPU | median step s | peak allocated GiB per rank | "
        "peak reserved GiB per rank | memory model GiB | model error | final loss | sharded params |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, run in pair["runs"].items():
        result, m = run["result"], run["result"]["metrics"]
        error = m.get("memory_model_error")
        lines.append(
            f"| {variant} | {result['status']} | {m.get('tokens_per_s_nonpad') or 0:,.0f} | "
            f"{m.get('tokens_per_s_nonpad_per_gpu') or 0:,.0f} | {m.get('median_step_time_s') or 0:.3f} | "
            f"{' / '.join(f'{v:.1f}' for v in m.get('rank_peak_mem_allocated_gib', []))} | "
            f"{' / '.join(f'{v:.1f}' for v in m.get('rank_peak_mem_reserved_gib', []))} | "
            f"{m.get('memory_model_gib', 0):.1f} | {f'{100 * error:+.1f}%' if error is not None else 'n/a'} | "
            f"{m.get('final_loss') or float('nan'):.4f} | {m.get('sharded_parameter_fraction', 0):.2f} |"
        )
    parity = pair["loss_parity"]
    lines.append(
        f"loss parity (largest per-step relative difference, Liger vs baseline): "
        f"{f'{100 * parity:.3f}%' if parity is not None else 'n/a'}"
    )
    van, lig = (pair["runs"][v]["result"]["metrics"].get("tokens_per_s_nonpad") for v in (BASELINE, "liger"))
    if van and lig:
        lines.append(f"Liger gain: {100 * (lig / van - 1):+.1f}%")
    return lines


def one_gpu_subprocess(args: list[str]) -> int:
    """Run a benchmark script on GPU 0 alone, in a fresh process."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
    return subprocess.run([sys.executable, *args], env=env, check=False).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--phi3-preset", default="phi3-mini", help="'tiny' for a CPU smoke test of this script")
    parser.add_argument("--phi3-batch", type=int, default=16)
    parser.add_argument("--phi3-steps", type=int, default=30)
    parser.add_argument("--llama-steps", type=int, default=20)
    parser.add_argument("--llama-batch", type=int, default=2)
    parser.add_argument("--llama-seq", type=int, default=2048)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "liger-bench-fsdp-assets")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    document: dict = {"command": " ".join(sys.argv), "pairs": {}}
    summary: list[str] = []

    def save() -> None:
        document["elapsed_s"] = time.monotonic() - started
        (args.out / "fsdp-two-gpu.json").write_text(json.dumps(document, indent=1, default=str))

    phi3_dirs = prepare_assets(args.cache, args.phi3_preset, 512)
    print(f"phi3 assets ready at {time.monotonic() - started:.0f} s", flush=True)
    for phase in args.phases:
        print(f"\n=== {phase} (at {time.monotonic() - started:.0f} s)", flush=True)
        try:
            run_phase(phase, args, phi3_dirs, document, summary)
        except Exception as err:  # noqa: BLE001 - one phase's failure must not cost the others
            import traceback

            traceback.print_exc()
            summary.append(f"\n{phase}: FAILED in the script: {type(err).__name__}: {err}")
            document.setdefault("errors", {})[phase] = traceback.format_exc()
        save()
    print("\n".join(summary), flush=True)
    print(f"total {time.monotonic() - started:.0f} s", flush=True)


def run_phase(phase: str, args, phi3_dirs: tuple[str, str], document: dict, summary: list[str]) -> None:
    """One phase of the call; its results go into ``document`` and its lines into ``summary``."""
    if phase == "phi3-2gpu":
        pair = train_pair(args.phi3_preset, *phi3_dirs, batch=args.phi3_batch, seq=512, steps=args.phi3_steps, gpus=2)
        document["pairs"][phase] = pair
        summary += pair_table(pair)
    elif phase == "one-gpu-bs16":
        code = one_gpu_subprocess(
            [
                str(HERE / "fsdp_one_gpu.py"),
                "--out",
                str(args.out / "bs16"),
                "--batch-size",
                "16",
                "--max-steps",
                str(args.phi3_steps),
                "--cache",
                str(args.cache),
            ]
        )
        table = args.out / "bs16" / "fsdp-one-gpu.json"
        if code == 0 and table.is_file():
            ratios = json.loads(table.read_text())["ratios"]
            summary.append(
                "\none GPU, batch 16: FSDP (1 rank) / unsharded tokens/s: "
                + ", ".join(f"{v} {r['ratio']:.3f}" for v, r in ratios.items() if r["ratio"])
            )
        else:
            summary.append(f"\none GPU, batch 16: fsdp_one_gpu.py exited {code}")
    elif phase == "llama8b-2gpu":
        t0 = time.monotonic()
        dirs = prepare_assets(args.cache, "llama3-8b", args.llama_seq)
        document["llama8b_assets_s"] = time.monotonic() - t0
        print(f"llama3-8b assets ready in {document['llama8b_assets_s']:.0f} s", flush=True)
        pair = train_pair(
            "llama3-8b", *dirs, batch=args.llama_batch, seq=args.llama_seq, steps=args.llama_steps, gpus=2
        )
        document["pairs"][phase] = pair
        summary += pair_table(pair)
    elif phase == "overhead":
        code = one_gpu_subprocess(
            [str(HERE / "fsdp_overhead.py"), "--model-dir", phi3_dirs[0], "--out", str(args.out / "overhead.json")]
        )
        summary.append(f"\nfsdp_overhead.py exited {code} (its table is above)")


if __name__ == "__main__":
    main()
