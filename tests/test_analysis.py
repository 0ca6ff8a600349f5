import math

import pandas as pd
import pytest
from synthetic_results import (
    JITTER,
    Run,
    baseline_memory,
    baseline_rate,
    build,
    cpu_scenario,
    four_variant_scenario,
    gpu_scenario,
    liger_memory,
    liger_rate,
)

from liger_bench.analyse.analysis import analyze_results, check_success_ratio, payback_steps, success_ratio
from liger_bench.analyse.intervals import mean_ci, t_quantile_975


@pytest.fixture(scope="module")
def gpu():
    return analyze_results(*build(gpu_scenario()))


def row(frame: pd.DataFrame, **where) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for column, value in where.items():
        mask &= frame[column] == value
    assert mask.sum() == 1, f"expected one row for {where}, got {mask.sum()}"
    return frame[mask].iloc[0]


def test_t_quantiles_match_published_values():
    assert t_quantile_975(1) == 12.706
    assert t_quantile_975(2) == 4.303
    assert t_quantile_975(30) == 2.042
    assert t_quantile_975(60) == pytest.approx(2.000, abs=1e-3)
    assert t_quantile_975(120) == pytest.approx(1.980, abs=1e-3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile_975(0)


def test_mean_ci_of_one_value_has_no_interval():
    mean, low, high = mean_ci([5.0])
    assert mean == 5.0 and math.isnan(low) and math.isnan(high)
    assert math.isnan(mean_ci([])[0])
    assert mean_ci([1.0, 3.0]) == pytest.approx((2.0, 2.0 - 12.706, 2.0 + 12.706))


def test_paired_gain_and_its_interval_match_a_hand_computation(gpu):
    ratios = [liger_rate(16, r) / baseline_rate(16, r) - 1 for r in range(3)]
    mean = sum(ratios) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in ratios) / 2)
    gain = row(gpu.gains, batch_size=16)
    assert gain.n_pairs == 3
    assert gain.gain_pct == pytest.approx(100 * mean)
    assert gain.gain_ci_low_pct == pytest.approx(100 * (mean - 4.303 * sd / math.sqrt(3)))
    assert gain.gain_ci_high_pct == pytest.approx(100 * (mean + 4.303 * sd / math.sqrt(3)))
    reserved = [liger_memory(16, r) / baseline_memory(16, r) for r in range(3)]
    assert gain.mem_reserved_reduction_pct == pytest.approx(100 * (1 - sum(reserved) / 3))
    # Liger's allocator keeps 0.8 of its reserve in use, the baseline's 0.9.
    assert gain.mem_allocated_reduction_pct == pytest.approx(100 * (1 - sum(reserved) / 3 * 0.8 / 0.9))


def test_a_failed_repeat_leaves_its_pair_out(gpu):
    gain = row(gpu.gains, batch_size=8)
    expected = sum(liger_rate(8, r) / baseline_rate(8, r) - 1 for r in (0, 1)) / 2
    assert (gain.variant, gain.against) == ("liger", "baseline")
    assert (gain.n_pairs, gain.variant_outcome, gain.against_outcome) == (2, "partial", "ok")
    assert gain.gain_pct == pytest.approx(100 * expected)


def test_cell_throughput_is_the_mean_over_repeats_with_memory_peaks(gpu):
    cell = row(gpu.cells, variant="baseline", batch_size=16)
    assert (cell.n_runs, cell.n_ok, cell.outcome) == (3, 3, "ok")
    assert cell.tokens_per_s_nonpad == pytest.approx(sum(baseline_rate(16, r) for r in range(3)) / 3)
    assert cell.tokens_per_s_nonpad_ci_low < cell.tokens_per_s_nonpad < cell.tokens_per_s_nonpad_ci_high
    assert cell.tokens_per_s_padded == pytest.approx(cell.tokens_per_s_nonpad / 0.8, rel=1e-3)
    assert cell.peak_mem_reserved_gb == pytest.approx(baseline_memory(16, 2))  # the last repeat's, the largest
    assert cell.peak_mem_allocated_gb == pytest.approx(0.9 * baseline_memory(16, 2))
    assert cell.mfu > 0
    oom = row(gpu.cells, variant="baseline", batch_size=24)
    assert (oom.n_oom, oom.outcome) == (3, "oom") and math.isnan(oom.tokens_per_s_nonpad)


