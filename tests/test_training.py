"""run_training on real steps of the tiny model; Liger patching on CPU; the Liger path on a GPU."""

import subprocess
import sys

import pytest

from liger_bench.measure.training import NO_CUDA_REASON, run_training
from liger_bench.plan.config import TrainConfig
from liger_bench.plan.liger import LigerError, apply_liger, supported_model_types


def _config(**kwargs):
    return TrainConfig(
        **{"run_key": "t", "per_device_train_batch_size": 2, "max_seq_length": 64, "max_steps": 5, **kwargs}
    )


def test_baseline_run_on_cpu_is_ok_and_fully_measured(embedded_assets, prepared_dataset):
    result, steps = run_training(_config(), str(embedded_assets[0]), str(prepared_dataset))
    assert result.status == "ok", result.reason
    assert len(steps) == 5 and result.metrics["n_measured_steps"] == 2
    assert result.metrics["precision"] == "fp32"  # no bf16 on this CPU path
    assert result.metrics["tokens_per_s_nonpad"] > 0
    assert result.metrics["model_flops_per_token"] > 0
    assert result.data["n_rows"] > 0 and result.data["n_truncated"] > 0  # 64 tokens truncates the long rows
    assert result.environment["device"] == "cpu"
    assert result.liger_kernels == {}
    losses = [s["loss"] for s in steps]
    assert all(loss > 0 for loss in losses)


def test_a_run_trains_exactly_its_rows_the_same_for_both_variants(embedded_assets, prepared_dataset):
    """Both variants of a cell get the same rows: the seed's shuffle, as many rows as the run's sequences."""
    from liger_bench.measure.training import load_tokenizer, training_rows

    tokenizer = load_tokenizer(str(embedded_assets[0]))
    baseline = training_rows(_config(), tokenizer, str(prepared_dataset))
    liger = training_rows(_config(use_liger=True), tokenizer, str(prepared_dataset))
    assert len(baseline.rows) == _config().sequences_per_run == 10
    assert baseline.rows == liger.rows and baseline.n_source_rows == 256
    longer = training_rows(_config(max_steps=50), tokenizer, str(prepared_dataset))
    assert longer.rows[:10] == baseline.rows  # a larger run's rows start with a smaller run's (prepare_grid's count)
    assert training_rows(_config(seed=7), tokenizer, str(prepared_dataset)).rows != baseline.rows
    everything = training_rows(_config(max_steps=500), tokenizer, str(prepared_dataset))
    assert len(everything.rows) + everything.n_dropped == 256  # too few rows: all of them, the Trainer repeats them


def test_a_run_on_a_large_dataset_tokenises_only_its_rows(embedded_assets):
    """200,000 rows (tokenising all of them took 175 s before a 5-step run could start): a few seconds."""
    import time

    import datasets

    from liger_bench.inputs.data import tokenize
    from liger_bench.measure.training import load_tokenizer

    data = datasets.Dataset.from_dict(
        {"prompt": [f"Say {i}. " for i in range(200_000)], "completion": [f"{i} it is" for i in range(200_000)]}
    )
    started = time.perf_counter()
    tokenized = tokenize(data, load_tokenizer(str(embedded_assets[0])), 64, sequences=10, packing=False, seed=0)
    assert time.perf_counter() - started < 10
    assert len(tokenized.rows) == 10 and tokenized.n_source_rows == 200_000
    packed = tokenize(data, load_tokenizer(str(embedded_assets[0])), 64, sequences=10, packing=True, seed=0)
    assert sum(len(row["input_ids"]) for row in packed.rows) >= 10 * 64  # fills 10 packed sequences, no more
    assert sum(len(row["input_ids"]) for row in packed.rows[:-1]) < 10 * 64


