"""Energy per step and per run: the arithmetic on synthetic NVML counters, the real callback, the unavailable path.

The counters are synthetic because NVML's cannot exist on a CPU machine and on a GPU how much energy a
step draws is not known in advance; ``test_the_real_counter_advances_during_gpu_work`` reads the real one.
"""

import pytest

from liger_bench.measure.energy import (
    COUNTER_STALLED,
    COUNTER_WENT_BACKWARDS,
    NO_NVIDIA_GPU,
    EnergyCounter,
    energy_metrics,
    nvml_energy_counter,
    ranks_energy,
    step_energy,
)
from liger_bench.measure.metrics import StepMetricsCallback, aggregate


def _steps(times_tokens_energies, warmup=1):
    return [
        {"step": i, "warmup": i <= warmup, "step_time_s": t, "tokens_nonpad": n, "tokens_padded": 2 * n,
         "tokens_trained": n, "energy_j": e, "energy_unavailable": "" if e is not None else "why"}
        for i, (t, n, e) in enumerate(times_tokens_energies, start=1)
    ]  # fmt: skip


def test_a_steps_energy_is_the_counters_advance_in_joules():
    assert step_energy(1_000_000, 1_250_500, "") == {"energy_j": 250.5, "energy_unavailable": ""}


@pytest.mark.parametrize(
    ("start", "end"),
    [(2**64 - 1_000, 500), (9_000_000, 12)],
    ids=["wrapped", "reset"],
)
def test_a_counter_that_goes_backwards_gives_no_energy_and_says_why(start, end):
    assert step_energy(start, end, "") == {"energy_j": None, "energy_unavailable": COUNTER_WENT_BACKWARDS}


def test_no_counter_gives_no_energy_and_its_reason():
    assert step_energy(None, None, NO_NVIDIA_GPU) == {"energy_j": None, "energy_unavailable": NO_NVIDIA_GPU}


def test_the_ranks_energies_add_up_and_one_rank_without_makes_the_step_unmeasured():
    rank0, rank1 = {"energy_j": 10.5, "energy_unavailable": ""}, {"energy_j": 20.25, "energy_unavailable": ""}
    assert ranks_energy([rank0, rank1]) == {"energy_j": 30.75, "energy_unavailable": ""}
    lost = {"energy_j": None, "energy_unavailable": COUNTER_WENT_BACKWARDS}
    assert ranks_energy([rank0, lost]) == {"energy_j": None, "energy_unavailable": COUNTER_WENT_BACKWARDS}


def test_energy_per_token_per_kwh_and_power_count_the_measured_steps_and_the_run_every_step():
    steps = _steps([(9.0, 50, 70.0), (1.0, 1000, 100.0), (2.0, 2000, 200.0), (3.0, 3000, 300.0)])
    agg = aggregate(steps)
    assert agg["energy_j"] == 600.0  # the warm-up step's 70 J are not in the measured window
    assert agg["energy_per_token_j"] == pytest.approx(600.0 / 6000)
    assert agg["tokens_per_kwh"] == pytest.approx(6000 / (600.0 / 3.6e6))  # 3.6e7
    assert agg["mean_power_w"] == pytest.approx(600.0 / 6.0)
    assert agg["run_energy_j"] == 670.0
    assert agg["energy_unavailable"] == ""


def test_a_measured_step_without_energy_leaves_every_energy_unavailable_never_zero():
    steps = _steps([(9.0, 50, 70.0), (1.0, 1000, 100.0), (2.0, 2000, None), (3.0, 3000, 300.0)])
    metrics = energy_metrics(steps[1:], steps)
    assert metrics == {
        "energy_j": None, "energy_per_token_j": None, "tokens_per_kwh": None, "mean_power_w": None,
        "run_energy_j": None, "energy_unavailable": "why",
    }  # fmt: skip


def test_a_counter_that_never_moved_measured_nothing():
    steps = _steps([(1.0, 10, 0.0), (1.0, 1000, 0.0), (2.0, 2000, 0.0)])
    metrics = aggregate(steps)
    assert (metrics["energy_j"], metrics["mean_power_w"], metrics["run_energy_j"]) == (None, None, None)
    assert metrics["energy_unavailable"] == COUNTER_STALLED


def test_a_history_from_before_energy_was_measured_reads_as_unavailable():
    steps = [{k: v for k, v in s.items() if not k.startswith("energy")} for s in _steps([(1.0, 10, 1.0)] * 3)]
    metrics = aggregate(steps)
    assert metrics["energy_j"] is None and metrics["energy_unavailable"] == "the step history records no energy"


def _run_callback(callback, n_steps):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args, state, control = TrainingArguments(output_dir="unused", report_to=[]), TrainerState(), TrainerControl()
    for step in range(1, n_steps + 1):
        state.global_step = step - 1
        callback.on_step_begin(args, state, control)
        state.global_step = step
        callback.on_step_end(args, state, control)
    return callback.steps


def test_the_callback_reads_the_counter_at_both_ends_of_each_step_and_a_reset_costs_only_its_step():
    readings = iter([1_000, 301_000, 301_500, 40, 100, 100_100])  # the driver reset during step 2
    counter = EnergyCounter(lambda: next(readings))
    steps = _run_callback(StepMetricsCallback(0, clock=lambda: 0.0, sync=lambda: None, energy=counter), 3)
    assert [s["energy_j"] for s in steps] == [300.0, None, 100.0]
    assert [s["energy_unavailable"] for s in steps] == ["", COUNTER_WENT_BACKWARDS, ""]


def test_without_an_nvidia_gpu_the_energy_is_unavailable_with_that_reason():
    """This machine has no CUDA device: the real NVML counter is never asked for."""
    assert nvml_energy_counter() == EnergyCounter(None, NO_NVIDIA_GPU)
    steps = _run_callback(StepMetricsCallback(0, sync=lambda: None), 2)
    assert [(s["energy_j"], s["energy_unavailable"]) for s in steps] == [(None, NO_NVIDIA_GPU)] * 2


@pytest.mark.gpu
def test_the_real_counter_advances_during_gpu_work():
    import torch

    counter = nvml_energy_counter()
    assert counter.unavailable == "", counter.unavailable
    matrix = torch.randn(8192, 8192, device="cuda")
    before = counter.read()
    for _ in range(200):
        matrix @ matrix
    torch.cuda.synchronize()
    assert counter.read() > before


def test_a_run_without_energy_says_why_in_its_mlflow_tags_and_a_measured_one_has_no_such_tag():
    from synthetic_results import Run, make_run

    from liger_bench import tracking

    cpu, _ = make_run(Run(False, 2, 64), cuda=False)
    gpu, _ = make_run(Run(False, 2, 64))
    assert tracking._child_tags(cpu, "")["energy_unavailable"] == NO_NVIDIA_GPU
    assert "energy_unavailable" not in tracking._child_tags(gpu, "")
