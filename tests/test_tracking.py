"""liger_bench.tracking against a real MLflow server on loopback, a dead port and misbehaving sockets."""

from __future__ import annotations

import http.server
import json
import logging
import math
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from liger_bench import tracking
from liger_bench.measure.phases import PHASES

HTTP_METRICS = ("step_time_s", "tokens_per_s_padded", "tokens_per_s_nonpad", "tokens_per_s_trained", "loss")


def step_records(n_steps: int) -> list[dict]:
    """Records shaped like StepMetricsCallback's on a CPU: no memory or MFU figures, loss from step 2."""
    return [
        {
            "step": step,
            "warmup": step <= 1,
            "step_time_s": 0.5 + step / 100,
            "tokens_padded": 2048,
            "tokens_per_s_padded": 4096.0,
            "tokens_per_s_nonpad": 3000.0 + step,
            "tokens_per_s_trained": 2900.0,
            "total_tokens_padded": 2048 * step,
            "peak_mem_allocated_gb": None,
            "peak_mem_reserved_gb": None,
            "mfu": None,
            "loss": None if step == 1 else 3.0 - step / 1000,
            "learning_rate": None,
        }
        for step in range(1, n_steps + 1)
    ]


def run_result(run_key: str, status: str, reason: str = "", **config_extra) -> dict:
    """A RunResult.to_dict() with the fields tracking reads."""
    return {
        "run_key": run_key,
        "status": status,
        "config": {"run_key": run_key, "use_liger": True, "per_device_train_batch_size": 4, **config_extra},
        "reason": reason,
        "metrics": {
            "tokens_per_s_nonpad": 3002.0,
            "steady_state": "unsteady",
            "step_time_cv": None,
            "n_steps": 3,
            "mfu": float("nan"),
        },
        "phases_s": {name: index + 0.25 for index, name in enumerate(PHASES)},
        "liger_kernels": {"rms_norm": 3},
        "environment": {
            "gpu_name": "NVIDIA H100 80GB HBM3",
            "gpu_count": 1,
            "driver": "550.54.15",
            "cuda": "12.4",
            "hostname": "train-pod-0",
            "libraries": {"torch": "2.6.0", "liger-kernel": "0.8.5"},
        },
        "mlflow": {},
    }


