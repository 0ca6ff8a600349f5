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

# ok first: every other status is a run whose measurements make no gain. diverged: trained, but its loss
# became NaN or infinite (training stops at that step), so its numbers measure no fine-tuning.
RunStatus = Literal["ok", "oom", "failed", "skipped", "diverged"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)


def variant_of(use_liger: bool, torch_compile: bool) -> Variant:
    """The variant a grid point's ``use_liger`` and ``torch_compile`` select."""
    parts = [name for name, on in (("liger", use_liger), ("compile", torch_compile)) if on]
    return "-".join(parts) or BASELINE  # type: ignore[return-value] - the parts spell a Variant


def variant_parts(variant: Variant) -> tuple[bool, bool]:
    """``(use_liger, torch_compile)`` of ``variant``: the inverse of ``variant_of``."""
    parts = set(variant.split("-"))
    return "liger" in parts, "compile" in parts
