"""Every row of docs/failure-matrix.md: bad input is refused before any GPU is requested; faults lose nothing.

Real parts throughout: the grid and download code, the prepare_grid component, kfp's local runner, real
training steps of the tiny model, real signals to real processes, a real MLflow server. Two stand-ins,
because the real thing cannot exist here: a Hugging Face hub (a fake hub on 127.0.0.1 that answers like
the real one, headers included, so huggingface_hub's own error mapping runs), and a CUDA out-of-memory
on CPU (the ``torch.OutOfMemoryError`` CUDA raises, raised from inside a real forward pass).
"""

from __future__ import annotations

import contextlib
import errno
import html
import http.server
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from mlflow_server import free_port
from tiny_grid import GRID_TASK_ARGS, TINY_AXES

from liger_bench.cli.localrun import RunFailed, run_local
from liger_bench.plan.config import TrainConfig
from liger_bench.plan.grid import GridError, GridSpec, expand_grid

# A whole local pipeline, as small as it gets: one batch size, one repeat, five steps.
SMALL_PIPELINE = {
    "use_liger": [False],
    "torch_compile": [False],
    "per_device_train_batch_size": [2],
    "n_runs": 1,
    "max_steps": 5,
}


def _train_config(**changes) -> TrainConfig:
    values = {"run_key": "fm", "per_device_train_batch_size": 2, "max_seq_length": 64, "max_steps": 4}
    return TrainConfig(**{**values, **changes})


def _run_results(run_dir: Path) -> list[dict]:
    """The result records train_model wrote in one pipeline run, by run key."""
    paths = run_dir.glob("for-loop-*/train-model/result")
    return sorted((json.loads(path.read_text()) for path in paths), key=lambda result: result["run_key"])


# Grid: refused by prepare_grid (liger_bench.plan.grid) before any training task exists. Each case
# changes one thing in the tiny grid (tiny_grid.TINY_AXES).


@dataclass(frozen=True)
class GridCase:
    id: str
    changes: dict
    message: str  # regex: the parameter, the value and what is accepted


GRID_CASES = [
    GridCase("empty-axis", {"per_device_train_batch_size": []}, r"per_device_train_batch_size: the axis is empty"),
    GridCase("empty-use-liger", {"use_liger": []}, r"use_liger: the axis is empty \(\[\]\); give at least one"),
    GridCase(
        "non-integer-batch-size",
        {"per_device_train_batch_size": [2.5]},
        r"per_device_train_batch_size: 2.5 is not an integer; accepted: positive integers",
    ),
    GridCase(
        "text-batch-size",
        {"per_device_train_batch_size": ["big"]},
        r"per_device_train_batch_size: 'big' is not valid; accepted: positive integers",
    ),
    GridCase(
        "zero-batch-size",
        {"per_device_train_batch_size": [0]},
        r"per_device_train_batch_size: 0 is not positive; accepted: positive integers",
    ),
    GridCase("negative-seq-len", {"max_seq_length": [-64]}, r"max_seq_length: -64 is not positive; accepted: positive"),
    GridCase("non-integer-seq-len", {"max_seq_length": [64.5]}, r"max_seq_length: 64.5 is not an integer; accepted"),
    GridCase("not-a-boolean", {"use_liger": ["yes"]}, r"use_liger: 'yes' is not valid; accepted: true or false"),
    GridCase(
        "duplicate-values",
        {"per_device_train_batch_size": [2, 4, 2.0]},
        r"per_device_train_batch_size: duplicate values \[2\] in \[2, 4, 2.0\]; list each value once",
    ),
    GridCase(
        "unknown-training-argument",
        {"base_config": {"learning_rat": 1e-5}},
        r"base_config: unknown keys \['learning_rat'\]; accepted: \[.*'learning_rate'",
    ),
    GridCase(
        "base-config-sets-an-axis",
        {"base_config": {"max_seq_length": 128}},
        r"base_config: keys \['max_seq_length'\] are set by the grid itself",
    ),
    GridCase(
        "base-config-bad-value",
        {"base_config": {"learning_rate": "fast"}},
        r"base_config: learning_rate: expected float, got 'fast'",
    ),
    GridCase(
        "base-config-bad-compile-mode",
        {"base_config": {"torch_compile_mode": "fastest"}},
        r"base_config: torch_compile_mode: 'fastest' is not a mode; accepted: \('', 'default', 'reduce-overhead'",
    ),
    GridCase(
        "torch-compile-not-a-boolean", {"torch_compile": ["on"]}, r"torch_compile: 'on' is not valid; accepted: true"
    ),
    GridCase(
        "base-config-bad-precision",
        {"base_config": {"precision": "fp8"}},
        r"base_config: precision must be 'auto', 'bf16' or 'fp32', got 'fp8'",
    ),
    GridCase(
        "grid-too-large",
        {"per_device_train_batch_size": list(range(1, 130))},
        r"grid size 258 .* exceeds max_grid_size=256; accepted: shorten an axis or n_runs, or raise max_grid_size",
    ),
    GridCase(
        "grid-above-own-limit",
        {"n_runs": 3, "max_grid_size": 5},
        r"grid size 6 .* exceeds max_grid_size=5",
    ),
    GridCase("zero-runs", {"n_runs": 0}, r"n_runs: 0 is too small; accepted: integers >= 1"),
    GridCase("negative-runs", {"n_runs": -1}, r"n_runs: -1 is too small; accepted: integers >= 1"),
    GridCase(
        "negative-learning-rate",
        {"base_config": {"learning_rate": -1e-5}},
        r"base_config: learning_rate: -1e-05 is out of range; accepted: finite numbers >= 0",
    ),
    GridCase(
        "nan-learning-rate-as-text",
        {"base_config": {"learning_rate": "NaN"}},
        r"base_config: learning_rate: nan is out of range; accepted: finite numbers >= 0",
    ),
    GridCase(
        "infinite-weight-decay",
        {"base_config": {"weight_decay": float("inf")}},
        r"base_config: weight_decay: inf is out of range; accepted: finite numbers >= 0",
    ),
    GridCase(
        "negative-warmup-ratio",
        {"base_config": {"warmup_ratio": -0.1}},
        r"base_config: warmup_ratio: -0.1 is out of range; accepted: a fraction of max_steps in \[0, 1\)",
    ),
    GridCase(
        "warmup-ratio-of-one-or-more",
        {"base_config": {"warmup_ratio": 1.0}},
        r"base_config: warmup_ratio: 1.0 is out of range; accepted: a fraction of max_steps in \[0, 1\)",
    ),
    GridCase(
        "negative-seed",
        {"base_config": {"seed": -1}},
        r"base_config: seed: -1 is out of range; accepted: integers in \[0, 2\*\*32 - 1\]",
    ),
    GridCase("seed-too-large", {"base_config": {"seed": 2**32}}, r"base_config: seed: 4294967296 is out of range"),
    GridCase(
        "negative-peak-tflops",
        {"base_config": {"peak_tflops": -989.0}},
        r"base_config: peak_tflops: -989.0 is out of range; accepted: finite numbers >= 0 \(0: looked up",
    ),
    GridCase("nan-peak-tflops", {"base_config": {"peak_tflops": "nan"}}, r"base_config: peak_tflops: nan is out of"),
    GridCase(
        "zero-gradient-accumulation",
        {"base_config": {"gradient_accumulation_steps": 0}},
        r"base_config: gradient_accumulation_steps: 0 is out of range; accepted: integers >= 1",
    ),
    GridCase(
        "zero-pad-to-multiple-of",
        {"base_config": {"pad_to_multiple_of": 0}},
        r"base_config: pad_to_multiple_of: 0 is out of range; accepted: integers >= 1 \(1: no rounding\)",
    ),
    GridCase(
        "max-steps-not-after-warmup",
        {"max_steps": 3},
        r"max_steps: 3 leaves no measured step after warmup_steps_to_skip=3; accepted: max_steps > 3",
    ),
    GridCase("zero-gpus-per-run", {"gpus_per_run": 0}, r"gpus_per_run: 0 is too small; accepted: integers >= 1"),
    GridCase("zero-nodes-per-run", {"nodes_per_run": 0}, r"nodes_per_run: 0 is too small; accepted: integers >= 1"),
    GridCase(
        "gpus-above-max-gpus-per-run",
        {"gpus_per_run": 8, "nodes_per_run": 2, "trainer_configured": True},
        r"gpus_per_run × nodes_per_run = 8 × 2 = 16 GPUs per run exceeds max_gpus_per_run=8; "
        r"accepted: at most 8 GPUs per run, or raise max_gpus_per_run",
    ),
    GridCase(
        "several-nodes-without-trainer",
        {"nodes_per_run": 2},
        r"nodes_per_run: 2 needs the Kubeflow Trainer path, which this pipeline was compiled without; "
        r"accepted: nodes_per_run=1, or compile with --trainer-runtime and --trainer-pvc",
    ),
    GridCase(
        "base-config-sets-gpus-per-run",
        {"base_config": {"gpus_per_run": 2}},
        r"base_config: keys \['gpus_per_run'\] are set by the grid itself",
    ),
]


def test_the_valid_grid_the_cases_start_from_is_accepted():
    assert len(expand_grid(GridSpec(**TINY_AXES))) == 2


@pytest.mark.parametrize("case", GRID_CASES, ids=[case.id for case in GRID_CASES])
def test_bad_grid_is_refused_with_a_message_naming_parameter_value_and_accepted(case):
    with pytest.raises(GridError, match=case.message):
        expand_grid(GridSpec(**{**TINY_AXES, **case.changes}))


# kernel_ablation (issue 25): refused by prepare_grid like any grid parameter; model_type None is
# liger-bench local's check before the download, a model type prepare_grid's, from the model's config.
@dataclass(frozen=True)
class AblationCase:
    id: str
    changes: dict
    model_type: str | None
    message: str


ABLATION_CASES = [
    AblationCase(
        "kernel-ablation-unknown-value",
        {"kernel_ablation": "all"},
        None,
        r"kernel_ablation: 'all' is not accepted; accepted: off, each, leave-one-out, both",
    ),
    AblationCase(
        "kernel-ablation-without-the-baseline",
        {"kernel_ablation": "each", "use_liger": [True]},
        None,
        r"kernel_ablation: 'each' compares each kernel with the eager baseline and eager Liger, which a grid of "
        r"use_liger=\[True\] and torch_compile=\[False\] lacks; accepted: use_liger \[true, false\] and "
        r"torch_compile with false, or kernel_ablation 'off'",
    ),
    AblationCase(
        "kernel-ablation-compiled-only",
        {"kernel_ablation": "leave-one-out", "torch_compile": [True]},
        "phi3",
        r"kernel_ablation: 'leave-one-out' compares each kernel .* torch_compile=\[True\] lacks",
    ),
    AblationCase(
        "kernel-ablation-with-kernel-flags-in-base-config",
        {"kernel_ablation": "both", "base_config": {"liger_swiglu": False, "learning_rate": 1e-5}},
        "phi3",
        r"base_config: keys \['liger_swiglu'\] set kernels, which kernel_ablation='both' sets itself for every arm "
        r"\(from liger-kernel's defaults for the model type\); accepted: no liger_\* key with kernel_ablation, or "
        r"kernel_ablation 'off'",
    ),
    AblationCase(
        "kernel-ablation-grid-too-large",
        {"kernel_ablation": "both", "max_grid_size": 9, "n_runs": 1},
        "phi3",
        r"grid size 10 exceeds max_grid_size=9: kernel_ablation='both' adds 8 runs \(8 arms \['fused_linear_cross_"
        r"entropy', 'no_fused_linear_cross_entropy', 'no_rms_norm', 'no_rope', 'no_swiglu', 'rms_norm', 'rope', "
        r"'swiglu'\] × 1 batch sizes × 1 sequence lengths × 1 runs\) to the 2 of the other variants; accepted: "
        r"kernel_ablation 'each' or 'leave-one-out'",
    ),
    AblationCase(
        "kernel-ablation-on-a-type-liger-does-not-patch",
        {"kernel_ablation": "each"},
        "gpt2",
        r"kernel_ablation: liger-kernel has no patches for model type 'gpt2'; supported: \[.*'phi3'",
    ),
]


