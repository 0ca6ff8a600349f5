"""MLflow logging of a benchmark: one parent run per pipeline run, one nested child run per grid point.

Kubeflow Pipelines' own MLflow integration (KEP-12862, kubeflow/pipelines), when an administrator turns
it on, opens a parent run per pipeline run and a nested run per task (a ParallelFor's iterations nest
under a run of the loop), and gives each task container its run's id as ``MLFLOW_RUN_ID`` (and the
server as ``MLFLOW_TRACKING_URI`` where ``injectUserEnvVars`` is set). Then these runs are the
benchmark's: a task that finds its injected run on the server it logs to writes into it and into the
pipeline's parent run found above it, creates none, and leaves ending them to the backend
(``backend_run``). Without the integration, or with ``mlflow_tracking_uri`` naming another server
(the injected run is not found there), the runs are created here as before.

The only module that imports mlflow, and only inside functions. Tracking never costs a benchmark:
every public function returns a status dict (``enabled``, ``available``, ``message``, ``run_id``)
instead of raising, whatever the server, the network or mlflow do. With the server unreachable a
call returns within ``OUTAGE_BUDGET_S`` and logs one warning, ``MLflow at <uri> unreachable: …;
runs are in the artifacts``, which the tasks also print where users look.

Credentials come only from the environment (``MLFLOW_TRACKING_TOKEN`` or
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``, fed by a Kubernetes Secret), which mlflow
reads itself; a URI holding any is refused (``liger_bench.credentials``), and every param, tag and
message is redacted.

We log with ``MlflowClient`` after training rather than with transformers' ``MLflowCallback``: with
``MLFLOW_NESTED_RUN=true`` that callback ends the active parent run when a Trainer is collected.

One room although over the usual length: credential checks and redaction, the seam that was
shared with the command line, live in ``liger_bench.credentials``; what remains is the four calls,
the backend's runs they write into, and the one outage guard (probe, bounded HTTP, deadline,
catch-all) each goes through, a single promise, "tracking never costs a benchmark", better read in
one file than across two.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from liger_bench.credentials import redact, shown_uri, tracking_uri_problem
from liger_bench.records import STEP_METRICS, StepRecord
from liger_bench.vocabulary import RUN_STATUSES

logger = logging.getLogger(__name__)

# Aggregates share names with per-step metrics (peak_mem_*); the prefix keeps their histories apart.
SUMMARY_PREFIX = "summary/"
# The seconds of each phase of the run's process (RunResult.phases_s).
PHASES_PREFIX = "phases_s/"
TEXT_METRIC_TAGS = ("steady_state", "attn_implementation", "precision", "energy_unavailable")
ENVIRONMENT_TAGS = ("gpu_name", "gpu_count", "gpu_memory_gb", "driver", "cuda", "python")
# skipped runs never trained: KILLED tells them apart from runs that crashed, ran out of memory or diverged.
RUN_STATUS = {"ok": "FINISHED", "oom": "FAILED", "failed": "FAILED", "skipped": "KILLED", "diverged": "FAILED"}

# Limits of the MLflow REST API (mlflow.utils.validation).
MAX_PARAM_CHARS = 6000
MAX_TAG_CHARS = 8000
PARAMS_PER_BATCH = 100
TAGS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
REASON_CHARS = 2000

# Outage bound: the probe waits at most PROBE_TIMEOUT_S to connect and as long to read. Each later
# request waits at most HTTP_TIMEOUT_S per attempt, HTTP_RETRIES retries, backoff 0 s then 2 s (+ jitter),
# and a request is only started while it can finish within OUTAGE_BUDGET_S of the call's start.
OUTAGE_BUDGET_S = 30.0
PROBE_TIMEOUT_S = 3.0
HTTP_TIMEOUT_S = 5
HTTP_RETRIES = 2
HTTP_BACKOFF_FACTOR = 1
HTTP_BACKOFF_JITTER = 0.5
WORST_REQUEST_S = (HTTP_RETRIES + 1) * HTTP_TIMEOUT_S + HTTP_BACKOFF_FACTOR * 2 + HTTP_BACKOFF_JITTER
# mlflow reads these per request, so setting them around our calls is enough.
BOUNDED_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": str(HTTP_TIMEOUT_S),
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(HTTP_RETRIES),
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(HTTP_BACKOFF_FACTOR),
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": str(HTTP_BACKOFF_JITTER),
    # A proxy answering 503 with Retry-After: 600 would otherwise stall us for ten minutes.
    "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",
}


# What Kubeflow Pipelines' MLflow integration sets in a task's container (KEP-12862).
BACKEND_RUN_ENV = "MLFLOW_RUN_ID"
BACKEND_URI_ENV = "MLFLOW_TRACKING_URI"
PARENT_RUN_TAG = "mlflow.parentRunId"
# Pipeline run, loop, iteration: three levels; more means a cycle or something not made by the backend.
MAX_RUN_NESTING = 8


class _OutOfTime(Exception):
    pass


def tracking_enabled(uri: str) -> bool:
    """Whether tracking is configured: an empty (or blank) URI turns it off."""
    return bool(uri and uri.strip())


def tracking_uri(uri: str) -> str:
    """The server a task logs to: ``uri``, else the backend's when its MLflow integration gave the task a run.

    Args:
        uri: The pipeline's ``mlflow_tracking_uri``; empty leaves the choice to the backend.

    Returns:
        ``uri`` when set or without an injected run; else ``MLFLOW_TRACKING_URI`` ("" when the
        backend injected the run id alone: then tracking stays off).

    """
    if tracking_enabled(uri) or not _injected_run_id():
        return uri
    return os.environ.get(BACKEND_URI_ENV, "")


def start_parent_run(uri: str, experiment: str, run_name: str, params: dict, tags: dict) -> dict[str, Any]:
    """Create the pipeline's parent run (experiment created when missing) and leave it RUNNING.

    Under the backend's MLflow integration, the parent run the backend opened for the pipeline run
    receives the params and tags instead, in the backend's experiment; none is created.

    Args:
        uri: Tracking URI; empty turns tracking off (unless the backend injected a run: ``tracking_uri``).
        experiment: Experiment name, created when it does not exist.
        run_name: Name of the parent run, the pipeline run's name.
        params: Pipeline parameters; lists and dicts are logged as JSON strings.
        tags: Extra tags, e.g. the KFP run id and pod name.

    Returns:
        The status dict; ``run_id`` is the parent's id, or "" when nothing was logged.

    """

    def body(client) -> tuple[str, str]:
        task_run = backend_run(client)
        if task_run is not None:
            parent = _root_run(client, task_run)
            _log_batches(client, parent.info.run_id, params=params, tags=tags)
            return parent.info.run_id, _backend_note(client, parent, "the pipeline run")
        run = client.create_run(_experiment_id(client, experiment), run_name=redact(run_name))
        _log_batches(client, run.info.run_id, params=params, tags=tags)
        return run.info.run_id, ""

    return _guarded(tracking_uri(uri), f"parent run {run_name!r}", body)


def log_child_run(
    uri: str,
    experiment: str,
    parent_run_id: str,
    result: dict[str, Any],
    steps: list[StepRecord],
    history_path: str | None,
) -> dict[str, Any]:
    """Log one grid point as a finished child run of ``parent_run_id``.

    The run is FINISHED for ``ok``, FAILED for ``oom``, ``failed`` and ``diverged``, KILLED for ``skipped``.
    Under the backend's MLflow integration, the run the backend opened for this task receives it all
    (its name and nesting kept) and the backend ends it with the task; none is created.

    Args:
        uri: Tracking URI; empty turns tracking off (unless the backend injected a run: ``tracking_uri``).
        experiment: Experiment name, created when it does not exist.
        parent_run_id: Id of the parent run; "" (it could not be created) logs nothing, unless the
            backend injected a run.
        result: A ``RunResult.to_dict()``; its ``config`` becomes params, its finite ``metrics``
            become ``summary/*`` metrics, its ``phases_s`` ``phases_s/*`` metrics, its status, reason and
            environment become tags.
        steps: Step records of ``StepMetricsCallback``; each metric in ``STEP_METRICS`` is logged at
            ``record["step"]`` (None and non-finite values skipped).
        history_path: Step-history file logged as an artifact, or None.

    Returns:
        The status dict; ``run_id`` is the child's id, or "" when nothing was logged (also when
        ``result`` has an unknown status or ``history_path`` does not exist: its message says so).

    """
    what = f"child run {result.get('run_key')!r}"
    uri = tracking_uri(uri)
    if tracking_enabled(uri) and not parent_run_id and not _injected_run_id():
        return _no_parent(uri, what)

    def body(client) -> tuple[str, str]:
        # Reading the result happens inside the guard too: no odd value of it can fail the task.
        if result.get("status") not in RUN_STATUSES:
            raise ValueError(f"result status must be one of {RUN_STATUSES}, got {result.get('status')!r}")
        if history_path is not None and not Path(history_path).is_file():
            raise ValueError(f"history_path {history_path!r} is not a file")
        task_run = backend_run(client)
        if task_run is None and not parent_run_id:
            raise ValueError("there is no parent run")
        # The backend's run keeps the nesting the backend gave it (under the loop's run).
        tags = _child_tags(result, parent_run_id if task_run is None else "")
        metrics = _child_metrics(result, steps)
        if task_run is None:
            run_id = client.create_run(
                _experiment_id(client, experiment), run_name=redact(result["run_key"])
            ).info.run_id
        else:
            run_id = task_run.info.run_id
        _log_batches(client, run_id, params=result.get("config", {}), tags=tags, metrics=metrics)
        if history_path is not None:
            client.log_artifact(run_id, history_path)
        if task_run is None:  # the backend's launcher ends its run when the task ends
            client.set_terminated(run_id, RUN_STATUS[result["status"]])
            return run_id, ""
        return run_id, _backend_note(client, task_run, "this task")

    return _guarded(uri, what, body)


def _child_tags(result: dict[str, Any], parent_run_id: str) -> dict[str, Any]:
    environment = result.get("environment", {})
    tags = {key: environment[key] for key in ENVIRONMENT_TAGS if key in environment}
    tags.update({f"version.{lib}": version for lib, version in environment.get("libraries", {}).items()})
    tags.update(status=result["status"], reason=str(result.get("reason", ""))[:REASON_CHARS])
    tags.update(run_key=result["run_key"])
    metrics_of_run = result.get("metrics") or {}
    # Text verdicts of the run (steady state, attention used, why no energy) are tags: MLflow metrics are numbers.
    tags.update({key: str(metrics_of_run[key]) for key in TEXT_METRIC_TAGS if metrics_of_run.get(key)})
    for source in ("model", "dataset"):
        info = result.get(source) or {}
        tags.update({f"{source}.{key}": str(info[key]) for key in ("name", "revision") if info.get(key)})
    tags.update({f"liger.{kernel}": str(count) for kernel, count in (result.get("liger_kernels") or {}).items()})
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    return tags


def _child_metrics(result: dict[str, Any], steps: list[StepRecord]) -> list[tuple[str, float, int, int]]:
    timestamp = int(time.time() * 1000)
    metrics = [
        (name, record[name], timestamp, int(record["step"]))
        for record in steps
        for name in STEP_METRICS
        if _finite(record.get(name))
    ]
    metrics += [
        (SUMMARY_PREFIX + name, value, timestamp, 0)
        for name, value in result.get("metrics", {}).items()
        if _finite(value)
    ]
    metrics += [(PHASES_PREFIX + name, seconds, timestamp, 0) for name, seconds in result.get("phases_s", {}).items()]
    return metrics


def log_analysis(
    uri: str, parent_run_id: str, metrics: dict[str, float], artifacts: Mapping[str, str], status: str = "FINISHED"
) -> dict:
    """Log the analysis's summary metrics and files to the parent run, then end it with ``status``.

    Under the backend's MLflow integration, the parent run above the run the backend opened for this
    task receives them, and the backend ends it with the pipeline run.

    Args:
        uri: Tracking URI; empty turns tracking off (unless the backend injected a run: ``tracking_uri``).
        parent_run_id: Id of the parent run; "" (never created) logs nothing, unless the backend
            injected a run.
        metrics: Summary metrics; non-finite values are skipped.
        artifacts: Files (report HTML, tables) logged at the root of the run's artifacts, by the name
            each gets there (KFP's artifact files have no extension; MLflow's UI renders files by name).
        status: ``FINISHED``, or ``FAILED`` when the pipeline fails after the analysis.

    Returns:
        The status dict; ``run_id`` is the parent's id ("" when nothing was logged, also when an
        artifact path is not a file: its message says so).

    """
    uri = tracking_uri(uri)
    if tracking_enabled(uri) and not parent_run_id and not _injected_run_id():
        return _no_parent(uri, "analysis")

    def body(client) -> tuple[str, str]:
        missing = [path for path in artifacts.values() if not Path(path).is_file()]
        if missing:
            raise ValueError(f"artifact paths are not files: {missing}")
        task_run = backend_run(client)
        parent = _root_run(client, task_run) if task_run is not None else None
        if parent is None and not parent_run_id:
            raise ValueError("there is no parent run")
        run_id = parent.info.run_id if parent is not None else parent_run_id
        timestamp = int(time.time() * 1000)
        batch = [(name, value, timestamp, 0) for name, value in metrics.items() if _finite(value)]
        _log_batches(client, run_id, metrics=batch)
        with tempfile.TemporaryDirectory() as tmp:
            for name, path in artifacts.items():
                client.log_artifact(run_id, shutil.copyfile(path, Path(tmp) / name))
        if parent is None:  # the backend ends its parent run when the pipeline run ends
            client.set_terminated(run_id, status)
            return run_id, ""
        return run_id, _backend_note(client, parent, "the pipeline run")

    return _guarded(uri, "analysis", body)


def end_parent_run(uri: str, parent_run_id: str, status: str) -> dict[str, Any]:
    """End the parent run with ``status`` (``KILLED``, ``FAILED``) unless it has ended already.

    For a pipeline that stops before its analysis, which would otherwise leave the run RUNNING.

    Args:
        uri: Tracking URI; empty turns tracking off.
        parent_run_id: Id of the parent run; "" (never created) does nothing.
        status: The MLflow run status to end it with.

    Returns:
        The status dict; ``run_id`` is the parent's id.

    """
    if not parent_run_id:
        return _status(tracking_enabled(uri), False, "there is no parent run", "")

    def body(client) -> tuple[str, str]:
        if client.get_run(parent_run_id).info.status == "RUNNING":
            client.set_terminated(parent_run_id, status)
        return parent_run_id, ""

    return _guarded(uri, f"end of parent run ({status})", body)


def _guarded(uri: str, what: str, body: Callable[[Any], tuple[str, str]]) -> dict[str, Any]:
    """Probe the server, then run ``body`` with bounded HTTP; any failure at all becomes a status.

    ``body`` returns the id of the run it logged to and a note on that run for the message ("" or
    `` (into …)``).
    """
    if not tracking_enabled(uri):
        return _status(False, False, "tracking off: no MLflow tracking URI", "")
    problem = tracking_uri_problem(uri)
    if problem:  # prepare_grid refuses such a URI; never send credentials that sit in one
        return _unavailable(uri, what, f"the tracking URI {problem}", verdict="not used")
    deadline = time.monotonic() + OUTAGE_BUDGET_S
    try:
        problem = _probe(uri)
        if problem:
            return _unavailable(uri, what, problem, verdict="unreachable")
        # mlflow's telemetry thread (started on import) sets and deletes environment variables while
        # we run, and phones home from clusters that have no way out. An explicit setting wins.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow import MlflowClient

        with _bounded_http():
            run_id, note = body(_BoundedClient(MlflowClient(tracking_uri=uri), deadline))
    except Exception as error:  # noqa: BLE001 (whatever mlflow, requests or the server do must not cost the run)
        reason = f"{type(error).__name__}: {str(error)[:500]}"
        if "Invalid Host header" in str(error):
            reason += " (add this host to the server's --allowed-hosts)"
        return _unavailable(uri, what, reason)
    return _status(True, True, f"{what} logged to {shown_uri(uri)}{note}", run_id)


def _injected_run_id() -> str:
    return os.environ.get(BACKEND_RUN_ENV, "").strip()


def backend_run(client) -> Any:
    """The run the backend's MLflow integration opened for this task, when it is on ``client``'s server.

    None without the integration, and when ``MLFLOW_RUN_ID`` names no run there: the pipeline's
    ``mlflow_tracking_uri`` points at another server, which gets the runs this module creates.
    """
    from mlflow.exceptions import MlflowException

    run_id = _injected_run_id()
    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _root_run(client, run) -> Any:
    """The run at the top of ``run``'s nesting: the backend's parent run of the pipeline run."""
    for _ in range(MAX_RUN_NESTING):
        parent_id = run.data.tags.get(PARENT_RUN_TAG)
        if not parent_id:
            return run
        run = client.get_run(parent_id)
    raise ValueError(f"run {run.info.run_id} is nested more than {MAX_RUN_NESTING} deep (a cycle?)")


def _backend_note(client, run, owner: str) -> str:
    """Where the runs went, for the status message: the backend's run and its experiment."""
    experiment = client.get_experiment(run.info.experiment_id).name
    return f" (into the run Kubeflow Pipelines opened for {owner}, {run.info.run_id}, in experiment {experiment!r})"


class _BoundedClient:
    """Forwards to an MlflowClient; refuses to start a request that could end past the deadline."""

    def __init__(self, client, deadline: float):
        self._client = client
        self._deadline = deadline
        self._start = deadline - OUTAGE_BUDGET_S

    def __getattr__(self, name: str):
        method = getattr(self._client, name)

        def call(*args, **kwargs):
            if time.monotonic() + WORST_REQUEST_S > self._deadline:
                spent = time.monotonic() - self._start
                raise _OutOfTime(f"server too slow: {spent:.0f} s spent, {OUTAGE_BUDGET_S:.0f} s allowed")
            return method(*args, **kwargs)

        return call


def _probe(uri: str) -> str:
    """'' when an http(s) server answers ``/health`` (other URIs need no probe), else the problem."""
    if urlsplit(uri).scheme not in ("http", "https"):
        return ""
    import requests

    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("true", "1")
    verify = False if insecure else os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
    try:
        response = requests.get(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S, verify=verify)
    except requests.Timeout:
        return f"no answer from /health within {PROBE_TIMEOUT_S:.0f} s"
    except requests.RequestException as error:
        return f"{type(error).__name__} on /health"
    if response.status_code >= 500:
        return f"/health answered HTTP {response.status_code}"
    return ""


@contextlib.contextmanager
def _bounded_http() -> Iterator[None]:
    """Set ``BOUNDED_HTTP_ENV`` and quiet urllib3's per-retry warnings (we log one) for the duration.

    Not thread-safe: components log from one thread.
    """
    saved = {name: os.environ.get(name) for name in BOUNDED_HTTP_ENV}
    urllib3_logger = logging.getLogger("urllib3.connectionpool")
    saved_level = urllib3_logger.level
    os.environ.update(BOUNDED_HTTP_ENV)
    urllib3_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        urllib3_logger.setLevel(saved_level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _experiment_id(client, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        # A sibling task created it between our two requests.
        return client.get_experiment_by_name(name).experiment_id


def _log_batches(client, run_id: str, params: dict | None = None, tags: dict | None = None, metrics=()):
    from mlflow.entities import Metric, Param, RunTag

    param_list = [Param(key, _param_value(value)) for key, value in (params or {}).items()]
    tag_list = [RunTag(key, redact(str(value))[:MAX_TAG_CHARS]) for key, value in (tags or {}).items()]
    metric_list = [Metric(key, float(value), timestamp, step) for key, value, timestamp, step in metrics]
    for start in range(0, len(param_list), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=param_list[start : start + PARAMS_PER_BATCH])
    for start in range(0, len(tag_list), TAGS_PER_BATCH):
        client.log_batch(run_id, tags=tag_list[start : start + TAGS_PER_BATCH])
    for start in range(0, len(metric_list), METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metric_list[start : start + METRICS_PER_BATCH])


def _param_value(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        value = json.dumps(value, sort_keys=True, default=str)
    text = str(value)
    return redact(text)[:MAX_PARAM_CHARS]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _status(enabled: bool, available: bool, message: str, run_id: str) -> dict[str, Any]:
    return {"enabled": enabled, "available": available, "message": message, "run_id": run_id}


def _unavailable(uri: str, what: str, reason: str, verdict: str = "failed") -> dict[str, Any]:
    """The status of a call that did not log, and its one warning."""
    # Error texts may quote the URI, credentials included.
    message = f"MLflow at {shown_uri(uri)} {verdict}: {redact(reason)}; {what} not logged, runs are in the artifacts"
    logger.warning(message)
    return _status(True, False, message, "")


def _no_parent(uri: str, what: str) -> dict[str, Any]:
    """The status of a call skipped because the parent run could not be created (that failure was told)."""
    return _status(True, False, f"MLflow at {shown_uri(uri)}: {what} not logged, there is no parent run", "")
