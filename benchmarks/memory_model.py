"""Per-GPU peak memory on paper: FSDP full shard, Liger vs stock transformers, checked against one-GPU runs.

The recipe is the project's (``training.py``): bf16 weights as loaded, bf16 gradients, AdamW with
bf16 states (two per parameter), no fp32 master copy, no activation checkpointing unless a row says
so. The peak is at the start of the backward pass: weights and optimizer states resident (sharded
over N GPUs), every activation of the micro-batch saved, gradients not yet allocated (``zero_grad``
frees them). See benchmarks/results/memory-model.md for the formula, its assumptions and its error.

    python benchmarks/memory_model.py   # the tables of benchmarks/results/memory-model.md, verbatim
    python benchmarks/memory_model.py --frontier FRONTIER_JSON [--arch phi3-mini] [--gpus 1]

``--frontier`` checks the model against a searched memory frontier instead: find_frontier's artifact
(``{"frontiers": [...]}``, the ``frontier`` output of the pipeline's find-frontier task). Per search:
the predicted peak at the largest batch that trained against the probe's allocated peak, and the
largest batch the model predicts under the GPU's capacity against the searched one. torch.compile
has no term in the model: a compile arm is predicted as its eager counterpart.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

from liger_bench.measure.frontier import last_probe_of

GIB = 2**30
BF16 = 2
RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Arch:
    """The sizes the model needs (untied embeddings, SwiGLU MLP, RMSNorm, rotary attention)."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    vocab: int
    kv_hidden: int  # n_kv_heads × head_dim

    @property
    def layer_params(self) -> int:
        """Parameters of one decoder layer: q, k, v, o, gate, up, down, two norms."""
        h, i, kv = self.hidden, self.intermediate, self.kv_hidden
        return 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h

    @property
    def root_params(self) -> int:
        """Input embedding and LM head (untied), plus the final norm: FSDP2's root, unsharded for the step."""
        return 2 * self.vocab * self.hidden + self.hidden

    @property
    def params(self) -> int:
        """All parameters."""
        return self.layers * self.layer_params + self.root_params


PHI3_MINI = Arch("Phi-3-mini (3.8B)", 3072, 8192, 32, 32064, 3072)
LLAMA3_8B = Arch("Llama-3-8B", 4096, 14336, 32, 128256, 1024)
LLAMA3_70B = Arch("Llama-3-70B", 8192, 28672, 80, 128256, 1024)
ARCHES = {"phi3-mini": PHI3_MINI, "llama3-8b": LLAMA3_8B, "llama3-70b": LLAMA3_70B}


def activation_bytes_per_token(arch: Arch, liger: bool, checkpointing: bool = False) -> float:
    """Bytes saved for the backward pass per token (bf16), over all layers plus the loss.

    Per layer, stock transformers: two RMSNorms (fp32 upcast 4h, normalised bf16 2h, the output
    the next linear saves 2h: 8h each), attention (rotated q and k, v and the SDPA output as SDPA
    saves them, k and v at full width as ``repeat_kv`` makes them, and the contiguous o_proj input:
    10h), SwiGLU (gate and up 4I, SiLU output 2I, product 2I: 8I). Liger: its RMSNorm saves the bf16
    input only (4h each), its SwiGLU recomputes SiLU (6I). Loss, stock: bf16 logits, their fp32 copy
    and fp32 log-softmax (10V); Liger's fused linear cross-entropy materialises no logits (0).
    With activation checkpointing only each layer's input (2h) is kept, plus one layer recomputed.
    """
    h, i = arch.hidden, arch.intermediate
    per_layer = (8 * h + 10 * h + 6 * i) if liger else (16 * h + 10 * h + 8 * i)
    loss = 0 if liger else 10 * arch.vocab
    if checkpointing:
        return arch.layers * 2 * h + per_layer + loss
    return arch.layers * per_layer + loss


