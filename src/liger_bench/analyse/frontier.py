"""The searched memory frontier as tables: each search's answer, every probe, and what they support saying.

find_frontier writes one record per (variant, sequence length): the variant, ``max_seq_length`` and
what ``measure.frontier.search_frontier`` found (``largest_fit``, ``smallest_oom``, ``end``,
``reason``, ``probes``). A variant fits more sequences than the baseline only where it trained a
batch at which the baseline ran out of memory; with a coarse resolution, or a search that ended
early, the two answers can overlap, and then nothing is said. The sequence-length searches
(``frontier_seq_batch_size``) read the same way along the other axis: one record per variant at one
batch (``per_device_train_batch_size``), the longest ``max_seq_length`` that trained
(``longest_fit``) and the shortest that did not (``shortest_oom``). Where the grid trained a
variant at its own largest fit (``"max"``), ``fit_rates`` compares its throughput there with the
baseline's at the baseline's own largest fit: what each can do with all of the GPU's memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import pandas as pd

from liger_bench.analyse.intervals import mean_ci
from liger_bench.analyse.runtables import recommendable
from liger_bench.measure.frontier import last_probe_of
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
FIT_RATE_COLUMNS = [
    "variant",
    "seq_len",
    "largest_fit",
    "outcome",
    "steady_state",
    "tokens_per_s_nonpad",
    "tokens_per_s_nonpad_ci_low",
    "tokens_per_s_nonpad_ci_high",
    "n_pairs",
    "gain_pct",
    "gain_ci_low_pct",
    "gain_ci_high_pct",
]
_COMMON_COLUMNS = SEARCH_COLUMNS[4:]
SEQUENCE_SEARCH_COLUMNS = ["variant", "batch_size", "longest_fit", "shortest_oom", *_COMMON_COLUMNS]
SEQUENCE_GAIN_COLUMNS = ["variant", "batch_size", "longest_fit", "baseline_longest_fit", "at_least", "gain_pct"]
# The searched axis' field in a probe, and the table's names of a search's fixed value, its fit and its oom.
_BATCH = ("per_device_train_batch_size", "seq_len", "largest_fit", "smallest_oom")
_SEQUENCE = ("max_seq_length", "batch_size", "longest_fit", "shortest_oom")


def _gb(value: float | None) -> float:
    """A probe's peak memory; NaN where it measured none (no CUDA)."""
    return math.nan if value is None else value


def _order(frame: pd.DataFrame, fixed: str) -> pd.DataFrame:
    ranked = frame.assign(_variant_order=frame["variant"].map(variant_order))
    return ranked.sort_values([fixed, "_variant_order"], ignore_index=True).drop(columns="_variant_order")


def _table(records: Sequence[dict[str, Any]], names: tuple[str, str, str, str], columns: list[str]) -> pd.DataFrame:
    """One row per search along the axis ``names`` describes (``_BATCH``, ``_SEQUENCE``)."""
    axis, fixed, fit, oom = names
    fixed_field = "max_seq_length" if axis == "per_device_train_batch_size" else "per_device_train_batch_size"
    rows = []
    for record in records:
        probes = record["probes"]
        at_fit = last_probe_of(probes, itemgetter(axis), record["largest_fit"]) or {}
        peak = at_fit.get("peak_mem_reserved_gb")
        capacity = max((p["gpu_memory_gb"] for p in probes), default=0.0)
        rows.append(
            {
                "variant": record["variant"],
                fixed: int(record[fixed_field]),
                fit: pd.NA if record["largest_fit"] is None else int(record["largest_fit"]),
                oom: pd.NA if record["smallest_oom"] is None else int(record["smallest_oom"]),
                "peak_mem_reserved_gb": _gb(peak),
                "gpu_memory_gb": capacity or math.nan,
                "capacity_share": peak / capacity if peak is not None and capacity else math.nan,
                "n_probes": len(probes),
                "search_time_s": sum(p["elapsed_s"] for p in probes),
                "end": record["end"],
                "reason": record["reason"],
            }
        )
    frame = pd.DataFrame(rows, columns=columns)
    for column in (fit, oom):
        frame[column] = frame[column].astype("Int64")
    return _order(frame, fixed) if len(frame) else frame


