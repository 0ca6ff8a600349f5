"""Liger Kernel through liger-kernel's own API, and proof of what it patched.

Which kernels a model type offers, and which of them are on by default, is read from the
signature of the ``apply_liger_kernel_to_<arch>`` function liger-kernel registers for that type;
this project keeps no table of architectures.
"""

from __future__ import annotations

import inspect
import sys
from collections import Counter
from typing import Any

from liger_bench.plan.config import LIGER_KERNELS
from liger_bench.vocabulary import KERNEL_ABLATIONS, NO_ABLATION, ablation_arm

EXCLUSIVE_LOSSES = ("cross_entropy", "fused_linear_cross_entropy")
# Kernels that replace modules, by what liger-kernel names the patched module (``_get_name()``):
# its classes, e.g. LigerRMSNorm, LigerSwiGLUMLP, LigerPhi3SwiGLUMLP, LigerExperts, LigerGEGLUMLP,
# LigerReLUSquared.
MODULE_KERNELS = {
    "rms_norm": ("RMSNorm",),
    "layer_norm": ("LayerNorm",),
    "swiglu": ("SwiGLU", "LigerExperts", "LigerBlockSparseTop2MLP"),
    "geglu": ("GEGLU",),
    "relu_squared": ("ReLUSquared",),
}


class LigerError(RuntimeError):
    """Liger was requested but cannot be applied as asked."""


def supported_model_types() -> set[str]:
    """Model types (``config.model_type``) liger-kernel has patches for."""
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    return set(MODEL_TYPE_TO_APPLY_LIGER_FN)


def _apply_fn(model_type: str):
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        raise LigerError(
            f"liger-kernel has no patches for model type {model_type!r}; supported: "
            f"{sorted(MODEL_TYPE_TO_APPLY_LIGER_FN)}"
        )
    return MODEL_TYPE_TO_APPLY_LIGER_FN[model_type]


def offered_kernels(model_type: str) -> dict[str, bool]:
    """The kernels liger-kernel offers for ``model_type``, each with its default (on or off)."""
    parameters = inspect.signature(_apply_fn(model_type)).parameters.values()
    return {p.name: p.default for p in parameters if isinstance(p.default, bool)}


def ablation_arms(model_type: str, kernel_ablation: str) -> dict[str, dict[str, bool]]:
    """The kernel-ablation arms of ``model_type``: each arm's ``ablation`` to its kernel flags, every offered one set.

    The kernels liger-kernel enables by default for the type are the ablated ones ("all" is the plain
    Liger variant): ``each`` runs each of them alone, ``leave-one-out`` all of them but one, ``both``
    both. A kernel off by default stays off, so the exclusive losses never meet (Phi-3 ablates the
    fused linear cross-entropy, Granite the plain cross-entropy). ``off``: no arm.

    Args:
        model_type: The model's ``config.model_type``.
        kernel_ablation: One of ``vocabulary.KERNEL_ABLATIONS``.

    Raises:
        LigerError: liger-kernel has no patches for ``model_type``.
        ValueError: ``kernel_ablation`` is not one of ``KERNEL_ABLATIONS``.
    """
    if kernel_ablation not in KERNEL_ABLATIONS:
        raise ValueError(f"kernel_ablation: {kernel_ablation!r} is not accepted; accepted: {list(KERNEL_ABLATIONS)}")
    if kernel_ablation == NO_ABLATION:
        return {}
    offered = offered_kernels(model_type)
    defaults = [kernel for kernel in LIGER_KERNELS if offered.get(kernel)]
    arms = {}
    if kernel_ablation in ("each", "both"):
        arms |= {ablation_arm(k, alone=True): {o: o == k for o in offered} for k in defaults}
    if kernel_ablation in ("leave-one-out", "both"):
        arms |= {ablation_arm(k, alone=False): {o: offered[o] and o != k for o in offered} for k in defaults}
    return arms


def resolve_kernels(model_type: str, flags: dict[str, bool]) -> dict[str, bool]:
    """liger-kernel's defaults for ``model_type`` with the given ``flags`` on top.

    Raises ``LigerError`` naming the model type, the flag and the kernels offered when a flag is
    not offered by that architecture, or when both cross-entropy kernels end up on.
    """
    offered = offered_kernels(model_type)
    for kernel in flags:
        if kernel not in offered:
            raise LigerError(
                f"liger_{kernel}: liger-kernel offers no {kernel!r} kernel for model type {model_type!r}; "
                f"offered: {sorted(offered)} (leave liger_{kernel} unset)"
            )
    resolved = {**offered, **flags}
    if all(resolved.get(kernel) for kernel in EXCLUSIVE_LOSSES):
        given = {f"liger_{k}": flags[k] for k in EXCLUSIVE_LOSSES if k in flags}
        defaults = {k: offered[k] for k in EXCLUSIVE_LOSSES}
        raise LigerError(
            f"liger_cross_entropy and liger_fused_linear_cross_entropy would both be on for model type "
            f"{model_type!r} (given {given}, liger-kernel's defaults {defaults}); "
            "liger-kernel accepts at most one of them: set the other to false"
        )
    return resolved