def peak_bytes(arch: Arch, liger: bool, n_gpus: int, tokens_per_gpu: int, checkpointing: bool = False) -> float:
    """Predicted peak allocated bytes of one GPU (see the module docstring)."""
    resident = (BF16 + 2 * BF16) * arch.params / n_gpus  # weights + AdamW's two states, sharded
    transient = 0.0
    if n_gpus > 1:
        # FSDP2 keeps the root's parameters gathered from forward to backward; a layer and the one
        # prefetched are gathered while they run (the resident shard counts once more: ignored).
        transient += BF16 * arch.root_params + 2 * BF16 * arch.layer_params
    if liger:
        transient += BF16 * arch.vocab * arch.hidden  # fused CE's LM-head gradient, made in the forward
    return resident + transient + tokens_per_gpu * activation_bytes_per_token(arch, liger, checkpointing)


def measured_one_gpu() -> list[dict]:
    """Phi-3-mini at sequence 512 on one H100 (benchmarks/results/h100/analysis.csv), runs that trained."""
    with (RESULTS / "h100" / "analysis.csv").open() as handle:
        return [row for row in csv.DictReader(handle) if row["outcome"] == "ok"]


def measured_two_gpu() -> list[dict]:
    """Each 2-rank FSDP run of ``fsdp_two_gpu.py`` on two H200s (h200-x2/fsdp-two-gpu.json), highest rank's peak."""
    import json

    document = json.loads((RESULTS / "h200-x2" / "fsdp-two-gpu.json").read_text())
    rows = []
    for pair in document["pairs"].values():
        for variant, run in pair["runs"].items():
            if run["result"]["status"] != "ok":
                continue
            metrics = run["result"]["metrics"]
            rows.append(
                {
                    "preset": pair["preset"],
                    "variant": variant,
                    "gpus": pair["gpus"],
                    "batch_size": pair["batch_per_gpu"],
                    "seq_len": pair["seq_len"],
                    "allocated": max(metrics["rank_peak_mem_allocated_gib"]),
                    "reserved": max(metrics["rank_peak_mem_reserved_gib"]),
                }
            )
    return rows


def predicted_frontier(arch: Arch, liger: bool, n_gpus: int, seq_len: int, capacity_gib: float) -> int:
    """The largest per-GPU batch whose predicted peak fits ``capacity_gib`` (the peak is linear in the batch)."""
    fixed = peak_bytes(arch, liger, n_gpus, 0)
    per_sequence = peak_bytes(arch, liger, n_gpus, seq_len) - fixed
    return max(0, math.floor((capacity_gib * GIB - fixed) / per_sequence))


def frontier_check(frontiers: list[dict], arch: Arch, n_gpus: int = 1) -> list[dict]:
    """The model against each search of find_frontier's records that found a batch that trains on a GPU.

    Args:
        frontiers: find_frontier's records (``variant``, ``max_seq_length``, ``largest_fit``, ``probes``).
        arch: The model's sizes.
        n_gpus: GPUs of one run (FSDP above 1).

    Returns:
        Per search: the searched and the predicted largest batch, and the predicted and measured
        allocated peak at the searched one, with the errors (predicted / measured − 1).
    """
    rows = []
    for record in frontiers:
        fit, seq = record["largest_fit"], record["max_seq_length"]
        probe = last_probe_of(record["probes"], itemgetter("per_device_train_batch_size"), fit)
        if fit is None or probe is None or probe["peak_mem_allocated_gb"] is None:
            continue
        liger = record["variant"].startswith("liger")
        predicted_peak = peak_bytes(arch, liger, n_gpus, fit * seq) / GIB
        predicted_fit = predicted_frontier(arch, liger, n_gpus, seq, probe["gpu_memory_gb"])
        rows.append(
            {
                "variant": record["variant"],
                "seq_len": seq,
                "searched_fit": fit,
                "smallest_oom": record["smallest_oom"],
                "predicted_fit": predicted_fit,
                "fit_error": predicted_fit / fit - 1,
                "measured_gib": probe["peak_mem_allocated_gb"],
                "predicted_gib": predicted_peak,
                "peak_error": predicted_peak / probe["peak_mem_allocated_gb"] - 1,
                "capacity_gib": probe["gpu_memory_gb"],
            }
        )
    return rows


