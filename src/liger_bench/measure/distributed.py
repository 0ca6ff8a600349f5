"""One grid point trained by several processes: torchrun's launch, FSDP's settings, the ranks' shared step record.

A run of ``gpus_per_run`` > 1 is started with PyTorch's own launcher (``torchrun``), one process per
GPU, each running the supervisor's child entry point; transformers' Trainer (through accelerate)
joins the process group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``, ...) and
shards the model with FSDP2 (full shard), wrapping the layer classes the model itself declares
unsplittable (``_no_split_modules``), so no architecture is named here. Everything in this module is
a no-op without a process group, so one-GPU runs take the same code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


def launched_by_torchrun() -> bool:
    """Whether this process is one rank of a torchrun launch (then the model is sharded, even with one rank)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    """This process's global rank; 0 outside torchrun."""
    return int(os.environ.get("RANK", "0"))


def torchrun_command(nproc_per_node: int, module_args: list[str]) -> list[str]:
    """The torchrun command that runs ``python -m MODULE_ARGS`` as ``nproc_per_node`` ranks on this node.

    ``--standalone`` picks a free rendezvous port, so concurrent runs on one node never collide.
    """
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}"]
    return [*launcher, "-m", *module_args]


def fsdp_settings(no_split_modules: list[str] | set[str] | None, gradient_checkpointing: bool) -> dict[str, Any]:
    """``TrainingArguments`` keywords for FSDP2 full shard, wrapping the model's own layer classes.

    FSDP's own activation checkpointing replaces the ``activation_checkpointing`` argument, which
    would add an all-gather in the backward pass (transformers' advice).
    """
    if not no_split_modules:
        raise ValueError(
            "the model declares no layer classes to shard by (_no_split_modules is empty); "
            "accepted: a transformers model that sets _no_split_modules, or gpus_per_run=1"
        )
    return {
        "fsdp": True,
        "fsdp_config": {
            "version": 2,
            "reshard_after_forward": True,  # full shard: parameters too, not only gradients and optimizer states
            "transformer_layer_cls_to_wrap": sorted(no_split_modules),
            "activation_checkpointing": gradient_checkpointing,
        },
    }


def _group_ready() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (a no-op without a process group of several ranks)."""
    import torch.distributed as dist

    if _group_ready():
        dist.barrier()


def gather(values: dict[str, Any]) -> list[dict[str, Any]]:
    """``values`` of every rank, in rank order (``[values]`` without a process group)."""
    import torch.distributed as dist

    if not _group_ready():
        return [values]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, values)
    return gathered


def die_with_launcher() -> None:
    """SIGKILL this rank when torchrun dies.

    torchrun starts ranks in sessions of their own, out of the supervisor's reach, and a killed
    launcher must not leave a rank holding a GPU.
    """
    import ctypes
    import signal

    launcher = os.getppid()  # torchrun; PID 1 itself where it is a container's entry point (a TrainJob node)
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != launcher:  # the launcher died before the line above
        os._exit(1)


def rank_outcome_file(work_dir: Path, rank_: int) -> Path:
    """Where a rank that failed writes its result before exiting non-zero (torchrun then ends the others)."""
    return work_dir / f"outcome.rank{rank_}.json"