def test_oom_frontier(gpu):
    liger, baseline = row(gpu.frontier, variant="liger"), row(gpu.frontier, variant="baseline")
    assert (liger.largest_ok_batch, liger.smallest_oom_batch is pd.NA) == (24, True)
    assert (baseline.largest_ok_batch, baseline.smallest_oom_batch) == (16, 24)


def test_frontier_and_cell_memory_over_several_oom_batches_and_uneven_repeats():
    runs = [Run(False, 8, 256, repeat, mem_reserved_gb=gb) for repeat, gb in enumerate((30.0, 50.0, 40.0))]
    runs += [Run(False, batch, 256, status="oom") for batch in (16, 24, 32)]
    analysis = analyze_results(*build(runs))
    frontier = row(analysis.frontier, variant="baseline")
    assert (frontier.largest_ok_batch, frontier.smallest_oom_batch) == (8, 16)
    assert row(analysis.cells, batch_size=8).peak_mem_reserved_gb == 50.0


@pytest.mark.parametrize(("drift", "passed"), [(0.019, True), (0.021, False)])
def test_parity_holds_to_the_tolerance_and_not_beyond(drift, passed):
    results, histories = build([Run(True, 8, 256, loss_scale=1 + drift), Run(False, 8, 256)])
    [pair] = analyze_results(results, histories, parity_tolerance=0.02).parity.itertuples()
    assert pair.max_rel_diff == pytest.approx(drift) and bool(pair.passed) is passed


def test_parity_flags_the_drifting_pair_and_only_it(gpu):
    assert len(gpu.parity) == 5  # 3 repeats × bs 16, 2 × bs 8 (one Liger run failed), none at bs 24
    failing = gpu.parity[gpu.parity["passed"] == False]  # noqa: E712
    assert failing[["batch_size", "repeat", "variant_run"]].values.tolist() == [[16, 1, "liger-bs16-seq512-r1"]]
    assert failing.iloc[0].max_rel_diff == pytest.approx(0.05)
    assert (gpu.parity["n_steps_compared"] == 17).all()  # 20 steps - 3 warm-up
    relaxed = analyze_results(*build(gpu_scenario()), parity_tolerance=0.06)
    assert relaxed.parity["passed"].all()


def test_parity_ignores_warmup_steps():
    results, histories = build([Run(True, 8, 256), Run(False, 8, 256)])
    liger_history = next(h for h in histories if h["run_key"].startswith("liger"))
    for step in liger_history["steps"][:3]:
        step["loss"] *= 2
    parity = analyze_results(results, histories).parity
    assert parity.iloc[0].passed and parity.iloc[0].max_rel_diff == pytest.approx(0.0)


def test_problems_list_every_run_that_did_not_train_with_its_reason(gpu):
    assert sorted(gpu.problems["status"]) == ["failed", "failed", "oom", "oom", "oom"]
    failed = row(gpu.problems, status="failed", batch_size=8)
    assert (failed.run_key, failed.reason) == ("liger-bs8-seq512-r2", "RuntimeError: NCCL watchdog timeout")


def test_histories_join_by_run_key_in_any_order(gpu):
    per_run = gpu.steps.groupby("run_key").size().to_dict()
    assert per_run.pop("liger-bs8-seq512-r2") == per_run.pop("liger-bs24-seq512-r2") == 2  # failed after 2 steps
    assert set(per_run.values()) == {20} and len(per_run) == 13
    results, histories = build([Run(True, 8, 256), Run(False, 8, 256)])
    alone = analyze_results(results, histories[:1])
    assert set(alone.steps["run_key"]) == {histories[0]["run_key"]}


