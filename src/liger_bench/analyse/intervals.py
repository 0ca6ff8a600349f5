"""Means with two-sided 95% Student-t intervals, the one statistic of the report's error bars.

Over a handful of repeats the t-quantile matters (12.7 for two values, 4.3 for three); the table
holds the published quantiles, with no SciPy needed in the analysis image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

# Two-sided 95% Student-t quantiles for 1..30 degrees of freedom; beyond, a Cornish-Fisher expansion.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)  # fmt: skip
_Z975 = 1.959964


def t_quantile_975(dof: int) -> float:
    """Upper 97.5% quantile of Student's t with ``dof`` degrees of freedom (``dof`` >= 1)."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


def mean_ci(values: Iterable[float]) -> tuple[float, float, float]:
    """Mean and two-sided 95% t-interval; the bounds are NaN with fewer than two finite values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, math.nan
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    half = t_quantile_975(len(finite) - 1) * sd / math.sqrt(len(finite))
    return mean, mean - half, mean + half
