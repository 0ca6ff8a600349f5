"""The phases of a run's process (liger_bench.measure.phases): real training of the tiny model, in a real
child process and in this one with a phase slowed down on purpose."""

from __future__ import annotations

import time

import pytest

from liger_bench.measure import training
from liger_bench.measure.phases import PHASES, PhaseClock, cut_short, phases_line, process_age_s, with_exit
from liger_bench.measure.supervisor import train_supervised
from liger_bench.plan.config import TrainConfig
from liger_bench.records import read_json

SLEEP_S = 2.0


def _config(run_key: str, max_steps: int = 4) -> TrainConfig:
    return TrainConfig(run_key=run_key, per_device_train_batch_size=2, max_seq_length=64, max_steps=max_steps)


def test_a_supervised_run_times_every_phase_in_order_within_its_wall_time_and_logs_them(
    embedded_assets, prepared_dataset, capsys
):
    started = time.monotonic()
    result, steps = train_supervised(_config("phased"), str(embedded_assets[0]), str(prepared_dataset), timeout_s=300)
    wall_s = time.monotonic() - started
    assert result.status == "ok", result.reason
    assert tuple(result.phases_s) == PHASES
    assert all(seconds >= 0 for seconds in result.phases_s.values()), result.phases_s
    assert result.phases_s["start"] > 0 and result.phases_s["imports"] > 0
    total = sum(result.phases_s.values())
    assert sum(step["step_time_s"] for step in steps) <= result.phases_s["first_step"] + result.phases_s["steps"]
    assert total <= wall_s
    line = f"[liger-bench] {phases_line('phased', result.phases_s, steps)}"
    assert line in capsys.readouterr().out.splitlines()
    assert f"phased: {total:.1f} s in its process" in line and f"imports {result.phases_s['imports']:.1f}" in line


@pytest.mark.parametrize(
    ("function", "phase"),
    [("training_rows", "data"), ("load_model", "model"), ("apply_variant", "variant")],
)
def test_time_spent_in_a_phase_is_that_phases_and_no_others(
    embedded_assets, prepared_dataset, monkeypatch, function, phase
):
    original = getattr(training, function)

    def slowed(*args, **kwargs):
        time.sleep(SLEEP_S)
        return original(*args, **kwargs)

    monkeypatch.setattr(training, function, slowed)
    result, _ = training.run_training(_config(f"slow-{phase}"), str(embedded_assets[0]), str(prepared_dataset))
    assert result.status == "ok", result.reason
    assert tuple(result.phases_s) == PHASES[1:-1]  # in this process: no process start, no exit
    assert result.phases_s[phase] >= SLEEP_S
    # The libraries may be imported for the first time in this process here.
    assert {name for name, seconds in result.phases_s.items() if seconds >= SLEEP_S} - {"imports"} == {phase}


def test_a_failing_run_ends_its_phases_at_the_phase_that_failed(embedded_assets, prepared_dataset, monkeypatch):
    def broken(*args, **kwargs):
        time.sleep(SLEEP_S)
        raise RuntimeError("weights unreadable")

    monkeypatch.setattr(training, "load_model", broken)
    result, _ = training.run_training(_config("broken"), str(embedded_assets[0]), str(prepared_dataset))
    assert (result.status, result.reason) == ("failed", "RuntimeError: weights unreadable")
    assert tuple(result.phases_s) == ("imports", "environment", "data", "model", "finish")
    assert result.phases_s["model"] >= SLEEP_S > result.phases_s["finish"]


def test_the_clock_counts_from_the_process_start_and_exit_is_the_rest_of_the_supervisors_wall_time():
    age = process_age_s()
    clock = PhaseClock(since_process_start=True)
    assert clock.phases_s["start"] >= age > 0
    time.sleep(0.05)
    clock.mark("imports")
    assert clock.current() == "environment" and clock.phases_s["imports"] >= 0.05
    clock.mark_interrupted()
    assert list(clock.phases_s) == ["start", "imports", "environment"]
    assert with_exit({"start": 1.0, "imports": 2.0}, 10.0) == {"start": 1.0, "imports": 2.0, "exit": 7.0}
    # The start time is known to a 10 ms tick: never a negative exit.
    assert with_exit({"start": 1.005}, 1.0)["exit"] == 0.0


def test_a_recording_clock_writes_each_mark_and_a_cut_short_process_ends_in_the_phase_it_was_in(tmp_path):
    clock = PhaseClock(since_process_start=True)
    clock.record_to(tmp_path / "phases.json")
    assert read_json(tmp_path / "phases.json") == clock.phases_s and list(clock.phases_s) == ["start"]
    clock.mark("imports")
    clock.mark("environment")
    recorded = read_json(tmp_path / "phases.json")
    assert recorded == clock.phases_s and list(recorded) == ["start", "imports", "environment"]
    elapsed = sum(recorded.values()) + 5.0
    assert cut_short(recorded, elapsed) == {**recorded, "data": pytest.approx(5.0)}
    assert cut_short({"start": 2.0}, 1.0) == {"start": 2.0, "imports": 0.0}  # never negative
    assert cut_short({}, 9.0) == {}  # it died before its clock started: nothing known
