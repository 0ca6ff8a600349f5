"""The metrics callback on real training steps of the tiny model, with token counts known by construction."""

import json
import math
import statistics

import pytest

from liger_bench.measure.energy import EnergyCounter
from liger_bench.measure.flops import FlopModel, model_flops_per_token, peak_tflops_for
from liger_bench.measure.metrics import StepMetricsCallback, aggregate, count_tokens, first_nonfinite_loss_step
from liger_bench.measure.trainer import train_measured
from liger_bench.measure.training import load_model, step_stream
from liger_bench.plan.config import TrainConfig
from liger_bench.records import StepRecord

# One batch holds the whole dataset, so every step sees exactly these rows, whatever the order.
LENGTHS = [5, 9, 12, 7]
PROMPT = 3  # the first 3 tokens of each row are prompt (label -100)
PAD_ID = 2
PADDED = 16  # max(LENGTHS) rounded up to TrainConfig's default pad_to_multiple_of
FLOP_MODEL = FlopModel(n_params_non_embedding=1_000, n_layers=2, hidden_size=8)


def _rows():
    rows = []
    for i, length in enumerate(LENGTHS):
        ids = [10 + (i + j) % 50 for j in range(length)]
        rows.append({"input_ids": ids, "labels": [-100] * PROMPT + ids[PROMPT:]})
    return rows


@pytest.fixture(scope="module")
def measured_and_streamed(embedded_assets, tmp_path_factory):
    """Six real steps of the tiny model, also streamed to a JSON-lines file as ``run_training`` streams them."""
    config = TrainConfig(per_device_train_batch_size=len(LENGTHS), max_steps=6, warmup_steps_to_skip=2)
    callback = StepMetricsCallback(config.warmup_steps_to_skip, flop_model=FLOP_MODEL, peak_tflops=1.0)
    model = load_model(str(embedded_assets[0]), bf16=False)
    stream = tmp_path_factory.mktemp("stream") / "steps.jsonl"
    train_measured(config, model, _rows(), PAD_ID, callback, [step_stream(callback.steps, stream)], bf16=False)
    return config, callback.steps, stream


@pytest.fixture(scope="module")
def measured(measured_and_streamed):
    config, steps, _ = measured_and_streamed
    return config, steps


def test_each_streamed_step_carries_its_loss_and_learning_rate(measured_and_streamed):
    """The stream is what a crashed or killed run is reported from: each line is its step's complete record."""
    _, steps, stream = measured_and_streamed
    streamed = [json.loads(line) for line in stream.read_text().splitlines()]
    assert streamed == steps
    assert all(s["loss"] is not None and s["learning_rate"] is not None for s in streamed)


def test_token_counts_per_step_exclude_padding_and_prompt(measured):
    _, steps = measured
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5, 6]
    for s in steps:
        assert s["tokens_padded"] == len(LENGTHS) * PADDED  # 64
        assert s["shape"] == f"{len(LENGTHS)}x{PADDED}"
        assert s["tokens_nonpad"] == sum(LENGTHS)  # 33
        assert s["tokens_trained"] == sum(n - PROMPT for n in LENGTHS)  # 21
        assert s["tokens_per_s_nonpad"] == pytest.approx(s["tokens_nonpad"] / s["step_time_s"])
        assert s["step_time_s"] > 0
        assert s["loss"] is not None and s["learning_rate"] is not None
    assert steps[-1]["total_tokens_padded"] == 6 * 64
    assert steps[-1]["total_tokens_trained"] == 6 * 21


def test_each_step_record_has_exactly_the_declared_fields(measured):
    _, steps = measured
    declared = set(StepRecord.__annotations__) - {"ranks"}  # ranks: only with several processes
    assert [set(s) for s in steps] == [declared] * len(steps)


def test_warmup_steps_are_excluded_exactly(measured):
    config, steps = measured
    assert [s["warmup"] for s in steps] == [True, True, False, False, False, False]
    agg = aggregate(steps)
    measured_steps = steps[2:]
    assert agg["n_measured_steps"] == 4
    tokens = sum(s["tokens_nonpad"] for s in measured_steps)
    assert agg["tokens_per_s_nonpad"] == pytest.approx(tokens / sum(s["step_time_s"] for s in measured_steps))
    times = [s["step_time_s"] for s in measured_steps]
    assert agg["step_time_cv"] == pytest.approx(statistics.pstdev(times) / statistics.fmean(times))
    assert agg["final_loss"] == steps[-1]["loss"]


def test_mfu_counts_padded_tokens_at_the_batch_padded_length(measured):
    _, steps = measured
    per_token = 6 * 1_000 + 12 * 2 * 8 * PADDED  # the batch's padded length, not max_seq_length
    for s in steps:
        assert s["mfu"] == pytest.approx(s["tokens_per_s_padded"] * per_token / 1e12)