def searches_table(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per batch search: the largest batch that trained, the first that did not, the peak at the largest fit.

    Args:
        records: find_frontier's ``frontiers`` records, any order.

    Returns:
        The searches by sequence length, then variant; ``capacity_share`` is the peak reserved memory
        at the largest fit over the GPU's capacity (NaN without CUDA).
    """
    return _table(records, _BATCH, SEARCH_COLUMNS)


def sequence_searches_table(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per sequence search: the longest ``max_seq_length`` that trained at its batch, the first that did not.

    Args:
        records: find_frontier's ``sequence_frontiers`` records, any order.

    Returns:
        The searches by batch, then variant; the peak and its share of capacity are at the longest fit.
    """
    return _table(records, _SEQUENCE, SEQUENCE_SEARCH_COLUMNS)


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


def _gains(searches: pd.DataFrame, names: tuple[str, str, str, str], columns: list[str]) -> pd.DataFrame:
    """Each variant's fit against the baseline's where they differ beyond doubt, along the axis ``names`` describes."""
    _, fixed, fit, oom = names
    rows = []
    for value, group in searches.groupby(fixed, sort=True):
        base = group[group["variant"] == BASELINE]
        if base.empty or base[fit].isna().iloc[0]:
            continue
        base_fit, base_oom = base[fit].iloc[0], base[oom].iloc[0]
        for row in group[group["variant"] != BASELINE].to_dict("records"):
            if pd.isna(row[fit]):
                continue
            more = not pd.isna(base_oom) and row[fit] >= base_oom
            fewer = not pd.isna(row[oom]) and base_fit >= row[oom]
            if more or fewer:
                gain = [int(row[fit]), int(base_fit), pd.isna(row[oom]), 100.0 * (row[fit] / base_fit - 1.0)]
                rows.append(dict(zip(columns, [row["variant"], value, *gain], strict=True)))
    return pd.DataFrame(rows, columns=columns)


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
    return _gains(searches, _BATCH, GAIN_COLUMNS)


def sequence_gains(searches: pd.DataFrame) -> pd.DataFrame:
    """Where a variant's longest sequence and the baseline's differ beyond doubt (as ``frontier_gains``), by how much.

    Args:
        searches: ``sequence_searches_table``'s frame.

    Returns:
        One row per (variant, batch) beyond doubt: both longest fits and the variant's gain in tokens
        per sequence, in percent of the baseline's (``at_least``: the variant trained up to the context length).
    """
    return _gains(searches, _SEQUENCE, SEQUENCE_GAIN_COLUMNS)


def fit_rates(searches: pd.DataFrame, cells: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Each searched variant's throughput at its own largest fit, against the baseline's at the baseline's own.

    A row per searched variant whose cell at its largest fit ran (the grid had ``"max"``, or that
    batch), with the cell's outcome and steadiness. Its rate is the cell's only where the report would
    recommend on it (``runtables.recommendable``: every repeat trained, not unsteady), else NaN. The gain pairs the
    two variants' runs by repeat, like every gain: the mean of the per-repeat ``tokens/s ÷ baseline's
    − 1`` with a 95% Student-t interval; NaN without a pair, for the baseline itself, or where either
    cell's rate is NaN.

    Args:
        searches: ``searches_table``'s frame.
        cells: The per-cell table (``analysis._cells``).
        runs: The runs table (``runtables.runs_table``).

    Returns:
        ``FIT_RATE_COLUMNS``, by sequence length then variant.
    """
    fits = searches.dropna(subset=["largest_fit"])[["variant", "seq_len", "largest_fit"]]
    at_fit = fits.merge(cells.rename(columns={"batch_size": "largest_fit"}), on=["variant", "seq_len", "largest_fit"])
    usable = recommendable(at_fit) & at_fit["tokens_per_s_nonpad"].notna()
    for column in ("tokens_per_s_nonpad", "tokens_per_s_nonpad_ci_low", "tokens_per_s_nonpad_ci_high"):
        at_fit[column] = at_fit[column].where(usable)
    ok = runs.loc[runs["status"] == "ok", ["variant", "batch_size", "seq_len", "repeat", "tokens_per_s_nonpad"]]
    key = ["variant", "seq_len", "largest_fit"]
    ok_at_fit = ok.rename(columns={"batch_size": "largest_fit"}).merge(at_fit.loc[usable, key], on=key)
    base = ok_at_fit[ok_at_fit["variant"] == BASELINE]
    pairs = ok_at_fit[ok_at_fit["variant"] != BASELINE].merge(base, on=["seq_len", "repeat"], suffixes=("", "_base"))
    ratios = pairs["tokens_per_s_nonpad"] / pairs["tokens_per_s_nonpad_base"]
    rows = []
    for row in at_fit.itertuples():
        mine = ratios[(pairs["variant"] == row.variant) & (pairs["seq_len"] == row.seq_len)].dropna()
        gain = tuple(100.0 * v for v in mean_ci(mine - 1.0))
        rows.append([row.variant, row.seq_len, int(row.largest_fit), row.outcome, row.steady_state])
        rows[-1] += [row.tokens_per_s_nonpad, row.tokens_per_s_nonpad_ci_low, row.tokens_per_s_nonpad_ci_high]
        rows[-1] += [len(mine), *gain]
    frame = pd.DataFrame(rows, columns=FIT_RATE_COLUMNS)
    return _order(frame, "seq_len") if len(frame) else frame
