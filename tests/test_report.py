import html
import math
import re

import pandas as pd
import pytest
from synthetic_results import (
    Run,
    baseline_memory,
    baseline_rate,
    build,
    cpu_scenario,
    gpu_scenario,
    liger_memory,
    liger_rate,
)

from liger_bench.render.report import ReportBundle, build_report, write_bundle

HOSTILE_REASON = 'ValueError: <img src="https://example.invalid/x.png"> | [click](javascript:alert(1))'


@pytest.fixture(scope="module")
def gpu() -> ReportBundle:
    runs = gpu_scenario()
    runs.append(Run(True, 32, 512, 0, status="failed", reason=HOSTILE_REASON, key="liger-bs32-<i>x</i>-r0"))
    return build_report(*build(runs))


def test_gpu_headline_recommends_with_intervals_and_states_frontier_and_parity_failure(gpu):
    """Batch 16 is the largest batch where the baseline trained too; batch 8's Liger cell lost a repeat."""
    assert gpu.headline.startswith(
        "At batch 16 the fastest variant that trained is Liger: 21,008 tokens/s (95% CI 20,491 to 21,525), +29% "
        "vs the baseline (95% CI 25.6% to 31.8%). Leanest: Liger, 37.4 GiB peak reserved. Liger trains batch 24 "
        "where the baseline runs out of memory."
    )
    assert "Loss parity FAILED for 1 of 5 variant/baseline pairs (max relative difference 5.0%, tolerance 2%)" in (
        gpu.headline
    )


def test_the_architecture_its_attention_and_the_kernels_liger_applied_are_named(gpu):
    page = re.sub(r"<[^>]+>", " ", gpu.html)
    assert re.search(r"model type\s+phi3", page)
    assert re.search(r"attention, baseline\s+sdpa\s+attention, Liger\s+sdpa", page)
    assert re.search(
        r"Liger kernels applied \(modules patched\)\s+rope \(1\), rms_norm \(65\), swiglu \(32\), "
        r"fused_linear_cross_entropy \(1\)\s+Liger kernels not applied\s+cross_entropy",
        page,
    )
    assert "- Liger kernels not applied: cross\\_entropy" in gpu.markdown  # Markdown-escaped underscore


def test_metrics_are_flat_finite_floats_with_the_known_numbers(gpu):
    assert all(isinstance(v, float) and math.isfinite(v) for v in gpu.metrics.values())
    gain = 100 * sum(liger_rate(16, r) / baseline_rate(16, r) - 1 for r in range(3)) / 3
    assert gpu.metrics["gain_pct_liger_vs_baseline_bs16_seq512"] == pytest.approx(gain)
    reduction = 100 * sum(1 - liger_memory(16, r) / baseline_memory(16, r) for r in range(3)) / 3
    assert gpu.metrics["mem_reduction_pct_liger_vs_baseline_bs16_seq512"] == pytest.approx(reduction)
    assert "gain_pct_liger_vs_baseline_bs24_seq512" not in gpu.metrics  # no pair there: left out, not NaN
    expected = {"n_runs": 19, "n_ok": 13, "n_oom": 3, "n_failed": 3, "n_skipped": 0, "parity_failures": 1}
    assert {k: gpu.metrics[k] for k in expected} == expected
    assert gpu.metrics["largest_ok_batch_liger_seq512"] == 24
    assert gpu.metrics["largest_ok_batch_baseline_seq512"] == 16


def test_html_is_self_contained_and_escapes_result_text(gpu):
    page = gpu.html
    assert "<script" not in page.lower()
    assert "default-src 'none'" in page
    urls = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert len(urls) == 4 and all(url.startswith("data:image/png;base64,") for url in urls)
    assert "https://" not in page.replace(
        HOSTILE_REASON.replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;"), ""
    )
    assert '<img src="https://example.invalid' not in page
    assert "&lt;img src=&quot;https://example.invalid/x.png&quot;&gt;" in page
    assert "liger-bs32-&lt;i&gt;x&lt;/i&gt;-r0" in page


def test_html_sections_show_frontier_parity_problems_environment_and_grid(gpu):
    text = re.sub(r"<[^>]+>", " ", gpu.html)
    for expected in (
        "Out-of-memory frontier",
        "largest batch that trained",
        "FAIL",
        "OutOfMemoryError: CUDA out of memory",
        "NVIDIA H100 80GB HBM3",
        "570.124.06",
        "0a67737cc96d2554230f90338b163bc6380a2a85",
        "dce01c9b08f87459cf36a430d809084718273017",
        "library liger-kernel",
        "8, 16, 24, 32",
        "Loss parity failed: liger-bs16-seq512-r1 vs baseline-bs16-seq512-r1",
    ):
        assert expected in text, expected