def test_non_embedding_parameters_keep_a_tied_lm_head():
    from transformers import LlamaConfig, LlamaForCausalLM

    from liger_bench.measure.training import n_params_non_embedding

    sizes = {"vocab_size": 100, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1}
    sizes.update(num_attention_heads=2, num_key_value_heads=2)
    untied = LlamaForCausalLM(LlamaConfig(**sizes, tie_word_embeddings=False))
    tied = LlamaForCausalLM(LlamaConfig(**sizes, tie_word_embeddings=True))
    assert n_params_non_embedding(tied) == n_params_non_embedding(untied)
    assert n_params_non_embedding(untied) == sum(p.numel() for p in untied.parameters()) - 100 * 16


def test_aggregate_of_synthetic_steps_is_exact():
    steps = [
        {"step": i, "warmup": i == 1, "step_time_s": t, "tokens_nonpad": n, "tokens_padded": 2 * n, "tokens_trained": n}
        for i, (t, n) in enumerate([(9.0, 9), (1.0, 100), (2.0, 100), (4.0, 100)], start=1)
    ]
    agg = aggregate(steps)
    assert agg["tokens_per_s_nonpad"] == pytest.approx(300 / 7)  # the warm-up step counts for nothing
    assert agg["tokens_per_s_padded"] == pytest.approx(600 / 7)
    assert agg["median_step_time_s"] == 2.0
    assert agg["mean_step_time_s"] == pytest.approx(7 / 3)
    assert agg["peak_mem_reserved_gb"] is None
    assert aggregate([])["n_measured_steps"] == 0


def test_peak_memory_is_the_highest_of_the_steps_after_warmup_first_shape_steps_included():
    """Step 1 is warm-up: its peak is not the run's. Step 3's batch shape is new (a first-shape step, left out of
    the time aggregates): the memory it needed is still the run's peak, above every repeated shape's."""
    memory = [(1, 70.0), (2, 10.0), (3, 45.0), (4, 30.0), (5, 20.0)]
    steps = [
        {"step": i, "warmup": i == 1, "first_shape": i in (1, 3), "step_time_s": 1.0, "peak_mem_reserved_gb": gb,
         "peak_mem_allocated_gb": gb / 2} | dict.fromkeys(("tokens_nonpad", "tokens_padded", "tokens_trained"), 100)
        for i, gb in memory
    ]  # fmt: skip
    agg = aggregate(steps)
    assert agg["n_measured_steps"] == 3  # steps 2, 4 and 5
    assert (agg["peak_mem_reserved_gb"], agg["peak_mem_allocated_gb"]) == (45.0, 22.5)


def test_count_tokens_handles_the_label_shift():
    import torch

    inputs = {
        "input_ids": torch.ones(2, 4, dtype=torch.long),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
        "labels": torch.tensor([[5, 5, 5, 5], [-100, 5, -100, -100]]),
    }
    assert count_tokens(inputs) == {"tokens_padded": 8, "tokens_nonpad": 6, "tokens_trained": 4}


