"""Pytest fixtures: a real MLflow tracking server on loopback, and the URI of one that is down.

Import them into tests/conftest.py: ``from mlflow_server import dead_mlflow_uri, mlflow_server``
(tests/ has no ``__init__.py``, so pytest puts it on ``sys.path``), or load this module as a plugin:
``pytest -p mlflow_server`` with tests/ on ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

STARTUP_TIMEOUT_S = 90.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (mlflow runs uvicorn as a child), SIGKILL it if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclasses.dataclass
class MlflowServer:
    """A running ``mlflow server``: its URI, and ``stop`` for a test that takes it down mid-run."""

    uri: str
    process: subprocess.Popen

    def stop(self) -> None:
        """Stop the server (again: a no-op)."""
        _stop(self.process)


@contextlib.contextmanager
def running_mlflow_server(root: Path) -> Iterator[MlflowServer]:
    """An ``mlflow server`` (sqlite backend, proxied artifacts under ``root``) on 127.0.0.1, stopped on exit."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log_path = root / "server.log"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # Job execution (huey workers for GenAI features) is on by default; these tests need none of it.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
        )
    try:
        _wait_healthy(uri, process, log_path)
        yield MlflowServer(uri, process)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of an ``mlflow server`` on 127.0.0.1 shared by the session (``running_mlflow_server``)."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow_server")) as server:
        yield server.uri


def _wait_healthy(uri: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not _healthy(uri):
        if process.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {process.returncode}" if process.poll() is not None else "never became healthy"
            tail = log_path.read_text()[-4000:]
            raise RuntimeError(f"mlflow server at {uri} {state}; log {log_path}:\n{tail}")
        time.sleep(0.2)


@pytest.fixture
def dead_mlflow_uri() -> str:
    """URI of a port on 127.0.0.1 where no server listens: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"