@pytest.mark.slow
def test_the_compile_arm_trains_through_the_trainer_and_its_compile_steps_stay_out_of_the_aggregates(
    embedded_assets, prepared_dataset
):
    """torch.compile through TrainingArguments.torch_compile (inductor on the CPU, with the machine's C compiler),
    on rows of mixed lengths: the first step compiles, a new batch shape recompiles once (torch's automatic
    dynamic shapes), torch's own counter marks those steps, and no compile step counts in the rate.
    Slow: inductor compiles for a minute or more on two busy cores."""
    from liger_bench.measure.metrics import is_measured

    config = _config(torch_compile=True, max_seq_length=512, pad_to_multiple_of=8, max_steps=12)
    result, steps = run_training(config, str(embedded_assets[0]), str(prepared_dataset))
    assert result.status == "ok", result.reason
    assert config.variant == "compile" and result.config["torch_compile"] is True
    compiling = [s for s in steps if s["compiled_graphs"]]
    assert compiling[0]["step"] == 1 and len({s["shape"] for s in steps}) > 1  # mixed lengths: several shapes
    assert result.metrics["recompiles"] == sum(s["compiled_graphs"] for s in compiling[1:]) >= 1
    # Bounded: the first shape compiles static graphs, the next marks the sequence length dynamic; no more.
    assert result.metrics["n_compile_steps"] == len(compiling) <= 2
    measured = [s for s in steps if is_measured(s)]
    assert measured and not any(s["compiled_graphs"] for s in measured)
    assert result.metrics["n_measured_steps"] == len(measured)
    rate = sum(s["tokens_nonpad"] for s in measured) / sum(s["step_time_s"] for s in measured)
    assert result.metrics["tokens_per_s_nonpad"] == pytest.approx(rate)
    assert result.metrics["compile_time_s"] > 0


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only behaviour")
def test_liger_without_cuda_is_skipped_not_run_as_the_baseline(embedded_assets, prepared_dataset):
    result, steps = run_training(_config(use_liger=True), str(embedded_assets[0]), str(prepared_dataset))
    assert result.status == "skipped"
    assert result.reason == NO_CUDA_REASON
    assert steps == [] and result.metrics["n_measured_steps"] == 0


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only behaviour")
@pytest.mark.parametrize(
    ("use_liger", "outcome"), [(True, "skipped []"), (False, "ok ['datasets', 'transformers.trainer', 'trl']")]
)
def test_a_run_that_cannot_train_does_not_import_the_training_libraries(
    embedded_assets, prepared_dataset, use_liger, outcome
):
    """A fresh process, as each run's is: a Liger run without CUDA imports neither datasets, trl nor transformers'
    Trainer (a skipped run's process took 6.4 s on this CPU with them, 2.4 s without); a run that trains does."""
    code = (
        "import sys; from liger_bench.measure.training import run_training; "
        "from liger_bench.plan.config import TrainConfig; "
        f"result, _ = run_training(TrainConfig(use_liger={use_liger}, per_device_train_batch_size=2, "
        "max_seq_length=64, max_steps=5), sys.argv[1], sys.argv[2]); "
        "print(result.status, sorted(m for m in ('datasets', 'transformers.trainer', 'trl') if m in sys.modules))"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, str(embedded_assets[0]), str(prepared_dataset)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert child.stdout.splitlines()[-1] == outcome


@pytest.mark.parametrize(
    ("precision", "cuda", "bf16_supported", "expected"),
    [
        ("auto", True, True, True),
        ("auto", True, False, False),
        ("auto", False, False, False),
        ("fp32", True, True, False),
        ("bf16", True, True, True),
        ("bf16", True, False, ValueError),
        ("bf16", False, False, ValueError),
    ],
)
def test_the_precision_decision(monkeypatch, precision, cuda, bf16_supported, expected):
    """The device is faked (torch.cuda's two capability queries): no bf16 GPU exists on this machine."""
    import torch

    from liger_bench.measure.training import _use_bf16

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_supported)
    config = _config(precision=precision)
    if expected is ValueError:
        with pytest.raises(ValueError, match="precision='bf16' was requested"):
            _use_bf16(config)
    else:
        assert _use_bf16(config) is expected


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_the_trained_parameters_and_trainer_arguments_follow_the_precision_decision(
    monkeypatch, embedded_assets, prepared_dataset, bf16
):
    """The label, the parameters the Trainer updates and its ``bf16`` argument all agree.

    For bf16, this CPU machine poses as a bf16 GPU in the two places that ask (our ``_use_bf16``
    and transformers' argument check); loading, the Trainer's arguments and the training steps are
    the real ones, in bf16 on the CPU.
    """
    import transformers.training_args
    from trained_as import TrainedAs

    from liger_bench.measure import training

    if bf16:
        monkeypatch.setattr(training, "_use_bf16", lambda config: True)
        monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: True)
    seen = TrainedAs()
    result, _ = run_training(
        _config(max_steps=4, precision="bf16" if bf16 else "fp32"),
        str(embedded_assets[0]),
        str(prepared_dataset),
        extra_callbacks=[seen],
    )
    assert result.status == "ok", result.reason
    assert result.metrics["precision"] == ("bf16" if bf16 else "fp32")
    assert seen.dtypes == {"bfloat16" if bf16 else "float32"}
    assert seen.bf16 == {bf16}


