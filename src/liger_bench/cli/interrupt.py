"""SIGINT and SIGTERM of a local run: stop every process it started, promptly, and say so on disk.

kfp's local runner starts each task as a child process and waits for the tasks in flight before it
lets an interrupt through (then prints a traceback); a SIGTERM left them running as orphans, on a
GPU workstation holding the GPU. ``interruptible`` replaces both with: stop all descendant
processes (SIGTERM, SIGKILL after ``STOP_GRACE_S``), end the MLflow parent run as ``KILLED``, write
the reason into the output folder's ``INCOMPLETE`` marker, print one line and exit with 128 + the
signal number.

``INCOMPLETE`` is written when a run starts and removed only when it finished: a folder holding it
has no complete result of the latest run, whatever stopped it (a signal, a failure, a power cut).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from liger_bench.records import write_text_atomic

MARKER = "INCOMPLETE"
ANSI_COLOR = re.compile(r"\x1b\[[0-9;]*m")
STOP_GRACE_S = 5.0


@contextlib.contextmanager
def interruptible(output_dir: Path, mlflow_tracking_uri: str) -> Iterator[None]:
    """Run the body (the local pipeline) with the interrupt handling described in the module docstring."""
    marker = output_dir / MARKER
    runs_root = output_dir / "pipeline_root"
    earlier_runs = set(runs_root.iterdir()) if runs_root.is_dir() else set()
    write_text_atomic(marker, f"running since {time.strftime('%Y-%m-%d %H:%M:%S %z')} (pid {os.getpid()})\n")

    def on_signal(signum, frame):
        name = signal.Signals(signum).name
        for sig in previous:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        try:
            _say(f"\n[liger-bench] {name}: stopping the run and its processes")
            stop_descendants()
            write_text_atomic(marker, f"interrupted by {name}; the results in {output_dir} are not complete\n")
            new_runs = set(runs_root.iterdir()) - earlier_runs if runs_root.is_dir() else set()
            _end_parent_runs(new_runs, mlflow_tracking_uri)
            _say(f"[liger-bench] stopped; {marker} marks the output incomplete")
        finally:
            os._exit(128 + signum)  # not sys.exit: kfp's runner would wait for its task threads, then print a traceback

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except BaseException as err:
        plain = ANSI_COLOR.sub("", str(err))  # kfp colours its messages for the terminal
        write_text_atomic(marker, f"failed: {type(err).__name__}: {plain}\n")
        raise
    else:
        marker.unlink()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say(line: str) -> None:
    """Print to the process's stderr; a closed terminal or pipe must not stop the clean-up.

    ``sys.__stderr__``: inside ``liger-bench local`` ``sys.stderr`` is the run's log file.
    """
    with contextlib.suppress(OSError, AttributeError):
        print(line, file=sys.__stderr__, flush=True)


def stop_descendants() -> None:
    """SIGTERM every descendant process at once, SIGKILL those still alive after ``STOP_GRACE_S``."""
    import psutil

    descendants = psutil.Process().children(recursive=True)
    for process in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(descendants, timeout=STOP_GRACE_S)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=STOP_GRACE_S)


def _end_parent_runs(run_dirs: set[Path], mlflow_tracking_uri: str) -> None:
    """End as KILLED the MLflow parent run that start_tracking opened in each of ``run_dirs``."""
    from liger_bench import tracking

    for run_dir in run_dirs:
        document = run_dir / "start-tracking" / "tracking"
        if document.is_file():
            parent_run_id = json.loads(document.read_text()).get("parent_run_id", "")
            tracking.end_parent_run(mlflow_tracking_uri, parent_run_id, "KILLED")