def test_cpu_run_with_liger_skipped():
    analysis = analyze_results(*build(cpu_scenario(), cuda=False))
    assert set(analysis.gains["variant_outcome"]) == {"skipped"}
    assert (analysis.gains["n_pairs"] == 0).all() and analysis.parity.empty
    assert analysis.cells["peak_mem_reserved_gb"].isna().all()
    assert row(analysis.frontier, variant="liger").largest_ok_batch is pd.NA
    assert row(analysis.frontier, variant="baseline").largest_ok_batch == 4
    assert math.isnan(row(analysis.cells, variant="baseline", batch_size=4).tokens_per_s_nonpad_ci_low)


def test_zero_ok_runs_and_no_runs_at_all():
    analysis = analyze_results(*build([Run(True, 64, 4096, status="oom"), Run(False, 64, 4096, status="failed")]))
    assert set(analysis.cells["outcome"]) == {"oom", "failed"}
    assert analysis.parity.empty and analysis.gains.iloc[0].n_pairs == 0
    empty = analyze_results([], [])
    assert empty.cells.empty and empty.gains.empty and "gain_pct" in empty.gains.columns


def test_only_one_variant():
    analysis = analyze_results(*build([Run(False, 8, 256, r) for r in range(3)]))
    assert analysis.gains.empty  # nothing to compare with
    assert analysis.parity.empty and list(analysis.frontier["variant"]) == ["baseline"]


def test_kfp_float_axes_are_restored_and_bad_input_is_named():
    results, histories = build([Run(False, 8, 256)])
    results[0]["config"]["per_device_train_batch_size"] = 8.0
    assert analyze_results(results, histories).runs.iloc[0].batch_size == 8
    with pytest.raises(ValueError, match="duplicate run_key.*baseline-bs8-seq256-r0"):
        analyze_results(results * 2, histories)
    del results[0]["config"]["max_seq_length"]
    with pytest.raises(ValueError, match="baseline-bs8-seq256-r0"):
        analyze_results(results, histories)
    with pytest.raises(ValueError, match="parity_tolerance"):
        analyze_results([], [], parity_tolerance=-0.1)


def test_success_ratio_is_enforced_with_a_clear_message():
    analysis = analyze_results(*build(gpu_scenario()))
    assert success_ratio(analysis) == pytest.approx(13 / 18)
    assert check_success_ratio(analysis, 0.7) == pytest.approx(13 / 18)
    with pytest.raises(
        ValueError, match=r"success ratio 0\.72 \(13 of 18 runs ok; 3 oom, 2 failed.*min_success_ratio=0\.9"
    ):
        check_success_ratio(analysis, 0.9)
    with pytest.raises(ValueError, match="min_success_ratio must be in"):
        check_success_ratio(analysis, 1.5)
    with pytest.raises(ValueError, match="0 of 0 runs"):
        check_success_ratio(analyze_results([], []), 0.1)


def test_runs_of_several_gpus_show_their_gpus_and_throughput_per_gpu():
    results, histories = build(gpu_scenario())
    for result in results:
        result["config"].update(gpus_per_run=4, nodes_per_run=2)
    analysis = analyze_results(results, histories)
    cell = row(analysis.cells, variant="baseline", batch_size=16)
    assert cell.gpus == 8
    assert cell.tokens_per_s_nonpad_per_gpu == pytest.approx(cell.tokens_per_s_nonpad / 8)
    assert set(analysis.runs["gpus"]) == {8}


def test_results_from_before_gpus_per_run_count_one_gpu(gpu):
    assert set(gpu.runs["gpus"]) == {1} and set(gpu.cells["gpus"]) == {1}


def diverging_scenario() -> list[Run]:
    """Batches 8 and 16, two repeats. Liger bs8 r1 diverged where its baseline trained; both variants of bs16 r0
    diverged. Diverged runs report an absurd rate: any trace of it in a gain or a cell would show."""
    diverged = {(True, 8, 1), (True, 16, 0), (False, 16, 0)}
    return [
        Run(liger, batch, 512, repeat, status="diverged", tokens_per_s=1e9)
        if (liger, batch, repeat) in diverged
        else Run(liger, batch, 512, repeat, tokens_per_s=(liger_rate if liger else baseline_rate)(batch, repeat))
        for batch in (8, 16)
        for repeat in (0, 1)
        for liger in (True, False)
    ]