def _delivered_grid_item(**base_config) -> dict:
    """The Liger grid item of ``base_config`` as the training task receives it (KFP turns ints into floats)."""
    from liger_bench.plan.grid import GridSpec, expand_grid

    spec = GridSpec(
        use_liger=[True], torch_compile=[False], per_device_train_batch_size=[2], max_seq_length=[64], n_runs=1
    )
    spec.max_steps, spec.base_config = 5, base_config
    [item] = expand_grid(spec)
    return {k: float(v) if type(v) is int else v for k, v in item.items()}


def _fresh_process(code: str, model_dir) -> dict:
    """Run ``code`` in a new interpreter: liger-kernel patches module-level classes for the whole process."""
    import json
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    prelude = (
        f"import json, sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from liger_bench.plan.config import TrainConfig\n"
        "from liger_bench.plan.liger import apply_liger, patched_kernels\n"
        f"from liger_bench.measure.training import load_model\nmodel_dir = {str(model_dir)!r}\n"
    )
    out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_liger_patches_every_module_of_the_tiny_phi3(embedded_assets):
    """Patching is plain Python and runs on CPU (the kernels themselves need a GPU)."""
    out = _fresh_process(
        """
        model = load_model(model_dir, bf16=False)
        before = patched_kernels(model)
        print(json.dumps({"before": before, "applied": apply_liger(model, TrainConfig().liger_flags()),
                          "layers": model.config.num_hidden_layers}))
        """,
        embedded_assets[0],
    )
    layers = out["layers"]
    assert not any(out["before"].values())
    assert out["applied"] == {
        "rms_norm": 2 * layers + 1,
        "swiglu": layers,
        "rope": 1,
        "fused_linear_cross_entropy": 1,
        "cross_entropy": 0,
    }


def test_liger_kernel_flags_are_respected(embedded_assets):
    out = _fresh_process(
        """
        model = load_model(model_dir, bf16=False)
        flags = {**TrainConfig().liger_flags(), "swiglu": False, "fused_linear_cross_entropy": False}
        print(json.dumps(apply_liger(model, flags)))
        """,
        embedded_assets[0],
    )
    assert out["swiglu"] == 0 and out["fused_linear_cross_entropy"] == 0
    assert out["rms_norm"] > 0 and out["rope"] == 1


PATCHED_BY_DEFAULT = {"rope", "rms_norm", "swiglu", "fused_linear_cross_entropy"}  # liger-kernel's for Phi-3


@pytest.mark.parametrize("off", [("swiglu",), ("rope", "rms_norm", "fused_linear_cross_entropy")], ids="+".join)
def test_kernel_flags_flow_from_base_config_to_the_patched_model(embedded_assets, off):
    """base_config → grid item → TrainConfig.from_dict → ``apply_variant`` (run_training's own step), on CPU."""
    item = _delivered_grid_item(**{f"liger_{kernel}": False for kernel in off})
    out = _fresh_process(
        f"""
        from liger_bench.measure.training import apply_variant
        model = load_model(model_dir, bf16=False)
        config = TrainConfig.from_dict({item!r})
        returned = apply_variant(model, config)
        print(json.dumps({{"returned": returned, "in_model": patched_kernels(model)}}))
        """,
        embedded_assets[0],
    )
    for kernels in (out["returned"], out["in_model"]):
        assert {kernel for kernel, n in kernels.items() if n} == PATCHED_BY_DEFAULT - set(off)


def test_the_fused_loss_is_still_seen_through_the_trainers_mixed_precision_wrapper(embedded_assets):
    """accelerate wraps a bf16 model's forward (autocast, outputs to fp32) around Liger's; the count looks through.

    Seen on an H200 (2026-11-30): without unwrapping, ``patched_kernels`` of the model the Trainer
    trains said the fused linear cross-entropy was gone while it ran.
    """
    out = _fresh_process(
        """
        from accelerate import Accelerator
        model = load_model(model_dir, bf16=False)
        applied = apply_liger(model, {})
        prepared = Accelerator(mixed_precision="bf16", cpu=True).prepare_model(model)
        print(json.dumps({"applied": applied, "prepared": patched_kernels(prepared),
                          "wrapped": "liger" not in prepared.forward.__func__.__module__}))
        """,
        embedded_assets[0],
    )
    assert out["wrapped"], "accelerate no longer wraps the forward: this test checks nothing"
    assert out["applied"]["fused_linear_cross_entropy"] == out["prepared"]["fused_linear_cross_entropy"] == 1
    assert {k for k, n in out["prepared"].items() if n} == PATCHED_BY_DEFAULT


