"""The searched memory frontier in the report: tables, headline clause and figure, from a fixture of searches.

The searches are find_frontier's records as an H200 would write them (143.8 GB); every expected
number below is worked out by hand from the probes listed here.
"""

import math

import pandas as pd
import pytest
from synthetic_results import Run, build, gpu_scenario

from liger_bench.render.report import build_report

CAPACITY = 143.8


def search(variant, seq, probes, end, reason="", bound_oom=True):
    """A find_frontier record from ``(batch, status, peak GB)`` probes, 10 s each, in the order run."""
    fits = [batch for batch, status, _ in probes if status == "ok"]
    ooms = [batch for batch, status, _ in probes if status == "oom"]
    return {
        "variant": variant,
        "max_seq_length": seq,
        "largest_fit": max(fits) if fits else None,
        "smallest_oom": min(ooms) if ooms else None,
        "end": end,
        "reason": reason or end,
        "probes": [
            {
                "per_device_train_batch_size": batch,
                "status": status,
                "reason": "",
                "peak_mem_reserved_gb": peak,
                "peak_mem_allocated_gb": None if peak is None else peak - 1.0,
                "elapsed_s": 10.0,
                "gpu_memory_gb": CAPACITY,
            }
            for batch, status, peak in probes
        ],
    }


def doubling(last_fit, peak_per_sequence):
    """The exponential phase's fitting probes 1, 2, 4, … ``last_fit``, peak linear in the batch."""
    batch, probes = 1, []
    while batch <= last_fit:
        probes.append((batch, "ok", round(peak_per_sequence * batch, 3)))
        batch *= 2
    return probes


SEARCHES = [
    # Baseline: 1 … 32 fit, 64 runs out, bisection 48 oom, 40 ok, 44, 42, 41 oom: largest fit 40, first oom 41.
    search(
        "baseline",
        512,
        doubling(32, 3.0)
        + [(64, "oom", None), (48, "oom", None), (40, "ok", 120.0)]
        + [(44, "oom", None), (42, "oom", None), (41, "oom", None)],
        "resolved",
    ),
    # Liger: 1 … 32 fit, 64 out, 48 ok, 56, 52, 50, 49 out: largest fit 48, first oom 49.
    search(
        "liger",
        512,
        doubling(32, 2.25)
        + [(64, "oom", None), (48, "ok", 108.0)]
        + [(56, "oom", None), (52, "oom", None), (50, "oom", None), (49, "oom", None)],
        "resolved",
    ),
    # torch.compile: fewer than the baseline, beyond doubt (the baseline trains 40, compile runs out at 37).
    search(
        "compile",
        512,
        doubling(32, 3.5)
        + [(64, "oom", None), (48, "oom", None), (40, "oom", None), (36, "ok", 130.0)]
        + [(38, "oom", None), (37, "oom", None)],
        "resolved",
    ),
    # Liger + compile: out of time at 32 with no oom yet; 32 < the baseline's first oom 41: nothing to say.
    search("liger-compile", 512, doubling(32, 2.0), "time budget"),
]


@pytest.fixture(scope="module")
def report():
    results, histories = build(gpu_scenario())
    return build_report(results, histories, SEARCHES)


def test_frontier_table_has_each_variants_largest_fit_first_oom_and_peak_against_capacity(report):
    table = report.analysis.searches.set_index("variant")
    assert list(table.index) == ["baseline", "liger", "compile", "liger-compile"]  # variant order, one seq len
    assert table["largest_fit"].tolist() == [40, 48, 36, 32]
    assert table["smallest_oom"].tolist()[:3] == [41, 49, 37] and table["smallest_oom"].isna().tolist()[3]
    assert table.loc["baseline", "peak_mem_reserved_gb"] == 120.0
    assert table.loc["liger", "peak_mem_reserved_gb"] == 108.0
    assert table.loc["liger-compile", "peak_mem_reserved_gb"] == 64.0  # 2.0 GB × 32 sequences
    assert table.loc["baseline", "capacity_share"] == pytest.approx(120.0 / 143.8)
    assert table["n_probes"].tolist() == [12, 12, 12, 6]  # 6 doubling probes (1 … 32) and the rest listed
    assert table.loc["baseline", "search_time_s"] == 120.0
    assert table["end"].tolist() == ["resolved", "resolved", "resolved", "time budget"]