def test_diverged_runs_are_counted_listed_with_their_step_and_left_out_of_every_gain():
    analysis = analyze_results(*build(diverging_scenario()))
    gain8, gain16 = row(analysis.gains, batch_size=8), row(analysis.gains, batch_size=16)
    assert (gain8.n_pairs, gain8.variant_outcome, gain8.against_outcome) == (1, "partial", "ok")
    assert gain8.gain_pct == pytest.approx(100 * (liger_rate(8, 0) / baseline_rate(8, 0) - 1))
    assert (gain16.n_pairs, gain16.variant_outcome) == (1, "partial")
    liger8 = row(analysis.cells, variant="liger", batch_size=8)
    assert (liger8.n_ok, liger8.n_diverged, liger8.n_runs) == (1, 1, 2)
    assert liger8.tokens_per_s_nonpad == pytest.approx(liger_rate(8, 0))
    assert set(analysis.parity["variant_run"]) == {"liger-bs8-seq512-r0", "liger-bs16-seq512-r1"}
    divergences = analysis.divergences.set_index("run_key")
    assert divergences["pair_status"].to_dict() == {
        "liger-bs8-seq512-r1": "ok",
        "baseline-bs16-seq512-r0": "diverged",
        "liger-bs16-seq512-r0": "diverged",
    }
    assert (divergences["first_nonfinite_loss_step"] == 5).all()
    problems = analysis.problems.set_index("run_key")
    assert problems.loc["liger-bs8-seq512-r1", "status"] == "diverged"
    assert problems.loc["liger-bs8-seq512-r1", "reason"].startswith("loss nan at step 5 of max_steps=20")
    assert success_ratio(analysis) == pytest.approx(5 / 8)
    with pytest.raises(ValueError, match=r"5 of 8 runs ok; 0 oom, 0 failed, 0 skipped, 3 diverged\)"):
        check_success_ratio(analysis, 0.7)


def test_a_cell_whose_every_run_diverged_has_outcome_diverged_and_no_rate():
    analysis = analyze_results(*build([Run(False, 8, 512, status="diverged"), Run(True, 8, 512)]))
    baseline = row(analysis.cells, variant="baseline")
    assert baseline.outcome == "diverged" and math.isnan(baseline.tokens_per_s_nonpad)
    assert row(analysis.gains, batch_size=8).n_pairs == 0
    assert analysis.divergences["pair_status"].tolist() == ["ok"]


def test_every_variant_is_compared_with_the_baseline_and_liger_with_compile_head_to_head():
    analysis = analyze_results(
        *build(four_variant_scenario(status="failed", reason="AcceleratorError: illegal memory access"))
    )
    pairs = analysis.gains[["variant", "against"]].values.tolist()
    assert pairs == [
        ["liger", "baseline"],
        ["compile", "baseline"],
        ["liger-compile", "baseline"],
        ["liger", "compile"],
    ]
    assert row(analysis.gains, variant="compile", against="baseline").gain_pct == pytest.approx(40.0)
    assert row(analysis.gains, variant="liger", against="compile").gain_pct == pytest.approx(100 * (13 / 14 - 1))
    failed = row(analysis.gains, variant="liger-compile")
    assert (failed.variant_outcome, failed.n_pairs) == ("failed", 0)
    assert set(analysis.parity["variant"]) == {"liger", "compile"}  # each against its baseline run