def write_history(tmp_path: Path, steps: list[dict], name: str = "history.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(steps))
    return str(path)


def client_for(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def warnings_from(caplog: pytest.LogCaptureFixture, name: str | None = None) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and (name is None or r.name == name)]


def test_tracking_off_does_nothing(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    history = write_history(tmp_path, step_records(2))
    statuses = [
        tracking.start_parent_run("", "exp", "pipeline-run", {"a": 1}, {}),
        tracking.log_child_run("", "exp", "", run_result("k", "ok"), step_records(2), history),
        tracking.log_analysis("  ", "", {"speedup": 1.2}, {"history.json": history}),
    ]
    for status in statuses:
        assert status == {"enabled": False, "available": False, "message": status["message"], "run_id": ""}
    assert not tracking.tracking_enabled("")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json"]
    assert not warnings_from(caplog)


def test_parent_children_and_analysis_round_trip(mlflow_server, tmp_path):
    experiment = f"round-trip-{uuid.uuid4().hex[:8]}"
    params = {"model": "tiny-llama", "grid": [1, 2], "base_config": {"max_steps": 3}, "long": "x" * 7000}
    parent = tracking.start_parent_run(mlflow_server, experiment, "bench-run-1", params, {"kfp_run_id": "r-123"})
    assert parent["enabled"] and parent["available"], parent["message"]

    ok_steps = step_records(130)  # 5 metrics x 130 steps: two metric batches
    extra_config = {f"var_{i:03d}": i for i in range(120)}  # more than one params batch
    ok_result = run_result("liger-bs4-r0", "ok", **extra_config)
    history = write_history(tmp_path, ok_steps)
    ok = tracking.log_child_run(mlflow_server, experiment, parent["run_id"], ok_result, ok_steps, history)
    oom_result = run_result("liger-bs64-r0", "oom", reason="CUDA out of memory. " * 500)
    oom = tracking.log_child_run(mlflow_server, experiment, parent["run_id"], oom_result, step_records(2), None)
    skipped = tracking.log_child_run(
        mlflow_server, experiment, parent["run_id"], run_result("liger-bs128-r0", "skipped"), [], None
    )
    assert all(s["available"] for s in (ok, oom, skipped)), [ok, oom, skipped]

    client = client_for(mlflow_server)
    run = client.get_run(parent["run_id"])
    assert run.info.status == "RUNNING"
    assert run.info.run_name == "bench-run-1"
    assert run.data.tags["kfp_run_id"] == "r-123"
    assert run.data.params["grid"] == "[1, 2]"
    assert json.loads(run.data.params["base_config"]) == {"max_steps": 3}
    assert len(run.data.params["long"]) == tracking.MAX_PARAM_CHARS

    child = client.get_run(ok["run_id"])
    assert child.info.status == "FINISHED"
    assert child.info.run_name == "liger-bs4-r0"
    assert child.data.tags["mlflow.parentRunId"] == parent["run_id"]
    assert child.data.tags["status"] == "ok"
    assert child.data.tags["run_key"] == "liger-bs4-r0"
    assert child.data.tags["steady_state"] == "unsteady"  # a text verdict is a tag, not a metric
    assert "summary/steady_state" not in child.data.metrics
    assert child.data.tags["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert child.data.tags["version.torch"] == "2.6.0"
    assert child.data.tags["version.liger-kernel"] == "0.8.5"
    assert child.data.params == {key: str(value) for key, value in ok_result["config"].items()}
    for name in HTTP_METRICS:
        history_points = client.get_metric_history(ok["run_id"], name)
        expected = [s["step"] for s in ok_steps if s[name] is not None]
        assert sorted(m.step for m in history_points) == expected, name
    assert client.get_metric_history(ok["run_id"], "mfu") == []
    assert child.data.metrics["summary/tokens_per_s_nonpad"] == 3002.0
    assert child.data.metrics["summary/n_steps"] == 3
    assert "summary/step_time_cv" not in child.data.metrics
    assert "summary/mfu" not in child.data.metrics
    assert {name: value for name, value in child.data.metrics.items() if name.startswith("phases_s/")} == {
        f"phases_s/{name}": index + 0.25 for index, name in enumerate(PHASES)
    }
    assert [a.path for a in client.list_artifacts(ok["run_id"])] == ["history.json"]

    oom_run = client.get_run(oom["run_id"])
    assert oom_run.info.status == "FAILED"
    assert oom_run.data.tags["status"] == "oom"
    assert oom_run.data.tags["reason"].startswith("CUDA out of memory.")
    assert len(oom_run.data.tags["reason"]) == tracking.REASON_CHARS
    assert client.get_run(skipped["run_id"]).info.status == "KILLED"
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent['run_id']}'"
    )
    assert sorted(r.info.run_id for r in children) == sorted(s["run_id"] for s in (ok, oom, skipped))

    artifacts = {}
    for name, text in (
        ("report.html", "<html></html>"),
        ("analysis.csv", "a,b\n1,2\n"),
        ("summary.md", "# s\n"),
    ):
        (tmp_path / name.replace(".", "-")).write_text(text)  # KFP's artifact files have no extension
        artifacts[name] = str(tmp_path / name.replace(".", "-"))
    analysis = tracking.log_analysis(
        mlflow_server, parent["run_id"], {"speedup_median": 1.31, "bad": float("inf")}, artifacts
    )
    assert analysis["available"], analysis["message"]
    run = client.get_run(parent["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"speedup_median": 1.31}
    assert sorted(a.path for a in client.list_artifacts(parent["run_id"])) == [
        "analysis.csv",
        "report.html",
        "summary.md",
    ]


@pytest.mark.parametrize("variable", ["MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD"])
def test_credentials_never_reach_params_tags_or_artifacts(mlflow_server, tmp_path, monkeypatch, variable):
    import mlflow.artifacts

    canary = f"canary-{uuid.uuid4().hex}"
    monkeypatch.setenv(variable, canary)
    if variable == "MLFLOW_TRACKING_PASSWORD":
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bench")
    experiment = f"canary-{uuid.uuid4().hex[:8]}"
    parent = tracking.start_parent_run(
        mlflow_server, experiment, f"run-{canary}", {"token": canary}, {"pod": f"pod-{canary}"}
    )
    result = run_result("k", "failed", reason=f"auth failed with {canary}", leaked=canary)
    result["environment"]["libraries"]["torch"] = canary
    steps = step_records(3)
    child = tracking.log_child_run(
        mlflow_server, experiment, parent["run_id"], result, steps, write_history(tmp_path, steps)
    )
    (tmp_path / "report.html").write_text("<html>report</html>")
    tracking.log_analysis(
        mlflow_server, parent["run_id"], {"speedup": 1.0}, {"report.html": str(tmp_path / "report.html")}
    )
    assert parent["available"] and child["available"], (parent, child)

    client = client_for(mlflow_server)
    for run_id in (parent["run_id"], child["run_id"]):
        data = client.get_run(run_id).data
        texts = [*data.params.values(), *data.tags.values(), *data.params, *data.tags]
        assert not [text for text in texts if canary in text], run_id
        assert any("***" in text for text in texts)
        downloaded = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, dst_path=str(tmp_path / run_id), tracking_uri=mlflow_server
            )
        )
        files = [p for p in downloaded.rglob("*") if p.is_file()]
        assert files
        assert not [p for p in files if canary in p.read_text()]


def closed_port_calls(uri: str, history: str) -> list:
    return [
        lambda: tracking.start_parent_run(uri, "exp", "run", {"a": 1}, {"b": 2}),
        lambda: tracking.log_child_run(uri, "exp", "0" * 32, run_result("k", "ok"), step_records(3), history),
        lambda: tracking.log_analysis(uri, "0" * 32, {"speedup": 1.0}, {"history.json": history}),
    ]


@pytest.mark.parametrize("call_index", [0, 1, 2], ids=["start_parent_run", "log_child_run", "log_analysis"])
def test_dead_server_costs_one_warning_and_seconds(dead_mlflow_uri, tmp_path, caplog, call_index):
    call = closed_port_calls(dead_mlflow_uri, write_history(tmp_path, step_records(3)))[call_index]
    start = time.monotonic()
    status = call()
    elapsed = time.monotonic() - start
    assert elapsed < 5, elapsed
    assert status["enabled"] and not status["available"] and status["run_id"] == ""
    assert dead_mlflow_uri in status["message"]
    assert [r.getMessage() for r in warnings_from(caplog)] == [status["message"]]


class _HealthyButFailing(http.server.BaseHTTPRequestHandler):
    """Answers /health, then 503 to every API call: a server whose database is down."""

    def do_GET(self):  # noqa: N802 (the name http.server dispatches to)
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def failing_server_uri():
    """A stdlib HTTP server on loopback standing in for an MLflow server whose API fails (503)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HealthyButFailing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_server_uri():
    """A socket that accepts connections (the kernel completes the handshake) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_api_failures_after_a_healthy_probe_are_bounded(failing_server_uri, caplog):
    start = time.monotonic()
    status = tracking.start_parent_run(failing_server_uri, "exp", "run", {"a": 1}, {})
    elapsed = time.monotonic() - start
    assert elapsed < tracking.OUTAGE_BUDGET_S
    assert not status["available"] and "503" in status["message"]
    assert [r.getMessage() for r in warnings_from(caplog)] == [status["message"]]


def test_silent_server_times_out_at_the_probe(silent_server_uri, caplog):
    start = time.monotonic()
    status = tracking.start_parent_run(silent_server_uri, "exp", "run", {"a": 1}, {})
    elapsed = time.monotonic() - start
    assert elapsed < 2 * tracking.PROBE_TIMEOUT_S + 1
    assert not status["available"] and "/health" in status["message"]
    assert len(warnings_from(caplog)) == 1


def test_invalid_input_is_a_status_that_logs_nothing(mlflow_server, tmp_path):
    """Even a malformed result cannot fail the training task through its tracking."""
    experiment = f"invalid-{uuid.uuid4().hex[:8]}"
    parent = tracking.start_parent_run(mlflow_server, experiment, "run", {}, {})
    calls = {
        "result status must be one of": lambda: tracking.log_child_run(
            mlflow_server, experiment, parent["run_id"], run_result("k", "crashed"), [], None
        ),
        "is not a file": lambda: tracking.log_child_run(
            mlflow_server, experiment, parent["run_id"], run_result("k", "ok"), [], str(tmp_path / "no")
        ),
        "KeyError: 'step'": lambda: tracking.log_child_run(
            mlflow_server, experiment, parent["run_id"], run_result("k", "ok"), [{"loss": 1.0}], None
        ),
        "artifact paths are not files": lambda: tracking.log_analysis(
            mlflow_server, parent["run_id"], {}, {"report.html": str(tmp_path / "missing.html")}
        ),
    }
    for problem, call in calls.items():
        status = call()
        assert status["enabled"] and not status["available"] and problem in status["message"], status
    client = client_for(mlflow_server)
    assert [
        run.info.run_id for run in client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    ] == [parent["run_id"]]
    assert client.get_run(parent["run_id"]).info.status == "RUNNING"


def test_a_pipeline_failed_by_its_success_ratio_ends_the_parent_run_failed(mlflow_server, tmp_path):
    """tasks.analyze_results on real result files: the report is written, the parent run ends FAILED, then it raises."""
    from synthetic_results import Run, build

    from liger_bench.records import write_json_atomic
    from liger_bench.tasks import analyze_results

    parent = tracking.start_parent_run(mlflow_server, f"ratio-{uuid.uuid4().hex[:8]}", "run", {}, {})
    results, histories = build([Run(False, 2, 64, status="failed", reason="boom"), Run(False, 4, 64)])
    paths = {
        kind: [str(write_json_atomic(tmp_path / f"{kind}-{i}", doc)) for i, doc in enumerate(docs)]
        for kind, docs in (("result", results), ("history", histories))
    }
    no_search = str(write_json_atomic(tmp_path / "frontier", {"frontiers": [], "sequence_frontiers": []}))
    with pytest.raises(ValueError, match="below min_success_ratio=0.9"):
        analyze_results(
            paths["result"],
            paths["history"],
            no_search,
            str(tmp_path / "report"),
            str(tmp_path / "summary"),
            str(tmp_path / "table"),
            lambda name, value: None,
            min_success_ratio=0.9,
            mlflow_tracking_uri=mlflow_server,
            mlflow_parent_run_id=parent["run_id"],
            gpu_hour_price=0.0,
        )
    assert (tmp_path / "report").is_file()
    assert client_for(mlflow_server).get_run(parent["run_id"]).info.status == "FAILED"


def test_end_parent_run_ends_a_running_parent_and_leaves_an_ended_one(mlflow_server):
    experiment = f"end-{uuid.uuid4().hex[:8]}"
    running = tracking.start_parent_run(mlflow_server, experiment, "interrupted", {}, {})
    ended = tracking.start_parent_run(mlflow_server, experiment, "analysed", {}, {})
    client = client_for(mlflow_server)
    client.set_terminated(ended["run_id"], "FINISHED")
    for parent in (running, ended):
        assert tracking.end_parent_run(mlflow_server, parent["run_id"], "KILLED")["available"]
    assert client.get_run(running["run_id"]).info.status == "KILLED"
    assert client.get_run(ended["run_id"]).info.status == "FINISHED"
    assert tracking.end_parent_run(mlflow_server, "", "KILLED")["message"] == "there is no parent run"


@pytest.mark.slow
def test_a_diverged_child_run_ends_failed_with_its_status_and_its_nan_loss_left_out(mlflow_server, tmp_path):
    import math

    experiment = f"diverged-{uuid.uuid4().hex[:8]}"
    parent = tracking.start_parent_run(mlflow_server, experiment, "bench", {}, {})
    steps = step_records(4)
    steps[-1]["loss"] = math.nan
    result = run_result("baseline-bs4-r0", "diverged", reason="loss nan at step 4 of max_steps=10: …")
    result["metrics"].update(final_loss=math.nan, first_nonfinite_loss_step=4)
    child = tracking.log_child_run(mlflow_server, experiment, parent["run_id"], result, steps, None)
    assert child["available"], child["message"]
    run = client_for(mlflow_server).get_run(child["run_id"])
    assert (run.info.status, run.data.tags["status"]) == ("FAILED", "diverged")
    assert run.data.tags["reason"].startswith("loss nan at step 4")
    assert run.data.metrics["summary/first_nonfinite_loss_step"] == 4 and "summary/final_loss" not in run.data.metrics
    assert [m.step for m in client_for(mlflow_server).get_metric_history(child["run_id"], "loss")] == [2, 3]


def test_every_run_status_has_an_mlflow_run_status():
    from liger_bench.vocabulary import RUN_STATUSES

    assert set(tracking.RUN_STATUS) == set(RUN_STATUSES)


@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_a_uri_with_credentials_is_never_contacted_nor_shown(mlflow_server, caplog, form):
    """Defence behind prepare_grid's refusal: a tracking call given such a URI sends nothing."""
    from test_credentials import SECRET

    uri = {"userinfo": mlflow_server.replace("://", f"://bench:{SECRET}@"), "query": f"{mlflow_server}/?t={SECRET}"}
    experiment = f"never-{uuid.uuid4().hex[:8]}"
    status = tracking.start_parent_run(uri[form], experiment, "run", {}, {})
    assert status["enabled"] and not status["available"]
    assert " not used: the tracking URI " in status["message"] and SECRET not in status["message"]
    assert not [r for r in caplog.records if SECRET in r.getMessage()]
    assert client_for(mlflow_server).get_experiment_by_name(experiment) is None


def test_tracking_while_a_thread_changes_the_environment_logs_everything(mlflow_server, tmp_path, monkeypatch):
    """The race of issue 20 (MLflow's telemetry thread deletes a variable while we log) on a real server.

    The threads take turns at Python's own switch interval, as in a task. Whether reading secrets by name
    rather than iterating os.environ is what holds under a churn is shown, with a control, by
    test_credentials.py::test_secrets_are_read_by_name_while_a_thread_changes_the_environment; here the
    three calls log in full, redacted, while the thread runs.
    """
    from test_credentials import environment_churn

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "churn-token")
    experiment = f"churn-{uuid.uuid4().hex[:8]}"
    params = {f"param_{i:03d}": f"value {i} churn-token" for i in range(150)}  # redacted one by one
    steps = step_records(20)
    history = write_history(tmp_path, steps)
    (tmp_path / "report").write_text("<html></html>")
    # A flip every 0.1 ms: a busy loop would starve the server on a small machine (then the outage bound ends the call).
    with environment_churn(switch_interval_s=sys.getswitchinterval(), pause_s=1e-4) as flips:
        parent = tracking.start_parent_run(mlflow_server, experiment, "churn", params, {"pod": "churn-token"})
        child = tracking.log_child_run(
            mlflow_server, experiment, parent["run_id"], run_result("k", "ok", **params), steps, history
        )
        analysis = tracking.log_analysis(
            mlflow_server, parent["run_id"], {"speedup": 1.0}, {"report.html": str(tmp_path / "report")}
        )
    assert flips[0] > 100
    assert [status["available"] for status in (parent, child, analysis)] == [True, True, True], (parent, child)
    client = client_for(mlflow_server)
    for run_id in (parent["run_id"], child["run_id"]):
        assert client.get_run(run_id).data.params["param_000"] == "value 0 ***"
    assert client.get_run(parent["run_id"]).data.tags["pod"] == "***"
    assert client.get_run(parent["run_id"]).info.status == "FINISHED"


