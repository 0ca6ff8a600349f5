"""Which kernels pay: per-kernel attribution of Liger's gain and memory saving, from a kernel ablation's arms.

Every number is paired by repeat, like the gains: an arm's run is compared with the run it is measured
against in the same (batch size, sequence length, repeat), and the mean of the per-pair ratios gets a
95% Student-t interval over the repeats (``intervals.mean_ci``).

- Alone (``liger.<kernel>`` against the baseline): the throughput gain ``tokens/s ÷ baseline's − 1``
  and the memory reduction ``1 − peak allocated ÷ baseline's``.
- Left out (``liger.no_<kernel>`` against Liger with all its default kernels): the throughput lost,
  ``1 − tokens/s ÷ Liger's``, and the memory added, ``peak allocated ÷ Liger's − 1``.
- Interaction, per repeat in which Liger, the baseline and every single arm trained: all kernels'
  gain minus the sum of the singles' gains (positive: together they gain more than the sum).
"""

from __future__ import annotations

import pandas as pd

from liger_bench.analyse.intervals import mean_ci
from liger_bench.plan.config import LIGER_KERNELS
from liger_bench.vocabulary import BASELINE, ablated_kernel, ablation_arm, variant_of

PAIR = ["batch_size", "seq_len"]
# The two comparisons of a kernel: (its arm is the kernel alone, against what, the column prefix).
ARMS = ((True, BASELINE, "alone"), (False, "liger", "left_out"))
ATTRIBUTION_COLUMNS = ["kernel", *PAIR]
for _prefix, _rate, _memory in (("alone", "gain", "mem_reduction"), ("left_out", "loss", "mem_increase")):
    ATTRIBUTION_COLUMNS += [f"{_prefix}_n_pairs"]
    ATTRIBUTION_COLUMNS += [f"{_prefix}_{_rate}_pct{s}" for s in ("", "_ci_low", "_ci_high")]
    ATTRIBUTION_COLUMNS += [f"{_prefix}_{_memory}_pct{s}" for s in ("", "_ci_low", "_ci_high")]
INTERACTION_COLUMNS = [*PAIR, "kernels", "n_repeats"]
INTERACTION_COLUMNS += [f"{name}_pct{s}" for name in ("sum_of_singles_gain", "all_kernels_gain", "interaction")
                        for s in ("", "_ci_low", "_ci_high")]  # fmt: skip
INTERACTION_COLUMNS += ["sum_of_singles_mem_reduction_pct", "all_kernels_mem_reduction_pct"]


def ablated_kernels(runs: pd.DataFrame) -> list[str]:
    """The kernels the runs' ablation arms name, in ``LIGER_KERNELS``' order."""
    named = {arm[0] for arm in map(ablated_kernel, runs["variant"].unique()) if arm is not None}
    return [kernel for kernel in LIGER_KERNELS if kernel in named]


def _ratios(runs: pd.DataFrame, variant: str, against: str) -> pd.DataFrame:
    """Per pair of ok runs (same batch, seq len, repeat): tokens/s and peak allocated of ``variant`` ÷ ``against``'s."""
    ok = runs[runs["status"] == "ok"]
    columns = [*PAIR, "repeat", "tokens_per_s_nonpad", "peak_mem_allocated_gb"]
    pairs = ok.loc[ok["variant"] == variant, columns].merge(
        ok.loc[ok["variant"] == against, columns], on=[*PAIR, "repeat"], suffixes=("", "_against")
    )
    return pairs.assign(
        rate=pairs["tokens_per_s_nonpad"] / pairs["tokens_per_s_nonpad_against"],
        memory=pairs["peak_mem_allocated_gb"] / pairs["peak_mem_allocated_gb_against"],
    )[[*PAIR, "repeat", "rate", "memory"]]


def _percent_ci(values: pd.Series) -> tuple[float, float, float]:
    return tuple(100.0 * v for v in mean_ci(values))  # type: ignore[return-value] - three numbers