def test_compile_steps_are_kept_out_of_the_aggregates_and_their_cost_is_paid_back_at_the_gain():
    analysis = analyze_results(*build(four_variant_scenario(compile_s=30.0)))
    compiled = row(analysis.cells, variant="compile")
    nonpad = int(8 * 256 * 0.8)
    # The rate is unchanged by the 30 s and 15 s compile steps: they are not measured steps.
    assert compiled.tokens_per_s_nonpad == pytest.approx(1400.0 * 1.01)
    assert (compiled.n_compile_steps, compiled.recompiles) == (2, 1)
    # Step 1 (warm-up, 3x the nominal time) and step 5 (1x) each beyond the measured steps' median (JITTER x
    # nominal), plus the compile seconds.
    rates = [1400.0 * (1 + 0.01 * r) for r in range(3)]
    expected = sum((4 - 2 * JITTER) * nonpad / rate + 45.0 for rate in rates) / 3
    assert compiled.compile_time_s == pytest.approx(expected)
    # The cell's step time: the median over repeats (repeat 1's) of each run's median step time.
    assert compiled.step_time_s == pytest.approx(JITTER * nonpad / rates[1])
    gain = row(analysis.gains, variant="compile", against="baseline")
    assert gain.gain_pct == pytest.approx(40.0)
    assert gain.payback_steps == pytest.approx(expected / (JITTER * nonpad / rates[1] * 0.40))
    assert math.isnan(row(analysis.gains, variant="liger", against="baseline").payback_steps)  # nothing to pay back


def test_payback_arithmetic():
    assert payback_steps(60.0, 0.5, 0.2) == pytest.approx(600.0)  # 0.1 s saved per step
    assert payback_steps(60.0, 0.5, 0.0) == math.inf and payback_steps(60.0, 0.5, -0.1) == math.inf
    assert math.isnan(payback_steps(math.nan, 0.5, 0.2))
    assert payback_steps(-1.0, 0.5, 0.2) == 0.0  # a compile step faster than steady costs nothing


def test_the_recommendation_never_names_an_unsteady_failed_or_skipped_cell():
    """Liger + compile is the fastest on paper in each case, but failed, was skipped, or never settled."""
    for changes, verdict in (
        ({"status": "failed", "reason": "AcceleratorError: illegal memory access"}, "failed"),
        ({"status": "skipped", "reason": "no CUDA"}, "skipped"),
        ({"tokens_per_s": 5000.0}, "unsteady"),
    ):
        runs = four_variant_scenario(**changes)
        results, histories = build(runs)
        if verdict == "unsteady":  # its second half is 20% slower than its first
            for history in histories:
                if history["run_key"].startswith("liger-compile"):
                    for step in history["steps"][12:]:
                        step["step_time_s"] *= 1.2
            results = [_reaggregated(r, histories) for r in results]
        [advice] = analyze_results(results, histories).recommendations.itertuples()
        assert advice.fastest == "compile" and advice.leanest == "liger"
        assert advice.excluded.startswith(f"liger-compile: {verdict}"), advice.excluded
        assert "liger-compile" not in (advice.fastest, advice.leanest, *advice.fastest_ties.split(", "))


def test_variants_whose_intervals_overlap_are_indistinguishable_and_one_repeat_is_unranked():
    runs = four_variant_scenario(status="failed")
    for run in runs:
        if run.torch_compile and not run.use_liger:
            run.tokens_per_s = 1300.0 * (1 + 0.01 * run.repeat)  # compile now as fast as Liger
    [advice] = analyze_results(*build(runs)).recommendations.itertuples()
    assert advice.ranked and advice.fastest_ties.split(", ")[0] in {"liger", "compile"}
    single = analyze_results(*build([r for r in four_variant_scenario(status="failed") if r.repeat == 0]))
    [advice] = single.recommendations.itertuples()
    assert (advice.fastest, advice.ranked, advice.fastest_ties) == ("compile", False, "")


def _reaggregated(result: dict, histories: list[dict]) -> dict:
    """``result`` with its aggregates recomputed from its (edited) history."""
    from liger_bench.measure.metrics import aggregate

    steps = next(h["steps"] for h in histories if h["run_key"] == result["run_key"])
    return {**result, "metrics": {**result["metrics"], **aggregate(steps)}}
