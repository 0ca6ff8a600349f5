"""liger_bench.cli.kfp_client: a real kfp.Client talking HTTP to a recording stand-in for the KFP API.

No Kubeflow Pipelines server can run here, so ``FakeKfpApi`` below answers the handful of
``/apis/v2beta1`` routes these helpers use, on 127.0.0.1, and records every request. Everything on
the client side is real: kfp.Client, kfp_server_api's serialisation, the multipart upload, and the
pipeline package compiled by kfp's compiler. What this cannot show is how a real server (its
validation, its auth proxy, multi-user namespaces) responds.

No ``from __future__ import annotations``: kfp reads the tiny pipeline's annotations as types.
"""

import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kfp import compiler, dsl
from kfp.client import KF_PIPELINES_SA_TOKEN_ENV, Client

from liger_bench.cli import kfp_client

API = "/apis/v2beta1"


class NoRoute(Exception):
    """The stand-in server has no answer for this request."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeKfpApi:
    """State and request log of the stand-in server."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    pipelines: dict[str, str] = field(default_factory=dict)  # display name -> id
    experiments: dict[str, str] = field(default_factory=dict)

    def answer(self, request: Request) -> dict:
        path, method = request.path, request.method
        if method == "GET" and path == f"{API}/healthz":
            return {"multi_user": False}
        if method == "GET" and path == f"{API}/pipelines":
            wanted = _filtered_name(request.query)
            return {
                "pipelines": [
                    {"pipeline_id": pid, "display_name": n} for n, pid in self.pipelines.items() if n == wanted
                ]
            }
        if method == "POST" and path == f"{API}/pipelines/upload":
            name = request.query["name"]
            self.pipelines[name] = f"pipeline-{len(self.pipelines) + 1}"
            return {"pipeline_id": self.pipelines[name], "display_name": name}
        if method == "GET" and path.endswith("/versions"):
            pipeline_id = path.split("/")[-2]
            name = next(n for n, pid in self.pipelines.items() if pid == pipeline_id)
            return {
                "pipeline_versions": [
                    {"pipeline_id": pipeline_id, "pipeline_version_id": "version-1", "display_name": name}
                ]
            }
        if method == "POST" and path == f"{API}/pipelines/upload_version":
            return {
                "pipeline_id": request.query["pipelineid"],
                "pipeline_version_id": "version-2",
                "display_name": request.query["name"],
            }
        if method == "GET" and path == f"{API}/experiments":
            wanted = _filtered_name(request.query)
            return {
                "experiments": [
                    {"experiment_id": eid, "display_name": n} for n, eid in self.experiments.items() if n == wanted
                ]
            }
        if method == "POST" and path == f"{API}/experiments":
            name = json.loads(request.body)["display_name"]
            self.experiments[name] = f"experiment-{len(self.experiments) + 1}"
            return {"experiment_id": self.experiments[name], "display_name": name}
        if method == "POST" and path == f"{API}/runs":
            body = json.loads(request.body)
            return {
                "run_id": "run-1",
                "display_name": body["display_name"],
                "experiment_id": body["experiment_id"],
                "state": "PENDING",
            }
        raise NoRoute(f"{method} {path}")

    def calls(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == f"{API}{path}"]


def _filtered_name(query: dict[str, str]) -> str:
    return json.loads(query["filter"])["predicates"][0]["stringValue"]


@pytest.fixture
def kfp_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKfpApi]:
    """The stand-in KFP API on a free loopback port; kfp.Client's context file kept in tmp_path."""
    monkeypatch.setattr(Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    monkeypatch.setenv(KF_PIPELINES_SA_TOKEN_ENV, str(tmp_path / "no-token-here"))
    api = FakeKfpApi()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(
                self.command,
                parsed.path,
                dict(urllib.parse.parse_qsl(parsed.query)),
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length),
            )
            api.requests.append(request)
            try:
                status, payload = 200, api.answer(request)
            except NoRoute as missing:
                status, payload = 404, {"error": f"no route {missing}"}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


@dsl.component(base_image="python:3.11-slim")
def echo(text: str) -> str:
    return text


@dsl.pipeline(name="tiny-pipeline")
def tiny_pipeline(message: str = "hi", repeats: int = 1, sizes: list = [1, 2]):  # noqa: B006 (kfp default)
    echo(text=message)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("package") / "tiny_pipeline.yaml"
    compiler.Compiler().compile(tiny_pipeline, str(path))
    return str(path)


def test_upload_creates_the_pipeline_when_the_name_is_new(kfp_api: FakeKfpApi, package: str) -> None:
    info = kfp_client.upload_pipeline(kfp_api.url, package, "liger-benchmark")

    assert info == {
        "pipeline_id": "pipeline-1",
        "pipeline_name": "liger-benchmark",
        "pipeline_version_id": "version-1",
        "pipeline_version_name": "liger-benchmark",
        "created": True,
    }
    (upload,) = kfp_api.calls("POST", "/pipelines/upload")
    assert upload.query["name"] == "liger-benchmark"
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert b"tiny-pipeline" in upload.body  # the package itself travelled
    assert not kfp_api.calls("POST", "/pipelines/upload_version")