def test_frontier_gain_only_where_one_trained_a_batch_the_other_could_not(report):
    gains = report.analysis.frontier_gains.set_index("variant")
    assert list(gains.index) == ["liger", "compile"]  # liger-compile's 32 is below the baseline's first oom
    assert gains.loc["liger", "gain_pct"] == pytest.approx(20.0)  # 48 / 40 − 1
    assert gains.loc["compile", "gain_pct"] == pytest.approx(-10.0)  # 36 / 40 − 1
    assert "Liger fits 48 sequences of 512 tokens where the baseline fits 40 (+20%)." in report.headline
    assert "torch.compile fits 36 sequences of 512 tokens where the baseline fits 40 (\u221210%)." in report.headline
    assert "Liger + torch.compile fits" not in report.headline
    assert report.metrics["largest_fit_liger_seq512"] == 48.0


# A grid of batch 16 and "max" (the baseline's fit 40, Liger's 48 in SEARCHES), three repeats. At the fits the
# rates are paired so that pairing matters: per repeat 15,600 ÷ 10,000, 14,300 ÷ 11,000 and 13,000 ÷ 12,000,
# whose mean gain is 31.44%, where the ratio of the means (14,300 ÷ 11,000) would say 30%.
AT_FITS = [(10_000, 15_600), (11_000, 14_300), (12_000, 13_000)]
FIT_GAINS = [15_600 / 10_000 - 1, 14_300 / 11_000 - 1, 13_000 / 12_000 - 1]


def runs_at_fits(batch_16: bool = True, **liger_at_fit) -> list[Run]:
    """Both eager variants at their fits (``AT_FITS``), and at batch 16 unless not; ``liger_at_fit``: Run fields."""
    runs = []
    for repeat, (baseline, liger) in enumerate(AT_FITS):
        if batch_16:
            runs += [
                Run(False, 16, 512, repeat, tokens_per_s=9_000 + 100 * repeat),
                Run(True, 16, 512, repeat, tokens_per_s=12_000 + 100 * repeat),
            ]
        runs += [
            Run(False, 40, 512, repeat, tokens_per_s=baseline),
            Run(True, 48, 512, repeat, tokens_per_s=liger, **liger_at_fit),
        ]
    return runs


@pytest.fixture(scope="module")
def at_max():
    return build_report(*build(runs_at_fits()), SEARCHES)


def test_each_variant_at_its_own_largest_fit_is_compared_with_the_baseline_at_its_own_paired_by_repeat(at_max):
    fits = at_max.analysis.fit_rates.set_index("variant")
    assert list(fits.index) == ["baseline", "liger"]  # compile and liger-compile never ran at their fits
    assert fits["seq_len"].tolist() == [512, 512] and fits["largest_fit"].tolist() == [40, 48]
    assert fits["outcome"].tolist() == ["ok", "ok"] and fits["steady_state"].tolist() == ["steady", "steady"]
    assert fits["tokens_per_s_nonpad"].tolist() == pytest.approx([11_000, 14_300])
    # The baseline's 10,000, 11,000 and 12,000 (sd 1,000); Liger's 15,600, 14,300, 13,000 (sd 1,300).
    assert fits["tokens_per_s_nonpad_ci_low"].tolist() == pytest.approx(
        [11_000 - 4.303 * 1_000 / math.sqrt(3), 14_300 - 4.303 * 1_300 / math.sqrt(3)]
    )
    assert fits["tokens_per_s_nonpad_ci_high"].tolist() == pytest.approx(
        [11_000 + 4.303 * 1_000 / math.sqrt(3), 14_300 + 4.303 * 1_300 / math.sqrt(3)]
    )
    mean = sum(FIT_GAINS) / 3
    sd = math.sqrt(sum((g - mean) ** 2 for g in FIT_GAINS) / 2)
    half = 4.303 * sd / math.sqrt(3)  # t(0.975) with 2 degrees of freedom, as published to 3 decimals
    assert fits.loc["liger", "n_pairs"] == 3
    assert fits.loc["liger", "gain_pct"] == pytest.approx(100 * mean)
    assert fits.loc["liger", "gain_pct"] == pytest.approx(31.444, abs=1e-3)
    assert fits.loc["liger", "gain_ci_low_pct"] == pytest.approx(100 * (mean - half), rel=1e-4)
    assert fits.loc["liger", "gain_ci_high_pct"] == pytest.approx(100 * (mean + half), rel=1e-4)
    assert fits.loc["baseline", "n_pairs"] == 0 and math.isnan(fits.loc["baseline", "gain_pct"])


