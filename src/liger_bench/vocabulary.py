"""The project's names for its variants and run outcomes, declared once.

A variant is named after its parts (Liger kernels, ``torch.compile``), from the pipeline parameters
to the run key, the MLflow run name and the report column; the baseline is stock, eager
transformers. The parts are joined by "-", not "+": the names also key MLflow metrics, which
refuse "+". Every module that names a variant or a run status reads it here; human labels
("Liger + torch.compile") are chosen where a page is rendered, never stored.
"""

from __future__ import annotations

from typing import Literal, get_args

Variant = Literal["baseline", "liger", "compile", "liger-compile"]
# Baseline first: the order of every table, figure and legend.
VARIANTS: tuple[Variant, ...] = get_args(Variant)
BASELINE: Variant = VARIANTS[0]

# The kernel_ablation pipeline parameter: "each" adds, per kernel liger-kernel enables by default for the
# model type, an eager Liger run with that kernel alone; "leave-one-out" one with every default kernel but
# it; "both" both. An ablation arm is named after the kernels it keeps: "liger.rope" (rope alone),
# "liger.no_swiglu" (every default but swiglu); the "liger[rope]" and "liger[-swiglu]", spelled
# with "." and "_" because the names also key MLflow metrics and Kubernetes label values, which refuse
# brackets. A run's ``ablation`` field holds the part after "liger." ("" for every other variant).
KernelAblation = Literal["off", "each", "leave-one-out", "both"]
KERNEL_ABLATIONS: tuple[KernelAblation, ...] = get_args(KernelAblation)
NO_ABLATION: KernelAblation = KERNEL_ABLATIONS[0]  # "off"
ABLATION_PREFIX = "liger."
LEFT_OUT = "no_"

# ok first: every other status is a run whose measurements make no gain. diverged: trained, but its loss
# became NaN or infinite (training stops at that step), so its numbers measure no fine-tuning.
RunStatus = Literal["ok", "oom", "failed", "skipped", "diverged"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)


def variant_of(use_liger: bool, torch_compile: bool, ablation: str = "") -> Variant:
    """The variant a grid point's ``use_liger``, ``torch_compile`` and ``ablation`` select."""
    if ablation:
        return ABLATION_PREFIX + ablation  # type: ignore[return-value] - an ablation arm (see KernelAblation)
    parts = [name for name, on in (("liger", use_liger), ("compile", torch_compile)) if on]
    return "-".join(parts) or BASELINE  # type: ignore[return-value] - the parts spell a Variant


def ablation_arm(kernel: str, alone: bool) -> str:
    """The ``ablation`` of the arm that runs ``kernel`` alone, or every default kernel but it."""
    return kernel if alone else LEFT_OUT + kernel


def ablated_kernel(variant: str) -> tuple[str, bool] | None:
    """``(kernel, alone)`` of an ablation arm's variant (``liger.rope``: rope alone); None for any other variant."""
    if not variant.startswith(ABLATION_PREFIX):
        return None
    arm = variant.removeprefix(ABLATION_PREFIX)
    return (arm.removeprefix(LEFT_OUT), False) if arm.startswith(LEFT_OUT) else (arm, True)


def variant_order(variant: str) -> tuple[int, int, str]:
    """Sort key of variants: baseline, Liger, its ablation arms (alone, then left out, by name), compile, both."""
    arm = ablated_kernel(variant)
    if arm is None:
        index = VARIANTS.index(variant)  # type: ignore[arg-type] - not an arm: one of VARIANTS
        return index + (index > 1), 0, ""
    return 2, 0 if arm[1] else 1, arm[0]


def variant_parts(variant: Variant) -> tuple[bool, bool]:
    """``(use_liger, torch_compile)`` of ``variant``: the inverse of ``variant_of``."""
    if ablated_kernel(variant) is not None:
        return True, False  # ablation arms are eager
    parts = set(variant.split("-"))
    return "liger" in parts, "compile" in parts