def apply_liger(model: Any, flags: dict[str, bool]) -> dict[str, int]:
    """Patch ``model`` in place: liger-kernel's defaults for its type, ``flags`` on top; return what was patched.

    Uses the per-architecture ``apply_liger_kernel_to_<arch>(model=..., **kernels)`` that
    liger-kernel registers for the model's type. Returns, for every kernel the type offers, how
    many modules (or 1/0 for functions) it patched. Raises ``LigerError`` when the architecture is
    not supported, a flag is not offered, liger-kernel rejects the combination, a kernel
    enabled in ``flags`` patched nothing, or one disabled in ``flags`` patched something (a
    kernel-ablation arm measures exactly the kernels it names). liger-kernel also patches
    module-level classes and functions, so this changes the whole process.
    """
    model_type = getattr(model.config, "model_type", "")
    kernels = resolve_kernels(model_type, flags)
    try:
        _apply_fn(model_type)(model=model, **kernels)
    except (AssertionError, NotImplementedError, TypeError, ValueError) as err:
        enabled = sorted(k for k, on in kernels.items() if on)
        given = {f"liger_{k}": on for k, on in flags.items()}
        raise LigerError(
            f"liger-kernel rejects the kernels {enabled} for model type {model_type!r} (given: {given or 'none'}): "
            f"{type(err).__name__}: {err}; offered: {sorted(kernels)}; set liger_<kernel> of the rejected one to false"
        ) from err
    applied = patched_kernels(model)
    # A kernel on by liger-kernel's default may find nothing in this model (Llama-4's LayerNorm is
    # in the vision tower); one asked for explicitly must have patched something.
    missing = sorted(k for k, on in flags.items() if on and not applied[k])
    if missing:
        raise LigerError(
            f"liger_{missing[0]}: enabled, but liger-kernel patched nothing in {type(model).__name__} "
            f"(model type {model_type!r}) for {missing}; set them to false or leave them unset"
        )
    unwanted = sorted(k for k, on in flags.items() if not on and applied[k])
    if unwanted:
        raise LigerError(
            f"liger_{unwanted[0]}: disabled, but liger-kernel patched {applied[unwanted[0]]} modules or functions "
            f"for it in {type(model).__name__} (model type {model_type!r}); this process was patched before"
        )
    return {kernel: applied[kernel] for kernel in kernels}


def _from_liger(function: Any) -> bool:
    # accelerate wraps a prepared model's forward for mixed precision (autocast, outputs to fp32);
    # the wrappers keep the function they call as ``__wrapped__``.
    function = inspect.unwrap(getattr(function, "__func__", function))
    return getattr(function, "__module__", "").startswith("liger_kernel")


def patched_kernels(model: Any) -> dict[str, int]:
    """Count what Liger replaced in ``model``, for every kernel liger-kernel has.

    Modules per kernel for module-level patches (norms, MLPs, activations); 1/0 for the rotary
    embedding (a rotary function of the modeling module, e.g. ``apply_rotary_pos_emb``), the fused
    LM-head loss (the model's ``forward``) and the cross-entropy (the function transformers'
    losses call).
    """
    from transformers.loss import loss_utils

    names = Counter(module._get_name() for module in model.modules())
    liger_names = {name: n for name, n in names.items() if name.startswith("Liger")}
    counts = {
        kernel: sum(n for name, n in liger_names.items() if any(part in name for part in parts))
        for kernel, parts in MODULE_KERNELS.items()
    }
    modeling = sys.modules[type(model).__module__]
    counts["rope"] = int(
        any(_from_liger(value) for name, value in vars(modeling).items() if "rotary" in name or "rope" in name)
    )
    counts["fused_linear_cross_entropy"] = int(_from_liger(model.forward))
    counts["cross_entropy"] = int(_from_liger(loss_utils.nn.functional.cross_entropy))
    return {kernel: counts[kernel] for kernel in LIGER_KERNELS}
