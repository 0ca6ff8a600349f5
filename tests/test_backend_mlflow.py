"""Kubeflow Pipelines' own MLflow integration (KEP-12862), simulated on a real MLflow server on loopback.

The backend opens a parent run per pipeline run and a nested run per task, a ParallelFor's iterations
nested under a run of the loop (KEP-12862, "Loop Iterations"); its driver gives each task container
its run as ``MLFLOW_RUN_ID``, and ``MLFLOW_TRACKING_URI``/``MLFLOW_EXPERIMENT_ID`` where the
administrator set ``injectUserEnvVars``. ``backend_hierarchy`` creates those runs as the backend's
API server and driver do (same names and tags); each task then runs as the real task function with
the environment its container would get. The backend's Go driver and launcher cannot run here.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from tiny_grid import TINY_AXES

from liger_bench import tasks, tracking

pytestmark = pytest.mark.slow  # a real MLflow server


@dataclass
class BackendRuns:
    """The runs the backend opened for one pipeline run: what each task's ``MLFLOW_RUN_ID`` names."""

    experiment_id: str
    kfp_run_id: str
    parent: str
    start_tracking: str
    loop: str
    iterations: list[str]
    analyze_results: str

    def all(self) -> set[str]:
        return {self.parent, self.start_tracking, self.loop, *self.iterations, self.analyze_results}


