"""The memory frontier search's settings, checked before any GPU is requested.

The search (``liger_bench.measure.frontier``) finds, for one variant and sequence length, the
largest per-device batch that trains a few full steps: it starts at the largest batch the grid trains
there (``batch_start``), doubles the batch until one runs out of memory (or halves it while it does),
then bisects between the largest that trained and the smallest that did not, until they are
``frontier_resolution`` apart. ``frontier_max_batch_size`` bounds it, and ``frontier_time_budget_s``
bounds its time. With ``frontier_seq_batch_size`` > 0, a second search per variant finds the longest
``max_seq_length`` that trains at that batch, the same way on a granule of ``SEQ_GRANULE`` tokens from
the variant's longest grid sequence (``sequence_start``), bounded by the model's context length. A bad
value is refused here with a ``GridError`` that names the setting, the value and what is accepted, as
prepare_grid refuses a bad grid.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from liger_bench.plan.config import TrainConfig, coerce
from liger_bench.plan.grid import AT_FRONTIER, GridError, run_key
from liger_bench.plan.signature import pipeline_default

# The sequence-length search's granule and resolution, in tokens: it probes multiples of 64 and stops
# when the longest fit and the shortest out-of-memory are 64 apart. A finer answer would cost probes
# and say little: attention kernels and tensor cores tile a sequence in blocks of 64 or 128 tokens, and
# long-context users choose lengths in such steps. At ~15 s a probe, a 4,096-token context takes at most
# 12 probes from 64 tokens (doubling 64 … 4,096, then five bisections of the 2,048 tokens between the last
# two), where a one-token resolution would take six more; from a grid's 512 tokens, at most 9.
SEQ_GRANULE = 64


@dataclass(frozen=True)
class FrontierSettings:
    """How far, how finely and how long the frontier search probes; validated when made.

    The fields are pipeline parameters: their defaults and help are the pipeline signature's.
    """

    frontier_max_batch_size: int = field(default_factory=lambda: pipeline_default("frontier_max_batch_size"))
    frontier_resolution: int = field(default_factory=lambda: pipeline_default("frontier_resolution"))
    frontier_time_budget_s: float = field(default_factory=lambda: pipeline_default("frontier_time_budget_s"))
    frontier_probe_steps: int = field(default_factory=lambda: pipeline_default("frontier_probe_steps"))
    frontier_seq_batch_size: int = field(default_factory=lambda: pipeline_default("frontier_seq_batch_size"))

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
        _integer(
            "frontier_seq_batch_size",
            self.frontier_seq_batch_size,
            0,
            math.inf,
            "integers >= 0 (0: no sequence-length search)",
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
        kinds = {f.name: type(f.default_factory()) for f in dataclasses.fields(cls)}
        converted = {}
        for name, value in values.items():
            try:
                converted[name] = coerce(name, value, kinds[name])
            except ValueError:
                converted[name] = value  # __post_init__ names what is accepted
        return cls(**converted)


def sequence_bound(settings: FrontierSettings, context_length: int, source: str) -> int:
    """The longest ``max_seq_length`` the sequence search probes: the context length, down to a ``SEQ_GRANULE``.

    Args:
        settings: The search's settings; only a sequence search (``frontier_seq_batch_size`` > 0) needs a bound.
        context_length: The model's context length (0: unknown).
        source: Where the context length comes from, for the message.

    Raises:
        GridError: A sequence search on a model whose context length is unknown or below one granule.
    """
    if not settings.frontier_seq_batch_size:
        return 0
    if context_length < SEQ_GRANULE:
        known = f"is {context_length} (from {source})" if context_length else "is unknown"
        raise GridError(
            f"frontier_seq_batch_size: {settings.frontier_seq_batch_size} searches max_seq_length up to the model's "
            f"context length, which {known}; accepted: 0 (no sequence-length search) with this model, or a model "
            f"whose context length is at least {SEQ_GRANULE} tokens"
        )
    return context_length // SEQ_GRANULE * SEQ_GRANULE


def _integer(name: str, value: Any, low: float, high: float, accepted: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GridError(f"{name}: {value!r} is not an integer; accepted: {accepted}")
    if not low <= value <= high:
        raise GridError(f"{name}: {value!r} is out of range; accepted: {accepted}")
    return value


def search_points(grid: list[dict]) -> list[dict]:
    """One grid item per (variant, sequence length), the first of each in grid order: what the search probes.

    Args:
        grid: prepare_grid's items (TrainConfig dicts, KFP's floats for integers included); a probe takes every
            setting but the batch size from them.
    """
    points: dict[tuple[str, int], dict] = {}
    for item in grid:
        points.setdefault(_point(TrainConfig.from_dict(item)), item)
    return list(points.values())


def batch_start(grid: list[dict], config: TrainConfig, bound: int) -> int:
    """The batch search's first probe for ``config``'s (variant, sequence length): the largest batch the grid trains.

    The grid trains its batches anyway, and below a batch that trains every batch does: the doublings up to it
    would cost a probe each (a process of its own: ~20 s eager, ~70 s compiled) and tell nothing. A start above
    the frontier halves down to it instead.

    Args:
        grid: prepare_grid's items.
        config: The search's point (``search_points``).
        bound: ``frontier_max_batch_size``, the highest start.

    Returns:
        The largest numeric ``per_device_train_batch_size`` of the point's items ("max" is none), capped at
        ``bound``; 1 when the point has none.
    """
    batches = [
        item.per_device_train_batch_size
        for item in map(TrainConfig.from_dict, grid)
        if _point(item) == _point(config) and not item.at_frontier
    ]
    return min(max(batches, default=1), bound)


def sequence_start(grid: list[dict], variant: str, bound: int) -> int:
    """The sequence search's first probe for ``variant``: its longest grid ``max_seq_length``, down to a granule.

    Args:
        grid: prepare_grid's items.
        variant: The variant searched (a kernel-ablation arm is one).
        bound: ``sequence_bound``, the highest start (0 where no sequence search runs: then 0).

    Returns:
        A multiple of ``SEQ_GRANULE`` from ``SEQ_GRANULE`` to ``bound``.
    """
    longest = max(config.max_seq_length for config in map(TrainConfig.from_dict, grid) if config.variant == variant)
    return min(max(longest // SEQ_GRANULE * SEQ_GRANULE, SEQ_GRANULE), bound)


def _point(config: TrainConfig) -> tuple[str, int]:
    """The (variant, sequence length) a search answers for ``config``: a kernel-ablation arm is a variant too."""
    return config.variant, config.max_seq_length


def skip_reason(frontier_search: bool, grid: list[dict]) -> str:
    """Why find_frontier searches nothing for ``grid`` ("": it searches).

    Args:
        frontier_search: The pipeline parameter.
        grid: prepare_grid's items.
    """
    if not frontier_search:
        return "frontier_search is false"
    nodes = max(TrainConfig.from_dict(item).nodes_per_run for item in grid)
    if nodes > 1:
        return f"runs of several nodes (nodes_per_run={nodes}): a probe trains on one node"
    return ""


def check_at_frontier(frontier_search: bool, grid: list[dict]) -> None:
    """Refuse "max" in the batch axis where no search will find the frontier it stands for.

    Args:
        frontier_search: The pipeline parameter.
        grid: prepare_grid's items.
    """
    why = skip_reason(frontier_search, grid)
    if why and any(TrainConfig.from_dict(item).at_frontier for item in grid):
        raise GridError(
            f'per_device_train_batch_size: "{AT_FRONTIER}" is each variant\'s searched memory frontier, but no '
            f'search runs ({why}); accepted: batch sizes, or "{AT_FRONTIER}" with frontier_search true on one node'
        )


def resolve_at_frontier(grid: list[dict], frontiers: list[dict]) -> tuple[list[dict], list[str]]:
    """The grid with each "max" item at its variant's largest fit, and the "max" items that found none.

    A resolved item's batch may be one the grid lists anyway: that run is measured once.

    Args:
        grid: prepare_grid's items.
        frontiers: find_frontier's records (``variant``, ``max_seq_length``, ``largest_fit``, ``end``, ``reason``).

    Returns:
        The items to train, in grid order, and one line per "max" item left out (no batch fit).
    """
    found = {(record["variant"], record["max_seq_length"]): record for record in frontiers}
    resolved, left_out, seen = [], [], set()
    for item in grid:
        config = TrainConfig.from_dict(item)
        if config.at_frontier:
            record = found[_point(config)]
            if record["largest_fit"] is None:
                left_out.append(f"{config.run_key}: no batch fits ({record['end']}: {record['reason']})")
                continue
            batch = record["largest_fit"]
            key = run_key(_point(config)[0], batch, config.max_seq_length, config.repeat)
            item = {**item, "per_device_train_batch_size": batch, "run_key": key}
        if item["run_key"] not in seen:
            seen.add(item["run_key"])
            resolved.append(item)
    return resolved, left_out