def test_a_baseline_never_inherits_liger_patches(embedded_assets, prepared_dataset):
    """After Liger patched this process's classes, a run without Liger refuses to pose as the baseline."""
    out = _fresh_process(
        f"""
        from liger_bench.measure.training import run_training
        apply_liger(load_model(model_dir, bf16=False), TrainConfig().liger_flags())
        result, _ = run_training(TrainConfig(max_steps=4), model_dir, {str(prepared_dataset)!r})
        print(json.dumps({{"status": result.status, "reason": result.reason}}))
        """,
        embedded_assets[0],
    )
    assert out["status"] == "failed"
    assert "carries Liger patches" in out["reason"]


def test_liger_refuses_an_unsupported_architecture():
    from transformers import GPT2Config, GPT2LMHeadModel

    assert "gpt2" not in supported_model_types() and "phi3" in supported_model_types()
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64))
    with pytest.raises(LigerError, match="no patches for model type 'gpt2'"):
        apply_liger(model, TrainConfig().liger_flags())


@pytest.mark.gpu
def test_liger_trains_on_gpu_with_loss_parity(embedded_assets, prepared_dataset):
    """The real Liger path: bf16 weights on CUDA, kernels applied, losses within 2% of the stock model."""
    from trained_as import TrainedAs

    runs, seen = {}, {}
    for use_liger in (False, True):
        config = _config(use_liger=use_liger, max_steps=8, run_key=f"gpu-{use_liger}")
        seen[use_liger] = TrainedAs()
        runs[use_liger] = run_training(config, str(embedded_assets[0]), str(prepared_dataset), [seen[use_liger]])
    (baseline, baseline_steps), (liger, liger_steps) = runs[False], runs[True]
    assert baseline.status == "ok" and liger.status == "ok", (baseline.reason, liger.reason)
    for use_liger in (False, True):
        assert seen[use_liger].dtypes == {"bfloat16"} and seen[use_liger].bf16 == {True}
        assert runs[use_liger][0].metrics["precision"] == "bf16"
    assert liger.liger_kernels["rms_norm"] > 0 and liger.liger_kernels["fused_linear_cross_entropy"] == 1
    assert liger.metrics["peak_mem_reserved_gb"] > 0
    for a, b in zip(liger_steps[3:], baseline_steps[3:], strict=True):
        assert abs(a["loss"] - b["loss"]) / b["loss"] <= 0.02


@pytest.mark.gpu
def test_liger_swiglu_false_trains_with_stock_swiglu_on_gpu(embedded_assets, prepared_dataset):
    """``liger_swiglu: false`` in base_config: the model Liger trains has every kernel but SwiGLU."""
    item = _delivered_grid_item(liger_swiglu=False)
    out = _fresh_process(
        f"""
        from trained_as import TrainedAs
        from liger_bench.measure.training import run_training
        seen = TrainedAs()
        result, _ = run_training(TrainConfig.from_dict({item!r}), model_dir, {str(prepared_dataset)!r}, [seen])
        print(json.dumps({{"status": result.status, "reason": result.reason, "kernels": result.liger_kernels,
                          "seen": seen.kernels}}))
        """,
        embedded_assets[0],
    )
    assert out["status"] == "ok", out["reason"]
    assert len(out["seen"]) == 5
    for kernels in (out["kernels"], *out["seen"]):
        assert {kernel for kernel, n in kernels.items() if n} == PATCHED_BY_DEFAULT - {"swiglu"}


@pytest.mark.gpu
def test_real_cuda_oom_is_recorded_and_memory_released(embedded_assets, prepared_dataset):
    """A real allocator OOM (this process capped at 40 MB of the GPU): status oom, memory freed after."""
    import torch

    before = torch.cuda.memory_allocated()  # whatever earlier tests in this process still hold
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(40 * 2**20 / total)
    try:
        # use_liger: this process may already carry Liger's class patches from the parity test.
        config = _config(
            use_liger=True, per_device_train_batch_size=256, max_seq_length=128, max_steps=4, run_key="oom"
        )
        result, _ = run_training(config, str(embedded_assets[0]), str(prepared_dataset))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert result.status == "oom", result.reason
    assert "out of memory" in result.reason.lower()
    assert result.metrics["oom_peak_mem_reserved_gb"] > 0
    assert torch.cuda.memory_allocated() <= before + 2**20  # the run gave back what it allocated
