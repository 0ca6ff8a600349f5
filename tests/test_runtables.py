"""The two typed tables every later table is built from: one row per run, one per recorded step."""

from __future__ import annotations

import math
import random

import pytest
from synthetic_results import Run, build, make_run

from liger_bench.analyse.runtables import RUN_COLUMNS, RUN_METRICS, runs_table, steps_table
from liger_bench.records import STEP_METRICS, RunResult, StepHistory


def parsed(results: list[dict]) -> list[RunResult]:
    return [RunResult.from_dict(r) for r in results]


def test_runs_come_by_sequence_length_batch_variant_baseline_first_and_repeat():
    runs = [
        Run(liger, batch, seq, repeat, torch_compile=compiled)
        for seq in (1024, 256)
        for batch in (16, 4)
        for repeat in (1, 0)
        for liger in (True, False)
        for compiled in (True, False)
    ]
    results, _ = build(runs)
    random.Random(3).shuffle(results)
    keys = runs_table(parsed(results))["run_key"].tolist()
    order = ("baseline", "liger", "compile", "liger-compile")
    assert keys == [
        f"{variant}-bs{batch}-seq{seq}-r{repeat}"
        for seq in (256, 1024)
        for batch in (4, 16)
        for variant in order
        for repeat in (0, 1)
    ]


def test_a_run_row_takes_each_aggregate_by_its_name_and_its_axes_from_kfp_floats():
    result, _ = make_run(Run(True, 8, 512, repeat=2, tokens_per_s=4321.0, mem_reserved_gb=20.0, gpus=4))
    result["config"].update(per_device_train_batch_size=8.0, max_seq_length=512.0, repeat=2.0, nodes_per_run=2.0)
    result["config"]["warmup_steps_to_skip"] = 3.0
    result["metrics"].update(oom_peak_mem_reserved_gb=True, steady_state="sideways", attn_implementation="eager")
    result["data"]["n_truncated"] = 7
    [row] = runs_table(parsed([result])).to_dict("records")
    assert list(row) == RUN_COLUMNS
    assert (row["batch_size"], row["seq_len"], row["repeat"], row["warmup_steps_to_skip"]) == (8, 512, 2, 3)
    assert (row["variant"], row["gpus"], row["n_truncated"], row["attn_implementation"]) == ("liger", 8, 7, "eager")
    for column, name in RUN_METRICS.items():
        value = result["metrics"].get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value is not None:
            assert row[column] == pytest.approx(float(value)), column
        else:
            assert math.isnan(row[column]), column  # missing, None or a bool: not a number
    assert row["tokens_per_s_nonpad"] == pytest.approx(4321.0)
    assert row["step_time_s"] == result["metrics"]["median_step_time_s"] != result["metrics"]["mean_step_time_s"]
    assert row["mfu"] == result["metrics"]["median_mfu"]
    assert row["steady_state"] == "unknown"  # not one of the three verdicts


def test_steps_are_measured_past_warmup_when_their_shape_is_known_and_nothing_compiled():
    """20 steps, 3 warm-up; a compile in step 1 and step 5, a new shape in step 7: 20 - 3 - 1 - 1 = 15 measured."""
    compiled, history = make_run(Run(False, 8, 512, torch_compile=True, compile_s=5.0, first_shape_step=7))
    cpu_result, cpu_history = make_run(Run(False, 4, 128), cuda=False)
    stranger = {"run_key": "not-a-result", "warmup_steps_to_skip": 0, "steps": history["steps"]}
    runs = runs_table(parsed([compiled, cpu_result]))
    histories = [StepHistory.from_dict(h) for h in (history, cpu_history, stranger)]
    steps = steps_table(runs, histories)
    assert sorted(set(steps["run_key"])) == sorted([compiled["run_key"], cpu_result["run_key"]])
    mine = steps[steps["run_key"] == compiled["run_key"]]
    assert mine.loc[mine["measured"], "step"].tolist() == [4, 6, *range(8, 21)]
    assert (mine["variant"].unique().tolist(), mine["batch_size"].unique().tolist()) == (["compile"], [8])
    cpu = steps[steps["run_key"] == cpu_result["run_key"]]
    assert cpu["measured"].sum() == 17
    for metric in STEP_METRICS:
        assert steps[metric].dtype == float, metric
    assert cpu["peak_mem_reserved_gb"].isna().all() and cpu["mfu"].isna().all()
    assert cpu["loss"].tolist() == pytest.approx([s["loss"] for s in cpu_history["steps"]])
