"""Shared fixtures: the embedded model and dataset (made once per session), MLflow servers, GPU marker."""

from __future__ import annotations

import pytest
from mlflow_server import dead_mlflow_uri, mlflow_server  # noqa: F401 - fixtures for the whole suite


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` cleanly where there is no CUDA device (CI never has one)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the device machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def embedded_assets(tmp_path_factory):
    """``(model_dir, dataset_dir)`` of the embedded tiny Phi-3 model and alpaca-format dataset."""
    from liger_bench.inputs.embedded import ensure_embedded

    return ensure_embedded(tmp_path_factory.mktemp("embedded"))


@pytest.fixture(scope="session")
def prepared_dataset(embedded_assets, tmp_path_factory):
    """The embedded dataset as download_dataset saves it (prompt/completion, save_to_disk)."""
    from liger_bench.tasks import download_dataset

    destination = tmp_path_factory.mktemp("prepared") / "dataset"
    download_dataset(str(embedded_assets[1]), "train", "", destination)
    return destination


@pytest.fixture(scope="session")
def tiny_model(embedded_assets, tmp_path_factory):
    """``tiny_model(model_type)``: a model folder as download_model leaves it, made once per type."""
    from tiny_models import text_lm_refusal, write_tiny_model

    from liger_bench.tasks import download_model

    made = {}

    def make(model_type: str):
        refusal = text_lm_refusal(model_type)
        if refusal:
            pytest.skip(refusal)
        if model_type not in made:
            root = tmp_path_factory.mktemp(model_type)
            write_tiny_model(model_type, root / "source", embedded_assets[0])
            info = download_model(str(root / "source"), "", root / "model")
            made[model_type] = (root / "model", info)
        return made[model_type]

    return make


@pytest.fixture(scope="session")
def local_pipeline_run(tmp_path_factory, embedded_assets):
    """One whole local pipeline run on the embedded default (small grid), shared by several tests."""
    from liger_bench.cli.localrun import run_local

    output_dir = tmp_path_factory.mktemp("local-run")
    model_dir, dataset_dir = embedded_assets
    overrides = {
        "model_name": str(model_dir),
        "dataset_name": str(dataset_dir),
        "torch_compile": [False],  # the compile arm's own tests and the CLI demo train it
        "per_device_train_batch_size": [2, 4],
        "n_runs": 2,
        "max_steps": 6,
    }
    report = run_local(output_dir, overrides)
    return output_dir, report


@pytest.fixture(scope="session")
def cli_local_run(tmp_path_factory):
    """README's first command as a user runs it: ``liger-bench local`` on the embedded default grid.

    Returns the finished process (stdout and stderr as text) and its output folder.
    """
    import subprocess
    import sys

    output_dir = tmp_path_factory.mktemp("cli-local") / "liger-bench-output"
    done = subprocess.run(
        [sys.executable, "-m", "liger_bench.cli.main", "local", "--output-dir", str(output_dir)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    return done, output_dir


@pytest.fixture
def kfp_local(tmp_path, monkeypatch):
    """kfp's local SubprocessRunner in this environment, with its own pipeline root."""
    import os
    import sys
    from pathlib import Path

    from kfp import local

    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "pipeline_root"))
    return tmp_path
