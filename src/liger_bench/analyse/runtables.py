"""The run results and step histories, parsed once into two typed tables: one row per run, one per step.

Every later table (cells, gains, parity) and the report work from these rows; nothing downstream
reads a result dict or converts a config value again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from liger_bench.measure.metrics import is_measured
from liger_bench.plan.config import coerce
from liger_bench.records import STEP_METRICS, RunResult, StepHistory
from liger_bench.vocabulary import variant_of, variant_order

CELL = ["variant", "batch_size", "seq_len"]
# The run's column, then the name of the aggregate ``metrics.aggregate`` writes for it.
RUN_METRICS = {
    "tokens_per_s_nonpad": "tokens_per_s_nonpad",
    "tokens_per_s_padded": "tokens_per_s_padded",
    "tokens_per_s_nonpad_per_gpu": "tokens_per_s_nonpad_per_gpu",
    "step_time_s": "median_step_time_s",
    "step_time_cv": "step_time_cv",
    "peak_mem_allocated_gb": "peak_mem_allocated_gb",
    "peak_mem_reserved_gb": "peak_mem_reserved_gb",
    "mfu": "median_mfu",
    "final_loss": "final_loss",
    "n_measured_steps": "n_measured_steps",
    "oom_peak_mem_reserved_gb": "oom_peak_mem_reserved_gb",
    "drift": "drift",
    "steps_needed": "steps_needed",
    "n_shapes": "n_shapes",
    "n_first_shape_steps": "n_first_shape_steps",
    "first_shape_excess_s": "first_shape_excess_s",
    "first_nonfinite_loss_step": "first_nonfinite_loss_step",
    "peak_tflops": "peak_tflops",  # the GPU's dense bf16 peak MFU was computed with; NaN: unknown
    "n_compile_steps": "n_compile_steps",
    "recompiles": "recompiles",
    "compile_time_s": "compile_time_s",
    "energy_j": "energy_j",  # the measured steps' energy, all GPUs (NVML); NaN: unavailable
    "energy_per_token_j": "energy_per_token_j",
    "tokens_per_kwh": "tokens_per_kwh",
    "mean_power_w": "mean_power_w",
    "run_energy_j": "run_energy_j",
}
STEADY_STATES = ("steady", "unsteady", "unknown")
RUN_COLUMNS = [
    "run_key",
    "status",
    "reason",
    "use_liger",
    "torch_compile",
    "ablation",
    "batch_size",
    "seq_len",
    "repeat",
    "warmup_steps_to_skip",
]
RUN_COLUMNS += ["variant", *RUN_METRICS, "steady_state", "pad_to_multiple_of", "packing", "precision", "n_truncated"]
RUN_COLUMNS += ["gpus", "attn_implementation", "energy_unavailable"]


def recommendable(cells: pd.DataFrame) -> pd.Series:
    """Which cells a rate may be recommended or stated on: trained in every repeat (outcome ``ok``), not unsteady.

    A cell whose steadiness is ``unknown`` counts; one found ``unsteady`` never does.
    """
    return (cells["outcome"] == "ok") & (cells["steady_state"] != "unsteady")


def _run_row(result: RunResult) -> dict[str, Any]:
    config, metrics = result.config, result.metrics
    try:
        row = {
            "run_key": result.run_key,
            "status": result.status,
            "reason": result.reason or "",
            "use_liger": coerce("use_liger", config["use_liger"], bool),
            "torch_compile": coerce("torch_compile", config.get("torch_compile", False), bool),
            "ablation": coerce("ablation", config.get("ablation", ""), str),
            "batch_size": coerce("per_device_train_batch_size", config["per_device_train_batch_size"], int),
            "seq_len": coerce("max_seq_length", config["max_seq_length"], int),
            "repeat": coerce("repeat", config.get("repeat", 0), int),
            "warmup_steps_to_skip": coerce("warmup_steps_to_skip", config.get("warmup_steps_to_skip", 0), int),
        }
    except (KeyError, ValueError) as err:
        raise ValueError(f"run result {result.run_key!r} lacks a valid config value: {err}") from err
    row["variant"] = variant_of(row["use_liger"], row["torch_compile"], row["ablation"])
    for column, name in RUN_METRICS.items():
        value = metrics.get(name)
        row[column] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    row["steady_state"] = metrics.get("steady_state") if metrics.get("steady_state") in STEADY_STATES else "unknown"
    row["pad_to_multiple_of"] = coerce("pad_to_multiple_of", config.get("pad_to_multiple_of", 1), int)
    row["packing"] = coerce("packing", config.get("packing", False), bool)
    row["precision"] = metrics.get("precision") or ""
    row["n_truncated"] = result.data.get("n_truncated", 0) or 0
    # GPUs that trained the run together (one process each): gpus_per_run × nodes_per_run.
    row["gpus"] = coerce("gpus_per_run", config.get("gpus_per_run", 1), int) * coerce(
        "nodes_per_run", config.get("nodes_per_run", 1), int
    )
    row["attn_implementation"] = metrics.get("attn_implementation")
    row["energy_unavailable"] = metrics.get("energy_unavailable", "the run recorded no energy")
    return row


def runs_table(results: Sequence[RunResult]) -> pd.DataFrame:
    """One row per run: grid axes, status, reason, aggregates; by sequence, batch, variant (baseline first), repeat.

    Args:
        results: The parsed run results.

    Returns:
        The table, with all of ``RUN_COLUMNS`` even when there is no run.

    Raises:
        ValueError: A result without the grid axes in its config.

    """
    runs = pd.DataFrame([_run_row(r) for r in results], columns=RUN_COLUMNS)
    runs = runs.astype({"use_liger": bool, "torch_compile": bool})
    order = runs["variant"].map(variant_order).rename("variant_order")
    return (
        pd.concat([runs, order], axis=1)
        .sort_values(["seq_len", "batch_size", "variant_order", "repeat"], ignore_index=True)
        .drop(columns="variant_order")
    )


def steps_table(runs: pd.DataFrame, histories: Sequence[StepHistory]) -> pd.DataFrame:
    """One row per recorded step of every run in ``runs``, with the run's axes and whether it is measured.

    Args:
        runs: What ``runs_table`` returned.
        histories: The parsed step histories; those of runs not in ``runs`` are left out.

    Returns:
        The table; each metric of ``STEP_METRICS`` is a float column (NaN where it was not measured).

    """
    known = set(runs["run_key"])
    rows = [
        {**step, "run_key": history.run_key, "measured": is_measured(step)}
        for history in histories
        if history.run_key in known
        for step in history.steps
    ]
    steps = pd.DataFrame(rows)
    for column in ("run_key", "step", "warmup", "measured", *STEP_METRICS):
        if column not in steps:
            steps[column] = pd.Series(dtype=object)
    for column in STEP_METRICS:
        steps[column] = pd.to_numeric(steps[column], errors="coerce").astype(float)
    steps["step"] = pd.to_numeric(steps["step"]).astype(int)
    axes = runs[["run_key", *CELL, "use_liger", "torch_compile", "repeat", "warmup_steps_to_skip"]]
    steps = steps.merge(axes, on="run_key", how="inner")
    steps["measured"] = steps["measured"].astype(bool)
    return steps