def test_the_ablation_cases_grid_is_accepted_at_its_own_size():
    assert len(expand_grid(GridSpec(**{**TINY_AXES, "kernel_ablation": "both", "max_grid_size": 10}), "phi3")) == 10


@pytest.mark.parametrize("case", ABLATION_CASES, ids=[case.id for case in ABLATION_CASES])
def test_a_bad_kernel_ablation_is_refused_with_one_message(case):
    with pytest.raises(GridError, match=case.message):
        expand_grid(GridSpec(**{**TINY_AXES, **case.changes}), case.model_type)


@dataclass(frozen=True)
class TrainingArgumentCase:
    id: str
    changes: dict  # TrainConfig fields
    message: str  # regex of the GridError


TRAINING_ARGUMENT_CASES = [
    TrainingArgumentCase(
        "optimizer-unknown",
        {"optim": "adamw_fast"},
        r"optim: 'adamw_fast' cannot be used \(not a name transformers knows\); accepted here: \[.*'adamw_torch_fused'",
    ),
    TrainingArgumentCase(
        "optimizer-needs-a-missing-package",
        {"optim": "adamw_bnb_8bit"},
        r"optim: 'adamw_bnb_8bit' cannot be used \(ImportError: .*bitsandbytes.*\); accepted here: \[.*'adamw_torch'",
    ),
    TrainingArgumentCase(
        "scheduler-unknown",
        {"lr_scheduler_type": "cosine_annealing"},
        r"lr_scheduler_type: 'cosine_annealing' cannot be used \(not a name transformers knows\); accepted here: "
        r"\[.*'cosine'",
    ),
    TrainingArgumentCase(
        "scheduler-needs-an-eval-set",
        {"lr_scheduler_type": "reduce_lr_on_plateau"},
        r"lr_scheduler_type: 'reduce_lr_on_plateau' cannot be used \(ValueError: .*requires an eval strategy\)",
    ),
    TrainingArgumentCase(
        "scheduler-needs-extra-arguments",
        {"lr_scheduler_type": "cosine_with_min_lr"},
        r"lr_scheduler_type: 'cosine_with_min_lr' cannot be used \(ValueError: One of min_lr or min_lr_rate",
    ),
]


@pytest.mark.parametrize("case", TRAINING_ARGUMENT_CASES, ids=[case.id for case in TRAINING_ARGUMENT_CASES])
def test_optimizer_or_scheduler_transformers_cannot_build_is_refused_before_training(case):
    """transformers builds the optimizer and schedule for real on the CPU, as the Trainer will."""
    from liger_bench.plan.validation import check_training_arguments

    check_training_arguments(_train_config())  # the defaults pass
    with pytest.raises(GridError, match=case.message):
        check_training_arguments(_train_config(**case.changes))


def test_bad_grid_fails_the_pipeline_in_prepare_grid_before_any_training(kfp_local, capfd, embedded_assets):
    """On a cluster prepare_grid is the guard (``liger-bench local`` refuses the same grid before it starts)."""
    from liger_bench.pipelines.liger_benchmark import liger_benchmark

    from liger_bench.cli.userinput import UserError

    model_dir, dataset_dir = embedded_assets
    overrides = {
        **SMALL_PIPELINE,
        "per_device_train_batch_size": [0],
        "model_name": str(model_dir),
        "dataset_name": str(dataset_dir),
    }
    message = "per_device_train_batch_size: 0 is not positive; accepted: positive integers"
    with pytest.raises(UserError, match=message):
        run_local(kfp_local / "refused", overrides)
    assert not (kfp_local / "refused").exists()
    with pytest.raises(RuntimeError, match="Inner task failed: .*prepare-grid"):
        liger_benchmark(**overrides)
    logs = "".join(capfd.readouterr())
    assert f"GridError: {message}" in logs
    (run_dir,) = [p for p in (kfp_local / "pipeline_root").iterdir() if p.name != ".kfp_cache"]
    assert sorted(task.name for task in run_dir.iterdir()) == ["download-dataset", "download-model"]


def local_log(output_dir: Path) -> str:
    """The log file of the one ``liger-bench local`` run into ``output_dir`` (kfp's output, every task's log)."""
    (log,) = (output_dir / "logs").glob("local-*.log")
    return log.read_text()


def test_a_certain_failure_fails_its_download_task_once_and_fast(tmp_path, embedded_assets):
    """A broken JSON line through kfp's local runner: one attempt, the user's path and line, seconds not
    minutes. ``min_success_ratio`` is the JSON integer 0, which kfp refuses for a float parameter unless
    the CLI converts it."""
    (tmp_path / "data.jsonl").write_text('{"text": "one"}\n{"text": "two" "x"}\n')
    overrides = {
        **SMALL_PIPELINE,
        "model_name": str(embedded_assets[0]),
        "dataset_name": str(tmp_path / "data.jsonl"),
        "min_success_ratio": 0,
    }
    message = f"DatasetError: dataset_name: '{tmp_path / 'data.jsonl'}': line 2 is not valid JSON"
    with pytest.raises(RunFailed, match=f"^task 'download-dataset' failed: {re.escape(message)}"):
        run_local(tmp_path / "out", overrides)
    logs = local_log(tmp_path / "out")
    assert logs.count(message) == 1
    assert len(re.findall(r"Executing task .*download-dataset", logs)) == 1  # no retry
    failed = re.search(
        r"(\d\d:\d\d:\d\d\.\d+) - INFO - Executing task .*download-dataset.*?\n"
        r"(?:.*\n)*?(\d\d:\d\d:\d\d\.\d+) - ERROR - Task .*download-dataset",
        logs,
    )
    started, ended = (datetime.strptime(stamp, "%H:%M:%S.%f") for stamp in failed.groups())
    assert (ended - started).total_seconds() < 10
    assert (tmp_path / "out" / "INCOMPLETE").read_text() == (
        "failed: RuntimeError: Pipeline 'liger-benchmark' finished with status FAILURE. "
        "Inner task failed: 'download-dataset'.\n"
    )


@pytest.mark.slow
def test_a_dataset_of_numbers_fails_download_dataset_in_a_local_run(tmp_path, embedded_assets):
    """Integer completions through kfp's local runner: download-dataset fails with the row, no training task
    starts (before: a crash with AttributeError, or 'ok' on the few rows with text)."""
    rows = [{"prompt": f"{i} plus {i}?", "completion": f"{2 * i}"} for i in range(3)]
    rows.append({"prompt": "2 plus 2?", "completion": 4})
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    overrides = {**SMALL_PIPELINE, "model_name": str(embedded_assets[0]), "dataset_name": str(tmp_path / "data.jsonl")}
    message = (
        f"DatasetError: dataset_name: '{tmp_path / 'data.jsonl'}': line 4: completion is not text: 4 (int); "
        "accepted: text (a JSON string)"
    )
    with pytest.raises(RunFailed, match=f"^task 'download-dataset' failed: {re.escape(message)}"):
        run_local(tmp_path / "out", overrides)
    assert not re.search(r"Executing task .*train-model", local_log(tmp_path / "out"))


def test_pipeline_arguments_kfp_cannot_take_are_converted_or_refused_before_the_run():
    from liger_bench.pipelines.liger_benchmark import liger_benchmark

    from liger_bench.plan.validation import pipeline_arguments

    types = {name: spec.type for name, spec in liger_benchmark.component_spec.inputs.items()}
    converted = pipeline_arguments({"min_success_ratio": 1, "n_runs": 3, "use_liger": [True]}, types)
    assert converted == {"min_success_ratio": 1.0, "n_runs": 3, "use_liger": [True]}
    assert isinstance(converted["min_success_ratio"], float) and isinstance(converted["n_runs"], int)
    with pytest.raises(ValueError, match=r"^min_success_ratio, base_config.learning_rate, max_seq_length\[1\]: NaN"):
        pipeline_arguments(
            {
                "min_success_ratio": float("nan"),
                "base_config": {"learning_rate": float("inf")},
                "max_seq_length": [64, float("-inf")],
            },
            types,
        )


# Model: download_model (liger_bench.inputs.modelio) and prepare_grid's check against the model.


