"""A grid point trained by two ranks: torchrun, gloo and FSDP2 on the CPU, through the supervisor's entry point.

The same code trains a ``gpus_per_run`` > 1 run on a GPU node (NCCL there); only the process group's
backend differs.
"""

from __future__ import annotations

import dataclasses
import statistics
import textwrap

import pytest

from liger_bench.measure.distributed import fsdp_settings, torchrun_command
from liger_bench.measure.supervisor import child_command, train_supervised
from liger_bench.plan.config import TrainConfig


def _config(run_key: str, max_steps: int = 6) -> TrainConfig:
    return TrainConfig(
        run_key=run_key, per_device_train_batch_size=2, max_seq_length=64, max_steps=max_steps, gpus_per_run=2
    )


def test_two_ranks_train_one_grid_point_sharded_and_measure_it_together(embedded_assets, prepared_dataset):
    model_dir, _ = embedded_assets
    # A peak FLOP/s as a GPU's table entry would give one (none is known for a CPU): MFU is then measured.
    config = dataclasses.replace(_config("baseline-bs2-seq64-r0"), peak_tflops=0.5)
    result, steps = train_supervised(config, str(model_dir), str(prepared_dataset), timeout_s=600)

    assert result.status == "ok", result.reason
    assert result.metrics["sharded_parameter_fraction"] == 1.0  # every parameter a DTensor shard: FSDP, not DDP
    assert result.metrics["fsdp_wrapped_layers"] == ["Phi3DecoderLayer"]  # from the model's _no_split_modules
    assert result.metrics["world_size"] == 2
    assert len(steps) == config.max_steps
    for step in steps:
        ranks = step["ranks"]
        assert len(ranks) == 2
        # Each rank trained its own micro-batch: the step's tokens are the sum of what the ranks counted.
        for kind in ("tokens_padded", "tokens_nonpad", "tokens_trained"):
            assert step[kind] == sum(rank[kind] for rank in ranks)
            assert ranks[0][kind] > 0 and ranks[1][kind] > 0
        assert step["tokens_padded"] == 2 * config.per_device_train_batch_size * 64
        assert step["step_time_s"] == max(rank["step_time_s"] for rank in ranks)
        # Both ranks' batches are padded to max_seq_length (the rows are longer), so their FLOPs per token are
        # the run's model_flops_per_token; MFU is over both GPUs' peak.
        assert [rank["shape"] for rank in ranks] == ["2x64", "2x64"]
        flops = step["tokens_padded"] * result.metrics["model_flops_per_token"]
        assert step["mfu"] == pytest.approx(flops / step["step_time_s"] / (0.5e12 * 2))
    measured = [s for s in steps if not s["warmup"] and not s["first_shape"]]
    rate = sum(s["tokens_nonpad"] for s in measured) / sum(s["step_time_s"] for s in measured)
    assert result.metrics["tokens_per_s_nonpad"] == pytest.approx(rate)
    assert result.metrics["tokens_per_s_nonpad_per_gpu"] == pytest.approx(rate / 2)
    assert result.metrics["peak_tflops"] == 0.5
    assert result.metrics["median_mfu"] == pytest.approx(statistics.median(s["mfu"] for s in measured))


# A test-only trigger, put on the ranks' PYTHONPATH by the test below and nowhere else: Python imports
# ``sitecustomize`` at start-up, so rank 1 (and only it) asks the host allocator for 2**62 bytes in
# its third training step. The allocation and its failure are real; only the timing is chosen.
IMPOSSIBLE_ALLOCATION_ON_RANK_1 = textwrap.dedent(
    """
    import os

    if os.environ.get("RANK") == "1":
        import torch
        from transformers import Trainer

        training_step = Trainer.training_step

        def training_step_that_allocates_too_much(self, model, inputs, num_items_in_batch=None):
            if self.state.global_step == 2:
                torch.empty(2**62, dtype=torch.uint8)
            return training_step(self, model, inputs, num_items_in_batch)

        Trainer.training_step = training_step_that_allocates_too_much
    """
)


def test_an_out_of_memory_on_one_rank_ends_every_rank_and_is_the_runs_oom(
    embedded_assets, prepared_dataset, tmp_path, monkeypatch
):
    import psutil

    (tmp_path / "sitecustomize.py").write_text(IMPOSSIBLE_ALLOCATION_ON_RANK_1)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{__import__('os').environ.get('PYTHONPATH', '')}")
    model_dir, _ = embedded_assets
    config = _config("baseline-bs2-seq64-r1", max_steps=2000)
    result, steps = train_supervised(config, str(model_dir), str(prepared_dataset), timeout_s=600)

    assert result.status == "oom", result.reason
    assert result.reason.startswith("rank 1: RuntimeError:")
    assert "DefaultCPUAllocator: can't allocate memory" in result.reason
    # Rank 0 waited for rank 1 in a collective; torchrun ended it long before its 2000 steps.
    assert 2 <= len(steps) < 10
    assert result.metrics["world_size"] == 2
    leftovers = [
        p for p in psutil.process_iter(["cmdline"]) if config.run_key in (p.info["cmdline"] or [])
    ]  # no rank outlives the run
    assert leftovers == []