def backend_hierarchy(uri: str, n_iterations: int) -> BackendRuns:
    """The parent run (tagged as the API server tags it) and the drivers' nested runs, named by task."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(f"kfp-{uuid.uuid4().hex[:8]}")
    kfp_run_id = str(uuid.uuid4())
    parent = client.create_run(
        experiment_id,
        run_name="liger-benchmark-run",
        tags={"kfp.pipeline_run_id": kfp_run_id, "kfp.pipeline_run_url": f"/#/runs/details/{kfp_run_id}"},
    ).info.run_id

    def nested(task_name: str, parent_id: str) -> str:
        run = client.create_run(experiment_id, run_name=task_name, tags={tracking.PARENT_RUN_TAG: parent_id})
        return run.info.run_id

    loop = nested("for-loop-1", parent)
    return BackendRuns(
        experiment_id=experiment_id,
        kfp_run_id=kfp_run_id,
        parent=parent,
        start_tracking=nested("start-tracking", parent),
        loop=loop,
        iterations=[nested("train-model", loop) for _ in range(n_iterations)],
        analyze_results=nested("analyze-results", parent),
    )


def as_task(monkeypatch, run_id: str, uri: str | None, experiment_id: str = "") -> None:
    """The environment the driver gives a task container: its run, and the server when injected."""
    monkeypatch.setenv(tracking.BACKEND_RUN_ENV, run_id)
    if uri is None:
        monkeypatch.delenv(tracking.BACKEND_URI_ENV, raising=False)
    else:
        monkeypatch.setenv(tracking.BACKEND_URI_ENV, uri)
        monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)


def client_for(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_the_benchmark_logs_into_the_runs_the_backend_opened_and_creates_none(
    mlflow_server, embedded_assets, tmp_path, monkeypatch
):
    """Every task as its pod would run it (mlflow_tracking_uri left empty): exactly the backend's runs, filled."""
    model_dir = tmp_path / "model"
    model_info = tasks.download_model(str(embedded_assets[0]), "", model_dir)
    dataset_info = tasks.download_dataset(str(embedded_assets[1]), "train", "", tmp_path / "dataset")
    grid = tasks.prepare_grid(  # the Liger run is `skipped` on a CPU: two iterations, one trains
        model_info, dataset_info, TINY_AXES, str(model_dir), str(tmp_path / "dataset"), 0.1, "", False, {}, 0.0
    )
    grid = tasks.find_frontier(grid, str(model_dir), str(tmp_path / "dataset"), False, {}, str(tmp_path / "frontier"))
    runs = backend_hierarchy(mlflow_server, len(grid))
    experiment = f"ours-{uuid.uuid4().hex[:8]}"

    as_task(monkeypatch, runs.start_tracking, mlflow_server, runs.experiment_id)
    document = tasks.start_tracking(
        grid, model_info, dataset_info, "", experiment, "liger-benchmark-run", runs.kfp_run_id
    )
    assert document == {"parent_run_id": runs.parent, "tracking_error": ""}

    results, histories = [], []
    for item, iteration in zip(grid, runs.iterations, strict=True):
        as_task(monkeypatch, iteration, mlflow_server, runs.experiment_id)
        results.append(str(tmp_path / f"{item['run_key']}.result"))
        histories.append(str(tmp_path / f"{item['run_key']}.history"))
        trained = tasks.train_model(
            config=item,
            model_dir=str(model_dir),
            dataset_dir=str(tmp_path / "dataset"),
            model_info=model_info,
            dataset_info=dataset_info,
            result_path=results[-1],
            history_path=histories[-1],
            mlflow_tracking_uri="",
            mlflow_experiment=experiment,
            mlflow_parent_run_id=document["parent_run_id"],
            mlflow_tracking_error=document["tracking_error"],
            train_timeout_s=600,
        )
        assert trained.mlflow["available"] and trained.mlflow["run_id"] == iteration, trained.mlflow
        assert "into the run Kubeflow Pipelines opened for this task" in trained.mlflow["message"]

    as_task(monkeypatch, runs.analyze_results, mlflow_server, runs.experiment_id)
    metrics = {}
    tasks.analyze_results(
        results,
        histories,
        str(tmp_path / "frontier"),
        str(tmp_path / "report"),
        str(tmp_path / "summary"),
        str(tmp_path / "table"),
        metrics.__setitem__,
        0.1,
        "",
        document["parent_run_id"],
        0.0,
    )

    client = client_for(mlflow_server)
    # No run of our own, no experiment of our own: the backend's six runs are all there is.
    assert client.get_experiment_by_name(experiment) is None
    found = client.search_runs([runs.experiment_id], max_results=100)
    assert {run.info.run_id for run in found} == runs.all()
    assert [run.info.run_id for run in found if tracking.PARENT_RUN_TAG not in run.data.tags] == [runs.parent]
    assert client.get_run(runs.loop).data.tags[tracking.PARENT_RUN_TAG] == runs.parent

    parent = client.get_run(runs.parent)
    assert parent.info.status == "RUNNING"  # the backend ends it with the pipeline run
    assert parent.data.params["grid_size"] == "2" and parent.data.params["model_name"] == str(embedded_assets[0])
    assert parent.data.tags["kfp.pipeline_run_url"] == f"/#/runs/details/{runs.kfp_run_id}"  # the backend's tag kept
    assert parent.data.metrics == {name: value for name, value in metrics.items() if value == value}
    artifacts = {artifact.path for artifact in client.list_artifacts(runs.parent)}
    assert artifacts == {"report.html", "summary.md", "analysis.csv"}
    for quiet in (runs.start_tracking, runs.loop, runs.analyze_results):
        run = client.get_run(quiet)
        assert (run.data.params, run.data.metrics, client.list_artifacts(quiet)) == ({}, {}, [])

    by_key = {}
    for item, iteration, history_path in zip(grid, runs.iterations, histories, strict=True):
        run = client.get_run(iteration)
        by_key[item["run_key"]] = run
        assert run.info.status == "RUNNING"  # the backend's launcher ends it with the task
        assert run.info.run_name == "train-model"  # the backend's name and nesting are kept
        assert run.data.tags[tracking.PARENT_RUN_TAG] == runs.loop
        assert run.data.tags["run_key"] == item["run_key"]
        assert [a.path for a in client.list_artifacts(iteration)] == [Path(history_path).name]
        record = json.loads(Path(history_path).read_text())
        steps = [step["step"] for step in record["steps"] if step.get("step_time_s") is not None]
        history = client.get_metric_history(iteration, "step_time_s")
        assert sorted(point.step for point in history) == steps  # each step once: nothing logged twice
    ok, skipped = by_key["baseline-bs2-seq64-r0"], by_key["liger-bs2-seq64-r0"]
    assert (ok.data.tags["status"], skipped.data.tags["status"]) == ("ok", "skipped")
    assert ok.data.metrics["summary/tokens_per_s_nonpad"] > 0
    assert ok.data.params["per_device_train_batch_size"] == "2"


