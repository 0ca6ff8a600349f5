"""liger_bench.credentials: every URI form that can carry a secret is refused before anything runs and
redacted wherever it is quoted; secrets are read by name while another thread changes the environment."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from liger_bench.credentials import check_tracking_uri, redact, redact_credentials, tracking_uri_problem

SECRET = "s3cr3t-canary-91f0"
# Set and deleted by the churning thread, as MLflow's telemetry thread sets and deletes its session id.
CHURNED = "_LIGER_BENCH_TEST_CHURN"


@dataclass(frozen=True)
class UriForm:
    id: str
    uri: str


SECRET_URI_FORMS = [
    UriForm("userinfo", f"http://bench:{SECRET}@mlflow:5000"),
    UriForm("password-with-at-and-colon", f"http://bench:p@ss:{SECRET}@w0rd@mlflow:5000/"),
    UriForm("token-as-user", f"https://{SECRET}@mlflow.example.com"),
    UriForm("query-token", f"http://mlflow:5000/?token={SECRET}"),
    UriForm("query-any-key", f"http://mlflow:5000/api?x=1&sig={SECRET}"),
    UriForm("fragment", f"http://mlflow:5000/#{SECRET}"),
    UriForm("no-scheme-userinfo", f"bench:{SECRET}@mlflow:5000"),
    UriForm("no-scheme-query", f"mlflow:5000/?token={SECRET}"),
    UriForm("database-url", f"postgresql://bench:{SECRET}@db:5432/mlflow"),
]
SECRET_IDS = [form.id for form in SECRET_URI_FORMS]


@pytest.mark.parametrize("form", SECRET_URI_FORMS, ids=SECRET_IDS)
def test_every_uri_form_is_redacted_where_it_is_quoted(form):
    for text in (form.uri, f"HTTPError talking to {form.uri}: 401", json.dumps({"uri": form.uri}), repr(form.uri)):
        redacted = redact_credentials(text)
        assert SECRET not in redacted, text
        assert "***" in redacted and "mlflow" in redacted or "db:5432" in redacted


@pytest.mark.parametrize("form", SECRET_URI_FORMS, ids=SECRET_IDS)
def test_every_uri_form_that_can_carry_a_secret_is_refused_with_a_message_that_shows_none(form):
    with pytest.raises(ValueError) as refused:
        check_tracking_uri(form.uri)
    message = str(refused.value)
    assert message.startswith("mlflow_tracking_uri: ") and SECRET not in message
    assert "MLFLOW_TRACKING_TOKEN" in message and "mlflow_secret" in message


@pytest.mark.parametrize(
    "uri", ["", "http://127.0.0.1:5000", "https://mlflow.example.com/mlflow/", "file:///tmp/mlruns"]
)
def test_plain_http_and_file_uris_are_accepted(uri):
    assert tracking_uri_problem(uri) == ""
    check_tracking_uri(uri)


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("mlflow:5000", "is not an http(s) or file URL"),
        ("http://", "names no host"),
        ("http://mlflow:99999", "is not a well-formed URL"),
        ("ftp://mlflow/x", "is not an http(s) or file URL"),
        ("file://host/tmp/mlruns", "is not file:///absolute/path"),
        (f"http://bench:pass {SECRET}@mlflow", "holds whitespace"),
        (f"http://bench:'{SECRET}'@mlflow", "holds whitespace, quotes"),
    ],
)
def test_malformed_uris_are_refused_and_unredactable_ones_not_shown(uri, problem):
    with pytest.raises(ValueError, match="mlflow_tracking_uri: ") as refused:
        check_tracking_uri(uri)
    assert problem in str(refused.value) and SECRET not in str(refused.value)


def test_secret_variables_are_redacted_by_value(monkeypatch):
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "HF_TOKEN"):
        monkeypatch.setenv(name, f"{SECRET}-{name}")
    text = " ".join(f"{SECRET}-{name}" for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "HF_TOKEN"))
    assert redact(text) == "*** *** ***"


@contextlib.contextmanager
def environment_churn(switch_interval_s: float = 1e-6, pause_s: float = 0.0) -> Iterator[list[int]]:
    """A thread that sets and deletes an environment variable, ``pause_s`` apart; yields its flip count.

    The threads take turns every ``switch_interval_s``: a microsecond makes them interleave inside
    short loops; Python's default (5 ms) is what a real program sees. A pause leaves the CPU to others.
    """
    stop = threading.Event()
    flips = [0]

    def churn() -> None:
        while not stop.is_set():
            os.environ[CHURNED] = "1"
            os.environ.pop(CHURNED, None)
            flips[0] += 1
            time.sleep(pause_s)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval_s)
    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        yield flips
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)


def test_secrets_are_read_by_name_while_a_thread_changes_the_environment(monkeypatch):
    """The race of issue 20: redaction used to iterate os.environ, which raised KeyError mid-run."""
    from liger_bench.measure.supervisor import environment_snapshot

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", SECRET)
    for i in range(300):  # a pod's environment is long: the longer a copy takes, the likelier it is cut
        monkeypatch.setenv(f"_LIGER_BENCH_TEST_VARIABLE_{i}", str(i))
    with environment_churn() as flips:
        # The control: iterating the environment under this churn does break, within seconds.
        deadline, broke = time.monotonic() + 60, False
        while not broke and time.monotonic() < deadline:
            try:
                dict(os.environ)
            except (KeyError, RuntimeError):
                broke = True
        assert broke
        for _ in range(20_000):
            assert redact(f"token {SECRET} at http://u:{SECRET}@h") == "token *** at http://***@h"
        snapshots = [environment_snapshot() for _ in range(2_000)]
    assert flips[0] > 1000
    assert all(snapshot["MLFLOW_TRACKING_TOKEN"] == SECRET for snapshot in snapshots)


@pytest.mark.parametrize("form", SECRET_URI_FORMS, ids=SECRET_IDS)
def test_local_refuses_a_tracking_uri_with_a_secret_before_creating_anything(form, tmp_path, capsys):
    """The real command line, in this process: exit 2, one line that names no secret, no output folder."""
    from liger_bench.cli.main import main

    output_dir = tmp_path / "out"
    code = main(["local", "--output-dir", str(output_dir), "--param", f"mlflow_tracking_uri={json.dumps(form.uri)}"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("liger-bench local: error: mlflow_tracking_uri: ") and err.count("\n") == 1
    assert SECRET not in err
    assert not output_dir.exists()


def test_run_refuses_a_tracking_uri_with_a_secret_before_submitting(tmp_path, capsys):
    """``run`` checks its parameters file before it contacts the (here unreachable) Kubeflow API."""
    from liger_bench.cli.main import main

    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"mlflow_tracking_uri": f"http://mlflow:5000/?token={SECRET}"}))
    code = main(["run", "--host", "http://127.0.0.1:1", "--params", str(params)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("liger-bench run: error: mlflow_tracking_uri: 'http://mlflow:5000/?***' has a query")
    assert SECRET not in err


@pytest.mark.parametrize("form", SECRET_URI_FORMS, ids=SECRET_IDS)
def test_prepare_grid_refuses_a_tracking_uri_with_a_secret_first(form):
    """A run submitted without the CLI (the Kubeflow UI) stops in prepare_grid, before any training task."""
    from liger_bench.tasks import prepare_grid

    with pytest.raises(ValueError, match="^mlflow_tracking_uri: ") as refused:
        prepare_grid({}, {}, {}, "", "", 0.1, form.uri, True, {}, 0.0)  # refused before the model or the data is read
    assert SECRET not in str(refused.value)