def print_frontier_check(path: Path, arch: Arch, n_gpus: int) -> None:
    """Print the model's error against the searched frontier in ``path`` as a Markdown table."""
    rows = frontier_check(json.loads(path.read_text())["frontiers"], arch, n_gpus)
    print(f"## Check against the searched memory frontier ({arch.name}, {n_gpus} GPU per run, {path.name})\n")
    if not rows:
        print("No search found a batch that trains on a GPU: nothing to check.")
        return
    print(
        "| variant | seq | searched largest batch | first oom | predicted largest batch | error % | "
        "measured allocated GiB at it | predicted GiB | error % | capacity GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['variant']} | {row['seq_len']} | {row['searched_fit']} | {row['smallest_oom'] or '–'} | "
            f"{row['predicted_fit']} | {100 * row['fit_error']:+.1f} | {row['measured_gib']:.1f} | "
            f"{row['predicted_gib']:.1f} | {100 * row['peak_error']:+.1f} | {row['capacity_gib']:.1f} |"
        )
    worst = max((row["fit_error"] for row in rows), key=abs)
    print(f"\nLargest frontier error: {100 * worst:+.1f}%.")


def main() -> None:
    print("## Check against one-GPU measurements (Phi-3-mini architecture, seq 512, H100, allocated peak)\n")
    print("| variant | batch | predicted GiB | measured allocated GiB | error % | measured reserved GiB |")
    print("|---|---|---|---|---|---|")
    errors = []
    for row in measured_one_gpu():
        liger = row["variant"] == "liger"
        tokens = int(row["batch_size"]) * int(row["seq_len"])
        predicted = peak_bytes(PHI3_MINI, liger, 1, tokens) / GIB
        measured = float(row["peak_mem_allocated_gb"])
        errors.append(predicted / measured - 1)
        print(
            f"| {row['variant']} | {row['batch_size']} | {predicted:.1f} | {measured:.1f} | "
            f"{100 * errors[-1]:+.1f} | {float(row['peak_mem_reserved_gb']):.1f} |"
        )
    print(f"\nLargest error: {100 * max(errors, key=abs):+.1f}%.\n")
    print("## Check against two-GPU measurements (FSDP2 full shard, 2 × H200, allocated peak of the highest rank)\n")
    print(
        "| model | variant | GPUs | batch per GPU | seq | predicted GiB | measured allocated GiB | error % "
        "| measured reserved GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    arches = {"phi3-mini": PHI3_MINI, "llama3-8b": LLAMA3_8B}
    errors = []
    for row in measured_two_gpu():
        arch = arches[row["preset"]]
        tokens = row["batch_size"] * row["seq_len"]
        predicted = peak_bytes(arch, row["variant"] == "liger", row["gpus"], tokens) / GIB
        errors.append(predicted / row["allocated"] - 1)
        print(
            f"| {arch.name} | {row['variant']} | {row['gpus']} | {row['batch_size']} | {row['seq_len']} | "
            f"{predicted:.1f} | {row['allocated']:.1f} | {100 * errors[-1]:+.1f} | {row['reserved']:.1f} |"
        )
    print(f"\nLargest two-GPU error: {100 * max(errors, key=abs):+.1f}%.\n")
    for arch in (LLAMA3_8B, LLAMA3_70B):
        print(f"## {arch.name}: {arch.params / 1e9:.2f}B parameters, sequence 2,048, per-GPU peak (GiB, allocated)\n")
        print("| GPUs | micro-batch per GPU | checkpointing | stock transformers | Liger | Liger saves |")
        print("|---|---|---|---|---|---|")
        for n_gpus in (8, 16):
            for batch in (1, 2, 4, 8):
                for checkpointing in (False, True):
                    stock = peak_bytes(arch, False, n_gpus, batch * 2048, checkpointing) / GIB
                    liger = peak_bytes(arch, True, n_gpus, batch * 2048, checkpointing) / GIB
                    print(
                        f"| {n_gpus} | {batch} | {'yes' if checkpointing else 'no'} | {stock:.1f} | {liger:.1f} | "
                        f"{100 * (1 - liger / stock):.0f}% |"
                    )
        print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frontier", type=Path, help="find_frontier's artifact: check the model against it")
    parser.add_argument("--arch", choices=sorted(ARCHES), default="phi3-mini", help="the searched model's sizes")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs of one run (FSDP above 1)")
    arguments = parser.parse_args()
    if arguments.frontier:
        print_frontier_check(arguments.frontier, ARCHES[arguments.arch], arguments.gpus)
    else:
        main()