@pytest.mark.slow
def test_mlflow_failing_mid_run_keeps_the_result_and_says_so_on_the_terminal_and_in_the_report(
    tmp_path, embedded_assets, capsys
):
    """A real server stopped once start_tracking opened the parent run, through the whole local pipeline."""
    from mlflow_server import running_mlflow_server
    from test_failure_matrix import SMALL_PIPELINE, _run_results

    from liger_bench.cli.localrun import run_local

    output_dir = tmp_path / "out"
    (tmp_path / "mlflow").mkdir()
    with running_mlflow_server(tmp_path / "mlflow") as server:

        def stop_after_the_parent_run() -> None:
            deadline = time.monotonic() + 300
            while not list(output_dir.glob("pipeline_root/*/start-tracking/tracking")):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)
            server.stop()

        stopper = threading.Thread(target=stop_after_the_parent_run, daemon=True)
        stopper.start()
        overrides = {
            **SMALL_PIPELINE,
            "model_name": str(embedded_assets[0]),
            "dataset_name": str(embedded_assets[1]),
            "mlflow_tracking_uri": server.uri,
        }
        report = run_local(output_dir, overrides)
        stopper.join()
    (result,) = _run_results(report.parent.parent)
    assert result["status"] == "ok"
    parent_run_id = json.loads(next(output_dir.glob("pipeline_root/*/start-tracking/tracking")).read_text())
    assert parent_run_id["parent_run_id"] and parent_run_id["tracking_error"] == ""
    unreachable = f"MLflow at {server.uri} unreachable: ConnectionError on /health; "
    assert not result["mlflow"]["available"]
    assert (
        result["mlflow"]["message"]
        == f"{unreachable}child run '{result['run_key']}' not logged, runs are in the artifacts"
    )
    terminal = [line for line in capsys.readouterr().out.splitlines() if "MLflow at" in line]
    assert terminal == [
        f"[liger-bench] {result['mlflow']['message']}",
        f"[liger-bench] {unreachable}analysis not logged, runs are in the artifacts",
    ]
    page = report.read_text()
    assert "1 of 1 runs not in MLflow." in page and f"MLflow at {server.uri} unreachable" in page


