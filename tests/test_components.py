"""Each component's function on real artifacts; the downloads also through kfp's local runner.

kfp's local runner does not take input artifacts for a single task, so prepare_grid, train_model
and analyze_results run through it inside the whole pipeline (test_pipeline.py).
"""

import json
from pathlib import Path

import pytest
from liger_bench.components.analyze_results import analyze_results
from liger_bench.components.download_dataset import download_dataset
from liger_bench.components.download_model import download_model
from liger_bench.components.find_frontier import find_frontier
from liger_bench.components.prepare_grid import prepare_grid
from liger_bench.components.start_tracking import start_tracking
from liger_bench.components.train_model import train_model
from tiny_grid import FRONTIER_SETTINGS, GRID_TASK_ARGS, TINY_AXES


@pytest.fixture(scope="module")
def downloaded(embedded_assets, tmp_path_factory):
    """download_model and download_dataset run once through the local runner for this module."""
    import os
    import sys

    from kfp import local

    root = tmp_path_factory.mktemp("components")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    model = download_model(
        model_name=str(embedded_assets[0]), model_revision="", network_retries=0, staging_dir=""
    ).outputs["model"]
    dataset = download_dataset(
        dataset_name=str(embedded_assets[1]),
        dataset_split="train",
        dataset_revision="",
        network_retries=0,
        staging_dir="",
    ).outputs["dataset"]
    return model, dataset


def test_download_model_materialises_a_checked_model_folder(downloaded, embedded_assets):
    from liger_bench.inputs.localfiles import content_revision

    model, _ = downloaded
    folder = Path(model.path)
    assert (folder / "config.json").exists() and any(folder.glob("*.safetensors"))
    assert model.metadata["model_type"] == "phi3"
    assert model.metadata["revision"] == content_revision(embedded_assets[0])  # a local folder's content hash
    assert model.metadata["context_length"] == 2048
    assert model.metadata["context_length_source"] == "the model's config: max_position_embeddings in config.json"


def test_download_dataset_normalises_alpaca_to_prompt_completion(downloaded):
    from liger_bench.inputs.data import load_prepared

    _, dataset = downloaded
    data = load_prepared(dataset.path)
    assert data.column_names == ["prompt", "completion"]
    assert dataset.metadata["rows"] == len(data) == 256
    assert dataset.metadata["source_format"] == "alpaca"
    assert data[0]["prompt"].endswith("### Response:\n")


def test_prepare_grid_expands_and_validates_against_the_model(downloaded):
    model, dataset = downloaded
    grid = prepare_grid.python_func(model=model, dataset=dataset, **TINY_AXES, **GRID_TASK_ARGS)
    assert [item["run_key"] for item in grid] == ["liger-bs2-seq64-r0", "baseline-bs2-seq64-r0"]


@pytest.fixture
def tracking_off(downloaded, tmp_path):
    """start_tracking's artifact with tracking off (no parent run)."""
    from kfp.dsl import Artifact

    model, dataset = downloaded
    tracking = Artifact(uri=str(tmp_path / "tracking"))
    start_tracking.python_func(
        grid=prepare_grid.python_func(model=model, dataset=dataset, **TINY_AXES, **GRID_TASK_ARGS),
        model=model,
        dataset=dataset,
        mlflow_tracking_uri="",
        mlflow_experiment="x",
        pipeline_run_name="run",
        pipeline_run_id="0",
        tracking=tracking,
    )
    return tracking


def test_start_tracking_with_tracking_off_opens_no_run(tracking_off):
    assert tracking_off.metadata["parent_run_id"] == ""
    assert json.loads(Path(tracking_off.path).read_text()) == {"parent_run_id": "", "tracking_error": ""}


def test_component_functions_run_directly_on_real_artifacts(downloaded, tracking_off, tmp_path):
    """``python_func`` with real artifact objects: the thin wrappers alone, no runner."""
    from kfp.dsl import HTML, Artifact, Dataset, Markdown, Metrics

    model, dataset = downloaded
    result, history = Artifact(uri=str(tmp_path / "result")), Artifact(uri=str(tmp_path / "history"))
    config = {
        "run_key": "baseline-bs2-seq64-r0",
        "per_device_train_batch_size": 2,
        "max_seq_length": 64,
        "max_steps": 4,
    }
    train_model.python_func(
        config=config,
        model=model,
        dataset=dataset,
        mlflow_tracking_uri="",
        mlflow_experiment="x",
        tracking=tracking_off,
        train_timeout_s=600,
        trainer={},
        gpu_node_selector={},
        gpu_tolerations=[],
        result=result,
        history=history,
    )
    assert result.metadata["status"] == "ok"
    record = json.loads(Path(result.path).read_text())  # one record: the trained run, its inputs, its mirroring
    assert (record["model"], record["dataset"]) == (dict(model.metadata), dict(dataset.metadata))
    assert record["mlflow"]["parent_run_id"] == "" and record["metrics"]["tokens_per_s_nonpad"] > 0
    frontier = Artifact(uri=str(tmp_path / "frontier"))
    trained_grid = find_frontier.python_func(
        grid=[config], model=model, dataset=dataset, frontier_search=False, frontier=frontier, **FRONTIER_SETTINGS
    )
    assert trained_grid == [config]
    outputs = {
        name: cls(uri=str(tmp_path / name))
        for name, cls in (("report", HTML), ("summary", Markdown), ("metrics", Metrics), ("table", Dataset))
    }
    analyze_results.python_func(
        results=[result],
        histories=[history],
        frontier=frontier,
        min_success_ratio=0.5,
        mlflow_tracking_uri="",
        tracking=tracking_off,
        gpu_hour_price=0.0,
        **outputs,
    )
    assert "<html" in Path(outputs["report"].path).read_text().lower()
    rate = record["metrics"]["tokens_per_s_nonpad"]
    # Every KFP metric of one ok CPU run, logged through Metrics.log_metric (no memory, MFU or compile on a CPU).
    assert outputs["metrics"].metadata == {
        **{f"n_{status}": 0.0 for status in ("oom", "failed", "skipped", "diverged")},
        "n_ok": 1.0,
        "n_runs": 1.0,
        "success_ratio": 1.0,
        "tokens_per_s_baseline_bs2_seq64": rate,
        "largest_ok_batch_baseline_seq64": 2.0,
        "parity_pairs": 0.0,
        "parity_failures": 0.0,
    }
    table = Path(outputs["table"].path).read_text().splitlines()
    assert len(table) == 2 and table[0].startswith("variant,use_liger,torch_compile,batch_size,seq_len,n_runs,")
    assert table[1].startswith(f"baseline,False,False,2,64,1,1,0,0,0,0,ok,,{rate},")
    with pytest.raises(ValueError, match="min_success_ratio"):
        analyze_results.python_func(
            results=[result],
            histories=[history],
            frontier=frontier,
            min_success_ratio=1.0 + 1e-9,
            mlflow_tracking_uri="",
            tracking=tracking_off,
            gpu_hour_price=0.0,
            **outputs,
        )