def test_markdown_summary_has_the_tables_and_cannot_be_hijacked(gpu):
    md = gpu.markdown
    assert "## Out-of-memory frontier" in md and "| baseline | 512 | 16 | 24 |" in md
    assert "| Liger | 16 | 512 | 1 | liger-bs16-seq512-r1 | baseline-bs16-seq512-r1 | 17 | 5.00 | 19 | FAIL |" in md
    assert "\\[click\\]" in md and "\\| " in md and "&lt;img" in md and "<img" not in md


def test_columns_align_by_their_declared_kind_not_by_how_their_text_starts(gpu):
    assert '<th class="text">run key</th>' in gpu.html and "<th>tokens/s non-pad</th>" in gpu.html
    assert '<td class="text">liger-bs32-&lt;i&gt;x&lt;/i&gt;-r0</td>' in gpu.html
    assert "<td>unavailable</td>" in gpu.html and '<td class="text">unavailable</td>' not in gpu.html
    assert '<td class="text fail">FAIL</td>' in gpu.html and gpu.html.count('fail">') == 1
    frontier = gpu.markdown.split("## Out-of-memory frontier")[1].splitlines()
    assert frontier[2:4] == ["| variant | seq len | largest batch that trained | smallest batch out of memory |",
                             "|---|---:|---:|---:|"]  # fmt: skip


def test_table_is_the_per_cell_analysis_and_write_bundle_round_trips(gpu, tmp_path):
    assert len(gpu.table) == 7  # 2 variants × bs 8/16/24 + the Liger bs 32 cell
    write_bundle(gpu, tmp_path / "out/report.html", tmp_path / "out/summary.md", tmp_path / "out/table.csv")
    assert (tmp_path / "out/report.html").read_text(encoding="utf-8") == gpu.html
    assert (tmp_path / "out/summary.md").read_text(encoding="utf-8") == gpu.markdown
    table = pd.read_csv(tmp_path / "out/table.csv")
    assert list(table.columns) == list(gpu.table.columns)
    assert table["tokens_per_s_nonpad"].tolist() == pytest.approx(
        gpu.table["tokens_per_s_nonpad"].tolist(), nan_ok=True
    )


def test_cpu_run_says_liger_was_skipped_and_memory_is_missing():
    bundle = build_report(*build(cpu_scenario(), cuda=False))
    assert bundle.headline.startswith(
        "Liger was not measured: this was a CPU run. CPU numbers check the pipeline's plumbing and are not a "
        "Liger or GPU measurement (Liger's Triton kernels need a CUDA GPU, so its 2 runs were skipped). "
    )
    assert bundle.headline.endswith(
        "Not recommended at batch 4: liger: skipped (Liger kernels are Triton GPU kernels and this node has no "
        "CUDA device; the run was skipped rather than silently trained without Liger)."
    )
    assert "it is not a Liger measurement" in bundle.html
    assert "Peak GPU memory was not measured" in bundle.html
    assert "CPU run: Liger skipped" in bundle.html
    assert bundle.html.count("<img ") == 2  # throughput and throughput per step; no pair, so no loss of pairs
    assert "Loss per step of paired runs" not in bundle.html
    assert bundle.metrics["n_skipped"] == 2 and "headline_gain_pct" not in bundle.metrics


def test_headline_without_any_successful_run_and_without_any_run():
    runs = [
        Run(True, 64, 4096, status="oom"),
        Run(False, 64, 4096, status="oom"),
        Run(False, 8, 4096, status="failed"),
    ]
    bundle = build_report(*build(runs))
    assert (
        bundle.headline == "No run trained successfully (2 out of memory, 1 failed of 3 runs); see the reasons below."
    )
    assert "No variant/baseline pair" in bundle.html
    empty = build_report([], [])
    assert empty.headline == "No run results were collected." and empty.metrics["n_runs"] == 0.0


