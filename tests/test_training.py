"""run_training on real steps of the tiny model; Liger patching on CPU; the Liger path on a GPU."""

import pytest

from liger_bench.config import TrainConfig
from liger_bench.liger import LigerError, apply_liger, supported_model_types
from liger_bench.training import NO_CUDA_REASON, run_training


def _config(**kwargs):
    return TrainConfig(
        **{"run_key": "t", "per_device_train_batch_size": 2, "max_seq_length": 64, "max_steps": 5, **kwargs}
    )


def test_vanilla_run_on_cpu_is_ok_and_fully_measured(embedded_assets, prepared_dataset):
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


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only behaviour")
def test_liger_without_cuda_is_skipped_not_run_as_vanilla(embedded_assets, prepared_dataset):
    result, steps = run_training(_config(use_liger=True), str(embedded_assets[0]), str(prepared_dataset))
    assert result.status == "skipped"
    assert result.reason == NO_CUDA_REASON
    assert steps == [] and result.metrics["n_measured_steps"] == 0


def _fresh_process(code: str, model_dir) -> dict:
    """Run ``code`` in a new interpreter: liger-kernel patches module-level classes for the whole process."""
    import json
    import subprocess
    import sys
    import textwrap

    prelude = (
        "import json\nfrom liger_bench.config import TrainConfig\n"
        "from liger_bench.liger import apply_liger, patched_kernels\n"
        f"from liger_bench.training import load_model\nmodel_dir = {str(model_dir)!r}\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, check=True
    )
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


def test_a_baseline_never_inherits_liger_patches(embedded_assets, prepared_dataset):
    """After Liger patched this process's classes, a vanilla run refuses to pose as the baseline."""
    out = _fresh_process(
        f"""
        from liger_bench.training import run_training
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
    """The real Liger path: bf16 on CUDA, kernels applied, losses within 2% of the stock model."""
    runs = {}
    for use_liger in (False, True):
        config = _config(use_liger=use_liger, max_steps=8, run_key=f"gpu-{use_liger}")
        runs[use_liger] = run_training(config, str(embedded_assets[0]), str(prepared_dataset))
    (vanilla, vanilla_steps), (liger, liger_steps) = runs[False], runs[True]
    assert vanilla.status == "ok" and liger.status == "ok", (vanilla.reason, liger.reason)
    assert liger.metrics["precision"] == "bf16"
    assert liger.liger_kernels["rms_norm"] > 0 and liger.liger_kernels["fused_linear_cross_entropy"] == 1
    assert liger.metrics["peak_mem_reserved_gb"] > 0
    for a, b in zip(liger_steps[3:], vanilla_steps[3:], strict=True):
        assert abs(a["loss"] - b["loss"]) / b["loss"] <= 0.02


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
