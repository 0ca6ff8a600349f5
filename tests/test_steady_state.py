"""Variable-length measurement: padded shapes, first-shape steps, the steady-state test, packing."""

import math
import random

import pytest
from synthetic_results import Run, make_run

from liger_bench.analyse.narrative import make_headline
from liger_bench.measure.metrics import STEADY_DRIFT_TOLERANCE, StepMetricsCallback, aggregate, steady_state
from liger_bench.measure.trainer import train_measured
from liger_bench.measure.training import load_model, pack, run_training
from liger_bench.plan.config import TrainConfig
from liger_bench.render.report import build_report

PAD_ID = 2


def _rows(lengths, prompt=2):
    return [
        {"input_ids": [10 + (i + j) % 50 for j in range(n)], "labels": [-100] * prompt + [11] * (n - prompt)}
        for i, n in enumerate(lengths)
    ]


def _train(embedded_assets, rows, **overrides):
    config = TrainConfig(**{"per_device_train_batch_size": 2, "warmup_steps_to_skip": 1, **overrides})
    callback = StepMetricsCallback(config.warmup_steps_to_skip)
    train_measured(config, load_model(str(embedded_assets[0]), bf16=False), rows, PAD_ID, callback, [], bf16=False)
    return callback.steps


@pytest.mark.parametrize("multiple", [1, 8, 16])
def test_batches_are_padded_to_the_multiple(embedded_assets, multiple):
    lengths = [5, 9, 13, 21, 30, 7, 18, 26]
    steps = _train(embedded_assets, _rows(lengths), max_steps=8, pad_to_multiple_of=multiple)
    widths = {int(s["shape"].split("x")[1]) for s in steps}
    assert all(width % multiple == 0 for width in widths)
    assert all(int(s["shape"].split("x")[0]) == 2 for s in steps)
    if multiple == 1:  # unrounded, the longest row of some batch sets the width exactly
        assert widths & set(lengths)


def test_first_shape_steps_are_flagged_and_left_out(embedded_assets):
    # Batch size 1 and rows of three lengths: every step's shape is its row's padded length.
    rng = random.Random(0)
    rows = _rows([rng.choice([6, 20, 40]) for _ in range(24)])
    steps = _train(embedded_assets, rows, per_device_train_batch_size=1, max_steps=24, warmup_steps_to_skip=2)
    seen = set()
    for s in steps:
        assert s["first_shape"] == (s["shape"] not in seen)
        seen.add(s["shape"])
    agg = aggregate(steps)
    measured = [s for s in steps if not s["warmup"] and not s["first_shape"]]
    first_after_warmup = [s for s in steps if not s["warmup"] and s["first_shape"]]
    assert agg["n_measured_steps"] == len(measured) == 24 - 2 - len(first_after_warmup)
    assert agg["n_first_shape_steps"] == len(first_after_warmup)
    assert agg["n_shapes"] == len(seen) == 3
    assert agg["first_shape_time_s"] == pytest.approx(sum(s["step_time_s"] for s in first_after_warmup))
    total = sum(s["tokens_nonpad"] for s in measured) / sum(s["step_time_s"] for s in measured)
    assert agg["tokens_per_s_nonpad"] == pytest.approx(total)


def test_runs_that_differ_outside_the_data_see_the_same_batches_in_the_same_order(embedded_assets, prepared_dataset):
    config = TrainConfig(per_device_train_batch_size=4, max_steps=6, warmup_steps_to_skip=1, pad_to_multiple_of=1)
    other = TrainConfig(**{**config.to_dict(), "learning_rate": 1e-3, "run_key": "other"})
    batches = []
    for each in (config, other):
        _, steps = run_training(each, str(embedded_assets[0]), str(prepared_dataset))
        assert len(steps) == 6
        batches.append([(s["shape"], s["tokens_nonpad"], s["tokens_trained"]) for s in steps])
    assert batches[0] == batches[1]
    assert len({shape for shape, _, _ in batches[0]}) > 1  # the data really varies


def test_packing_trains_fixed_shapes_and_keeps_prompt_labels(embedded_assets):
    rows = _rows([5, 9, 13, 21, 30, 7, 18, 26, 11, 4])
    packed = pack(rows, 32)
    assert all(len(r["input_ids"]) == len(r["labels"]) == 32 for r in packed)
    assert len(packed) == sum(len(r["input_ids"]) for r in rows) // 32  # only the short remainder is dropped
    assert packed[0]["labels"][:2] == [-100, -100]  # the first row's prompt stays untrained


def test_packing_from_the_config_trains_one_shape(embedded_assets, prepared_dataset):
    # 256 tokens hold several of the embedded rows (the longest is 183 tokens).
    config = TrainConfig(per_device_train_batch_size=2, max_seq_length=256, max_steps=4, warmup_steps_to_skip=1)
    packed = TrainConfig(**{**config.to_dict(), "packing": True})
    result, steps = run_training(packed, str(embedded_assets[0]), str(prepared_dataset))
    assert result.status == "ok", result.reason
    assert {s["shape"] for s in steps} == {"2x256"}
    assert [s["first_shape"] for s in steps] == [True, False, False, False]
    assert result.data["n_training_sequences"] < result.data["n_rows"]  # rows were packed, several per sequence
    assert all(s["tokens_nonpad"] == s["tokens_padded"] == 2 * 256 for s in steps)