def test_several_gpus_run_the_same_child_entry_point_under_torchrun(tmp_path):
    single = child_command(TrainConfig(run_key="k"), tmp_path)
    sharded = child_command(TrainConfig(run_key="k", gpus_per_run=4), tmp_path)
    assert single[1:] == ["-m", "liger_bench.measure.supervisor", "--run-key", "k", str(tmp_path)]
    assert sharded == torchrun_command(4, single[2:])
    assert sharded[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]


def test_fsdp_wraps_the_layers_the_model_declares_and_refuses_a_model_without_them():
    settings = fsdp_settings({"LlamaDecoderLayer"}, gradient_checkpointing=True)
    assert settings["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert settings["fsdp_config"]["activation_checkpointing"] is True
    with pytest.raises(ValueError, match="_no_split_modules is empty"):
        fsdp_settings(None, gradient_checkpointing=False)


def test_each_rank_must_fill_its_own_batches():
    from liger_bench.plan.validation import rows_problem

    config = TrainConfig(per_device_train_batch_size=2, gpus_per_run=4)
    assert rows_problem(8, config) == ""
    assert rows_problem(7, config).startswith("7 rows over 4 GPUs (1 each) cannot fill one optimizer step")
    assert rows_problem(7, TrainConfig(per_device_train_batch_size=2)) == ""


def test_the_local_pipeline_trains_a_grid_point_on_two_ranks_and_reports_two_gpus(embedded_assets, tmp_path):
    """The whole pipeline through kfp's local runner, compiled with gpus_per_run=2: the same components,
    prepare_grid's check and train_model's torchrun launch as on a cluster (gloo on this CPU)."""
    import json

    from liger_bench.cli.localrun import run_local

    model_dir, dataset_dir = embedded_assets
    overrides = {
        "model_name": str(model_dir),
        "dataset_name": str(dataset_dir),
        "use_liger": [False],
        "torch_compile": [False],
        "per_device_train_batch_size": [2],
        "max_seq_length": [64],
        "n_runs": 1,
        "max_steps": 5,
        "gpus_per_run": 2,
    }
    report = run_local(tmp_path, overrides)
    (path,) = report.parent.parent.glob("for-loop-*/train-model/result")
    result = json.loads(path.read_text())
    assert result["status"] == "ok", result["reason"]
    assert result["config"]["gpus_per_run"] == 2
    assert result["metrics"]["world_size"] == 2 and result["metrics"]["sharded_parameter_fraction"] == 1.0
    text = report.read_text()
    assert "GPUs per run" in text and "tokens/s non-pad per GPU" in text


def test_a_rank_out_of_memory_names_the_runs_outcome_though_another_rank_failed_first(tmp_path):
    """Rank 0 fails first (say, a collective timed out waiting for rank 1), then rank 1 reports running out of
    memory: the run is ``oom``, named after rank 1, with rank 1's steps. Real outcome files, as the ranks write them."""
    import os

    from liger_bench.measure.distributed import rank_outcome_file
    from liger_bench.measure.supervisor import first_failed_rank
    from liger_bench.records import RunResult, write_json_atomic

    for rank, status, reason, written_at in (
        (0, "failed", "DistBackendError: wait timeout", 1_000.0),
        (1, "oom", "OutOfMemoryError: CUDA out of memory.", 2_000.0),
    ):
        result = RunResult(f"baseline-bs2-seq64-r{rank}", status, {}, reason=reason)
        result.metrics["steps_completed"] = 3 + rank
        path = rank_outcome_file(tmp_path, rank)
        write_json_atomic(path, {"result": result.to_dict(), "steps": [], "rank": rank})
        os.utime(path, (written_at, written_at))
    outcome = first_failed_rank(tmp_path)
    assert (outcome.status, outcome.reason) == ("oom", "rank 1: OutOfMemoryError: CUDA out of memory.")
    assert outcome.metrics["steps_completed"] == 4
    # Without an out-of-memory rank, the rank that failed first (by its file's time, not its number) names the run.
    failed = RunResult("baseline-bs2-seq64-r1", "failed", {}, reason="RuntimeError: NaN in all-reduce")
    write_json_atomic(rank_outcome_file(tmp_path, 1), {"result": failed.to_dict(), "steps": [], "rank": 1})
    os.utime(rank_outcome_file(tmp_path, 1), (500.0, 500.0))
    outcome = first_failed_rank(tmp_path)
    assert (outcome.status, outcome.reason) == ("failed", "rank 1: RuntimeError: NaN in all-reduce")
