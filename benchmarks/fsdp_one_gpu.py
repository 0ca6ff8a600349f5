"""The sharded path costs nothing by itself: FSDP with one rank on one GPU against the unsharded run.

Both variants (Liger, stock transformers), each trained twice through the supervisor's child entry
point, each in a fresh process: once as a one-GPU run (``python -m liger_bench.measure.supervisor``) and
once as a one-rank FSDP2 run (``torchrun --nproc_per_node=1 -m liger_bench.measure.supervisor``, the launch
a ``gpus_per_run`` > 1 run takes). Model: Phi-3-mini's architecture with random weights (no hub);
dataset: the ``fixed`` workload of gpu_benchmark.py (one batch shape, no padding). Prints tokens/s,
peak memory and final loss of the four runs and the FSDP / unsharded tokens/s ratio per variant
(target: within 5%), and writes ``fsdp-one-gpu.json``.

Run on a GPU machine (after ``source benchmarks/device_env.sh``)::

    python benchmarks/fsdp_one_gpu.py --out $OUT
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from liger_bench.measure.distributed import torchrun_command
from liger_bench.measure.supervisor import OUTCOME, REQUEST
from liger_bench.plan.config import TrainConfig
from liger_bench.records import read_json, write_json_atomic
from liger_bench.vocabulary import BASELINE, variant_of

TOLERANCE = 0.05


def prepare_assets(cache: Path, preset: str, seq_len: int = 512) -> tuple[str, str]:
    """Model folder and a prepared dataset whose every row is longer than ``seq_len`` tokens (one shape per batch).

    Up to seq 512: rows of 400-600 words. Longer: the embedded tokenizer gives ~1.6 tokens per word
    on these rows, so 0.75-0.9 words per token of ``seq_len`` (seq 2,048: 3,015-3,614 tokens).
    """
    from liger_bench.inputs.embedded import ensure_embedded
    from liger_bench.tasks import download_dataset

    words = (400, 600) if seq_len <= 512 else (int(seq_len * 0.75), int(seq_len * 0.9))
    model_dir, raw_dir = ensure_embedded(
        cache, preset=preset, n_rows=512, min_output_words=words[0], max_output_words=words[1]
    )
    dataset_dir = cache / (
        "prepared-dataset-fixed" if seq_len <= 512 else f"prepared-dataset-words{words[0]}-{words[1]}"
    )
    if not dataset_dir.exists():
        download_dataset(str(raw_dir), "train", "", dataset_dir)
    return str(model_dir), str(dataset_dir)


def train(config: TrainConfig, model_dir: str, dataset_dir: str, sharded: bool) -> dict:
    """One run through the supervisor's child entry point, in a fresh process; its result dict."""
    with tempfile.TemporaryDirectory(prefix="fsdp-one-gpu-") as work:
        work_dir = Path(work)
        request = {"config": config.to_dict(), "model_dir": model_dir, "dataset_dir": dataset_dir}
        write_json_atomic(work_dir / REQUEST, request)
        module_args = ["liger_bench.measure.supervisor", "--run-key", config.run_key, str(work_dir)]
        command = torchrun_command(1, module_args) if sharded else [sys.executable, "-m", *module_args]
        started = time.monotonic()
        completed = subprocess.run(command, check=False)
        outcome = work_dir / OUTCOME
        if completed.returncode != 0 or not outcome.is_file():
            return {"status": "failed", "reason": f"exit code {completed.returncode}", "metrics": {}}
        result = read_json(outcome)["result"]
        result["wall_s"] = time.monotonic() - started
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for fsdp-one-gpu.json")
    parser.add_argument("--preset", default="phi3-mini", help="ensure_embedded model preset")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "liger-bench-fsdp-assets")
    args = parser.parse_args()

    started = time.monotonic()
    model_dir, dataset_dir = prepare_assets(args.cache, args.preset)
    print(f"assets ready in {time.monotonic() - started:.0f} s", flush=True)
    runs = {}
    for use_liger in (False, True):
        for sharded in (False, True):
            variant = variant_of(use_liger, torch_compile=False)
            mode = "fsdp-1-rank" if sharded else "unsharded"
            config = TrainConfig(
                run_key=f"{variant}-{mode}-bs{args.batch_size}-seq{args.seq_len}",
                use_liger=use_liger,
                per_device_train_batch_size=args.batch_size,
                max_seq_length=args.seq_len,
                max_steps=args.max_steps,
            )
            runs[(variant, mode)] = train(config, model_dir, dataset_dir, sharded)
            result = runs[(variant, mode)]
            print(f"{config.run_key}: {result['status']} {result.get('reason', '')}", flush=True)

    lines = ["| variant | run | status | tokens/s | peak reserved GB | sharded params | final loss | wall s |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    for (variant, mode), result in runs.items():
        m = result["metrics"]
        lines.append(
            f"| {variant} | {mode} | {result['status']} | {m.get('tokens_per_s_nonpad') or 0:,.0f} | "
            f"{m.get('peak_mem_reserved_gb') or 0:.1f} | {m.get('sharded_parameter_fraction', 0):.2f} | "
            f"{m.get('final_loss') or float('nan'):.4f} | {result.get('wall_s', 0):.0f} |"
        )
    verdicts = {}
    for variant in (BASELINE, "liger"):
        plain = runs[(variant, "unsharded")]["metrics"].get("tokens_per_s_nonpad")
        fsdp = runs[(variant, "fsdp-1-rank")]["metrics"].get("tokens_per_s_nonpad")
        ratio = fsdp / plain if plain and fsdp else None
        within = ratio is not None and abs(ratio - 1) <= TOLERANCE
        verdicts[variant] = {"ratio": ratio, "within_5_percent": within}
        shown = f"{ratio:.3f}" if ratio else "n/a"
        verdict = "within" if within else "NOT within"
        lines.append(f"\n{variant}: FSDP (1 rank) / unsharded tokens/s = {shown} ({verdict} 5%)")
    print("\n".join(lines), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "command": " ".join(sys.argv),
        "runs": {f"{variant}/{mode}": result for (variant, mode), result in runs.items()},
        "ratios": verdicts,
        "elapsed_s": time.monotonic() - started,
    }
    (args.out / "fsdp-one-gpu.json").write_text(json.dumps(document, indent=1, default=str))
    print(f"total {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