def test_packing_refuses_a_dataset_smaller_than_one_sequence():
    with pytest.raises(ValueError, match="fill no sequence of max_seq_length=64"):
        pack(_rows([5, 9]), 64)


def _steps(times, shapes=None):
    shapes = shapes or ["16x512"] * len(times)
    return [
        {
            "step": i,
            "warmup": False,
            "first_shape": False,
            "shape": shape,
            "step_time_s": t,
            "tokens_padded": 16 * int(shape.split("x")[1]),
        }
        for i, (t, shape) in enumerate(zip(times, shapes, strict=True), start=4)
    ]


def test_steady_history_is_steady():
    rng = random.Random(1)
    verdict = steady_state(_steps([0.2 * (1 + rng.uniform(-0.02, 0.02)) for _ in range(40)]))
    assert verdict["steady_state"] == "steady"
    assert abs(verdict["drift"]) < STEADY_DRIFT_TOLERANCE
    assert verdict["steps_needed"] is None


def test_history_still_speeding_up_is_unsteady_with_the_steps_it_needs():
    # 0.37 s falling to 0.20 s over the first 20 measured steps, then flat (what the issue measured).
    times = [0.37 - 0.17 * min(i, 20) / 20 for i in range(40)]
    verdict = steady_state(_steps(times))
    assert verdict["steady_state"] == "unsteady"
    assert verdict["drift"] == pytest.approx(0.2 / ((0.37 + 0.2) / 2) - 1, abs=0.08)
    assert verdict["drift"] < -STEADY_DRIFT_TOLERANCE
    assert 4 + 10 <= verdict["settle_step"] <= 4 + 20
    assert verdict["steps_needed"] == verdict["settle_step"] - 1 + 40


def test_shapes_alone_do_not_make_a_history_unsteady():
    # Long batches come late by chance: raw step times rise, shape-normalised ones do not.
    shapes = ["16x128"] * 20 + ["16x512"] * 20
    shapes[3], shapes[25] = "16x512", "16x128"  # each shape occurs in both halves
    times = [0.1 if s == "16x128" else 0.4 for s in shapes]
    assert steady_state(_steps(times, shapes))["steady_state"] == "steady"


def test_spikes_do_not_make_a_history_unsteady():
    times = [0.2] * 40
    for i in (3, 17, 29, 35):
        times[i] = 2.5  # isolated stalls (a checkpoint, a neighbour) move no median
    assert steady_state(_steps(times))["steady_state"] == "steady"


def test_too_short_a_history_is_unknown():
    assert steady_state(_steps([0.2] * 5)) == {
        "steady_state": "unknown",
        "drift": None,
        "settle_step": None,
        "steps_needed": None,
    }


def _with_drift(result, history, factor):
    """Make a synthetic run's measured steps slow down by ``factor`` over the run, re-aggregated."""
    measured = [s for s in history["steps"] if not s["warmup"]]
    for i, s in enumerate(measured):
        s["step_time_s"] *= 1 + factor * i / len(measured)
    result["metrics"].update(aggregate(history["steps"]))
    return result, history


def test_unsteady_cells_never_make_the_headline():
    runs = []
    for repeat in range(2):
        for batch, rate in ((8, 1000.0), (16, 1500.0)):
            for liger in (False, True):
                result, history = make_run(
                    Run(liger, batch, 512, repeat, tokens_per_s=rate * (1.3 if liger else 1.0)), max_steps=30
                )
                if batch == 16 and liger:
                    result, history = _with_drift(result, history, 0.5)
                runs.append((result, history))
    results, histories = [r for r, _ in runs], [h for _, h in runs]
    assert all(r["metrics"]["steady_state"] == "unsteady" for r in results if r["run_key"].startswith("liger-bs16"))
    bundle = build_report(results, histories)
    assert bundle.headline.startswith("At batch 16 the fastest variant that trained is baseline")
    assert "Not recommended at batch 16: liger: unsteady." in bundle.headline
    assert "Not at steady state, so never recommended: batch 16" in bundle.headline
    assert "<li>Not steady: Liger at batch 16" in bundle.html
    assert bundle.metrics["gain_pct_liger_vs_baseline_bs8_seq512"] == pytest.approx(30.0, abs=0.5)


def test_no_headline_when_every_paired_cell_is_unsteady():
    runs = [
        make_run(Run(liger, 16, 512, 0, tokens_per_s=1000.0 * (1.3 if liger else 1.0)), max_steps=30)
        for liger in (False, True)
    ]
    runs = [_with_drift(r, h, 0.5) for r, h in runs]
    from liger_bench.analyse.analysis import analyze_results

    analysis = analyze_results([r for r, _ in runs], [h for _, h in runs])
    headline = make_headline(analysis)
    assert headline.startswith("No variant trained at steady state in every repeat, so none is recommended")
    assert "fastest" not in headline
    assert math.isfinite(analysis.cells["drift"].iloc[0])