def test_upload_adds_a_version_when_the_pipeline_exists(kfp_api: FakeKfpApi, package: str) -> None:
    kfp_api.pipelines["liger-benchmark"] = "pipeline-7"

    named = kfp_client.upload_pipeline(kfp_api.url, package, "liger-benchmark", version="v2-bigger-batches")
    stamped = kfp_client.upload_pipeline(kfp_api.url, package, "liger-benchmark")

    assert named["pipeline_id"] == "pipeline-7" and named["created"] is False
    assert named["pipeline_version_name"] == "v2-bigger-batches"
    first, second = kfp_api.calls("POST", "/pipelines/upload_version")
    assert first.query == {"name": "v2-bigger-batches", "pipelineid": "pipeline-7"}
    assert second.query["name"].startswith(f"{kfp_client.package_version()} ")
    assert stamped["pipeline_version_name"] == second.query["name"]
    assert not kfp_api.calls("POST", "/pipelines/upload")


def test_upload_passes_the_profile_namespace(kfp_api: FakeKfpApi, package: str) -> None:
    kfp_client.upload_pipeline(kfp_api.url, package, "liger-benchmark", namespace="team-a")

    (lookup,) = kfp_api.calls("GET", "/pipelines")
    (upload,) = kfp_api.calls("POST", "/pipelines/upload")
    assert lookup.query["namespace"] == "team-a"
    assert upload.query["namespace"] == "team-a"


def test_run_submits_the_package_with_the_parameters(kfp_api: FakeKfpApi, package: str) -> None:
    params = {"message": "hello", "sizes": [4, 8]}

    info = kfp_client.run_pipeline(kfp_api.url, package, params, experiment="liger", run_name="bs-sweep")

    assert info == {
        "run_id": "run-1",
        "run_name": "bs-sweep",
        "experiment_id": "experiment-1",
        "url": f"{kfp_api.url}/#/runs/details/run-1",
    }
    (created,) = kfp_api.calls("POST", "/experiments")
    assert json.loads(created.body)["display_name"] == "liger"
    (run,) = kfp_api.calls("POST", "/runs")
    body = json.loads(run.body)
    assert body["runtime_config"]["parameters"] == params
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "tiny-pipeline"
    assert body["experiment_id"] == "experiment-1"


def test_run_reuses_an_existing_experiment(kfp_api: FakeKfpApi, package: str) -> None:
    kfp_api.experiments["liger"] = "experiment-9"

    info = kfp_client.run_pipeline(kfp_api.url, package, {}, experiment="liger")

    assert info["experiment_id"] == "experiment-9"
    assert not kfp_api.calls("POST", "/experiments")


def test_run_rejects_unknown_parameters_before_sending_anything(kfp_api: FakeKfpApi, package: str) -> None:
    with pytest.raises(ValueError, match=r"\['max_concurrency'\].*\['message', 'repeats', 'sizes'\]"):
        kfp_client.run_pipeline(kfp_api.url, package, {"message": "x", "max_concurrency": 8})

    assert kfp_api.requests == []


def test_the_service_account_token_is_sent_when_its_file_exists(
    kfp_api: FakeKfpApi, package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "token"
    token.write_text("projected-sa-token\n")
    monkeypatch.setenv(KF_PIPELINES_SA_TOKEN_ENV, str(token))

    kfp_client.upload_pipeline(kfp_api.url, package, "liger-benchmark")

    assert kfp_api.requests
    assert {r.headers.get("authorization") for r in kfp_api.requests} == {"Bearer projected-sa-token"}


def test_no_authorization_header_without_credentials(kfp_api: FakeKfpApi, package: str) -> None:
    kfp_client.upload_pipeline(kfp_api.url, package, "liger-benchmark")

    assert all("authorization" not in r.headers for r in kfp_api.requests)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("inputs.yaml", "model_name: org/model\nuse_liger: [true, false]\nn_runs: 3\n", None),
        ("inputs.yml", "model_name: org/model\nuse_liger: [true, false]\nn_runs: 3\n", None),
        ("inputs.json", '{"model_name": "org/model", "use_liger": [true, false], "n_runs": 3}', None),
        ("empty.yaml", "", {}),
        ("comments.yaml", "# nothing set yet\n", {}),
    ],
    ids=["yaml", "yml", "json", "empty", "only-comments"],
)
def test_load_params_reads_yaml_and_json(tmp_path: Path, name: str, text: str, expected: dict | None) -> None:
    path = tmp_path / name
    path.write_text(text)

    params = kfp_client.load_params(path)

    assert params == (
        expected if expected is not None else {"model_name": "org/model", "use_liger": [True, False], "n_runs": 3}
    )


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("list.yaml", "- a\n- b\n", "must hold a mapping.*got list"),
        ("scalar.json", "3", "must hold a mapping.*got int"),
        ("int-keys.yaml", "1: one\n", "must hold a mapping"),
        ("broken.json", '{"n_runs": 3,', "cannot parse"),
        ("broken.yaml", "a: [1, 2\n", "cannot parse"),
    ],
    ids=["list", "scalar", "non-string-keys", "bad-json", "bad-yaml"],
)
def test_load_params_names_the_problem(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)

    with pytest.raises(ValueError, match=message):
        kfp_client.load_params(path)