def synthetic_result(run_key: str) -> dict:
    return {"run_key": run_key, "status": "ok", "config": {"run_key": run_key}, "metrics": {"n_steps": 3}}


def test_a_uri_naming_the_backends_server_uses_its_runs_too(mlflow_server, tmp_path, monkeypatch):
    """mlflow_tracking_uri set to the same server, and the driver injecting the run id alone (the default)."""
    runs = backend_hierarchy(mlflow_server, 1)
    unused = f"unused-{uuid.uuid4().hex[:8]}"  # this test's own: another test's experiment on the shared server
    as_task(monkeypatch, runs.start_tracking, None)
    parent = tracking.start_parent_run(mlflow_server, unused, "name", {"grid_size": 1}, {})
    assert parent["run_id"] == runs.parent, parent
    as_task(monkeypatch, runs.iterations[0], None)
    child = tracking.log_child_run(mlflow_server, unused, parent["run_id"], synthetic_result("k"), [], None)
    assert child["run_id"] == runs.iterations[0], child
    assert client_for(mlflow_server).get_experiment_by_name(unused) is None


def test_without_a_reachable_injected_run_the_runs_are_created_as_before(
    mlflow_server, dead_mlflow_uri, tmp_path, monkeypatch
):
    """The backend's run is on another server than mlflow_tracking_uri's: our own parent and child, ended."""
    as_task(monkeypatch, uuid.uuid4().hex, dead_mlflow_uri, "1")
    experiment = f"own-{uuid.uuid4().hex[:8]}"
    parent = tracking.start_parent_run(mlflow_server, experiment, "name", {"grid_size": 1}, {})
    child = tracking.log_child_run(mlflow_server, experiment, parent["run_id"], synthetic_result("k"), [], None)
    assert parent["available"] and child["available"], (parent, child)
    client = client_for(mlflow_server)
    run = client.get_run(child["run_id"])
    assert run.data.tags[tracking.PARENT_RUN_TAG] == parent["run_id"] and run.info.status == "FINISHED"
    assert (
        client.get_run(parent["run_id"]).info.experiment_id == client.get_experiment_by_name(experiment).experiment_id
    )
    assert "Kubeflow Pipelines" not in child["message"]


def test_an_injected_run_id_without_a_server_leaves_tracking_off(monkeypatch):
    """The driver injects MLFLOW_RUN_ID alone unless injectUserEnvVars is set: no URI, nothing to contact."""
    as_task(monkeypatch, uuid.uuid4().hex, None)
    status = tracking.start_parent_run("", "exp", "name", {}, {})
    assert (status["enabled"], status["run_id"]) == (False, "")


def test_a_cycle_in_the_runs_nesting_is_a_status_and_logs_nothing(mlflow_server, monkeypatch):
    """Runs that name each other as parent (no backend makes them): the walk up stops, the call reports it."""
    client = client_for(mlflow_server)
    experiment_id = client.create_experiment(f"cycle-{uuid.uuid4().hex[:8]}")
    first, second = (client.create_run(experiment_id).info.run_id for _ in range(2))
    client.set_tag(first, tracking.PARENT_RUN_TAG, second)
    client.set_tag(second, tracking.PARENT_RUN_TAG, first)
    as_task(monkeypatch, first, mlflow_server, experiment_id)
    status = tracking.start_parent_run("", f"unused-{uuid.uuid4().hex[:8]}", "name", {"grid_size": 1}, {})
    assert (status["available"], status["run_id"]) == (False, ""), status
    assert f"is nested more than {tracking.MAX_RUN_NESTING} deep" in status["message"]
    assert [client.get_run(run_id).data.params for run_id in (first, second)] == [{}, {}]