def test_with_max_the_headline_recommends_where_variants_met_and_states_each_at_its_own_fit(at_max):
    # Batch 48 (Liger alone) and 40 (the baseline alone) are larger cells, but a "fastest" of one says nothing.
    assert at_max.headline.startswith("At batch 16 the fastest variant that trained is Liger: 12,100 tokens/s")
    assert (
        "At its own largest fit, Liger trains 14,300 tokens/s (batch 48), +31% vs the baseline at its own "
        "(11,000 tokens/s at batch 40; 95% CI"
    ) in at_max.headline
    for page in (at_max.html, at_max.markdown):
        assert "tokens/s gain vs the baseline at its largest fit %" in page and "31.4" in page
    assert at_max.metrics["fit_gain_pct_liger_seq512"] == pytest.approx(100 * sum(FIT_GAINS) / 3)
    assert "fit_gain_pct_baseline_seq512" not in at_max.metrics  # no gain against itself: NaN is not logged


def test_without_runs_at_the_fits_the_page_says_how_to_measure_there(report):
    assert report.analysis.fit_rates.empty  # the GPU scenario trains 8, 16 and 24; the fits are 36 to 48
    assert "At its own largest fit" not in report.headline
    for page in (report.html, report.markdown):
        assert "No variant ran at its own largest fit" in page
        assert "tokens/s gain vs the baseline at its largest fit %" not in page


def test_an_unsteady_fit_gives_no_rate_and_no_clause():
    bundle = build_report(*build(runs_at_fits(slow_first=8, slow_factor=3.0)), SEARCHES)
    fits = bundle.analysis.fit_rates.set_index("variant")
    assert fits.loc["liger", "steady_state"] == "unsteady"
    assert math.isnan(fits.loc["liger", "tokens_per_s_nonpad"]) and fits.loc["liger", "n_pairs"] == 0
    assert fits.loc["baseline", "tokens_per_s_nonpad"] == pytest.approx(11_000)
    assert "At its own largest fit" not in bundle.headline


def test_a_grid_of_only_max_compares_the_variants_at_their_fits_and_names_no_fastest_of_one():
    bundle = build_report(*build(runs_at_fits(batch_16=False)), SEARCHES)
    assert "the fastest variant" not in bundle.headline
    assert "Liger fits 48 sequences of 512 tokens where the baseline fits 40 (+20%)." in bundle.headline
    assert "At its own largest fit, Liger trains 14,300 tokens/s (batch 48), +31% vs the baseline" in bundle.headline


def test_a_grid_of_only_max_with_an_unsteady_fit_says_why_nothing_is_compared():
    runs = [Run(False, 40, 512, r, tokens_per_s=10_000, slow_first=8, slow_factor=3.0) for r in range(3)]
    runs += [Run(True, 48, 512, r, tokens_per_s=13_000) for r in range(3)]
    bundle = build_report(*build(runs), SEARCHES)
    assert "the fastest variant" not in bundle.headline and "At its own largest fit" not in bundle.headline
    assert "No variant trained at steady state" not in bundle.headline  # Liger did, at 48
    assert "No batch size and sequence length trained more than one variant, so no cell compares them" in (
        bundle.headline
    )


def test_where_both_fit_the_same_batch_the_cells_gain_says_it_once():
    same = [
        search("baseline", 512, [(16, "ok", 60.0), (32, "ok", 120.0), (64, "oom", None)], "bound"),
        search("liger", 512, [(16, "ok", 50.0), (32, "ok", 100.0), (64, "oom", None)], "bound"),
    ]
    runs = [
        Run(liger, 32, 512, r, tokens_per_s=13_000 if liger else 10_000) for r in range(3) for liger in (False, True)
    ]
    bundle = build_report(*build(runs), same)
    assert len(bundle.analysis.fit_rates) == 2
    assert bundle.headline.startswith("At batch 32 the fastest variant that trained is Liger")
    assert "At its own largest fit" not in bundle.headline