def test_headline_with_one_variant_one_repeat_and_several_sequence_lengths():
    single = build_report(*build([Run(False, 8, 256, tokens_per_s=5000.0), Run(False, 16, 256, tokens_per_s=9000.0)]))
    assert single.headline == (
        "At batch 16 the fastest variant that trained is baseline: 9,000 tokens/s (no 95% CI: one repeat); one "
        "repeat, so the ranking has no confidence interval (use n_runs >= 3). Leanest: baseline, 40.0 GiB peak "
        "reserved. Only the baseline was run, so there is no comparison."
    )
    runs = [
        Run(v, b, s, tokens_per_s=1000.0 * b * (1.2 if v else 1.0))
        for v in (True, False)
        for b in (8, 16)
        for s in (256, 512)
    ]
    runs.append(Run(True, 32, 512, mem_reserved_gb=70.0))
    runs.append(Run(False, 32, 512, status="oom"))
    bundle = build_report(*build(runs))
    assert bundle.headline.startswith(
        "At batch 16 (seq 512) the fastest variant that trained is Liger: 19,200 tokens/s (no 95% CI: one "
        "repeat), +20% vs the baseline (no 95% CI: one repeat); one repeat, so the ranking has no confidence "
        "interval (use n_runs >= 3). Leanest: baseline, 40.0 GiB peak reserved. Liger trains batch 32 (seq 512) "
        "where the baseline runs out of memory."
    )
    assert "One repeat per cell: confidence intervals are unavailable" in bundle.html
    assert "unavailable" in bundle.markdown


def test_one_name_for_the_baseline_whole_numbers_and_percent_variation():
    results, histories = build(gpu_scenario())
    for result in results:  # KFP metadata hands integers over as floats
        result["model"].update(vocab_size=512.0, context_length=4096.0)
    bundle = build_report(results, histories)
    text = re.sub(r"<[^>]+>", " ", bundle.html)
    assert text.count("stock, eager transformers") == 1  # the baseline's definition, once
    assert "vanilla" not in text
    assert re.search(r"\b512\b", text) and "512.0" not in text and "4096.0" not in text
    assert "max step CV %" in text and "step CV %" in text


def test_cpu_confidence_intervals_of_rates_never_go_below_zero():
    runs = [Run(False, 4, 128, r, tokens_per_s=rate) for r, rate in enumerate((610.0, 9660.0, 900.0))]
    cells = build_report(*build(runs, cuda=False)).table
    assert (cells["tokens_per_s_nonpad_ci_low"] >= 0).all()


def test_headline_names_the_largest_paired_batch_even_where_it_exists_at_one_sequence_length():
    """Batch 32 is paired only at seq 256; seq 1024 has longer rows but smaller paired batches."""
    speedup = {(8, 256): 1.1, (16, 256): 1.2, (32, 256): 1.4, (8, 1024): 1.5, (16, 1024): 1.6, (32, 1024): 1.7}
    runs = [
        Run(liger, batch, seq, repeat, tokens_per_s=1000.0 * batch * (speedup[batch, seq] if liger else 1.0),
            mem_reserved_gb=(0.5 if liger else 1.0) * batch * seq / 256)
        for repeat in range(2)
        for (batch, seq) in speedup
        for liger in (True, False)
        if (batch, seq, liger) != (32, 1024, False)
    ]  # fmt: skip
    runs.append(Run(False, 32, 1024, status="oom", mem_reserved_gb=None))
    bundle = build_report(*build(runs))
    assert bundle.headline.startswith("At batch 32 (seq 256) the fastest variant that trained is Liger: 44,800")
    assert "+40% vs the baseline" in bundle.headline
    assert "Liger trains batch 32 (seq 1024) where the baseline runs out of memory." in bundle.headline
    assert bundle.metrics["gain_pct_liger_vs_baseline_bs32_seq256"] == pytest.approx(40.0)
    assert bundle.metrics["gain_pct_liger_vs_baseline_bs16_seq1024"] == pytest.approx(60.0)


def test_headline_frontier_names_the_largest_batch_only_liger_trained():
    runs = [Run(liger, 8, 512, tokens_per_s=1000.0 * (1.3 if liger else 1.0)) for liger in (True, False)]
    for batch in (16, 24):
        runs += [Run(True, batch, 512), Run(False, batch, 512, status="oom")]
    headline = build_report(*build(runs)).headline
    assert headline.startswith("At batch 8 the fastest variant that trained is Liger: 1,300 tokens/s")
    assert "+30% vs the baseline" in headline and "Liger trains batch 24 where the baseline runs out" in headline


