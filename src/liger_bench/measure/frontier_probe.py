"""A frontier probe for real: a few full training steps at one batch size, in a fresh supervised process.

Each probe is a run of its own through ``liger_bench.measure.supervisor``: the run's settings at the
probed batch size, trained by the same code as a grid point (forward, backward and optimizer step),
and classified as train_model classifies it (``oom`` for CUDA's and the host's out-of-memory errors
and for the kernel's OOM killer). A fresh process per probe, because an out-of-memory error leaves a
fragmented allocator behind that would make the next probe fail sooner.

Two settings differ from the run's besides the value searched (the batch, or ``max_seq_length``):
``max_steps`` is ``frontier_probe_steps`` (no warm-up step is skipped, so the peak counts every
step), and the rows are packed into sequences of exactly ``max_seq_length`` tokens, so that every
batch is the largest a run of that batch and sequence length can meet; a run that pads rows to the
longest of its batch never needs more. A dataset whose tokens fill too few sequences of the probed
length fails that probe with the training code's message, which ends the search and is its reason:
a search never measures shorter sequences than it names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from liger_bench.measure.frontier import Axis, AxisName, Frontier, Probe, ProbeRunner, search_frontier
from liger_bench.plan.config import TrainConfig
from liger_bench.plan.frontier import SEQ_GRANULE, FrontierSettings, batch_start, search_points, sequence_start
from liger_bench.records import RunResult


def batch_axis(settings: FrontierSettings, start: int | None = None) -> Axis:
    """The per-device batch at the run's sequence length, from 1 up to ``frontier_max_batch_size``.

    Args:
        settings: The search's settings.
        start: The first batch probed (``plan.frontier.batch_start``; None: 1).
    """
    return Axis(
        "per_device_train_batch_size",
        settings.frontier_max_batch_size,
        f"frontier_max_batch_size={settings.frontier_max_batch_size}",
        settings.frontier_resolution,
        f"frontier_resolution={settings.frontier_resolution}",
        start=start,
    )


def sequence_axis(bound: int, start: int | None = None) -> Axis:
    """``max_seq_length`` at ``frontier_seq_batch_size``, in ``SEQ_GRANULE`` tokens up to ``bound``.

    Args:
        bound: ``plan.frontier.sequence_bound``: the model's context length, down to a granule.
        start: The first length probed (``plan.frontier.sequence_start``; None: ``SEQ_GRANULE``).
    """
    return Axis(
        "max_seq_length",
        bound,
        f"the model's context length ({bound})",
        SEQ_GRANULE,
        f"resolution {SEQ_GRANULE} tokens",
        SEQ_GRANULE,
        start,
    )


def probe_config(config: TrainConfig, axis: AxisName, value: int, settings: FrontierSettings) -> TrainConfig:
    """The probe of ``value`` on ``axis``: the run ``config`` for ``frontier_probe_steps`` steps of full-length rows.

    Args:
        config: The run whose frontier is searched (variant, the other axis' value, every other setting).
        axis: The field probed, ``per_device_train_batch_size`` or ``max_seq_length``.
        value: The value probed.
        settings: The search's settings.
    """
    shape = {"per_device_train_batch_size": config.per_device_train_batch_size, "max_seq_length": config.max_seq_length}
    shape[axis] = value
    changes = {
        **shape,
        "run_key": f"{config.run_key}-probe-bs{shape['per_device_train_batch_size']}-seq{shape['max_seq_length']}",
        "max_steps": settings.frontier_probe_steps,
        "warmup_steps_to_skip": 0,
        "packing": True,
    }
    return TrainConfig.from_dict({**config.to_dict(), **changes})


def probe_of(config: TrainConfig, result: RunResult, elapsed_s: float) -> Probe:
    """The probe a supervised run's ``result`` makes: its peak GPU memory (at the error, for an ``oom``) and capacity.

    Args:
        config: The probe's run (``probe_config``): the batch shape probed.
        result: The probe run's result.
        elapsed_s: Wall time of the probe.
    """
    from liger_bench.measure.supervisor import ended_without_result

    peak = "oom_peak_mem_{}_gb" if result.status == "oom" else "peak_mem_{}_gb"
    return Probe(
        per_device_train_batch_size=config.per_device_train_batch_size,
        max_seq_length=config.max_seq_length,
        status=result.status,
        reason=result.reason,
        peak_mem_reserved_gb=result.metrics.get(peak.format("reserved")),
        peak_mem_allocated_gb=result.metrics.get(peak.format("allocated")),
        elapsed_s=elapsed_s,
        gpu_memory_gb=result.environment.get("gpu_memory_gb", 0.0),
        crashed=ended_without_result(result),
    )


def supervised_probe(
    config: TrainConfig, axis: AxisName, model_dir: str, dataset_dir: str, settings: FrontierSettings
) -> ProbeRunner:
    """A probe runner that trains each value of ``axis`` of ``config`` in a fresh supervised process.

    Args:
        config: The run whose frontier is searched.
        axis: The field probed.
        model_dir: Model folder.
        dataset_dir: Prepared dataset folder.
        settings: The search's settings.
    """
    from liger_bench.measure.supervisor import train_supervised

    def probe(value: int, timeout_s: float) -> Probe:
        started = time.monotonic()
        run = probe_config(config, axis, value, settings)
        result, _ = train_supervised(run, model_dir, dataset_dir, timeout_s)
        return probe_of(run, result, time.monotonic() - started)

    return probe


def find_frontier(
    config: TrainConfig, axis: Axis, model_dir: str, dataset_dir: str, settings: FrontierSettings
) -> Frontier:
    """The memory frontier of ``config``'s variant along ``axis``, every probe a supervised process.

    Args:
        config: The run whose frontier is searched; its value of ``axis`` is ignored.
        axis: What the search varies (``batch_axis``, ``sequence_axis``).
        model_dir: Model folder.
        dataset_dir: Prepared dataset folder.
        settings: The search's settings (its time budget, probe steps).
    """
    probe = supervised_probe(config, axis.name, model_dir, dataset_dir, settings)
    return search_frontier(probe, axis, settings.frontier_time_budget_s)


def search_grid(
    grid: list[dict],
    model_dir: str,
    dataset_dir: str,
    settings: FrontierSettings,
    sequence_bound: int,
    skip_reason: str = "",
) -> dict[str, list[dict]]:
    """The batch frontier of every (variant, sequence length) of ``grid``, then each variant's longest sequence.

    Args:
        grid: prepare_grid's items; each search probes the first item of its variant and sequence length
            (a sequence search: the first of its variant, at ``frontier_seq_batch_size``), starting at the
            largest batch the grid trains there (``batch_start``; a sequence search: ``sequence_start``).
        model_dir: Model folder.
        dataset_dir: Prepared dataset folder.
        settings: Bound, resolution and time budget of each search.
        sequence_bound: ``plan.frontier.sequence_bound`` (0: no sequence search).
        skip_reason: Why no search starts ("" : they all do); each record then says it.

    Returns:
        ``frontiers``: one record per batch search (``variant``, ``max_seq_length`` and the ``Frontier`` as a
        dict); ``sequence_frontiers``: one per sequence search (``variant``, ``per_device_train_batch_size``
        and the ``Frontier``), none when ``frontier_seq_batch_size`` is 0.
    """

    def search(config: TrainConfig, axis: Callable[[], Axis]) -> dict:
        # The axis is made only for a search that runs: a skipped one has no sequence bound to start below.
        frontier = (
            Frontier.skipped(skip_reason)
            if skip_reason
            else find_frontier(config, axis(), model_dir, dataset_dir, settings)
        )
        return frontier.to_dict()

    points = [TrainConfig.from_dict(item) for item in search_points(grid)]
    frontiers = [
        {
            "variant": c.variant,
            "max_seq_length": c.max_seq_length,
            **search(c, partial(batch_axis, settings, batch_start(grid, c, settings.frontier_max_batch_size))),
        }
        for c in points
    ]
    sequence_frontiers = []
    if settings.frontier_seq_batch_size:
        batch = settings.frontier_seq_batch_size
        firsts: dict[str, TrainConfig] = {}
        for config in points:
            firsts.setdefault(config.variant, config)
        for variant, config in firsts.items():
            at_batch = TrainConfig.from_dict({**config.to_dict(), "per_device_train_batch_size": batch})
            record = {"variant": variant, "per_device_train_batch_size": batch}
            axis = partial(sequence_axis, sequence_bound, sequence_start(grid, variant, sequence_bound))
            sequence_frontiers.append({**record, **search(at_batch, axis)})
    return {"frontiers": frontiers, "sequence_frontiers": sequence_frontiers}