def _gpt_model_dir(model_type: str, embedded_assets, tmp_path_factory) -> Path:
    """A one-layer GPT-style model of ``model_type`` with random weights, the embedded tokenizer and a
    context of 128 positions (config key ``n_positions``)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp(model_type) / "model"
    tokenizer = AutoTokenizer.from_pretrained(embedded_assets[0])
    sizes = {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 128, "vocab_size": len(tokenizer)}
    AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **sizes)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def gpt2_model_dir(embedded_assets, tmp_path_factory) -> Path:
    """A model folder of an architecture liger-kernel has no patches for: GPT-2."""
    return _gpt_model_dir("gpt2", embedded_assets, tmp_path_factory)


@pytest.fixture(scope="module")
def openai_gpt_model_dir(embedded_assets, tmp_path_factory) -> Path:
    """A model folder whose transformers class cannot checkpoint gradients: GPT-1."""
    return _gpt_model_dir("openai-gpt", embedded_assets, tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_model_dirs(embedded_assets, tmp_path_factory) -> dict[str, Path]:
    """Tiny random models of architectures liger-kernel patches differently from Phi-3, by model type:
    Gemma (GeGLU, no SwiGLU), Gemma-2 (no sdpa in transformers), Granite (no fused linear cross-entropy)."""
    from tiny_models import write_tiny_model

    folder = tmp_path_factory.mktemp("tiny-models")
    return {name: write_tiny_model(name, folder / name, embedded_assets[0]) for name in ("gemma", "gemma2", "granite")}


@pytest.fixture(scope="module")
def phi3_without_context_key_dir(embedded_assets, tmp_path_factory) -> Path:
    """The embedded Phi-3 whose config.json leaves out max_position_embeddings: transformers' Phi3Config then
    builds the model with its default, 4096 positions."""
    import shutil

    folder = tmp_path_factory.mktemp("no-context-key") / "model"
    shutil.copytree(embedded_assets[0], folder)
    config = json.loads((folder / "config.json").read_text())
    del config["max_position_embeddings"]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@dataclass(frozen=True)
class ModelGridCase:
    id: str
    model: str  # "phi3" (the embedded model), "gpt2", "openai-gpt", "phi3-without-context-key", or a model type
    # of tiny_model_dirs
    changes: dict
    message: str | None  # regex of the GridError; None: the grid is accepted


MODEL_GRID_CASES = [
    ModelGridCase(
        "liger-on-unsupported-architecture",
        "gpt2",
        {"use_liger": [True, False]},
        r"use_liger: true was requested but liger-kernel has no patches for model type 'gpt2' .*"
        r"use use_liger=\[false\], or a model of one of the types \[.*'phi3'",
    ),
    ModelGridCase("unsupported-architecture-without-liger", "gpt2", {"use_liger": [False]}, None),
    ModelGridCase(
        "liger-kernel-the-architecture-lacks",
        "gemma",
        {"base_config": {"liger_swiglu": True}},
        r"base_config: model .*: liger_swiglu: liger-kernel offers no 'swiglu' kernel for model type 'gemma'; "
        r"offered: \['cross_entropy', 'fused_linear_cross_entropy', 'geglu', 'rms_norm', 'rope'\]",
    ),
    ModelGridCase("liger-defaults-of-the-architecture", "gemma", {}, None),
    ModelGridCase(
        "liger-kernel-rejects-the-combination",
        "granite",
        {"base_config": {"liger_fused_linear_cross_entropy": True, "liger_cross_entropy": False}},
        r"liger-kernel rejects the kernels \[.*'fused_linear_cross_entropy'.*\] for model type 'granite' .*"
        r"NotImplementedError: LigerFusedLinearCrossEntropy is not available for Granite models",
    ),
    ModelGridCase(
        "both-cross-entropy-kernels",
        "granite",
        {"base_config": {"liger_fused_linear_cross_entropy": True}},
        r"liger_cross_entropy and liger_fused_linear_cross_entropy would both be on for model type 'granite' "
        r"\(given \{'liger_fused_linear_cross_entropy': True\}, liger-kernel's defaults .*set the other to false",
    ),
    ModelGridCase(
        "attention-the-architecture-lacks",
        "gemma2",
        {"base_config": {"attn_implementation": "sdpa"}},
        r"base_config: attn_implementation: model .*: transformers cannot build model type 'gemma2' as a causal "
        r"LM with attn_implementation='sdpa': "
        r"ValueError: .*does not support .*scaled_dot_product_attention",
    ),
    ModelGridCase(
        "unknown-attention",
        "phi3",
        {"base_config": {"attn_implementation": "fast"}},
        r"attn_implementation='fast': ValueError: Specified `attn_implementation=\"fast\"` is not supported",
    ),
    ModelGridCase(
        "seq-len-above-context",
        "phi3",
        {"max_seq_length": [512, 4096]},
        r"max_seq_length: 4096 exceeds the context length 2048 of model .* \(from the model's config: "
        r"max_position_embeddings in config.json\); accepted: values <= 2048",
    ),
    ModelGridCase(
        "seq-len-above-the-config-class-default",
        "phi3-without-context-key",
        {"use_liger": [False], "max_seq_length": [100000]},
        r"max_seq_length: 100000 exceeds the context length 4096 of model .* \(from the model's config: "
        r"max_position_embeddings in the default of transformers' Phi3Config\); accepted: values <= 4096",
    ),
    ModelGridCase(
        "seq-len-above-gpt2-n-positions",
        "gpt2",
        {"use_liger": [False], "max_seq_length": [256]},
        r"max_seq_length: 256 exceeds the context length 128 of model .* \(from the model's config: n_positions in "
        r"config.json\)",
    ),
    ModelGridCase(
        "gradient-checkpointing-the-model-cannot-do",
        "openai-gpt",
        {"use_liger": [False], "base_config": {"gradient_checkpointing": True}},
        r"base_config: gradient_checkpointing: true, but transformers' OpenAIGPTLMHeadModel \(model .*\) does not "
        r"support it; accepted: false for this model",
    ),
    ModelGridCase(
        "gradient-checkpointing-the-model-can-do",
        "phi3",
        {"use_liger": [False], "base_config": {"gradient_checkpointing": True}},
        None,
    ),
    # Issue 24: the frontier search's settings are checked with the grid, before find_frontier asks for a GPU.
    ModelGridCase(
        "bad-frontier-setting",
        "phi3",
        {"frontier_resolution": 0},
        r"frontier_resolution: 0 is out of range; accepted: integers from 1 to frontier_max_batch_size \(1024\)",
    ),
    ModelGridCase(
        "max-batch-without-the-search",
        "phi3",
        {"per_device_train_batch_size": ["max", 2], "frontier_search": False},
        r'per_device_train_batch_size: "max" is each variant\'s searched memory frontier, but no search runs '
        r'\(frontier_search is false\); accepted: batch sizes, or "max" with frontier_search true on one node',
    ),
    ModelGridCase("max-batch-with-the-search", "phi3", {"per_device_train_batch_size": ["max"]}, None),
    ModelGridCase(
        "bad-seq-search-batch",
        "phi3",
        {"frontier_seq_batch_size": -1},
        r"frontier_seq_batch_size: -1 is out of range; accepted: integers >= 0 \(0: no sequence-length search\)",
    ),
    ModelGridCase("seq-search-within-the-context", "phi3", {"frontier_seq_batch_size": 4}, None),
]


def _model_artifact(source: Path, destination: Path):
    """download_model's work on ``source``, as the artifact prepare_grid receives."""
    from kfp.dsl import Model

    from liger_bench.tasks import download_model

    return Model(name="model", uri=str(destination), metadata=download_model(str(source), "", destination))


def _dataset_artifact(source: Path, destination: Path):
    """download_dataset's work on ``source``, as the artifact prepare_grid receives."""
    from kfp.dsl import Dataset

    from liger_bench.tasks import download_dataset

    return Dataset(
        name="dataset", uri=str(destination), metadata=download_dataset(str(source), "train", "", destination)
    )


@pytest.fixture(scope="module")
def embedded_model_and_dataset(embedded_assets, tmp_path_factory):
    """The embedded model and dataset as prepare_grid receives them from the download tasks."""
    folder = tmp_path_factory.mktemp("artifacts")
    return _model_artifact(embedded_assets[0], folder / "model"), _dataset_artifact(embedded_assets[1], folder / "data")


@pytest.mark.parametrize("case", MODEL_GRID_CASES, ids=[case.id for case in MODEL_GRID_CASES])
def test_grid_the_model_cannot_run_is_refused_by_prepare_grid(case, embedded_model_and_dataset, request, tmp_path):
    """prepare_grid's own function on the metadata download_model's work produced."""
    from liger_bench.components.prepare_grid import prepare_grid

    model, dataset = embedded_model_and_dataset
    if case.model != "phi3":
        fixtures = {
            "gpt2": "gpt2_model_dir",
            "openai-gpt": "openai_gpt_model_dir",
            "phi3-without-context-key": "phi3_without_context_key_dir",
        }
        if case.model in fixtures:
            source = request.getfixturevalue(fixtures[case.model])
        else:
            source = request.getfixturevalue("tiny_model_dirs")[case.model]
        model = _model_artifact(source, tmp_path / "model")
    arguments = {**TINY_AXES, **GRID_TASK_ARGS, **case.changes}
    if case.message is None:
        grid = prepare_grid.python_func(model=model, dataset=dataset, **arguments)
        assert [item["use_liger"] for item in grid] == arguments["use_liger"]
    else:
        with pytest.raises(GridError, match=case.message):
            prepare_grid.python_func(model=model, dataset=dataset, **arguments)


@pytest.mark.parametrize(
    ("model_max_length", "warning"),
    [
        (1024, "fallback: the tokenizer: model_max_length in tokenizer_config.json"),
        (None, "fallback: none: max_seq_length cannot be checked against one"),
    ],
    ids=["tokenizer-fallback", "no-context-length"],
)
def test_a_model_whose_config_states_no_context_length_falls_back_with_a_warning(
    model_max_length, warning, embedded_assets, embedded_model_and_dataset, tmp_path, capsys
):
    """Mamba's config has no positional limit under any name; the tokenizer's model_max_length is the fallback.

    Without one, the length is unknown: prepare_grid refuses a longest-sequence search, which has no bound.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from liger_bench.tasks import download_model

    source = tmp_path / "mamba"
    tokenizer = AutoTokenizer.from_pretrained(embedded_assets[0])
    sizes = {"hidden_size": 16, "num_hidden_layers": 1, "state_size": 4, "vocab_size": len(tokenizer)}
    AutoModelForCausalLM.from_config(AutoConfig.for_model("mamba", **sizes)).save_pretrained(source)
    tokenizer.save_pretrained(source)
    tokenizer_config = json.loads((source / "tokenizer_config.json").read_text())
    tokenizer_config["model_max_length"] = model_max_length
    (source / "tokenizer_config.json").write_text(json.dumps({k: v for k, v in tokenizer_config.items() if v}))
    info = download_model(str(source), "", tmp_path / "out")
    assert info["context_length"] == (model_max_length or 0)
    assert f"warning: model '{source}': its config states no context length; {warning}" in capsys.readouterr().out
    if model_max_length:
        grid = expand_grid(GridSpec(**{**TINY_AXES, "use_liger": [False], "max_seq_length": [2048]}))
        from liger_bench.plan.grid import check_against_model

        with pytest.raises(GridError, match=r"context length 1024 of model .* \(from the tokenizer: model_max_length"):
            check_against_model(grid, info, str(tmp_path / "out"))
    else:
        from kfp.dsl import Model
        from liger_bench.components.prepare_grid import prepare_grid

        model = Model(name="model", uri=str(tmp_path / "out"), metadata=info)
        arguments = {**TINY_AXES, **GRID_TASK_ARGS, "use_liger": [False], "frontier_seq_batch_size": 4}
        with pytest.raises(GridError) as refused:
            prepare_grid.python_func(model=model, dataset=embedded_model_and_dataset[1], **arguments)
        assert str(refused.value) == (
            "frontier_seq_batch_size: 4 searches max_seq_length up to the model's context length, which is unknown; "
            "accepted: 0 (no sequence-length search) with this model, or a model whose context length is at least "
            "64 tokens"
        )


@dataclass(frozen=True)
class DataGridCase:
    id: str
    rows: int | None  # None: the embedded dataset (256 rows, the longest 183 tokens); n: n short alpaca rows
    changes: dict
    message: str | None  # regex of the GridError; None: the grid is accepted


DATA_GRID_CASES = [
    DataGridCase(
        "batch-larger-than-the-dataset",
        5,
        {"per_device_train_batch_size": [2, 8]},
        r"per_device_train_batch_size: 8 and dataset '.*/rows.jsonl': 5 rows cannot fill one optimizer step of "
        r"per_device_train_batch_size=8 × gradient_accumulation_steps=1 = 8 rows; accepted: batch sizes <= 5",
    ),
    DataGridCase(
        "epoch-would-end-with-a-smaller-step",
        7,
        {"base_config": {"gradient_accumulation_steps": 2}},
        r"7 rows give 3 batches of 2 per epoch, not a multiple of gradient_accumulation_steps=2: each epoch would "
        r"end with a smaller step",
    ),
    DataGridCase(
        "rows-fill-whole-steps-over-several-epochs", 6, {"base_config": {"gradient_accumulation_steps": 3}}, None
    ),
    DataGridCase(
        "sequence-lengths-that-train-identical-batches",
        None,
        {"max_seq_length": [64, 256, 512]},
        r"max_seq_length: \[256, 512\] all reach the longest row of dataset .* \((\d+) tokens\), so their runs would "
        r"train identical batches; accepted: at most one value >= \1",
    ),
    DataGridCase("sequence-lengths-that-differ", None, {"max_seq_length": [64, 256]}, None),
    DataGridCase(
        "min-success-ratio-above-one",
        None,
        {"min_success_ratio": 1.5},
        r"min_success_ratio: 1.5 is out of range; accepted: a number in \[0, 1\]",
    ),
    DataGridCase("min-success-ratio-nan", None, {"min_success_ratio": float("nan")}, r"min_success_ratio: nan is out"),
    DataGridCase("min-success-ratio-integer-zero", None, {"min_success_ratio": 0}, None),
    DataGridCase(
        "gpu-hour-price-negative",
        None,
        {"gpu_hour_price": -2.5},
        r"gpu_hour_price: -2.5 is not a price; accepted: a number >= 0, the price of one GPU-hour in any currency "
        r"\(0: no cost figures\)",
    ),
    DataGridCase("gpu-hour-price-not-a-number", None, {"gpu_hour_price": "2 EUR"}, r"gpu_hour_price: '2 EUR' is not"),
    DataGridCase("gpu-hour-price-nan", None, {"gpu_hour_price": float("nan")}, r"gpu_hour_price: nan is not a price"),
    DataGridCase("gpu-hour-price-infinite", None, {"gpu_hour_price": float("inf")}, r"gpu_hour_price: inf is not"),
    DataGridCase("gpu-hour-price-integer", None, {"gpu_hour_price": 3}, None),
]


@pytest.mark.parametrize("case", DATA_GRID_CASES, ids=[case.id for case in DATA_GRID_CASES])
def test_grid_the_dataset_cannot_serve_is_refused_by_prepare_grid(case, embedded_model_and_dataset, tmp_path):
    """prepare_grid's own function on the artifacts of the download tasks' work."""
    from liger_bench.components.prepare_grid import prepare_grid

    model, dataset = embedded_model_and_dataset
    if case.rows is not None:
        rows = [{"instruction": f"Say {i}.", "output": f"{i}"} for i in range(case.rows)]
        (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        dataset = _dataset_artifact(tmp_path / "rows.jsonl", tmp_path / "data")
    arguments = {**TINY_AXES, "use_liger": [False], **GRID_TASK_ARGS, **case.changes}
    if case.message is None:
        grid = prepare_grid.python_func(model=model, dataset=dataset, **arguments)
        assert grid and all(item["use_liger"] is False for item in grid)
    else:
        with pytest.raises(GridError, match=case.message):
            prepare_grid.python_func(model=model, dataset=dataset, **arguments)


class _FakeHub(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's ``answer``: (HTTP status, headers), as the hub does."""

    def do_GET(self):
        status, headers = self.server.answer
        body = json.dumps({"error": headers.get("X-Error-Message", "")}).encode()
        self.send_response(status)
        for name, value in {**headers, "Content-Type": "application/json"}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(monkeypatch) -> Iterator[Callable[[tuple[int, dict] | None], str]]:
    """Point huggingface_hub at 127.0.0.1: ``fake_hub(answer)`` starts a hub answering ``answer``,
    ``fake_hub(None)`` leaves a port where nothing listens (the hub is unreachable). Returns the URL."""
    from huggingface_hub import constants

    servers = []

    def start(answer: tuple[int, dict] | None) -> str:
        if answer is None:
            url = f"http://127.0.0.1:{free_port()}"
        else:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
            server.answer = answer
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            servers.append(server)
            url = f"http://127.0.0.1:{server.server_port}"
        monkeypatch.setattr(constants, "ENDPOINT", url)
        return url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


