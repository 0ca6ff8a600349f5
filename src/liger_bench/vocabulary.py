"""The project's names for its variants and run outcomes, declared once.

Every module that names a variant or a run status reads it here; human labels ("baseline",
"Liger") are chosen where a page is rendered, never stored.
"""

from __future__ import annotations

from typing import Literal, get_args

Variant = Literal["vanilla", "liger"]
# Baseline first: the order of every table, figure and legend.
VARIANTS: tuple[Variant, ...] = get_args(Variant)

# ok first: every other status is a run whose measurements make no gain. diverged: trained, but its loss
# became NaN or infinite (training stops at that step), so its numbers measure no fine-tuning.
RunStatus = Literal["ok", "oom", "failed", "skipped", "diverged"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)


def variant_of(use_liger: bool) -> Variant:
    """The variant a grid point's ``use_liger`` selects."""
    return "liger" if use_liger else "vanilla"
