"""Try a model's architecture before any GPU is requested: attention implementation and Liger kernels.

The trial builds the model from its own ``config.json`` at full size on PyTorch's meta device
(exact module structure, no weight allocated, no GPU), with the attention implementation asked
for, and applies the Liger kernels asked for through ``liger.apply_liger``. What transformers or
liger-kernel refuse (sdpa on an architecture without it, a kernel combination liger-kernel
rejects, such as Granite's fused linear cross-entropy) fails here, in prepare_grid, instead of
in a training run after a GPU was scheduled.

Why a fresh process for every trial: liger-kernel patches module-level classes and functions
(the modeling module's RMSNorm class, even ``torch.nn.functional.cross_entropy``), so a trial in
the caller's process would leave every later stock-transformers model there partly Liger, and
one trial's patches would change the next one's. Undoing patches by hand would need to know
everything liger-kernel touches. Each trial therefore runs in a child forked from a forkserver
that has only imported liger-kernel (and with it torch and transformers): the child and its
patches are discarded, and the seconds of imports are paid once per calling process, not per
trial. As with any multiprocessing start method but fork, the caller's ``__main__`` is imported
again in the child, so a script calling this needs an ``if __name__ == "__main__":`` guard (kfp's
executor and pytest have one).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

# Attention implementations that need the GPU node's libraries (flash-attn, hub kernels
# "org/repo"): the CPU trial builds the model with transformers' default instead.
GPU_NODE_ATTENTION_MARKERS = ("flash", "/")


class ArchitectureError(ValueError):
    """The architecture cannot run as configured; the message says what was refused and why."""


@dataclass
class ArchitectureTrial:
    """What the trial found: the architecture, the attention it gets, the Liger kernels it patched."""

    model_type: str
    architecture: str
    attn_implementation: str
    liger_kernels: dict[str, int] = field(default_factory=dict)


def _checked_on_gpu_node(attn_implementation: str) -> bool:
    """Whether ``attn_implementation`` needs the GPU node's libraries to be checked."""
    return any(marker in attn_implementation for marker in GPU_NODE_ATTENTION_MARKERS)


def try_architecture(
    model_dir: str, attn_implementation: str, liger_flags: dict[str, bool] | None
) -> ArchitectureTrial:
    """Build the model of ``model_dir`` on the meta device and patch it, in a fresh process.

    Args:
        model_dir: Folder with the model's ``config.json``.
        attn_implementation: transformers attention implementation; "" for transformers' choice.
        liger_flags: Liger kernel flags on top of liger-kernel's defaults; None: no Liger trial.

    Returns:
        The architecture class, the attention implementation transformers resolved, and the
        Liger kernels patched (empty without a Liger trial).

    Raises:
        ArchitectureError: transformers cannot build the model as asked.
        liger.LigerError: liger-kernel cannot patch it as asked.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["liger_kernel.transformers.monkey_patch"])
    with ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1) as pool:
        try:
            return pool.submit(trial_in_this_process, model_dir, attn_implementation, liger_flags).result()
        except BrokenProcessPool as err:
            raise ArchitectureError(f"the architecture trial of {model_dir!r} crashed its process: {err}") from err


def trial_in_this_process(
    model_dir: str, attn_implementation: str, liger_flags: dict[str, bool] | None
) -> ArchitectureTrial:
    """The trial itself; it changes this process for good when it applies Liger (see the module docstring)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from liger_bench.plan.liger import LigerError, apply_liger

    config = AutoConfig.from_pretrained(model_dir)
    requested = None if not attn_implementation or _checked_on_gpu_node(attn_implementation) else attn_implementation
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, attn_implementation=requested)
    except (ValueError, ImportError, KeyError, TypeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ArchitectureError(
            f"transformers cannot build model type {config.model_type!r} as a causal LM with "
            f"attn_implementation={attn_implementation or 'its default'!r}: {type(err).__name__}: {first_line} "
            "(accepted: a text causal LM that transformers' AutoModelForCausalLM builds, with an attention "
            "implementation it supports; leave attn_implementation unset for transformers' choice)"
        ) from None
    resolved = attn_implementation if _checked_on_gpu_node(attn_implementation) else model.config._attn_implementation
    kernels = {}
    if liger_flags is not None:
        try:
            kernels = apply_liger(model, liger_flags)
        except LigerError as err:
            raise LigerError(str(err)) from None  # the cause may not survive the trip between processes
    return ArchitectureTrial(
        model_type=config.model_type,
        architecture=type(model).__name__,
        attn_implementation=resolved,
        liger_kernels=kernels,
    )
