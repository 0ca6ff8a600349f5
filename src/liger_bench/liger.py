"""Liger Kernel through liger-kernel's own API, and proof of what it patched."""

from __future__ import annotations

import inspect
import sys
from collections import Counter
from typing import Any


class LigerError(RuntimeError):
    """Liger was requested but cannot be applied as asked."""


def supported_model_types() -> set[str]:
    """Model types (``config.model_type``) liger-kernel has patches for."""
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    return set(MODEL_TYPE_TO_APPLY_LIGER_FN)


def apply_liger(model: Any, flags: dict[str, bool]) -> dict[str, int]:
    """Patch ``model`` in place with the kernels enabled in ``flags``; return what was patched.

    Uses the per-architecture ``apply_liger_kernel_to_<arch>(model=..., **flags)`` that
    liger-kernel registers for the model's type. Raises ``LigerError`` when the architecture is
    not supported or an enabled kernel patched nothing.
    """
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    model_type = getattr(model.config, "model_type", "")
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        raise LigerError(
            f"liger-kernel has no patches for model type {model_type!r}; supported: "
            f"{sorted(MODEL_TYPE_TO_APPLY_LIGER_FN)}"
        )
    apply_fn = MODEL_TYPE_TO_APPLY_LIGER_FN[model_type]
    accepted = inspect.signature(apply_fn).parameters
    unsupported = sorted(k for k, on in flags.items() if on and k not in accepted)
    if unsupported:
        raise LigerError(f"liger-kernel does not offer {unsupported} for model type {model_type!r}")
    apply_fn(model=model, **{k: v for k, v in flags.items() if k in accepted})
    applied = patched_kernels(model)
    missing = sorted(k for k, on in flags.items() if on and not applied.get(k))
    if missing:
        raise LigerError(f"Liger kernels {missing} were enabled but patched nothing in {type(model).__name__}")
    return applied


def patched_kernels(model: Any) -> dict[str, int]:
    """Count what Liger replaced: modules per kernel, and 1/0 for function-level patches."""
    names = Counter(module._get_name() for module in model.modules())
    modeling = sys.modules[type(model).__module__]
    rope = getattr(modeling, "apply_rotary_pos_emb", None)
    from transformers.loss import loss_utils

    return {
        "rms_norm": names.get("LigerRMSNorm", 0),
        "swiglu": sum(n for name, n in names.items() if name.startswith("Liger") and "SwiGLU" in name),
        "rope": int(getattr(rope, "__module__", "").startswith("liger_kernel")),
        "fused_linear_cross_entropy": int(getattr(model.forward, "__module__", "").startswith("liger_kernel")),
        "cross_entropy": int(
            getattr(loss_utils.nn.functional.cross_entropy, "__module__", "").startswith("liger_kernel")
        ),
    }
