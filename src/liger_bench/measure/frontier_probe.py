"""A frontier probe for real: a few full training steps at one batch size, in a fresh supervised process.

Each probe is a run of its own through ``liger_bench.measure.supervisor``: the run's settings at the
probed batch size, trained by the same code as a grid point (forward, backward and optimizer step),
and classified as train_model classifies it (``oom`` for CUDA's and the host's out-of-memory errors
and for the kernel's OOM killer). A fresh process per probe, because an out-of-memory error leaves a
fragmented allocator behind that would make the next probe fail sooner.

Two settings differ from the run's: ``max_steps`` is ``frontier_probe_steps`` (no warm-up step is
skipped, so the peak counts every step), and the rows are packed into sequences of exactly
``max_seq_length`` tokens, so that every batch is the largest a run of that batch and sequence length
can meet; a run that pads rows to the longest of its batch never needs more.
"""

from __future__ import annotations

import time

from liger_bench.measure.frontier import Frontier, Probe, ProbeRunner, search_frontier
from liger_bench.plan.config import TrainConfig
from liger_bench.plan.frontier import FrontierSettings, search_points
from liger_bench.records import RunResult


def probe_config(config: TrainConfig, batch_size: int, settings: FrontierSettings) -> TrainConfig:
    """The probe of ``batch_size``: the run ``config`` for ``frontier_probe_steps`` steps of full-length rows.

    Args:
        config: The run whose frontier is searched (variant, sequence length, every other setting).
        batch_size: The per-device batch size to probe.
        settings: The search's settings.
    """
    changes = {
        "run_key": f"{config.run_key}-probe-bs{batch_size}",
        "per_device_train_batch_size": batch_size,
        "max_steps": settings.frontier_probe_steps,
        "warmup_steps_to_skip": 0,
        "packing": True,
    }
    return TrainConfig.from_dict({**config.to_dict(), **changes})


def probe_of(batch_size: int, result: RunResult, elapsed_s: float) -> Probe:
    """The probe a supervised run's ``result`` makes: its peak GPU memory (at the error, for an ``oom``) and capacity.

    Args:
        batch_size: The batch size probed.
        result: The probe run's result.
        elapsed_s: Wall time of the probe.
    """
    peak = "oom_peak_mem_{}_gb" if result.status == "oom" else "peak_mem_{}_gb"
    return Probe(
        per_device_train_batch_size=batch_size,
        status=result.status,
        reason=result.reason,
        peak_mem_reserved_gb=result.metrics.get(peak.format("reserved")),
        peak_mem_allocated_gb=result.metrics.get(peak.format("allocated")),
        elapsed_s=elapsed_s,
        gpu_memory_gb=result.environment.get("gpu_memory_gb", 0.0),
    )


def supervised_probe(config: TrainConfig, model_dir: str, dataset_dir: str, settings: FrontierSettings) -> ProbeRunner:
    """A probe runner that trains each batch size of ``config`` in a fresh supervised process.

    Args:
        config: The run whose frontier is searched.
        model_dir: Model folder.
        dataset_dir: Prepared dataset folder.
        settings: The search's settings.
    """
    from liger_bench.measure.supervisor import train_supervised

    def probe(batch_size: int, timeout_s: float) -> Probe:
        started = time.monotonic()
        result, _ = train_supervised(probe_config(config, batch_size, settings), model_dir, dataset_dir, timeout_s)
        return probe_of(batch_size, result, time.monotonic() - started)

    return probe


def find_frontier(config: TrainConfig, model_dir: str, dataset_dir: str, settings: FrontierSettings) -> Frontier:
    """The memory frontier of ``config``'s variant at its sequence length, every probe a supervised process.

    Args:
        config: The run whose frontier is searched; its batch size is ignored.
        model_dir: Model folder.
        dataset_dir: Prepared dataset folder.
        settings: Bound, resolution and time budget of the search.
    """
    return search_frontier(supervised_probe(config, model_dir, dataset_dir, settings), settings)


def search_grid(
    grid: list[dict], model_dir: str, dataset_dir: str, settings: FrontierSettings, skip_reason: str = ""
) -> list[dict]:
    """The frontier of every (variant, sequence length) of ``grid``, one search after the other.

    Args:
        grid: prepare_grid's items; each search probes the first item of its variant and sequence length.
        model_dir: Model folder.
        dataset_dir: Prepared dataset folder.
        settings: Bound, resolution and time budget of each search.
        skip_reason: Why no search starts ("" : they all do); each record then says it.

    Returns:
        One record per search: ``variant``, ``max_seq_length`` and the ``Frontier`` as a dict.
    """
    records = []
    for item in search_points(grid):
        config = TrainConfig.from_dict(item)
        if skip_reason:
            frontier = Frontier.skipped(skip_reason)
        else:
            frontier = find_frontier(config, model_dir, dataset_dir, settings)
        records.append({"variant": config.variant, "max_seq_length": config.max_seq_length, **frontier.to_dict()})
    return records
