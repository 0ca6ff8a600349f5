"""The output folder of ``liger-bench local``: one run at a time, and never an old report at the new run's path.

Two runs in one folder share its ``INCOMPLETE`` marker, pipeline root and ``report.html``: the first
to finish removed the marker the other still needed, and the other then crashed after training. A
run therefore holds an exclusive ``fcntl.flock`` on ``<output_dir>/.liger-bench.lock`` (which holds
its PID) from before it writes anything there until it ends; a second run is refused at once,
naming that PID. The kernel drops the lock when its process ends, however it ends, so the file a
killed run leaves behind never blocks the next one.

A run that starts moves the previous ``report.html`` aside to ``previous-report.html``: what sits at
``report.html`` is the report of the latest run, or nothing while it runs or when it failed before
writing one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from liger_bench.cli.userinput import UserError

LOCK_FILE = ".liger-bench.lock"
REPORT = "report.html"
PREVIOUS_REPORT = "previous-report.html"


@contextlib.contextmanager
def one_run_at_a_time(output_dir: Path) -> Iterator[None]:
    """Create ``output_dir`` and hold its lock for the body; refuse when another live run holds it.

    Args:
        output_dir: The run's output folder (created when missing).

    Raises:
        UserError: Another process holds the lock (the message names its PID), or the folder
            cannot be created or written.
    """
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a link planted at the lock file's name is refused, not written through.
        fd = os.open(output_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise UserError(f"--output-dir {output_dir}: {error.strerror}: {error.filename}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UserError(
                f"--output-dir {output_dir}: another liger-bench local run (pid {holder}) is using this folder; "
                "wait for it to end, stop it, or give another --output-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def set_aside_previous_report(output_dir: Path) -> Path | None:
    """Move an earlier run's ``report.html`` to ``previous-report.html``; return where it went, or None."""
    report = output_dir / REPORT
    if not report.is_file():
        return None
    previous = output_dir / PREVIOUS_REPORT
    os.replace(report, previous)
    return previous