def test_a_variant_that_trains_up_to_the_bound_fits_at_least_that():
    bound = [
        search(
            "baseline",
            512,
            doubling(8, 1.0) + [(16, "oom", None), (12, "ok", 12.0)] + [(14, "oom", None), (13, "oom", None)],
            "resolved",
        ),
        search("liger", 512, doubling(16, 1.0), "bound"),
    ]
    results, histories = build(gpu_scenario())
    bundle = build_report(results, histories, bound)
    assert "Liger fits at least 16 sequences of 512 tokens where the baseline fits 12 (+33% or more)." in (
        bundle.headline
    )


def test_html_and_markdown_show_the_searched_frontier(report):
    for page in (report.html, report.markdown):
        assert "Memory frontier, searched" in page
        assert "largest batch that fits" in page and "first batch out of memory" in page
        assert "83.4" in page  # the baseline's 120 GB of 143.8 GB, in percent
    assert "Out-of-memory frontier of the grid's batch sizes" in report.html


def test_skipped_searches_are_said_in_the_caveats_and_leave_the_table_empty_of_batches():
    results, histories = build(gpu_scenario())
    skipped = [
        {
            "variant": v,
            "max_seq_length": 512,
            "largest_fit": None,
            "smallest_oom": None,
            "end": "skipped",
            "reason": "frontier_search is false",
            "probes": [],
        }
        for v in ("baseline", "liger")
    ]
    bundle = build_report(results, histories, skipped)
    assert bundle.analysis.searches["largest_fit"].isna().all()
    assert math.isnan(bundle.analysis.searches["gpu_memory_gb"].iloc[0])
    assert bundle.analysis.frontier_gains.empty and "sequences of" not in bundle.headline
    assert any(
        "The memory frontier was not searched (frontier_search is false)" in note for note in bundle.html.split("<li>")
    )
    assert isinstance(bundle.analysis.probes, pd.DataFrame) and bundle.analysis.probes.empty
    # One sentence, not a row per variant that repeats it, nor an empty figure.
    assert "<h2>Memory frontier, searched</h2>\n<p>Not searched: frontier_search is false.</p>\n<h2>" in bundle.html
    assert "## Memory frontier, searched\n\nNot searched: frontier\\_search is false.\n\n## " in bundle.markdown
    for page in (bundle.html, bundle.markdown):
        assert "largest batch that fits" not in page and "Memory frontier search: peak reserved" not in page


def test_the_frontier_figure_draws_every_probe_against_the_capacity_line(report):
    caption = "Memory frontier search: peak reserved GPU memory of every probe vs its batch size"
    assert '<img src="data:image/png;base64,' in report.html.split(f"<h3>{caption}</h3>")[1][:40]
    probes = report.analysis.probes
    assert len(probes) == 12 + 12 + 12 + 6 and probes["gpu_memory_gb"].eq(CAPACITY).all()
    # Out-of-memory probes recorded no peak here: the figure puts them on the capacity line.
    assert probes.loc[probes["status"] == "oom", "peak_mem_reserved_gb"].isna().all()


def test_a_search_without_cuda_has_no_figure_and_says_why():
    results, histories = build(gpu_scenario())
    cpu = search("baseline", 64, [(1, "ok", None), (2, "ok", None)], "bound")
    for probe in cpu["probes"]:
        probe["gpu_memory_gb"] = 0.0
    bundle = build_report(results, histories, [cpu])
    assert "No probe measured GPU memory (the search ran without a CUDA device)." in bundle.html
    assert bundle.analysis.searches["largest_fit"].tolist() == [2]


def test_the_longest_sequence_section_is_on_the_page_only_where_a_sequence_search_ran(report):
    """synthetic_results.sequence_searches: Liger trains 3,712 tokens at batch 4, the baseline 1,984."""
    from synthetic_results import sequence_searches

    results, histories = build(gpu_scenario())
    searched = build_report(results, histories, SEARCHES, sequence_searches())
    for page in (searched.html, searched.markdown):
        assert "Longest sequence that fits, searched" in page
        assert "max_seq_length 3712 trained and max_seq_length 3776 ran out of memory" in page.replace("\\_", "_")
    assert "Liger fits 3,712-token sequences at batch 4 where the baseline fits 1,984 (+87%)." in searched.headline
    assert searched.metrics["longest_fit_liger_bs4"] == 3712.0
    for page in (report.html, report.markdown):  # frontier_seq_batch_size 0: no section, no clause
        assert "Longest sequence" not in page
    assert "-token sequences" not in report.headline
    assert not any(name.startswith("longest_fit_") for name in report.metrics)