GATED = (401, {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to this repo is restricted."})
NOT_FOUND = (404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
NO_REVISION = (404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id: v9"})
SECRET_HINT = "create the Kubernetes Secret named by the pipeline parameter hf_token_secret (key HF_TOKEN)"


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_text(text)


def _save_to_disk(rows: list[dict]) -> Callable[[Path], None]:
    def save(folder: Path) -> None:
        import datasets

        data = datasets.Dataset.from_list(rows) if rows else datasets.Dataset.from_dict({"text": []})
        data.save_to_disk(str(folder / "saved"))

    return save


def _truncate(name: str, keep: float) -> Callable[[Path], None]:
    def truncate(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: int(len(data) * keep)])

    return truncate


def _edit_json(name: str, **changes) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        (folder / name).write_text(json.dumps({**json.loads((folder / name).read_text()), **changes}))

    return edit


def _shard_index(folder: Path) -> None:
    weight_map = {"model.embed_tokens.weight": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _remove_special_tokens(folder: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.eos_token = None
    tokenizer.save_pretrained(folder)


@dataclass(frozen=True)
class SourceCase:
    id: str
    kind: str  # "model": download_model's work; "dataset": download_dataset's work
    name: str  # model_name or dataset_name; "{tmp}" is a temp folder that ``prepare`` fills
    message: str  # regex of the ModelError / DatasetError
    hub: tuple[int, dict] | None = None  # the fake hub's answer; None: the hub is unreachable
    prepare: Callable[[Path], None] | None = None
    split: str = "train"
    revision: str = ""
    hf_token: str = ""
    model_edit: Callable[[Path], None] | None = None  # applied to a copy of the embedded model at {tmp}/model


EDITED_MODEL = "{tmp}/model"
SOURCE_CASES = [
    SourceCase("model-path-missing", "model", "/nonexistent/model", r"model_name: local path '/nonexistent/model'"),
    SourceCase(
        "model-hub-unreachable",
        "model",
        "org/model",
        r"model_name: 'org/model' is not a local path and the hub at http://127.0.0.1:\d+ could not be reached"
        r".*ConnectError.*check the node's network access and HF_ENDPOINT",
    ),
    SourceCase(
        "model-not-on-hub",
        "model",
        "org/no-such-model",
        r"model_name: 'org/no-such-model' was not found on the hub at http://127.0.0.1:\d+ and is not a local",
        hub=NOT_FOUND,
    ),
    SourceCase(
        "model-gated-without-token",
        "model",
        "org/gated",
        r"model_name: 'org/gated' is gated and HF_TOKEN is not set; "
        + SECRET_HINT.replace("(", r"\(").replace(")", r"\)"),
        hub=GATED,
    ),
    SourceCase(
        "model-gated-token-without-access",
        "model",
        "org/gated",
        r"model_name: 'org/gated' is gated and the HF_TOKEN given has no access",
        hub=GATED,
        hf_token="hf_no_access",
    ),
    SourceCase(
        "model-revision-missing",
        "model",
        "org/model",
        r"model_revision: 'v9' does not exist for 'org/model'",
        hub=NO_REVISION,
        revision="v9",
    ),
    SourceCase(
        "model-folder-without-weights",
        "model",
        "{tmp}",
        r"model_name: the folder '.*/source' has no \*.safetensors weights",
        prepare=_write("config.json", '{"model_type": "phi3"}'),
    ),
    SourceCase(
        "model-empty-folder",
        "model",
        "{tmp}",
        r"model_name: the folder '.*/source' has no config.json",
    ),
    SourceCase(
        "model-weights-truncated",
        "model",
        EDITED_MODEL,
        r"model_name: the folder '.*/source/model': the weights file 'model.safetensors' is unusable "
        r"\(SafetensorError: .*incomplete metadata, file not fully covered\)",
        model_edit=_truncate("model.safetensors", 0.5),
    ),
    SourceCase(
        "model-weights-header-broken",
        "model",
        EDITED_MODEL,
        r"the weights file 'model.safetensors' is unusable \(SafetensorError: Error while deserializing header",
        model_edit=_truncate("model.safetensors", 0.00001),
    ),
    SourceCase(
        "model-shard-missing",
        "model",
        EDITED_MODEL,
        r"model.safetensors.index.json names shards that are missing: \['model-00002-of-00002.safetensors'\]",
        model_edit=_shard_index,
    ),
    SourceCase(
        "model-type-unknown",
        "model",
        EDITED_MODEL,
        r"config.json has model_type 'phi99', which transformers 5\.\d+\.\d+ does not know",
        model_edit=_edit_json("config.json", model_type="phi99"),
    ),
    SourceCase(
        "model-type-not-a-causal-lm",
        "model",
        EDITED_MODEL,
        r"model_type 'vit' has no causal language model in transformers; accepted: one of \[.*'phi3'",
        model_edit=_edit_json("config.json", model_type="vit"),
    ),
    SourceCase(
        "model-multimodal",
        "model",
        EDITED_MODEL,
        r"model_type 'gemma3' is multimodal \(its config nests \['text_config', 'vision_config'\]\); this benchmark "
        r"fine-tunes text-only causal language models; accepted: its language model saved alone as model_type "
        r"'gemma3_text'",
        model_edit=_edit_json("config.json", model_type="gemma3"),
    ),
    SourceCase(
        "model-config-not-json",
        "model",
        EDITED_MODEL,
        r"config.json is not valid JSON",
        model_edit=lambda folder: (folder / "config.json").write_text("{model_type: phi3"),
    ),
    SourceCase(
        "model-tokenizer-larger-than-vocab",
        "model",
        EDITED_MODEL,
        r"the tokenizer has \d+ tokens but config.json's vocab_size is 100: token ids past the embedding would fail",
        model_edit=_edit_json("config.json", vocab_size=100),
    ),
    SourceCase(
        "model-tokenizer-without-pad-or-eos",
        "model",
        EDITED_MODEL,
        r"the tokenizer has neither a pad nor an EOS token, so batches cannot be padded",
        model_edit=_remove_special_tokens,
    ),
    SourceCase(
        "model-revision-not-the-content",
        "model",
        EDITED_MODEL,
        r"model_revision: 'sha256:0000000000000000' does not match the content of the local path '.*/model', "
        r"which is now sha256:[0-9a-f]{16}",
        revision="sha256:0000000000000000",
        model_edit=lambda folder: None,
    ),
    SourceCase("dataset-path-missing", "dataset", "/nonexistent/data.jsonl", r"local path .* does not exist"),
    SourceCase(
        "dataset-hub-unreachable",
        "dataset",
        "org/data",
        r"dataset_name: 'org/data' is not a local path and the hub at http://127.0.0.1:\d+ could not be reached",
    ),
    SourceCase(
        "dataset-not-on-hub",
        "dataset",
        "org/no-such-data",
        r"dataset_name: 'org/no-such-data' was not found on the hub",
        hub=NOT_FOUND,
    ),
    SourceCase(
        "dataset-gated-without-token",
        "dataset",
        "org/gated",
        r"dataset_name: 'org/gated' is gated and HF_TOKEN is not set",
        hub=GATED,
    ),
    SourceCase(
        "dataset-unusable-columns",
        "dataset",
        "{tmp}/qa.jsonl",
        r"dataset has columns \['answer', 'question'\]; accepted: prompt\+completion \(text or chat messages\), "
        r"messages \(chat\), alpaca's",
        prepare=_write("qa.jsonl", '{"question": "Why?", "answer": "Because."}\n'),
    ),
    SourceCase(
        "dataset-empty-file",
        "dataset",
        "{tmp}/empty.jsonl",
        r"dataset_split: 'train' of '.*/empty.jsonl' has no rows; need at least one row",
        prepare=_write("empty.jsonl", ""),
    ),
    SourceCase(
        "dataset-header-only",
        "dataset",
        "{tmp}/header.csv",
        r"dataset_split: 'train' of '.*/header.csv' has no rows; need at least one row",
        prepare=_write("header.csv", "instruction,output\n"),
    ),
    SourceCase(
        "dataset-saved-empty",
        "dataset",
        "{tmp}/saved",
        r"dataset_name: '.*/saved' holds no rows; need at least one row",
        prepare=_save_to_disk([]),
    ),
    SourceCase(
        "dataset-no-completion-text",
        "dataset",
        "{tmp}/saved",
        r"no row has a non-empty completion/output/text",
        prepare=_save_to_disk([{"instruction": "Say nothing.", "output": " "}]),
    ),
    SourceCase(
        "dataset-unknown-split",
        "dataset",
        "{tmp}/data.jsonl",
        r"dataset_split: 'test' does not exist",
        prepare=_write("data.jsonl", '{"text": "one row"}\n'),
        split="test",
    ),
    SourceCase(
        "dataset-split-of-a-single-saved-dataset",
        "dataset",
        "{tmp}/saved",
        r"dataset_split: 'test' does not fit '.*/saved', a single saved dataset of split 'train' \(no other split\)",
        prepare=_save_to_disk([{"text": "one row"}]),
        split="test",
    ),
    SourceCase(
        "dataset-broken-json-line",
        "dataset",
        "{tmp}/data.jsonl",
        r"dataset_name: '.*/source/data.jsonl': line 2 is not valid JSON \(Expecting ',' delimiter at column 16\)",
        prepare=_write("data.jsonl", '{"text": "one"}\n{"text": "two" "x"}\n{"text": "three"}\n'),
    ),
    SourceCase(
        "dataset-json-line-not-an-object",
        "dataset",
        "{tmp}/data.jsonl",
        r"'.*/data.jsonl': line 1 is a JSON list, not an object of column values",
        prepare=_write("data.jsonl", '["one", "two"]\n'),
    ),
    SourceCase(
        "dataset-not-utf8",
        "dataset",
        "{tmp}/data.csv",
        r"dataset_name: '.*/source/data.csv': line 3 is not UTF-8 text \(invalid continuation byte at byte 4 of",
        prepare=lambda folder: (folder / "data.csv").write_bytes(b"text\nfine\ncaf\xe9 au lait\n"),
    ),
    SourceCase(
        "dataset-empty-folder",
        "dataset",
        "{tmp}",
        r"dataset_name: the folder '.*/source' holds no data file; accepted: \['.csv', '.json', '.jsonl', '.parquet'\]",
    ),
    SourceCase(
        "dataset-revision-not-the-content",
        "dataset",
        "{tmp}/data.jsonl",
        r"dataset_revision: 'sha256:0000000000000000' does not match the content of the local path",
        prepare=_write("data.jsonl", '{"text": "one row"}\n'),
        revision="sha256:0000000000000000",
    ),
    SourceCase(
        "dataset-integer-completion",
        "dataset",
        "{tmp}/data.jsonl",
        r"dataset_name: '.*/data.jsonl': line 3: completion is not text: 4 \(int\); accepted: text \(a JSON string\)",
        prepare=_write(
            "data.jsonl",
            '{"prompt": "1+1?", "completion": "2"}\n{"prompt": "Two plus two?", "completion": "four"}\n'
            '{"prompt": "2+2?", "completion": 4}\n',
        ),
    ),
    SourceCase(
        "dataset-integer-zero-completions",
        "dataset",
        "{tmp}/data.jsonl",
        r"row 1: completion is not text: 0 \(int\); accepted: text",
        prepare=_write(
            "data.jsonl", '{"prompt": "One minus one?", "completion": 0}\n{"prompt": "Zero?", "completion": 0}\n'
        ),
    ),
    SourceCase(
        "dataset-numeric-prompts",
        "dataset",
        "{tmp}/data.csv",
        r"dataset_name: '.*/data.csv': row 1: instruction is not text: 7 \(int\); accepted: text",
        prepare=_write("data.csv", "instruction,output\n7,seven\n8,eight\n"),
    ),
    SourceCase(
        "dataset-mapping-as-prompt",
        "dataset",
        "{tmp}/data.jsonl",
        r"row 1: prompt is not text: \{\"q\": \"hi\"\} \(dict\); accepted: text",
        prepare=_write("data.jsonl", '{"prompt": {"q": "hi"}, "completion": "hello"}\n'),
    ),
    SourceCase(
        "dataset-null-instruction",
        "dataset",
        "{tmp}/data.jsonl",
        r"row 2: instruction is null: null \(NoneType\); accepted: text \(a JSON string\); a null is accepted only "
        r"in \['output', 'input'\] \(read as empty\)",
        prepare=_write(
            "data.jsonl",
            '{"instruction": "Greet.", "input": "", "output": "Hi."}\n'
            '{"instruction": null, "input": "x", "output": "y"}\n',
        ),
    ),
    SourceCase(
        "dataset-chat-message-without-content",
        "dataset",
        "{tmp}/data.jsonl",
        r"row 1: messages has message 1 whose content is not text: .*; accepted: chat messages, a list of "
        r"\{\"role\": ..., \"content\": ...\} with string values",
        prepare=_write("data.jsonl", '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}\n'),
    ),
    SourceCase(
        "dataset-chat-and-text-mixed",
        "dataset",
        "{tmp}/data.jsonl",
        r"row 1: completion is not a list of chat messages: \"hello\" \(str\)",
        prepare=_write("data.jsonl", '{"prompt": [{"role": "user", "content": "hi"}], "completion": "hello"}\n'),
    ),
    SourceCase(
        "dataset-unsupported-file",
        "dataset",
        "{tmp}/data.txt",
        r"has suffix '.txt'; accepted: \['.csv', '.json', '.jsonl', '.parquet'\]",
        prepare=_write("data.txt", "one row"),
    ),
]


@pytest.mark.parametrize("case", SOURCE_CASES, ids=[case.id for case in SOURCE_CASES])
def test_unusable_model_or_dataset_is_refused_by_its_download_task(
    case, fake_hub, monkeypatch, tmp_path, embedded_assets
):
    import shutil

    from liger_bench.inputs.data import DatasetError
    from liger_bench.inputs.modelio import ModelError
    from liger_bench.tasks import download_dataset, download_model

    fake_hub(case.hub)
    if case.hf_token:
        monkeypatch.setenv("HF_TOKEN", case.hf_token)
    else:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    source = tmp_path / "source"
    source.mkdir()
    if case.prepare:
        case.prepare(source)
    if case.model_edit:
        shutil.copytree(embedded_assets[0], source / "model")
        case.model_edit(source / "model")
    name = case.name.replace("{tmp}", str(source))
    destination = tmp_path / "out"
    if case.kind == "model":
        with pytest.raises(ModelError, match=case.message):
            download_model(name, case.revision, destination)
    else:
        with pytest.raises(DatasetError, match=case.message):
            download_dataset(name, case.split, case.revision, destination)


def test_null_input_is_no_input_and_null_or_empty_completions_are_dropped_and_counted(tmp_path, capsys):
    """A null ``input`` reads as no input (never the text "None"); a null or empty output drops its row,
    and the task log says how many rows training draws from."""
    from liger_bench.inputs.data import alpaca_prompt, load_prepared
    from liger_bench.tasks import download_dataset

    rows = [
        {"instruction": "Greet.", "input": None, "output": "Hi."},
        {"instruction": "Wave.", "input": "at Ann", "output": None},
        {"instruction": "Nod.", "input": "", "output": " "},
        {"instruction": "Bow.", "input": "twice", "output": "Done."},
    ]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    info = download_dataset(str(tmp_path / "data.jsonl"), "train", "", tmp_path / "out")
    prepared = load_prepared(tmp_path / "out")
    assert (info["source_rows"], info["rows"]) == (4, 2)
    assert prepared["prompt"] == [alpaca_prompt("Greet."), alpaca_prompt("Bow.", "twice")]
    assert "None" not in "".join(prepared["prompt"])
    assert f"dataset '{tmp_path / 'data.jsonl'}': training draws from 2 of its 4 rows (2 dropped: empty " in (
        capsys.readouterr().out
    )


CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def chat_model_dir(embedded_assets, tmp_path_factory) -> Path:
    """The embedded model, its tokenizer given a chat template (the embedded one has none)."""
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("chat") / "model"
    shutil.copytree(embedded_assets[0], folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


CHAT_ROWS = {
    "chat_prompt_completion": [
        {
            "prompt": [{"role": "user", "content": f"Count to {i}."}],
            "completion": [{"role": "assistant", "content": " ".join(str(n) for n in range(i + 2))}],
        }
        for i in range(8)
    ],
    "chat_messages": [
        {"messages": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"{i} it is."}]}
        for i in range(8)
    ],
}


@pytest.mark.parametrize("fmt", list(CHAT_ROWS))
def test_chat_rows_are_rendered_by_the_tokenizers_chat_template_as_trl_does(fmt, chat_model_dir, tmp_path):
    """trl's rules: a conversational prompt is untrained up to where it and the whole conversation diverge, no EOS
    is appended; a ``messages`` row is trained whole. Real training steps on the result."""
    from transformers import AutoTokenizer

    from liger_bench.inputs.data import load_prepared, tokenize
    from liger_bench.measure.training import run_training
    from liger_bench.tasks import download_dataset

    rows = CHAT_ROWS[fmt]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert download_dataset(str(tmp_path / "chat.jsonl"), "train", "", tmp_path / "data")["source_format"] == fmt
    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    (row,) = tokenize(load_prepared(tmp_path / "data").select([0]), tokenizer, 256, 1, False, 0).rows
    first = rows[0]
    conversation = first.get("messages") or first["prompt"] + first["completion"]
    expected = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
    assert row["input_ids"] == expected
    if fmt == "chat_messages":
        assert row["labels"] == expected
    else:
        prompt = tokenizer.apply_chat_template(
            first["prompt"], tokenize=True, return_dict=True, add_generation_prompt=True
        )["input_ids"]
        assert row["labels"] == [-100] * len(prompt) + expected[len(prompt) :]
        assert tokenizer.decode(expected[len(prompt) :]).startswith("0 1")
    config = _train_config(max_steps=4, warmup_steps_to_skip=1)
    result, steps = run_training(config, str(chat_model_dir), str(tmp_path / "data"))
    assert (result.status, len(steps)) == ("ok", 4), result.reason


def test_chat_rows_for_a_tokenizer_without_a_chat_template_are_refused_by_prepare_grid(
    embedded_model_and_dataset, tmp_path
):
    from liger_bench.components.prepare_grid import prepare_grid

    from liger_bench.inputs.data import DatasetError

    model, _ = embedded_model_and_dataset
    rows = CHAT_ROWS["chat_messages"]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = _dataset_artifact(tmp_path / "chat.jsonl", tmp_path / "data")
    message = (
        "the dataset holds chat messages, but the model's tokenizer has no chat template to render them; accepted: "
        "a model whose tokenizer has one (e.g. an instruct model), or the conversations as prompt/completion text"
    )
    with pytest.raises(DatasetError, match=re.escape(message)):
        prepare_grid.python_func(model=model, dataset=dataset, **{**TINY_AXES, "use_liger": [False]}, **GRID_TASK_ARGS)


def test_rows_that_truncation_leaves_too_few_are_refused_by_prepare_grid_and_counts_printed(
    embedded_model_and_dataset, tmp_path, capsys
):
    """prepare_grid tokenises the rows each sequence length's runs train on, as train_model will: 5 rows with a
    completion fill a batch of 4, but at max_seq_length 96 three long prompts leave no completion token."""
    from liger_bench.components.prepare_grid import prepare_grid

    from liger_bench.inputs.data import DatasetError

    model, _ = embedded_model_and_dataset
    long_prompt = " ".join(["a long instruction"] * 30)
    rows = [{"instruction": long_prompt, "output": "cut"}] * 3 + [{"instruction": "Hi.", "output": "hello"}] * 2
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = _dataset_artifact(tmp_path / "rows.jsonl", tmp_path / "data")
    arguments = {**TINY_AXES, **GRID_TASK_ARGS, "use_liger": [False], "max_seq_length": [96, 512]}
    message = (
        "max_seq_length: 96 and dataset '.*/rows.jsonl': after tokenising, 2 rows cannot fill one optimizer step of "
        "per_device_train_batch_size=4 × gradient_accumulation_steps=1 = 4 rows"
    )
    with pytest.raises(GridError, match=f"^{message}"):
        prepare_grid.python_func(model=model, dataset=dataset, **{**arguments, "per_device_train_batch_size": [4]})
    with pytest.raises(
        DatasetError, match="^no row keeps a completion token at max_seq_length=4; raise max_seq_length"
    ):
        prepare_grid.python_func(model=model, dataset=dataset, **{**arguments, "max_seq_length": [4, 512]})
    capsys.readouterr()
    grid = prepare_grid.python_func(model=model, dataset=dataset, **arguments)
    assert [item["max_seq_length"] for item in grid] == [96, 512]
    assert (
        "max_seq_length=96: the runs train on up to 2 of the dataset's 5 rows; of the rows tokenised, 3 were "
        "truncated and 3 dropped (no completion token left)"
    ) in capsys.readouterr().out


def test_rows_longer_than_max_seq_length_are_truncated_or_dropped_and_counted(embedded_assets):
    """A short row is kept whole, a long completion is cut, a prompt that fills the window is dropped."""
    import datasets
    from transformers import AutoTokenizer

    from liger_bench.inputs.data import tokenize

    tokenizer = AutoTokenizer.from_pretrained(embedded_assets[0])
    rows = [
        {"prompt": "Say hi. ", "completion": "hi"},
        {"prompt": "Count. ", "completion": " ".join(["one two three"] * 40)},
        {"prompt": " ".join(["a very long prompt"] * 40), "completion": "cut away"},
    ]
    tokenized = tokenize(datasets.Dataset.from_list(rows), tokenizer, 32, sequences=3, packing=False, seed=0)
    assert tokenized.summary() == {
        "n_rows": 2,
        "n_source_rows": 3,
        "n_truncated": 2,
        "n_dropped_no_completion_tokens": 1,
    }
    assert sorted(len(row["input_ids"]) for row in tokenized.rows)[-1] == 32


@pytest.mark.parametrize(
    ("hub", "attempts"),
    [(None, 3), ((503, {}), 3), ((429, {}), 3), (NOT_FOUND, 1), (GATED, 1)],
    ids=["unreachable", "server-error", "rate-limited", "not-found", "gated"],
)
def test_only_network_errors_are_retried_by_the_download_tasks(hub, attempts, fake_hub, monkeypatch, tmp_path, capsys):
    """Two network retries (the pipeline's default), without the 20 s backoff: an error that cannot change
    on retry fails at once."""
    from liger_bench.inputs.modelio import ModelError
    from liger_bench.tasks import download_model

    monkeypatch.setattr("liger_bench.inputs.hub.NETWORK_BACKOFF_S", 0)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    fake_hub(hub)
    with pytest.raises(ModelError, match=r"model_name: 'org/model'"):
        download_model("org/model", "", tmp_path / "out", network_retries=2)
    assert capsys.readouterr().out.count("retrying in 0 s") == attempts - 1


def test_a_changed_local_input_is_a_new_revision_and_a_new_cache_key(embedded_assets, tmp_path):
    """The CLI pins a local path's content hash as its revision, an argument of the download task and so of
    kfp's cache key; the download task refuses a pinned revision the content no longer matches."""
    import shutil

    from liger_bench.inputs.data import DatasetError
    from liger_bench.plan.validation import pin_local_revisions
    from liger_bench.tasks import download_dataset

    data_file = tmp_path / "data.jsonl"
    data_file.write_text('{"text": "first version"}\n')
    model_dir = tmp_path / "model"
    shutil.copytree(embedded_assets[0], model_dir)
    params = {"model_name": str(model_dir), "dataset_name": str(data_file)}
    before = pin_local_revisions(params)
    assert before["dataset_revision"].startswith("sha256:") and before["model_revision"].startswith("sha256:")
    assert pin_local_revisions(params) == before  # same content, same key: the cache is reused
    info = download_dataset(str(data_file), "train", before["dataset_revision"], tmp_path / "out1")
    assert info["revision"] == before["dataset_revision"]  # the recorded revision is the content hash

    data_file.write_text('{"text": "second version"}\n')
    (model_dir / "generation_config.json").write_text("{}")
    after = pin_local_revisions(params)
    assert after["dataset_revision"] != before["dataset_revision"]
    assert after["model_revision"] != before["model_revision"]
    with pytest.raises(DatasetError, match=r"dataset_revision: 'sha256:[0-9a-f]{16}' does not match the content"):
        download_dataset(str(data_file), "train", before["dataset_revision"], tmp_path / "out2")
    assert pin_local_revisions({**params, "dataset_revision": "v1"})["dataset_revision"] == "v1"


def test_a_last_partial_batch_is_never_a_step(embedded_assets, tmp_path):
    """5 rows, batch 2: with ``dataloader_drop_last`` every step of a real tiny training run has 2 rows.

    The batch sizes are read by wrapping the real ``record_batch`` (a spy: it calls through)."""
    from liger_bench.measure import metrics
    from liger_bench.measure.training import run_training
    from liger_bench.tasks import download_dataset

    rows = [{"instruction": f"Count to {i}.", "output": " ".join(str(n) for n in range(i + 2))} for i in range(5)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    download_dataset(str(tmp_path / "rows.jsonl"), "train", "", tmp_path / "data")
    batch_sizes = []
    record_batch = metrics.StepMetricsCallback.record_batch

    def spy(self, inputs):
        batch_sizes.append(inputs["input_ids"].shape[0])
        record_batch(self, inputs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics.StepMetricsCallback, "record_batch", spy)
        result, steps = run_training(_train_config(max_steps=6), str(embedded_assets[0]), str(tmp_path / "data"))
    assert result.status == "ok", result.reason
    assert len(steps) == 6 and batch_sizes == [2] * 6  # 3 epochs of 2 full batches; row 5 never trains alone


def test_rows_that_truncation_leaves_too_few_for_a_batch_fail_the_run_with_the_reason(embedded_assets, tmp_path):
    """prepare_grid counts rows with a completion; truncation can drop more, which only train_model sees."""
    from liger_bench.measure.training import run_training
    from liger_bench.tasks import download_dataset

    long_prompt = " ".join(["a long instruction"] * 30)
    rows = [{"instruction": long_prompt, "output": "cut"}] * 3 + [{"instruction": "Hi.", "output": "hello"}] * 2
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    download_dataset(str(tmp_path / "rows.jsonl"), "train", "", tmp_path / "data")
    config = _train_config(per_device_train_batch_size=4, max_seq_length=96)
    result, steps = run_training(config, str(embedded_assets[0]), str(tmp_path / "data"))
    assert (result.status, steps) == ("failed", [])
    assert result.reason == (
        "DatasetError: after tokenising at max_seq_length=96, 2 rows cannot fill one optimizer step of "
        "per_device_train_batch_size=4 × gradient_accumulation_steps=1 = 4 rows; accepted: batch sizes <= 2, "
        "or a dataset with more rows"
    )


# Runtime: a run's outcome is data (ok, oom, failed, skipped); the others go on.


def test_out_of_memory_in_a_training_step_is_recorded_and_memory_released(
    embedded_assets, prepared_dataset, monkeypatch
):
    """The OOM is CUDA's exception class raised from inside a real forward at step 2 (no CUDA here)."""
    import gc
    import weakref

    import torch
    from transformers.models.phi3 import modeling_phi3

    from liger_bench.measure.training import run_training

    original_forward = modeling_phi3.Phi3MLP.forward
    calls, failed_modules = [], []

    def forward(self, hidden_states):
        calls.append(1)
        if len(calls) > 2:  # two decoder layers: the third MLP call is step 2's first
            failed_modules.append(weakref.ref(self))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (raised on CPU)")
        return original_forward(self, hidden_states)

    monkeypatch.setattr(modeling_phi3.Phi3MLP, "forward", forward)
    result, steps = run_training(_train_config(), str(embedded_assets[0]), str(prepared_dataset))
    assert result.status == "oom"
    assert result.reason == "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (raised on CPU)"
    assert result.metrics["steps_completed"] == 1
    assert [s["step"] for s in steps] == [1]  # the step completed before the OOM stays in the history
    gc.collect()
    assert failed_modules[0]() is None, "the model outlived its run: memory was not released"


def test_host_out_of_memory_in_a_training_step_is_oom(embedded_assets, prepared_dataset, monkeypatch):
    """A real failed host allocation (100 TB, more than any machine has) from inside a real forward at step 2."""
    import torch
    from transformers.models.phi3 import modeling_phi3

    from liger_bench.measure.training import run_training

    original_forward = modeling_phi3.Phi3MLP.forward
    calls = []

    def forward(self, hidden_states):
        calls.append(1)
        if len(calls) > 2:
            torch.empty(10**14, dtype=torch.uint8)
        return original_forward(self, hidden_states)

    monkeypatch.setattr(modeling_phi3.Phi3MLP, "forward", forward)
    result, steps = run_training(_train_config(), str(embedded_assets[0]), str(prepared_dataset))
    assert result.status == "oom"
    assert result.reason.startswith("RuntimeError: ") and "DefaultCPUAllocator: can't allocate memory" in result.reason
    assert [s["step"] for s in steps] == [1]


def test_a_crash_in_a_run_is_recorded_as_failed_with_type_and_message(embedded_assets, prepared_dataset):
    from liger_bench.measure.training import run_training

    config = _train_config(lr_scheduler_type="not-a-scheduler")
    result, steps = run_training(config, str(embedded_assets[0]), str(prepared_dataset))
    assert result.status == "failed" and steps == []
    assert result.reason.startswith("ValueError: ") and "not-a-scheduler" in result.reason
    assert "Traceback" in result.metrics["traceback"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks a node without CUDA")
def test_liger_on_a_node_without_cuda_is_skipped_with_the_reason(embedded_assets, prepared_dataset):
    from liger_bench.measure.training import NO_CUDA_REASON, run_training

    result, steps = run_training(_train_config(use_liger=True), str(embedded_assets[0]), str(prepared_dataset))
    assert (result.status, result.reason, steps) == ("skipped", NO_CUDA_REASON, [])


# Diverged: a loss that becomes NaN or infinite is the run's outcome, not an ok run (issue 20).
DIVERGING = {"learning_rate": 1e6, "warmup_ratio": 0.0}


def test_a_diverging_run_stops_at_its_first_nonfinite_loss_and_is_diverged(embedded_assets, prepared_dataset):
    """The real Trainer on the tiny model: at learning rate 1e6 without warm-up its loss turns NaN in a few steps."""
    import math

    from liger_bench.measure.training import run_training

    config = _train_config(max_steps=20, **DIVERGING)
    result, steps = run_training(config, str(embedded_assets[0]), str(prepared_dataset))
    assert result.status == "diverged", result.reason
    step = result.metrics["first_nonfinite_loss_step"]
    assert [s["step"] for s in steps] == list(range(1, step + 1)) and step < 20  # stopped at that step
    assert all(math.isfinite(s["loss"]) for s in steps[:-1]) and not math.isfinite(steps[-1]["loss"])
    assert result.reason == (
        f"loss nan at step {step} of max_steps=20: training diverged and was stopped there; "
        "lower learning_rate (now 1e+06) or raise warmup_ratio"
    )
    assert result.metrics["steps_completed"] == step


def test_a_nonfinite_loss_in_a_warmup_step_is_a_divergence_too(embedded_assets, prepared_dataset):
    """With every step a warm-up step, a diverged run is still diverged, not 'no measured step'."""
    from liger_bench.measure.training import run_training

    config = _train_config(max_steps=20, warmup_steps_to_skip=19, **DIVERGING)
    result, steps = run_training(config, str(embedded_assets[0]), str(prepared_dataset))
    assert result.status == "diverged" and steps[-1]["warmup"] and result.metrics["n_measured_steps"] == 0


@pytest.mark.slow
def test_a_diverged_run_through_the_local_runner_is_reported_as_diverged(tmp_path, embedded_assets, capfd):
    model_dir, dataset_dir = embedded_assets
    overrides = {
        **SMALL_PIPELINE,
        "max_steps": 20,
        "max_seq_length": [64],
        "base_config": DIVERGING,
        "min_success_ratio": 0.0,
        "model_name": str(model_dir),
        "dataset_name": str(dataset_dir),
    }
    report = run_local(tmp_path, overrides)
    run_dir = report.parent.parent
    (result,) = _run_results(run_dir)
    assert (result["run_key"], result["status"]) == ("baseline-bs2-seq64-r0", "diverged")
    assert result["reason"].startswith(f"loss nan at step {result['metrics']['first_nonfinite_loss_step']} of ")
    (history,) = [json.loads(path.read_text()) for path in run_dir.glob("for-loop-*/train-model/history")]
    assert len(history["steps"]) == result["metrics"]["first_nonfinite_loss_step"] < 20
    outputs = json.loads((run_dir / "analyze-results" / "executor_output.json").read_text())["artifacts"]
    metrics = outputs["metrics"]["artifacts"][0]["metadata"]
    assert (metrics["n_diverged"], metrics["n_ok"], metrics["success_ratio"]) == (1, 0, 0.0)
    text = re.sub(r"<[^>]+>", " ", report.read_text())
    assert "No run trained successfully (1 diverged of 1 runs)" in text
    assert "1 of 1 runs diverged (their loss became NaN or infinite" in text
    terminal = capfd.readouterr().out  # the terminal's line for the run: its status and the reason's first part
    assert f"[1/1] baseline-bs2-seq64-r0: diverged ({result['reason'].partition('; ')[0]})\n" in terminal
    assert ": 1 diverged\n" in terminal


@pytest.fixture(scope="module")
def faulty_pipeline_run(embedded_assets, tmp_path_factory) -> dict:
    """One local pipeline run where MLflow is down and one of two runs fails: packed into sequences of 2048
    tokens, the dataset fills 7 batches of 2, which 2 accumulation steps cannot share out evenly (the data is
    the problem, not the code; prepare_grid leaves packing to train_model)."""
    model_dir, dataset_dir = embedded_assets
    output_dir = tmp_path_factory.mktemp("faulty-run")
    overrides = {
        **SMALL_PIPELINE,
        "max_seq_length": [64, 2048],
        "base_config": {"packing": True, "gradient_accumulation_steps": 2},
        "model_name": str(model_dir),
        "dataset_name": str(dataset_dir),
        "mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}",
    }
    with contextlib.redirect_stdout(io.StringIO()) as terminal:  # what liger-bench local shows
        report = run_local(output_dir, overrides)
    return {"output_dir": output_dir, "overrides": overrides, "report": report, "terminal": terminal.getvalue()}


def test_a_failed_run_does_not_stop_the_others_or_the_report(faulty_pipeline_run):
    run_dir = faulty_pipeline_run["report"].parent.parent
    failed, ok = _run_results(run_dir)
    assert (failed["run_key"], failed["status"]) == ("baseline-bs2-seq2048-r0", "failed")
    assert failed["reason"].startswith(
        "DatasetError: after tokenising and packing at max_seq_length=2048, 15 rows give 7 batches of 2 per epoch, "
        "not a multiple of gradient_accumulation_steps=2"
    )
    assert (ok["run_key"], ok["status"]) == ("baseline-bs2-seq64-r0", "ok")
    assert ok["data"]["n_truncated"] > 0 and ok["data"]["n_dropped_no_completion_tokens"] > 0
    outputs = json.loads((run_dir / "analyze-results" / "executor_output.json").read_text())["artifacts"]
    metrics = outputs["metrics"]["artifacts"][0]["metadata"]
    assert (metrics["n_failed"], metrics["n_ok"], metrics["success_ratio"]) == (1, 1, 0.5)


def test_mlflow_down_costs_a_bounded_wait_and_loses_nothing(faulty_pipeline_run):
    """One tracking call waits in the whole run (start_tracking's probe, refused at once): without a parent
    run the training tasks and the analysis send nothing. Each call's own bound is timed in test_tracking.py
    (dead, silent and failing servers); the whole run's wall time depends on the machine's load."""
    run_dir = faulty_pipeline_run["report"].parent.parent
    uri = faulty_pipeline_run["overrides"]["mlflow_tracking_uri"]
    results = _run_results(run_dir)
    assert [result["mlflow"]["available"] for result in results] == [False, False]
    # start_tracking's failure, said once on the terminal, recorded in every result and in the report.
    (said,) = [line for line in faulty_pipeline_run["terminal"].splitlines() if "MLflow" in line]
    message = said.removeprefix("[liger-bench] ")
    assert message.startswith(f"MLflow at {uri} unreachable: ConnectionError on /health; parent run ")
    assert message.endswith(" not logged, runs are in the artifacts")
    assert [result["mlflow"]["message"] for result in results] == [message, message]
    assert f"2 of 2 runs not in MLflow. {html.escape(message)}." in faulty_pipeline_run["report"].read_text()
    histories = [json.loads(path.read_text()) for path in run_dir.glob("for-loop-*/train-model/history")]
    assert sorted(len(history["steps"]) for history in histories) == [0, 5]
    report = faulty_pipeline_run["report"].read_text()
    assert "baseline-bs2-seq64-r0" in report and "baseline-bs2-seq2048-r0" in report


def test_the_same_pipeline_run_again_reuses_downloads_and_gives_the_same_structure(faulty_pipeline_run):
    first_run_dir = faulty_pipeline_run["report"].parent.parent
    report = run_local(faulty_pipeline_run["output_dir"], faulty_pipeline_run["overrides"])
    second_run_dir = report.parent.parent
    assert second_run_dir != first_run_dir
    assert not (second_run_dir / "download-model").exists() and not (second_run_dir / "download-dataset").exists()
    assert not (second_run_dir / "prepare-grid").exists()  # the grid is a pure function of its inputs: cached
    assert (second_run_dir / "start-tracking").exists()  # never cached: a new MLflow parent run each time

    def shape(results: list[dict]) -> list:
        return [(r["run_key"], r["status"], sorted(r), sorted(r["metrics"]), sorted(r["data"])) for r in results]

    assert shape(_run_results(second_run_dir)) == shape(_run_results(first_run_dir))


def test_a_training_process_killed_during_a_local_run_is_reported_and_the_rest_analysed(tmp_path, embedded_assets):
    """A real SIGKILL of a real training process, found by its run key as an operator would with ``ps``."""
    from test_supervisor import _in_thread, _kill_after_steps

    model_dir, dataset_dir = embedded_assets
    overrides = {
        **SMALL_PIPELINE,
        "per_device_train_batch_size": [2, 4],
        "max_seq_length": [64],
        "max_steps": 40,
        "model_name": str(model_dir),
        "dataset_name": str(dataset_dir),
    }
    killer = _in_thread(_kill_after_steps, "baseline-bs4-seq64-r0", 3, signal.SIGKILL)
    report = run_local(tmp_path, overrides)
    killer.join()
    ok, killed = _run_results(report.parent.parent)
    assert (ok["run_key"], ok["status"]) == ("baseline-bs2-seq64-r0", "ok")
    assert (killed["run_key"], killed["status"]) == ("baseline-bs4-seq64-r0", "failed")
    assert killed["reason"] == "training process killed by signal SIGKILL (9)"
    assert killed["metrics"]["steps_completed"] >= 3
    histories = [json.loads(path.read_text()) for path in report.parent.parent.glob("for-loop-*/train-model/history")]
    (history,) = [history for history in histories if history["run_key"] == killed["run_key"]]
    assert len(history["steps"]) == killed["metrics"]["steps_completed"]  # the steps before the kill are kept
    text = report.read_text()
    assert "training process killed by signal SIGKILL (9)" in text and "baseline-bs2-seq64-r0" in text


def test_disk_full_while_writing_the_history_leaves_no_partial_file(tmp_path):
    """A real EFBIG: the writer runs in a process whose file-size limit (RLIMIT_FSIZE) is 4 KiB."""
    code = textwrap.dedent(
        f"""
        import json, resource, signal
        from liger_bench.records import write_json_atomic

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_json_atomic({str(tmp_path / "history.json")!r}, {{"steps": [{{"step": i}} for i in range(2000)]}})
        except OSError as err:
            print(json.dumps({{"errno": err.errno, "error": str(err)}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    error = json.loads(out.stdout)
    assert error["errno"] == errno.EFBIG
    assert "history.json" in error["error"] and "nothing was written" in error["error"]
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary file


def test_disk_full_while_writing_the_report_names_the_file_and_leaves_no_partial_file(tmp_path):
    """A real EFBIG while analyze_results writes the report: the summary and table fit, the page does not."""
    code = textwrap.dedent(
        f"""
        import json, resource, signal
        from types import SimpleNamespace
        import pandas as pd
        from liger_bench.render.report import write_bundle

        bundle = SimpleNamespace(html="<html>" + "x" * 10000 + "</html>", markdown="# summary", table=pd.DataFrame())
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        folder = {str(tmp_path)!r}
        try:
            write_bundle(bundle, folder + "/report", folder + "/summary", folder + "/table")
        except OSError as err:
            print(json.dumps({{"errno": err.errno, "error": str(err)}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    error = json.loads(out.stdout)
    assert error["errno"] == errno.EFBIG
    assert error["error"].endswith(f"could not write {tmp_path / 'report'} (File too large); nothing was written there")
    assert list(tmp_path.iterdir()) == []  # the page comes first; no temporary file left


def test_output_files_get_the_usual_permissions_not_0600(tmp_path):
    """mkstemp makes 0600 files; records and reports get 0666 less the umask (0644 under umask 022)."""
    from liger_bench.records import write_json_atomic

    umask = os.umask(0)
    os.umask(umask)
    path = write_json_atomic(tmp_path / "result", {"status": "ok"})
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# Interrupts: SIGINT or SIGTERM of `liger-bench local` stops everything it started.


@pytest.mark.parametrize(
    "sig, process_group",
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["sigterm-to-the-cli", "ctrl-c-to-the-process-group"],
)
def test_an_interrupted_local_run_stops_all_its_processes_and_marks_the_output_incomplete(
    sig, process_group, tmp_path, embedded_assets, mlflow_server
):
    import psutil
    from mlflow import MlflowClient
    from test_supervisor import training_process, wait_for_steps

    model_dir, dataset_dir = embedded_assets
    experiment = f"interrupted-{sig.name.lower()}"
    params = {
        **SMALL_PIPELINE,
        "max_steps": 5000,
        "model_name": str(model_dir),
        "dataset_name": str(dataset_dir),
        "mlflow_tracking_uri": mlflow_server,
        "mlflow_experiment": experiment,
    }
    command = [sys.executable, "-m", "liger_bench.cli.main", "local", "--output-dir", str(tmp_path / "out")]
    command += [f"--param={name}={json.dumps(value)}" for name, value in params.items()]
    log = tmp_path / "cli.log"
    with log.open("wb") as handle:
        cli = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        trainer = training_process("baseline-bs2-seq128-r0", ancestor=cli.pid)
        wait_for_steps(trainer, 1)
        descendants = psutil.Process(cli.pid).children(recursive=True)
        started = time.monotonic()
        if process_group:
            os.killpg(cli.pid, sig)
        else:
            cli.send_signal(sig)
        cli.wait(timeout=60)
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
    output = log.read_bytes()
    assert time.monotonic() - started < 30
    assert cli.returncode == 128 + sig.value
    assert "Traceback" not in output.decode()
    assert [process for process in descendants if process.is_running() and process.status() != "zombie"] == []
    marker = tmp_path / "out" / "INCOMPLETE"
    assert marker.read_text().startswith(f"interrupted by {sig.name}")
    client = MlflowClient(mlflow_server)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], "tags.`kfp.pipeline_run_name` != ''"
    )
    assert parent.info.status == "KILLED"


def test_a_finished_local_run_leaves_no_incomplete_marker(faulty_pipeline_run):
    assert not (faulty_pipeline_run["output_dir"] / "INCOMPLETE").exists()


# Compile: the package is reproducible and its options are checked.


def _compile(tmp_path: Path, name: str, *options: str, hash_seed: str = "0") -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "liger_bench.cli.main", "compile", "--output", str(tmp_path / name), *options]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": hash_seed})


def test_two_compiles_with_the_same_options_are_byte_identical(tmp_path):
    """Different string-hash seeds, as two shells give: dict defaults in kfp's header were ordered by them."""
    first, second = _compile(tmp_path, "a.yaml", hash_seed="1"), _compile(tmp_path, "b.yaml", hash_seed="2")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert (tmp_path / "a.yaml").read_bytes() == (tmp_path / "b.yaml").read_bytes()


def test_compile_refuses_max_concurrency_zero_instead_of_writing_no_limit(tmp_path):
    out = _compile(tmp_path, "pipeline.yaml", "--max-concurrency", "0")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "max_concurrency: 0 is not valid; accepted: integers >= 1" in out.stderr
    assert not (tmp_path / "pipeline.yaml").exists()


# Secrets: never in logs, the compiled YAML, MLflow or the report.

CANARIES = {
    "HF_TOKEN": "hf_canary_5c1b0f2e9d",
    "MLFLOW_TRACKING_TOKEN": "mlflow_token_canary_84a7d3",
    "MLFLOW_TRACKING_PASSWORD": "mlflow_password_canary_e61f09",
}


def test_credentials_never_appear_in_logs_yaml_outputs_or_mlflow(
    tmp_path, capfd, monkeypatch, mlflow_server, embedded_assets
):
    from mlflow import MlflowClient
    from test_credentials import SECRET, SECRET_URI_FORMS

    from liger_bench.cli.main import compile_pipeline
    from liger_bench.cli.userinput import UserError

    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bench-user")
    model_dir, dataset_dir = embedded_assets
    experiment = "secrets-canary"
    overrides = {
        **SMALL_PIPELINE,
        "model_name": str(model_dir),
        "dataset_name": str(dataset_dir),
        "mlflow_tracking_uri": mlflow_server,
        "mlflow_experiment": experiment,
    }
    # Every form of a tracking URI that carries a secret is refused before the run starts.
    for form in SECRET_URI_FORMS:
        with pytest.raises(UserError, match="mlflow_tracking_uri: "):
            run_local(tmp_path / "out", {**overrides, "mlflow_tracking_uri": form.uri})
    assert not (tmp_path / "out").exists()
    report = run_local(tmp_path / "out", overrides)
    package = compile_pipeline(tmp_path / "pipeline.yaml", {})
    logs = "".join(capfd.readouterr())

    places = {"captured logs": logs.encode(), "compiled YAML": package.read_bytes()}
    places.update({str(path): path.read_bytes() for path in (tmp_path / "out").rglob("*") if path.is_file()})
    assert str(report) in places

    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 2  # the parent and one child: tracking really happened
    downloads = tmp_path / "mlflow-artifacts"
    for run in runs:
        places[f"run {run.info.run_name} params"] = json.dumps(run.data.params).encode()
        places[f"run {run.info.run_name} tags"] = json.dumps(run.data.tags).encode()
        folder = Path(client.download_artifacts(run.info.run_id, "", str(downloads / run.info.run_id)))
        artifacts = [path for path in folder.rglob("*") if path.is_file()]
        assert artifacts
        places.update({f"artifact {path}": path.read_bytes() for path in artifacts})

    leaks = [
        (place, name)
        for place, content in places.items()
        for name, value in {**CANARIES, "secret in a refused mlflow_tracking_uri": SECRET}.items()
        if value.encode() in content
    ]
    assert leaks == []


# Determinism: the same config and seed give the same losses.


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CPU determinism (CUDA kernels may not be)")
def test_same_config_and_seed_give_identical_losses_step_by_step(embedded_assets, prepared_dataset):
    from liger_bench.measure.training import run_training

    losses = []
    for _ in range(2):
        result, steps = run_training(_train_config(), str(embedded_assets[0]), str(prepared_dataset))
        assert result.status == "ok", result.reason
        losses.append([step["loss"] for step in steps])
    assert len(losses[0]) == 4 and losses[0] == losses[1]


# The table in docs/failure-matrix.md names these tests and cases; keep the two in step.


def test_every_test_and_case_named_in_the_failure_matrix_exists():

    text = (Path(__file__).parents[1] / "docs" / "failure-matrix.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)\b(?!\.py)", text))  # not the other files it cites
    defined = {name for name in globals() if name.startswith("test_")}
    assert named and named <= defined, sorted(named - defined)
    tables = (GRID_CASES, ABLATION_CASES, TRAINING_ARGUMENT_CASES, MODEL_GRID_CASES, DATA_GRID_CASES, SOURCE_CASES)
    case_ids = [case.id for cases in tables for case in cases]
    assert [case_id for case_id in case_ids if not re.search(rf"[`\[]{re.escape(case_id)}[`\]]", text)] == []


# A child that crashes by itself: sitecustomize.py on the child's PYTHONPATH (the supervisor passes its
# environment on) starts a thread in the training process named by CRASH_RUN_KEY that, once the child
# has streamed CRASH_AFTER_STEPS steps, dereferences NULL through ctypes (a real SIGSEGV, as a faulting
# compiled kernel gives), or, with CRASH_AT_EXIT, segfaults at interpreter exit after the record is written.
CRASHER = """
import atexit, ctypes, os, sys, threading, time
from pathlib import Path

cmdline = Path("/proc/self/cmdline").read_bytes().split(b"\\0")
if os.environ.get("CRASH_RUN_KEY", "").encode() in cmdline and b"liger_bench.measure.supervisor" in cmdline:
    if os.environ.get("CRASH_AT_EXIT"):
        atexit.register(lambda: ctypes.string_at(0))
    else:
        steps = Path(cmdline[-2].decode()) / "steps.jsonl"

        def crash():
            while not steps.is_file() or len(steps.read_text().splitlines()) < int(os.environ["CRASH_AFTER_STEPS"]):
                time.sleep(0.02)
            ctypes.string_at(0)

        threading.Thread(target=crash, daemon=True).start()
"""


def _crashing_children(monkeypatch, tmp_path, run_key: str, **env: str) -> None:
    (tmp_path / "sitecustomize.py").write_text(CRASHER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("CRASH_RUN_KEY", run_key)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_a_training_process_that_segfaults_by_itself_is_failed_and_the_next_grid_point_trains(
    embedded_assets, prepared_dataset, monkeypatch, tmp_path
):
    from liger_bench.measure.supervisor import train_supervised

    _crashing_children(monkeypatch, tmp_path, "segfault-bs2-seq64-r0", CRASH_AFTER_STEPS="2")
    crashed = _train_config(run_key="segfault-bs2-seq64-r0", max_steps=2000)
    result, steps = train_supervised(crashed, str(embedded_assets[0]), str(prepared_dataset), timeout_s=300)
    assert (result.status, result.reason) == ("failed", "training process killed by signal SIGSEGV (11)")
    assert len(steps) >= 2 and "Fatal Python error: Segmentation fault" in result.metrics["stderr_tail"]
    following = _train_config(run_key="next-bs2-seq64-r0", max_steps=4)
    result, steps = train_supervised(following, str(embedded_assets[0]), str(prepared_dataset), timeout_s=300)
    assert (result.status, len(steps)) == ("ok", 4), result.reason


def test_a_record_written_before_the_training_process_crashes_at_exit_is_kept(
    embedded_assets, prepared_dataset, monkeypatch, tmp_path
):
    """A device fault poisons the CUDA context, and the interpreter's teardown can then crash too: the record
    the child wrote before stands, with the exit code beside it."""
    from liger_bench.measure.supervisor import train_supervised

    _crashing_children(monkeypatch, tmp_path, "crash-at-exit-bs2-seq64-r0", CRASH_AT_EXIT="1")
    config = _train_config(run_key="crash-at-exit-bs2-seq64-r0", max_steps=4)
    result, steps = train_supervised(config, str(embedded_assets[0]), str(prepared_dataset), timeout_s=300)
    assert (result.status, len(steps), result.metrics["exit_code"]) == ("ok", 4, -11), result.reason