def test_diverged_runs_are_named_with_their_step_and_a_lone_divergence_makes_the_headline():
    from test_analysis import diverging_scenario

    bundle = build_report(*build(diverging_scenario()))
    # Liger's batch-8 cell lost a repeat, and both batch-16 cells did: only the baseline at batch 8 trained throughout.
    assert bundle.headline.startswith("At batch 8 the fastest variant that trained is baseline: ")
    assert "Not recommended at batch 8: liger: partial (loss nan at step 5" in bundle.headline
    assert bundle.headline.endswith(
        " Liger diverged where the baseline trained (batch 8 repeat 1): the variants differ numerically."
    )
    assert bundle.metrics["n_diverged"] == 3 and bundle.metrics["success_ratio"] == pytest.approx(5 / 8)
    gain = 100 * (liger_rate(16, 1) / baseline_rate(16, 1) - 1)
    assert bundle.metrics["gain_pct_liger_vs_baseline_bs16_seq512"] == pytest.approx(gain)
    text = re.sub(r"<[^>]+>", " ", bundle.html)
    assert "3 of 8 runs diverged (their loss became NaN or infinite; training stopped at that step)" in text
    assert (
        "Diverged runs are left out of every gain, the headline and loss parity; the first non-finite loss: "
        "liger-bs8-seq512-r1 at step 5, baseline-bs16-seq512-r0 at step 5, liger-bs16-seq512-r0 at step 5." in text
    )
    problems = bundle.markdown.split("## Runs that did not finish")[1]
    assert "| liger-bs8-seq512-r1 | Liger | 8 | 512 | 1 | diverged | loss nan at step 5 of max\\_steps=20" in problems
    assert "1e+09" not in text and "1,000,000,000" not in text.split("All runs")[0]  # the absurd rate: runs table only


def test_a_grid_whose_every_run_diverged_says_so():
    runs = [Run(liger, 8, 512, status="diverged") for liger in (True, False)]
    bundle = build_report(*build(runs))
    assert bundle.headline == "No run trained successfully (2 diverged of 2 runs); see the reasons below."


def test_every_legend_is_outside_every_panel():
    """A legend inside a panel hid a data point: each figure now has one legend, above its panels."""
    from liger_bench.analyse.analysis import analyze_results
    from liger_bench.render.figures import _bars, _curve_runs, _curves

    analysis = analyze_results(*build(gpu_scenario()))
    figures = {
        "throughput": _bars(analysis, "tokens_per_s_nonpad", "tokens/s"),
        "memory": _bars(analysis, "peak_mem_reserved_gb", "GiB", capacity=79.19),
        "loss": _curves(analysis, _curve_runs(analysis, paired=True), "loss", "loss", False),
        "steps": _curves(analysis, _curve_runs(analysis, paired=False), "tokens_per_s_nonpad", "tokens/s", True),
    }
    for name, fig in figures.items():
        fig.draw_without_rendering()
        (legend,) = fig.legends
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert panels and all(ax.get_legend() is None for ax in panels), name
        box = legend.get_window_extent()
        assert not any(box.overlaps(ax.get_window_extent()) for ax in panels), name
        labels = [text.get_text() for text in legend.get_texts()]
        assert [label for label in labels if label in ("baseline", "Liger")] == ["baseline", "Liger"], name


def test_the_figures_by_batch_size_and_of_the_search_draw_the_variants_and_say_where_the_arms_are():
    """A kernel ablation's arms (up to ten) would crowd the bars and the probes: not drawn, the caption says where."""
    from synthetic_results import ablation_scenario, frontier_searches

    from liger_bench.analyse.analysis import analyze_results
    from liger_bench.render.figures import _bars, _frontier_probes, draw_figures

    searches = frontier_searches()
    arm_search = {**searches[1], "variant": "liger.rope"}  # find_frontier searches every arm too
    analysis = analyze_results(*build(ablation_scenario()), [*searches, arm_search])
    assert {"liger.rope", "liger.no_swiglu"} <= set(analysis.cells["variant"])
    assert "liger.rope" in set(analysis.probes["variant"])
    (panel,) = _bars(analysis, "tokens_per_s_nonpad", "tokens/s").axes
    assert len([bar for bar in panel.patches if bar.get_height() > 0]) == 2  # batch 16: baseline and Liger
    (panel,) = _frontier_probes(analysis).axes
    # Matplotlib leaves a line without a label "_child<n>": the out-of-memory crosses, in their variant's colour.
    labelled = {line.get_label() for line in panel.get_lines() if not line.get_label().startswith("_")}
    assert labelled == {"baseline", "liger", "GPU memory 79.19 GiB", "out of memory"}
    captions = [drawing.caption for drawing in draw_figures(analysis)]
    where = "the kernel-ablation arms are in the kernel ablation's table and figure"
    assert captions[:2] == [
        f"Throughput vs batch size (95% CI over repeats; {where})",
        f"Peak reserved GPU memory vs batch size ({where})",
    ]
    assert captions[4] == (
        "Memory frontier search: peak reserved GPU memory of every probe vs its batch size "
        "(the kernel-ablation arms are in the table of searches above)"
    )
    plain = [drawing.caption for drawing in draw_figures(analyze_results(*build(gpu_scenario()), searches))]
    assert [plain[0], plain[1], plain[4]] == [
        "Throughput vs batch size (95% CI over repeats)",
        "Peak reserved GPU memory vs batch size",
        "Memory frontier search: peak reserved GPU memory of every probe vs its batch size",
    ]


