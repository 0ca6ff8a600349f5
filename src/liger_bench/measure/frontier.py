"""The memory frontier: the largest per-device batch one variant trains at one sequence length, searched.

The search doubles the batch from 1 until a probe runs out of memory (or the bound trains), then
bisects between the largest batch that trained and the smallest that did not, until they are
``frontier_resolution`` apart. Each batch is probed once, and the answer agrees with every probe:
each batch that trained is at most ``largest_fit``, each that ran out of memory at least
``smallest_oom``. Near the edge, where one batch may fit in one process and not in the next, the
answer is therefore a batch that did train, next to one that did not.

A probe is any callable ``(batch size, seconds left) -> Probe``: ``liger_bench.measure.frontier_probe``
trains the run's settings in a fresh supervised process; the tests use deterministic fakes. A probe
that ends neither ``ok`` nor ``oom`` (a crash, a skip, a loss that diverged before the last probe step,
so the peak was never reached) stops the search with its reason, as does a spent time budget; the
answer then says what was found so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from liger_bench.plan.frontier import FrontierSettings
from liger_bench.vocabulary import RunStatus


@dataclass(frozen=True)
class Probe:
    """One batch size tried for a few full training steps, and what became of it.

    Args:
        per_device_train_batch_size: The batch tried.
        status: The probe run's outcome: ``ok`` (it trained every step), ``oom``, or any other run status.
        reason: Why it did not train ("" when it did).
        peak_mem_reserved_gb: Peak GPU memory the allocator reserved (None: no CUDA device).
        peak_mem_allocated_gb: Peak GPU memory allocated to tensors (None: no CUDA device).
        elapsed_s: Wall time of the probe, process start included.
        gpu_memory_gb: The GPU's capacity, against which the peaks read (0.0: no CUDA device).
    """

    per_device_train_batch_size: int
    status: RunStatus
    reason: str = ""
    peak_mem_reserved_gb: float | None = None
    peak_mem_allocated_gb: float | None = None
    elapsed_s: float = 0.0
    gpu_memory_gb: float = 0.0


# (batch size, seconds left in the time budget) -> the probe of that batch.
ProbeRunner = Callable[[int, float], Probe]

# Why a search ended: the frontier found to the resolution; every batch up to the bound trained;
# batch 1 ran out of memory; the time budget ran out; a probe ended neither ok nor oom; it did not start.
SearchEnd = Literal["resolved", "bound", "nothing fits", "time budget", "probe failed", "skipped"]


@dataclass
class Frontier:
    """What a search found: the largest batch that trained and the smallest that ran out of memory.

    Args:
        largest_fit: The largest batch that trained (None: none did).
        smallest_oom: The smallest batch that ran out of memory (None: none did).
        end: Why the search ended.
        reason: The end in one sentence, with the numbers.
        probes: Every probe, in the order run.
    """

    largest_fit: int | None
    smallest_oom: int | None
    end: SearchEnd
    reason: str
    probes: list[Probe] = field(default_factory=list)

    def probe_at(self, batch_size: int | None) -> Probe | None:
        """The probe of ``batch_size`` (None when that batch was not probed).

        Args:
            batch_size: A per-device batch size, e.g. ``largest_fit``.
        """
        return next((p for p in self.probes if p.per_device_train_batch_size == batch_size), None)

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
    probe: ProbeRunner, settings: FrontierSettings, clock: Callable[[], float] = time.monotonic
) -> Frontier:
    """Search the largest batch that trains, probing batch sizes with ``probe``.

    Args:
        probe: Runs one batch size; given the seconds left of the time budget, which it must not exceed.
        settings: Bound, resolution and time budget of the search (validated when they were made).
        clock: Seconds on a monotonic clock.

    Returns:
        The answer, with every probe and why the search ended.
    """
    started = clock()
    probes: list[Probe] = []
    fit: int | None = None
    oom: int | None = None
    while (batch := _next_batch(fit, oom, settings)) is not None:
        left = settings.frontier_time_budget_s - (clock() - started)
        if left <= 0:
            return Frontier(fit, oom, "time budget", _out_of_time(settings, probes, fit, oom), probes)
        result = probe(batch, left)
        probes.append(result)
        if result.status == "ok":
            fit = batch
        elif result.status == "oom":
            oom = batch
        elif clock() - started >= settings.frontier_time_budget_s:
            return Frontier(fit, oom, "time budget", _out_of_time(settings, probes, fit, oom), probes)
        else:
            reason = (
                f"the probe of batch {batch} ended {result.status}, neither trained nor out of memory "
                f"({result.reason}); the search stopped there"
            )
            return Frontier(fit, oom, "probe failed", reason, probes)
    if fit is None:
        return Frontier(fit, oom, "nothing fits", f"batch {oom} ran out of memory: no batch fits", probes)
    if oom is None:
        reason = f"every batch probed up to frontier_max_batch_size={fit} trained: the frontier is above it"
        return Frontier(fit, oom, "bound", reason, probes)
    reason = (
        f"batch {fit} trained and batch {oom} ran out of memory (frontier_resolution={settings.frontier_resolution})"
    )
    return Frontier(fit, oom, "resolved", reason, probes)


def _next_batch(fit: int | None, oom: int | None, settings: FrontierSettings) -> int | None:
    """The batch to probe next, or None when the search is done."""
    if oom is None:
        if fit is None:
            return 1
        return None if fit >= settings.frontier_max_batch_size else min(2 * fit, settings.frontier_max_batch_size)
    if fit is None or oom - fit <= settings.frontier_resolution:
        return None
    return (fit + oom) // 2


def _out_of_time(settings: FrontierSettings, probes: list[Probe], fit: int | None, oom: int | None) -> str:
    found = f"batch {fit} trained" if fit is not None else "no batch trained"
    found += f" and batch {oom} ran out of memory" if oom is not None else ", none ran out of memory"
    return (
        f"frontier_time_budget_s={settings.frontier_time_budget_s:g} spent after {len(probes)} probes; so far {found}"
    )
