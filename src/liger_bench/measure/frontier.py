"""The memory frontier: the largest value of one axis a variant trains at, searched.

The axis (``Axis``) is the per-device batch at one sequence length, or ``max_seq_length`` at one
batch. The search doubles from the axis' start until a probe runs out of memory (or the bound
trains), or halves from it while it runs out of memory (down to the granule: when that runs out of
memory too, nothing fits); then it bisects between the largest value that trained and the smallest
that did not, on the granule, until they are the axis' resolution apart. The start is the granule
unless the caller knows better (the pipeline starts at the grid's own batch, which its runs train
anyway: the doublings below it would cost a probe each and tell nothing). Each value is probed once
(a crashed one at most ``CRASHED_PROBE_ATTEMPTS`` times, below), and the answer agrees with every
probe: each value that trained is at most ``largest_fit``, each that ran out of memory at least
``smallest_oom``. Near the edge, where one value may fit in one process and
not in the next, the answer is therefore a value that did train, next to one that did not.

A probe is any callable ``(value, seconds left) -> Probe``: ``liger_bench.measure.frontier_probe``
trains the run's settings in a fresh supervised process; the tests use deterministic fakes. A probe
whose process crashed (ended ``failed`` without writing a result) is run again, in a fresh process, up
to ``CRASHED_PROBE_ATTEMPTS`` in all: on an H200 one training process in 48 died importing transformers,
so one such death must not end a search; one that repeats costs one probe more. A probe that crashes
again, or ends otherwise neither ``ok`` nor ``oom`` (an error the training code recorded, such as rows
too short to pack; ``skipped``; ``diverged``: decided by the run, not by chance), stops the search with
its reason, as does a spent time budget; the answer then says what was found so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

from liger_bench.vocabulary import RunStatus


@dataclass(frozen=True)
class Probe:
    """One batch shape tried for a few full training steps, and what became of it.

    Args:
        per_device_train_batch_size: The batch tried.
        max_seq_length: The sequence length tried (every row packed to it).
        status: The probe run's outcome: ``ok`` (it trained every step), ``oom``, or any other run status.
        reason: Why it did not train ("" when it did).
        peak_mem_reserved_gb: Peak GPU memory the allocator reserved (None: no CUDA device).
        peak_mem_allocated_gb: Peak GPU memory allocated to tensors (None: no CUDA device).
        elapsed_s: Wall time of the probe, process start included.
        gpu_memory_gb: The GPU's capacity, against which the peaks read (0.0: no CUDA device).
        crashed: Its process ended without writing a result (an exit, a signal, a timeout), which a fresh
            process may not repeat; not an error the training code met and recorded.
    """

    per_device_train_batch_size: int
    max_seq_length: int
    status: RunStatus
    reason: str = ""
    peak_mem_reserved_gb: float | None = None
    peak_mem_allocated_gb: float | None = None
    elapsed_s: float = 0.0
    gpu_memory_gb: float = 0.0
    crashed: bool = False


# (value of the searched axis, seconds left in the time budget) -> the probe of that value.
ProbeRunner = Callable[[int, float], Probe]
# A probe as the search keeps it, or as a frontier artifact's JSON holds it.
P = TypeVar("P", Probe, dict)


def last_probe_of(probes: Sequence[P], value_of: Callable[[P], int], value: int | None) -> P | None:
    """The probe that decided ``value``: its last (None when that value was not probed).

    A value is probed again only after a probe of it crashed, so the last probe is the one that trained,
    ran out of memory or ended the search.

    Args:
        probes: A search's probes, in the order they ran.
        value_of: The searched axis' value of a probe.
        value: A value of that axis, e.g. ``largest_fit``.
    """
    return next((p for p in reversed(probes) if value_of(p) == value), None)


# How often one value is probed while its probes crash (``Probe.crashed``): a fresh process may not repeat it.
CRASHED_PROBE_ATTEMPTS = 2
# Why a search ended: the frontier found to the resolution; every value up to the bound trained;
# the smallest value ran out of memory; the time budget ran out; a probe ended neither ok nor oom; it did not start.
SearchEnd = Literal["resolved", "bound", "nothing fits", "time budget", "probe failed", "skipped"]
# The TrainConfig field a search varies: the batch at a sequence length, or the sequence length at a batch.
AxisName = Literal["per_device_train_batch_size", "max_seq_length"]
NOUNS: dict[str, str] = {"per_device_train_batch_size": "batch", "max_seq_length": "max_seq_length"}


@dataclass(frozen=True)
class Axis:
    """What one search varies, how far and how finely.

    Args:
        name: The TrainConfig field searched.
        bound: The largest value probed, a multiple of ``granule``.
        bound_source: Where the bound comes from, for the reason, e.g. ``frontier_max_batch_size=1024``.
        resolution: The search ends when the largest fit and the smallest out-of-memory are this close.
        resolution_source: Where the resolution comes from, for the reason.
        granule: Every value probed is a multiple of it.
        start: The first value probed: a multiple of ``granule`` from ``granule`` to ``bound`` (None: ``granule``).

    Raises:
        ValueError: ``start`` is not such a value (a caller's mistake, not a user's: callers compute it).
    """

    name: AxisName
    bound: int
    bound_source: str
    resolution: int
    resolution_source: str
    granule: int = 1
    start: int | None = None

    def __post_init__(self) -> None:
        if self.start is None:
            object.__setattr__(self, "start", self.granule)
        if not (self.granule <= self.start <= self.bound and self.start % self.granule == 0):
            raise ValueError(
                f"the {NOUNS[self.name]} search's start {self.start!r} is not a multiple of {self.granule} "
                f"from {self.granule} to {self.bound}"
            )

    def value_of(self, probe: Probe) -> int:
        """The value of this axis ``probe`` tried.

        Args:
            probe: A probe of a search along this axis.
        """
        return getattr(probe, self.name)

    def describe(self, value: int) -> str:
        """``value`` in a reason, e.g. ``batch 48`` or ``max_seq_length 4096``.

        Args:
            value: A value of this axis.
        """
        return f"{NOUNS[self.name]} {value}"


@dataclass
class Frontier:
    """What a search found: the largest value that trained and the smallest that ran out of memory.

    Args:
        largest_fit: The largest value of the searched axis that trained (None: none did).
        smallest_oom: The smallest value that ran out of memory (None: none did).
        end: Why the search ended.
        reason: The end in one sentence, with the numbers.
        probes: Every probe, in the order run.
    """

    largest_fit: int | None
    smallest_oom: int | None
    end: SearchEnd
    reason: str
    probes: list[Probe] = field(default_factory=list)

    def probe_at(self, axis: Axis, value: int | None) -> Probe | None:
        """The probe that decided ``value`` (``last_probe_of``; None when that value was not probed).

        Args:
            axis: The axis searched.
            value: A value of it, e.g. ``largest_fit``.
        """
        return last_probe_of(self.probes, axis.value_of, value)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the whole answer, probes included (JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def skipped(cls, reason: str) -> Frontier:
        """A search that did not start, and why.

        Args:
            reason: Why it did not start, e.g. ``frontier_search`` is false.
        """
        return cls(None, None, "skipped", reason)


def search_frontier(
    probe: ProbeRunner, axis: Axis, time_budget_s: float, clock: Callable[[], float] = time.monotonic
) -> Frontier:
    """Search the largest value of ``axis`` that trains, probing values with ``probe``.

    Args:
        probe: Runs one value; given the seconds left of the time budget, which it must not exceed.
        axis: What the search varies, its bound, resolution and granule (validated when they were made).
        time_budget_s: Seconds the whole search may take (``frontier_time_budget_s``).
        clock: Seconds on a monotonic clock.

    Returns:
        The answer, with every probe and why the search ended.
    """
    started = clock()
    probes: list[Probe] = []
    fit: int | None = None
    oom: int | None = None
    while (value := _next_value(fit, oom, axis)) is not None:
        left = time_budget_s - (clock() - started)
        if left <= 0:
            return Frontier(fit, oom, "time budget", _out_of_time(axis, time_budget_s, probes, fit, oom), probes)
        result = probe(value, left)
        probes.append(result)
        if result.status == "ok":
            fit = value
        elif result.status == "oom":
            oom = value
        elif clock() - started >= time_budget_s:
            return Frontier(fit, oom, "time budget", _out_of_time(axis, time_budget_s, probes, fit, oom), probes)
        elif len(tried := [p for p in probes if axis.value_of(p) == value]) < CRASHED_PROBE_ATTEMPTS and result.crashed:
            continue  # the same value again: neither bracket moved
        else:
            reason = (
                f"the probe of {axis.describe(value)} ended {result.status}{_after_crashes(tried)}, neither trained "
                f"nor out of memory ({result.reason}); the search stopped there"
            )
            return Frontier(fit, oom, "probe failed", reason, probes)
    if fit is None:
        reason = f"{axis.describe(oom)} ran out of memory: no {NOUNS[axis.name]} fits"
        return Frontier(fit, oom, "nothing fits", reason, probes)
    if oom is None:
        reason = f"every {NOUNS[axis.name]} probed up to {axis.bound_source} trained: the frontier is above it"
        return Frontier(fit, oom, "bound", reason, probes)
    reason = f"{axis.describe(fit)} trained and {axis.describe(oom)} ran out of memory ({axis.resolution_source})"
    return Frontier(fit, oom, "resolved", reason, probes)


def _after_crashes(tried: list[Probe]) -> str:
    """What the reason says of the earlier probes of a value whose last probe stopped the search (they crashed)."""
    *earlier, last = tried
    if not earlier:
        return ""
    if last.crashed:
        return f" in each of {len(tried)} fresh processes"
    return f" in a fresh process, after {len(earlier)} that crashed ({earlier[-1].reason})"


def _next_value(fit: int | None, oom: int | None, axis: Axis) -> int | None:
    """The value to probe next, or None when the search is done.

    The start first; then double the largest fit while nothing ran out of memory, halve the smallest
    out-of-memory while nothing trained, and bisect between them once both exist.
    """
    if oom is None:
        if fit is None:
            return axis.start
        return None if fit >= axis.bound else min(2 * fit, axis.bound)
    if fit is None:
        return None if oom <= axis.granule else max(oom // 2 // axis.granule * axis.granule, axis.granule)
    if oom - fit <= axis.resolution:
        return None
    return (fit + oom) // 2 // axis.granule * axis.granule


def _out_of_time(axis: Axis, time_budget_s: float, probes: list[Probe], fit: int | None, oom: int | None) -> str:
    noun = NOUNS[axis.name]
    found = f"{axis.describe(fit)} trained" if fit is not None else f"no {noun} trained"
    found += f" and {axis.describe(oom)} ran out of memory" if oom is not None else ", none ran out of memory"
    return f"frontier_time_budget_s={time_budget_s:g} spent after {len(probes)} probes; so far {found}"