def _drawn_bars(ax) -> list[tuple[float, float, tuple[float, float] | None]]:
    """(centre, height, 95% interval or None) of each bar drawn in ``ax``, in drawing order (no legend proxy)."""
    from matplotlib.container import BarContainer

    bars = []
    for container in ax.containers:
        if not isinstance(container, BarContainer) or container.patches[0].get_width() == 0:
            continue
        bar, interval = container.patches[0], None
        if container.errorbar:
            (segment,) = container.errorbar.lines[2][0].get_segments()
            interval = (segment[0][1], segment[1][1])
        bars.append((bar.get_x() + bar.get_width() / 2, bar.get_height(), interval))
    return bars


# The attribution figure's series: per panel (tokens/s, allocated memory), the column of each bar of a kernel
# (alone, left out) and of the last group, all kernels (the sum of the singles, all together).
FIGURE_COLUMNS = (
    (("alone_gain_pct", "left_out_loss_pct"), ("sum_of_singles_gain_pct", "all_kernels_gain_pct")),
    (("alone_mem_reduction_pct", "left_out_mem_increase_pct"),
     ("sum_of_singles_mem_reduction_pct", "all_kernels_mem_reduction_pct")),
)  # fmt: skip


def test_the_attribution_figure_draws_speed_and_memory_per_kernel_and_the_singles_sum_against_all_kernels():
    """Two panels per cell, tokens/s then memory; per kernel its bars alone and left out, then "all kernels".

    Batch 16 has three repeats (every bar with its interval but the memory sums, which have none); batch 8
    one (no interval at all).
    """
    import dataclasses

    from synthetic_results import ablation_scenario

    from liger_bench.analyse.analysis import analyze_results
    from liger_bench.render.figures import _attribution_bars

    runs = ablation_scenario()
    runs += [dataclasses.replace(run, batch_size=8) for run in runs if run.repeat == 0]
    analysis = analyze_results(*build(runs))
    fig = _attribution_bars(analysis)
    axes = fig.axes
    assert len(axes) == 4
    for cell, batch in enumerate((8, 16)):
        kernels = analysis.attribution[analysis.attribution["batch_size"] == batch].to_dict("records")
        (whole,) = analysis.interaction[analysis.interaction["batch_size"] == batch].to_dict("records")
        for panel, ax in enumerate(axes[2 * cell : 2 * cell + 2]):
            what = ("tokens/s: % gained alone", "allocated memory: % saved alone")[panel]
            assert ax.get_title().startswith(what) and ax.get_title().endswith(f"(batch {batch}, sequence length 512)")
            groups = [(row, FIGURE_COLUMNS[panel][0]) for row in kernels] + [(whole, FIGURE_COLUMNS[panel][1])]
            expected = []
            for x, (row, columns) in enumerate(groups):
                for j, column in enumerate(columns):
                    low, high = row.get(f"{column}_ci_low", math.nan), row.get(f"{column}_ci_high", math.nan)
                    interval = (pytest.approx(low), pytest.approx(high)) if math.isfinite(low) else None
                    expected.append((pytest.approx(x - 0.2 + 0.4 * j), pytest.approx(row[column]), interval))
            assert all(math.isfinite(row[column]) and row[column] != 0 for row, cs in groups for column in cs)
            assert _drawn_bars(ax) == expected
            with_interval = sum(interval is not None for _, _, interval in _drawn_bars(ax))
            assert with_interval == (0 if batch == 8 else 2 * len(kernels) + 2 * (panel == 0))
            assert [label.get_text() for label in ax.get_xticklabels()] == [row["kernel"] for row in kernels] + [
                "all kernels"
            ]
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend == [
        "alone, against the baseline",
        "left out of all kernels, against Liger",
        "sum of the single kernels",
        "all kernels together",
    ]


