"""Energy a run's GPUs drew: NVML's cumulative counter read around every step, and what follows from it.

NVML keeps a counter of the energy each GPU has used since the driver loaded
(``nvmlDeviceGetTotalEnergyConsumption``, millijoules, Volta and later). ``StepMetricsCallback`` reads
it where it reads its clock, so a step's energy covers exactly the time its ``step_time_s`` does;
the run's energy is the sum over the steps that ``metrics.is_measured`` counts, next to their tokens
and time, and over every step of the run. With several ranks each rank reads its own GPU and the
energies add up.

Where nothing can be read (no NVIDIA GPU, nvidia-ml-py not installed, a GPU or virtual GPU whose
driver does not keep the counter) every energy is None and ``energy_unavailable`` says why: an
unmeasured energy is never 0. A counter that goes backwards (the driver was reloaded, or the 64-bit
counter wrapped) gives no energy for that step either, rather than a negative or zero one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

JOULES_PER_KWH = 3.6e6
NO_NVIDIA_GPU = "no NVIDIA GPU"
NO_NVML_PACKAGE = "nvidia-ml-py is not installed"
COUNTER_WENT_BACKWARDS = "the GPU energy counter went backwards during a step (driver reset or counter wrap)"
COUNTER_STALLED = "the GPU energy counter did not advance over the measured steps"


@dataclass
class EnergyCounter:
    """One GPU's cumulative energy counter: ``read`` returns millijoules; None, with why, where there is none.

    Args:
        read: Reads the counter (millijoules since the driver loaded); None where it cannot be read.
        unavailable: Why there is no counter ("" when ``read`` is set).
    """

    read: Callable[[], int] | None
    unavailable: str = ""


def nvml_energy_counter() -> EnergyCounter:
    """The energy counter of this process's CUDA device through NVML, or why there is none.

    The device is found by its UUID: NVML numbers the GPUs of the node, CUDA only the visible ones.
    """
    import torch

    if not torch.cuda.is_available():
        return EnergyCounter(None, NO_NVIDIA_GPU)
    try:
        import pynvml  # the nvidia-ml-py package
    except ImportError:
        return EnergyCounter(None, NO_NVML_PACKAGE)
    try:
        pynvml.nvmlInit()
        uuid = f"GPU-{torch.cuda.get_device_properties(torch.cuda.current_device()).uuid}"
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except pynvml.NVMLError as err:
        return EnergyCounter(None, f"NVML cannot read the GPU energy counter: {err}")
    return EnergyCounter(lambda: int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)))


def step_energy(start_mj: int | None, end_mj: int | None, unavailable: str) -> dict[str, Any]:
    """One rank's energy of one step from the counter's readings at its start and end.

    Returns:
        ``{"energy_j": joules, "energy_unavailable": ""}``, or ``energy_j`` None and why: no counter
        (``unavailable``), or a counter that went backwards.
    """
    if unavailable or start_mj is None or end_mj is None:
        return {"energy_j": None, "energy_unavailable": unavailable or NO_NVIDIA_GPU}
    if end_mj < start_mj:
        return {"energy_j": None, "energy_unavailable": COUNTER_WENT_BACKWARDS}
    return {"energy_j": (end_mj - start_mj) / 1000.0, "energy_unavailable": ""}


def ranks_energy(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """A step's energy over every rank (the sum); None, with the first rank's reason, when any rank has none."""
    missing = next((r["energy_unavailable"] for r in ranks if r["energy_j"] is None), None)
    if missing is not None:
        return {"energy_j": None, "energy_unavailable": missing}
    return {"energy_j": sum(r["energy_j"] for r in ranks), "energy_unavailable": ""}


def total_energy(steps: list[dict[str, Any]]) -> tuple[float | None, str]:
    """The energy of ``steps`` together (joules), or None and the first step's reason why one has none.

    Steps recorded before energy was measured have no ``energy_j`` key; they count as unavailable.
    """
    if not steps:
        return None, "no measured step"
    for s in steps:
        if s.get("energy_j") is None:
            return None, s.get("energy_unavailable") or "the step history records no energy"
    return sum(s["energy_j"] for s in steps), ""


def energy_metrics(measured: list[dict[str, Any]], every_step: list[dict[str, Any]]) -> dict[str, Any]:
    """Energy of the measured steps and of the whole run, per non-padding token, per kWh and as mean power.

    Args:
        measured: The run's measured steps (``metrics.is_measured``): the steady-state window.
        every_step: Every step of the run, warm-up, first-shape and compile steps included.

    Returns:
        ``energy_j`` (the measured steps, all GPUs), ``energy_per_token_j`` and ``tokens_per_kwh``
        (non-padding tokens), ``mean_power_w`` (all GPUs together, over the measured steps' time),
        ``run_energy_j`` (every step), and ``energy_unavailable``: "" or why the energies are None.
    """
    energy, unavailable = total_energy(measured)
    run_energy, _ = total_energy(every_step)
    tokens = sum(s["tokens_nonpad"] for s in measured)
    seconds = sum(s["step_time_s"] for s in measured)
    if energy == 0.0:  # a GPU that trained drew power: a counter that never moved measured nothing
        energy, run_energy, unavailable = None, None, COUNTER_STALLED
    return {
        "energy_j": energy,
        "energy_per_token_j": energy / tokens if energy is not None and tokens else None,
        "tokens_per_kwh": tokens / (energy / JOULES_PER_KWH) if energy is not None else None,
        "mean_power_w": energy / seconds if energy is not None and seconds > 0 else None,
        "run_energy_j": run_energy,
        "energy_unavailable": unavailable,
    }