@pytest.mark.slow
def test_every_tag_and_metric_of_a_child_run_over_several_metric_batches(mlflow_server, tmp_path):
    """A GPU run of the synthetic results: 120 steps × 9 step metrics is more than one MLflow batch (1,000)."""
    from synthetic_results import DATASET, FLOPS_PER_TOKEN, JITTER, MODEL, NONPAD_FRACTION, Run, loss_at, make_run

    from liger_bench.records import STEP_METRICS

    result, history = make_run(Run(True, 8, 512, repeat=1, tokens_per_s=12_345.0, mem_reserved_gb=30.0), max_steps=120)
    steps = history["steps"]
    assert len(steps) * len(STEP_METRICS) > tracking.METRICS_PER_BATCH
    experiment = f"child-{uuid.uuid4().hex[:8]}"
    parent = tracking.start_parent_run(mlflow_server, experiment, "run", {}, {})
    child = tracking.log_child_run(mlflow_server, experiment, parent["run_id"], result, steps, None)
    client = client_for(mlflow_server)
    run = client.get_run(child["run_id"])
    tags = {key: value for key, value in run.data.tags.items() if not key.startswith("mlflow.") or "parent" in key}
    assert tags == {
        "mlflow.parentRunId": parent["run_id"],
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "gpu_count": "1",
        "gpu_memory_gb": "79.19",
        "driver": "570.124.06",
        "cuda": "12.8",
        "python": "3.11.9",
        "version.torch": "2.7.1",
        "version.transformers": "5.24.0",
        "version.trl": "1.16.0",
        "version.liger-kernel": "0.8.5",
        "status": "ok",
        "reason": "",
        "run_key": "liger-bs8-seq512-r1",
        "steady_state": "steady",
        "attn_implementation": "sdpa",
        "precision": "bf16",
        "model.name": MODEL["name"],
        "model.revision": MODEL["revision"],
        "dataset.name": DATASET["name"],
        "dataset.revision": DATASET["revision"],
        "liger.rope": "1",
        "liger.rms_norm": "65",
        "liger.swiglu": "32",
        "liger.fused_linear_cross_entropy": "1",
        "liger.cross_entropy": "0",
    }
    nominal = int(8 * 512 * NONPAD_FRACTION) / 12_345.0  # the mean measured step time
    summary = {  # every finite aggregate of the run, by hand
        "tokens_per_s_nonpad": 12_345.0,
        "tokens_per_s_padded": 8 * 512 / nominal,
        "tokens_per_s_trained": 8 * 512 // 2 / nominal,
        "tokens_per_s_nonpad_per_gpu": 12_345.0,
        "world_size": 1,
        "median_step_time_s": JITTER * nominal,
        "mean_step_time_s": nominal,
        "step_time_cv": (1 - JITTER) * math.sqrt(117 - 1),
        "peak_mem_reserved_gb": 30.0,
        "peak_mem_allocated_gb": 0.8 * 30.0,
        "median_mfu": 8 * 512 / (JITTER * nominal) * FLOPS_PER_TOKEN / 989e12,
        "final_loss": loss_at(120, 512, 1),
        "drift": 0.0,
        "n_steps": 120,
        "n_measured_steps": 117,
        "steps_completed": 120,
        "n_shapes": 1,
        "n_first_shape_steps": 0,
        "first_shape_time_s": 0.0,
        "warmup_time_s": 3 * 3 * nominal,
        "n_compile_steps": 0,
        "compiled_graphs": 0,
        "model_flops_per_token": FLOPS_PER_TOKEN,
        "peak_tflops": 989.0,
        # The synthetic GPU draws 500 W in every step.
        "energy_j": 500.0 * 117 * nominal,
        "energy_per_token_j": 500.0 / 12_345.0,
        "tokens_per_kwh": 12_345.0 * 3.6e6 / 500.0,
        "mean_power_w": 500.0,
        "run_energy_j": 500.0 * (117 + 3 * 3) * nominal,
    }
    expected = {f"summary/{key}": value for key, value in summary.items()}
    expected |= {name: steps[-1][name] for name in STEP_METRICS}  # the latest value of each step metric
    assert run.data.metrics == pytest.approx(expected, rel=1e-9)
    for name in STEP_METRICS:
        logged = sorted((m.step, m.value) for m in client.get_metric_history(child["run_id"], name))
        assert logged == [(s["step"], pytest.approx(s[name])) for s in steps], name