def test_a_leave_one_out_figure_has_no_alone_bars_no_all_kernels_group_and_no_legend_for_them():
    from synthetic_results import ablation_scenario

    from liger_bench.analyse.analysis import analyze_results
    from liger_bench.render.figures import _attribution_bars

    runs = [run for run in ablation_scenario() if not run.ablation or run.ablation.startswith("no_")]
    analysis = analyze_results(*build(runs))
    fig = _attribution_bars(analysis)
    kernels = list(analysis.attribution["kernel"])
    for panel, ax in enumerate(fig.axes):
        column = FIGURE_COLUMNS[panel][0][1]
        expected = [
            (pytest.approx(x + 0.2), pytest.approx(value)) for x, value in enumerate(analysis.attribution[column])
        ]
        assert [(centre, height) for centre, height, _ in _drawn_bars(ax)] == expected
        assert [label.get_text() for label in ax.get_xticklabels()] == kernels
    assert [text.get_text() for text in fig.legends[0].get_texts()] == ["left out of all kernels, against Liger"]


def test_without_a_repeat_that_trained_every_single_arm_the_figure_has_no_all_kernels_group():
    import dataclasses

    from synthetic_results import ablation_scenario

    from liger_bench.analyse.analysis import analyze_results
    from liger_bench.render.figures import _attribution_bars

    failed = {"status": "failed", "reason": "RuntimeError: boom"}
    runs = [dataclasses.replace(run, **failed) if run.ablation == "rope" else run for run in ablation_scenario()]
    analysis = analyze_results(*build(runs))
    assert list(analysis.interaction["n_repeats"]) == [0]
    fig = _attribution_bars(analysis)
    for ax in fig.axes:
        assert [label.get_text() for label in ax.get_xticklabels()] == list(analysis.attribution["kernel"])
        assert len(_drawn_bars(ax)) == 2 * len(analysis.attribution) - 1  # rope alone has no pair
    assert [text.get_text() for text in fig.legends[0].get_texts()] == [
        "alone, against the baseline",
        "left out of all kernels, against Liger",
    ]


def test_the_loss_figure_draws_paired_cells_only_and_is_left_out_without_a_pair():
    from liger_bench.analyse.analysis import analyze_results
    from liger_bench.render.figures import _curve_runs

    analysis = analyze_results(*build(gpu_scenario()))
    assert _curve_runs(analysis, paired=True) == [(16, 512, 1), (8, 512, 0)]  # batch 24 has no baseline run
    assert (24, 512, 0) in _curve_runs(analysis, paired=False)
    single = build_report(*build([Run(False, 8, 256), Run(False, 16, 256)]))
    assert "Loss per step" not in single.html and single.html.count("<img ") == 3  # throughput, memory, steps


def test_empty_settings_read_a_dash_and_a_peak_of_zero_says_what_it_became():
    gpu_text = html.unescape(re.sub(r"<[^>]+>", " ", build_report(*build(gpu_scenario())).html))
    assert re.search(r"peak_tflops\s+989 \(0 given: looked up from the GPU's name\)", gpu_text)
    assert re.search(r"attn_implementation\s+–\s", gpu_text) and re.search(r"architecture\s+–\s", gpu_text)
    assert "- architecture: –\n" in build_report(*build(gpu_scenario())).markdown
    cpu = build_report(*build(cpu_scenario(), cuda=False))
    cpu_text = html.unescape(re.sub(r"<[^>]+>", " ", cpu.html))
    assert re.search(r"peak_tflops\s+unknown, so MFU is not reported", cpu_text)
    assert re.search(r"gpu_name\s+–\s", cpu_text) and "peak_tflops  0 " not in cpu_text
    assert '<td class="text wrap"></td>' not in cpu.html


def test_the_embedded_model_is_named_a_tiny_random_phi3_in_the_caveats_and_the_model_section():
    from liger_bench.inputs.embedded import describe_preset

    results, histories = build(cpu_scenario(), cuda=False)
    for result in results:
        result["model"]["embedded"] = describe_preset("tiny")
    bundle = build_report(results, histories)
    assert (
        "The model is a tiny random Phi-3 (liger-bench's embedded model, preset 'tiny': 2 layers, hidden size 64, "
        "random weights): its numbers check the pipeline and say nothing about fine-tuning a real model."
        in html.unescape(bundle.html)
    )
    assert "embedded model" not in build_report(*build(gpu_scenario())).html
