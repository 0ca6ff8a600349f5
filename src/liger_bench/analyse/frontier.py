"""The searched memory frontier as tables: each search's answer, every probe, and what they support saying.

find_frontier writes one record per (variant, sequence length): the variant, ``max_seq_length`` and
what ``measure.frontier.search_frontier`` found (``largest_fit``, ``smallest_oom``, ``end``,
``reason``, ``probes``). A variant fits more sequences than the baseline only where it trained a
batch at which the baseline ran out of memory; with a coarse resolution, or a search that ended
early, the two answers can overlap, and then nothing is said.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from liger_bench.vocabulary import BASELINE, variant_order

SEARCH_COLUMNS = [
    "variant",
    "seq_len",
    "largest_fit",
    "smallest_oom",
    "peak_mem_reserved_gb",
    "gpu_memory_gb",
    "capacity_share",
    "n_probes",
    "search_time_s",
    "end",
    "reason",
]
PROBE_COLUMNS = ["variant", "seq_len", "batch_size", "status", "peak_mem_reserved_gb", "gpu_memory_gb"]
GAIN_COLUMNS = ["variant", "seq_len", "largest_fit", "baseline_largest_fit", "at_least", "gain_pct"]


def _gb(value: float | None) -> float:
    """A probe's peak memory; NaN where it measured none (no CUDA)."""
    return math.nan if value is None else value


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    ranked = frame.assign(_variant_order=frame["variant"].map(variant_order))
    return ranked.sort_values(["seq_len", "_variant_order"], ignore_index=True).drop(columns="_variant_order")


def searches_table(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per search: the largest batch that trained, the first that did not, the peak at the largest fit.

    Args:
        records: find_frontier's records, any order.

    Returns:
        The searches by sequence length, then variant; ``capacity_share`` is the peak reserved memory
        at the largest fit over the GPU's capacity (NaN without CUDA).
    """
    rows = []
    for record in records:
        probes = record["probes"]
        at_fit = next((p for p in probes if p["per_device_train_batch_size"] == record["largest_fit"]), {})
        peak = at_fit.get("peak_mem_reserved_gb")
        capacity = max((p["gpu_memory_gb"] for p in probes), default=0.0)
        rows.append(
            {
                "variant": record["variant"],
                "seq_len": int(record["max_seq_length"]),
                "largest_fit": pd.NA if record["largest_fit"] is None else int(record["largest_fit"]),
                "smallest_oom": pd.NA if record["smallest_oom"] is None else int(record["smallest_oom"]),
                "peak_mem_reserved_gb": _gb(peak),
                "gpu_memory_gb": capacity or math.nan,
                "capacity_share": peak / capacity if peak is not None and capacity else math.nan,
                "n_probes": len(probes),
                "search_time_s": sum(p["elapsed_s"] for p in probes),
                "end": record["end"],
                "reason": record["reason"],
            }
        )
    frame = pd.DataFrame(rows, columns=SEARCH_COLUMNS)
    for column in ("largest_fit", "smallest_oom"):
        frame[column] = frame[column].astype("Int64")
    return _order(frame) if len(frame) else frame


def probes_table(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per probe of every search, in the order each search ran them (the figure's points).

    Args:
        records: find_frontier's records, any order.
    """
    rows = [
        {
            "variant": record["variant"],
            "seq_len": int(record["max_seq_length"]),
            "batch_size": probe["per_device_train_batch_size"],
            "status": probe["status"],
            "peak_mem_reserved_gb": _gb(probe["peak_mem_reserved_gb"]),
            "gpu_memory_gb": probe["gpu_memory_gb"] or math.nan,
        }
        for record in records
        for probe in record["probes"]
    ]
    return pd.DataFrame(rows, columns=PROBE_COLUMNS)


def frontier_gains(searches: pd.DataFrame) -> pd.DataFrame:
    """Where a variant's largest fit and the baseline's differ beyond doubt, by how much.

    Beyond doubt: the one trained a batch at which the other ran out of memory. A variant whose
    search trained every batch up to the bound (no batch ran out of memory) fits ``at_least`` its
    largest fit.

    Args:
        searches: ``searches_table``'s frame.

    Returns:
        One row per (variant, sequence length) beyond doubt: both largest fits and the variant's gain
        in sequences per step, in percent of the baseline's.
    """
    rows = []
    for seq, group in searches.groupby("seq_len", sort=True):
        base = group[group["variant"] == BASELINE]
        if base.empty or base["largest_fit"].isna().iloc[0]:
            continue
        base_fit, base_oom = base["largest_fit"].iloc[0], base["smallest_oom"].iloc[0]
        for row in group[group["variant"] != BASELINE].itertuples():
            if row.largest_fit is pd.NA:
                continue
            more = base_oom is not pd.NA and row.largest_fit >= base_oom
            fewer = row.smallest_oom is not pd.NA and base_fit >= row.smallest_oom
            if more or fewer:
                rows.append(
                    {
                        "variant": row.variant,
                        "seq_len": seq,
                        "largest_fit": int(row.largest_fit),
                        "baseline_largest_fit": int(base_fit),
                        "at_least": row.smallest_oom is pd.NA,
                        "gain_pct": 100.0 * (row.largest_fit / base_fit - 1.0),
                    }
                )
    return pd.DataFrame(rows, columns=GAIN_COLUMNS)
