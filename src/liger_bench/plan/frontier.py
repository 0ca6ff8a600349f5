"""The memory frontier search's settings, checked before any GPU is requested.

The search (``liger_bench.measure.frontier``) finds, for one variant and sequence length, the
largest per-device batch that trains a few full steps: it doubles the batch from 1 until one runs
out of memory, then bisects between the largest that trained and the smallest that did not, until
they are ``frontier_resolution`` apart. ``frontier_max_batch_size`` bounds it, and
``frontier_time_budget_s`` bounds its time. A bad value is refused here with a ``GridError`` that
names the setting, the value and what is accepted, as prepare_grid refuses a bad grid.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from liger_bench.plan.config import coerce
from liger_bench.plan.grid import GridError


@dataclass(frozen=True)
class FrontierSettings:
    """How far, how finely and how long the frontier search probes; validated when made."""

    frontier_max_batch_size: int = field(
        default=1024,
        metadata={"help": "Largest per-device batch the search probes; a variant that trains it fits at least that."},
    )
    frontier_resolution: int = field(
        default=1,
        metadata={
            "help": "The search ends when the largest batch that trained and the smallest that ran out of memory "
            "are at most this far apart (1: the exact frontier)."
        },
    )
    frontier_time_budget_s: float = field(
        default=3600.0,
        metadata={"help": "Seconds one search (one variant, one sequence length) may take; it ends with what it has."},
    )
    frontier_probe_steps: int = field(
        default=3,
        metadata={
            "help": "Optimizer steps each probe trains; at least 2, because the first step allocates the "
            "optimizer's state and only the next ones train with it."
        },
    )

    def __post_init__(self) -> None:
        bound = _integer("frontier_max_batch_size", self.frontier_max_batch_size, 1, math.inf, "integers >= 1")
        _integer(
            "frontier_resolution",
            self.frontier_resolution,
            1,
            bound,
            f"integers from 1 to frontier_max_batch_size ({bound})",
        )
        _integer(
            "frontier_probe_steps",
            self.frontier_probe_steps,
            2,
            math.inf,
            "integers >= 2 (the first step allocates the optimizer's state)",
        )
        budget = self.frontier_time_budget_s
        is_number = isinstance(budget, (int, float)) and not isinstance(budget, bool)
        if not (is_number and math.isfinite(budget) and budget > 0):
            raise GridError(
                f"frontier_time_budget_s: {budget!r} is not valid; accepted: a finite number of seconds > 0"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FrontierSettings:
        """Settings from pipeline arguments (KFP hands integers over as floats); unknown names are refused.

        Args:
            values: Setting names and values; a missing setting takes its default.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise GridError(f"unknown frontier settings {unknown}; accepted: {names}")
        kinds = {f.name: type(f.default) for f in dataclasses.fields(cls)}
        converted = {}
        for name, value in values.items():
            try:
                converted[name] = coerce(name, value, kinds[name])
            except ValueError:
                converted[name] = value  # __post_init__ names what is accepted
        return cls(**converted)


def _integer(name: str, value: Any, low: float, high: float, accepted: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GridError(f"{name}: {value!r} is not an integer; accepted: {accepted}")
    if not low <= value <= high:
        raise GridError(f"{name}: {value!r} is out of range; accepted: {accepted}")
    return value