def attribution(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (kernel, batch size, seq len) of the ablation: alone against the baseline, left out against Liger.

    Args:
        runs: The runs table (``runtables.runs_table``).

    Returns:
        ``ATTRIBUTION_COLUMNS``; no row without ablation arms. A comparison without a pair has 0 pairs and NaN.
    """
    cells = sorted(set(zip(runs["batch_size"], runs["seq_len"], strict=True)))
    rows = []
    for kernel in ablated_kernels(runs):
        for batch, seq in cells:
            row = {"kernel": kernel, "batch_size": batch, "seq_len": seq}
            for alone, against, prefix in ARMS:
                ratios = _ratios(runs, variant_of(True, False, ablation_arm(kernel, alone)), against)
                ratios = ratios[(ratios["batch_size"] == batch) & (ratios["seq_len"] == seq)]
                # Alone: what the kernel adds to the baseline; left out: what Liger loses without it.
                rate = ratios["rate"] - 1.0 if alone else 1.0 - ratios["rate"]
                memory = 1.0 - ratios["memory"] if alone else ratios["memory"] - 1.0
                rate_name, memory_name = ("gain", "mem_reduction") if alone else ("loss", "mem_increase")
                row[f"{prefix}_n_pairs"] = len(ratios)
                for name, values in ((rate_name, rate), (memory_name, memory)):
                    mean, low, high = _percent_ci(values)
                    row.update({f"{prefix}_{name}_pct": mean, f"{prefix}_{name}_pct_ci_low": low})
                    row[f"{prefix}_{name}_pct_ci_high"] = high
            rows.append(row)
    return pd.DataFrame(rows, columns=ATTRIBUTION_COLUMNS)


def interaction(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (batch size, seq len) with single-kernel arms: the sum of the singles' gains against all kernels' gain.

    Only repeats in which Liger, the baseline and every single arm trained count, so the sum and the
    whole are of the same repeats; the interaction is their difference per repeat, with its interval.

    Args:
        runs: The runs table (``runtables.runs_table``).
    """
    singles = [k for k in ablated_kernels(runs) if (runs["variant"] == variant_of(True, False, k)).any()]
    rows = []
    if singles:
        every = _ratios(runs, "liger", BASELINE).set_index([*PAIR, "repeat"])
        single = [_ratios(runs, variant_of(True, False, k), BASELINE).set_index([*PAIR, "repeat"]) for k in singles]
        common = every.index
        for ratios in single:
            common = common.intersection(ratios.index)
        cells = sorted(set(zip(runs["batch_size"], runs["seq_len"], strict=True)))
        for batch, seq in cells:
            keys = [key for key in common if key[:2] == (batch, seq)]
            whole, memory_whole = every.loc[keys, "rate"] - 1.0, 1.0 - every.loc[keys, "memory"]
            parts = sum(ratios.loc[keys, "rate"] - 1.0 for ratios in single)
            memory_parts = sum(1.0 - ratios.loc[keys, "memory"] for ratios in single)
            row = {"batch_size": batch, "seq_len": seq, "kernels": ", ".join(singles), "n_repeats": len(keys)}
            for name, values in (("sum_of_singles_gain", parts), ("all_kernels_gain", whole)):
                mean, low, high = _percent_ci(values)
                row.update({f"{name}_pct": mean, f"{name}_pct_ci_low": low, f"{name}_pct_ci_high": high})
            mean, low, high = _percent_ci(whole - parts)
            row.update(interaction_pct=mean, interaction_pct_ci_low=low, interaction_pct_ci_high=high)
            row["sum_of_singles_mem_reduction_pct"] = _percent_ci(memory_parts)[0]
            row["all_kernels_mem_reduction_pct"] = _percent_ci(memory_whole)[0]
            rows.append(row)
    return pd.DataFrame(rows, columns=INTERACTION_COLUMNS)


def supported_carriers(attribution_rows: pd.DataFrame, value: str = "alone_gain_pct") -> list[str]:
    """The kernels whose ``value`` is above zero by its 95% CI as the report shows it (one decimal), largest first.

    None without a CI. A deterministic peak has a CI of zero width, so a saving of a few MiB would
    otherwise be named at "0.0%".

    Args:
        attribution_rows: Rows of ``attribution`` of one (batch size, seq len).
        value: The column: the gain alone (the default) or the memory reduction alone.
    """
    above = attribution_rows[attribution_rows[f"{value}_ci_low"].round(1) > 0.0]
    return list(above.sort_values(value, ascending=False)["kernel"])
