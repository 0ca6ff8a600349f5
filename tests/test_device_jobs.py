"""benchmarks/device_jobs.sh: a job detached in one device call outlives it, and a later call awaits it.

The device kills a call's processes when the call returns, except those in a session of their own;
here a call is a shell in a process group of its own, killed as a group, as the device does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

JOBS = Path(__file__).resolve().parent.parent / "benchmarks" / "device_jobs.sh"


def shell(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"source {JOBS}; {script}"], capture_output=True, text=True, check=False)


@pytest.fixture
def name():
    job = f"test-{uuid.uuid4().hex[:8]}"
    yield job
    shutil.rmtree(f"/tmp/jobs/{job}", ignore_errors=True)


def call_killed_on_return(script: str) -> None:
    """Run ``script`` as a device call: its own process group, killed as a group one second in."""
    call = subprocess.Popen(["bash", "-c", f"source {JOBS}; {script}; sleep 30"], start_new_session=True)
    time.sleep(1.0)
    os.killpg(call.pid, signal.SIGKILL)
    call.wait()


def test_a_detached_job_outlives_its_call_and_await_returns_its_log_and_exit_status(name):
    call_killed_on_return(f"detach {name} bash -c 'sleep 2; echo trained; exit 3'")
    pending = shell(f"await {name} 0")
    assert pending.returncode == 124 and f"[await] {name} still runs after 0 s" in pending.stdout
    done = shell(f"await {name} 30")
    assert done.returncode == 3 and "trained" in done.stdout


def test_a_job_left_in_the_calls_own_session_dies_with_it(name):
    """What detach is for: the same job started with a plain ``&`` is killed with the call and never ends."""
    log = Path(f"/tmp/jobs/{name}")
    log.mkdir(parents=True)
    call_killed_on_return(f"(sleep 2; echo trained > {log}/log; echo 0 > {log}/rc) &")
    time.sleep(3.0)
    assert not (log / "rc").exists()
    assert shell(f"await {name} 0").returncode == 124