def test_flops_and_peak_table():
    assert model_flops_per_token(1_000, 2, 8, 16) == 6 * 1_000 + 12 * 2 * 8 * 16
    assert peak_tflops_for("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops_for("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops_for("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops_for("some future card") == 0.0


class FakeDevice:
    """A device that queues work the host clock cannot see until ``sync`` waits for it.

    A fake, because the real thing (a CUDA stream running ahead of the host) cannot exist on a CPU
    machine, and on a GPU how long a kernel runs is not known exactly in advance; the GPU test
    ``test_the_step_clock_waits_for_queued_cuda_work`` checks the real ``synchronize_cuda``.
    """

    def __init__(self):
        self.now = 100.0
        self.queued = 0.0
        self.syncs = 0

    def clock(self) -> float:
        return self.now

    def launch(self, host_s: float, device_s: float) -> None:
        """Launching returns after ``host_s``; the work itself finishes ``device_s`` later."""
        self.now += host_s
        self.queued += device_s

    def sync(self) -> None:
        self.now += self.queued
        self.queued = 0.0
        self.syncs += 1


def test_the_step_time_includes_the_steps_queued_device_work_and_nothing_before_it():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    device = FakeDevice()
    callback = StepMetricsCallback(0, clock=device.clock, sync=device.sync)
    args, state, control = TrainingArguments(output_dir="unused", report_to=[]), TrainerState(), TrainerControl()
    for step, (before_s, host_s, device_s) in enumerate([(7.0, 0.25, 3.0), (11.0, 0.5, 2.0)], start=1):
        device.launch(0.0, before_s)  # work queued before the step began (logging, the last step's tail)
        state.global_step = step - 1
        callback.on_step_begin(args, state, control)
        device.launch(host_s, device_s)  # the step's forward, backward and optimizer kernels
        state.global_step = step
        callback.on_step_end(args, state, control)
    assert [s["step_time_s"] for s in callback.steps] == [3.25, 2.5]
    assert device.syncs == 4 and device.queued == 0.0


@pytest.mark.parametrize("loss", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "minus-inf"])
def test_a_nonfinite_loss_even_in_warmup_stops_training_and_marks_where_the_run_diverged(loss):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    device = FakeDevice()
    callback = StepMetricsCallback(5, clock=device.clock, sync=device.sync)
    args, state, control = TrainingArguments(output_dir="unused", report_to=[]), TrainerState(), TrainerControl()
    stops = []
    for step, logged in enumerate([6.2, loss], start=1):
        state.global_step = step - 1
        callback.on_step_begin(args, state, control)
        state.global_step = step
        callback.on_step_end(args, state, control)
        control = callback.on_log(args, state, control, logs={"loss": logged, "learning_rate": 1e6})
        stops.append(control.should_training_stop)
    assert stops == [False, True]
    assert callback.steps[1]["warmup"] and repr(callback.steps[1]["loss"]) == repr(loss)
    assert first_nonfinite_loss_step(callback.steps) == 2
    assert first_nonfinite_loss_step(callback.steps[:1]) is None
    assert aggregate(callback.steps)["first_nonfinite_loss_step"] == 2


@pytest.mark.gpu
def test_the_step_clock_waits_for_queued_cuda_work():
    """On a GPU the host runs ahead of the kernels: a step's time covers its work, not just its launch."""
    import torch
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args, state, control = TrainingArguments(output_dir="unused", report_to=[]), TrainerState(), TrainerControl()
    matrix = torch.randn(4096, 4096, device="cuda")
    callback = StepMetricsCallback(0)
    callback.on_step_begin(args, state, control)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(100):
        matrix @ matrix  # 14 TFLOP: 0.05 s (TF32) to 0.3 s (fp32) of device work, queued in about a millisecond
    end.record()
    state.global_step = 1
    callback.on_step_end(args, state, control)
    device_s = start.elapsed_time(end) / 1000
    assert device_s > 0.01
    assert callback.steps[0]["step_time_s"] >= device_s


def test_a_sharded_step_sums_the_ranks_tokens_and_flops_and_takes_the_slowest_ranks_time_and_highest_peak():
    """Two ranks with a real peak FLOP/s; ``gather`` hands the callback what each rank measured.

    A fake process group: the real one (two processes, gloo) is what ``test_distributed`` trains with,
    where the ranks' numbers cannot be chosen. Every number below differs between the ranks.
    """
    import torch
    from transformers import TrainerControl, TrainerState, TrainingArguments

    rank1 = {
        "step_time_s": 2.5,
        "flops": 6e12,
        "compiled_graphs": 3,
        "tokens_padded": 300,
        "tokens_nonpad": 250,
        "tokens_trained": 120,
        "shape": "3x100",
        "peak_mem_allocated_gb": 9.0,
        "peak_mem_reserved_gb": 11.0,
        "energy_j": 800.25,
        "energy_unavailable": "",
    }

    def gather(local: dict) -> list[dict]:
        rank0 = local | {"peak_mem_allocated_gb": 7.0, "peak_mem_reserved_gb": 12.0}  # no CUDA here: memory chosen
        return [rank0, rank1]

    device = FakeDevice()
    counter = iter([5_000_000, 5_600_500])  # rank 0's GPU drew 600.5 J during the step
    callback = StepMetricsCallback(0, flop_model=FLOP_MODEL, peak_tflops=2.0, clock=device.clock, sync=device.sync,
                                   barrier=lambda: None, gather=gather,
                                   energy=EnergyCounter(lambda: next(counter)))  # fmt: skip
    args, state, control = TrainingArguments(output_dir="unused", report_to=[]), TrainerState(), TrainerControl()
    callback.on_step_begin(args, state, control)
    callback.record_batch({"input_ids": torch.ones(2, 50, dtype=torch.long), "attention_mask": torch.ones(2, 50)})
    device.launch(0.0, 1.5)
    state.global_step = 1
    callback.on_step_end(args, state, control)
    [step] = callback.steps
    flops0 = FLOP_MODEL.per_token(50) * 100  # rank 0's 2 × 50 padded tokens at their padded length
    assert step["step_time_s"] == 2.5  # rank 1's: the slower
    assert (step["tokens_padded"], step["tokens_nonpad"], step["tokens_trained"]) == (400, 350, 220)
    assert (step["tokens_per_s_padded"], step["tokens_per_s_nonpad"], step["tokens_per_s_trained"]) == (
        400 / 2.5, 350 / 2.5, 220 / 2.5)  # fmt: skip
    assert (step["peak_mem_allocated_gb"], step["peak_mem_reserved_gb"]) == (9.0, 12.0)  # each the highest rank's
    assert step["mfu"] == pytest.approx((flops0 + 6e12) / 2.5 / (2.0e12 * 2))  # over both GPUs' peak
    assert step["compiled_graphs"] == 3
    assert (step["energy_j"], step["energy_unavailable"]) == (600.5 + 800.25, "")  # both GPUs' energy
    assert step["shape"] == "2x50"  # rank 0's decides first-shape steps
    assert [r["step_time_s"] for r in step["ranks"]] == [1.5, 2.5] and "flops" not in step["ranks"][0]
