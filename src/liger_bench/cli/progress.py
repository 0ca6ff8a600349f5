"""One screen of progress for ``liger-bench local``; everything else goes to the run's log file.

kfp's local runner prints each task's output (and its own log lines and warnings) to this
process's stdout. ``ProgressLog`` takes that stream: every line lands in the log file, and the
tool's own lines (``[liger-bench] ...``, printed by ``tasks.progress``) become the terminal's
progress: one line per finished run with its status, tokens/s and an ETA.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TextIO

from liger_bench.vocabulary import ABLATION_PREFIX, VARIANTS

MARKER = "[liger-bench] "
# tasks.prepare_grid's line "grid of <n> runs: ..." starts the training clock; tasks.train_model's line
# about a finished run (keys from grid.run_key) is "<run_key>: <status>, 1,234 tokens/s" or
# "<run_key>: <status> (<reason>)".
GRID = "grid of "
RUN_KEY = rf"(?:{'|'.join(VARIANTS)}|{re.escape(ABLATION_PREFIX)}\w+)-bs\d+-seq\d+-r\d+"
FINISHED = re.compile(rf"^(?P<key>{RUN_KEY}): (?P<status>[a-z]+)(?P<rate>, [\d,.]+ tokens/s)?(?: \((?P<reason>.*)\))?$")
REASON_CHARS = 80
# The last line of a Python traceback, e.g. "liger_bench.plan.grid.GridError: max_seq_length: ...".
EXCEPTION = re.compile(r"^(?:[\w.]+\.)?(?P<type>\w*(?:Error|Exception)): (?P<message>.+)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def duration(seconds: float) -> str:
    """'45 s', '3 min 05 s'."""
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


class ProgressLog(io.TextIOBase):
    """A text stream: all of it to ``log``, the tool's progress to ``terminal``.

    Thread-safe: kfp's local runner runs loop iterations in threads that print to one stream.
    """

    def __init__(self, log: TextIO, terminal: TextIO, total_runs: int, clock: Callable[[], float] = time.monotonic):
        self.log, self.terminal, self.total_runs, self.clock = log, terminal, total_runs, clock
        # Run key to its last status: a training task re-run after its process was lost reports its run again.
        self.finished: dict[str, str] = {}
        self.last_error = ""
        self._training_start: float | None = None
        self._pending = ""
        # Re-entrant: a signal handler (liger_bench.cli.interrupt) may print while this thread is writing.
        self._lock = threading.RLock()

    def writable(self) -> bool:
        """A sink, never a source."""
        return True

    def write(self, text: str) -> int:
        """Log ``text``; turn each completed line of the tool's own into progress."""
        with self._lock:
            self.log.write(text)
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self._line(ANSI.sub("", line).strip())
        return len(text)

    def flush(self) -> None:
        """Flush the log and the terminal."""
        self.log.flush()
        self.terminal.flush()

    def say(self, message: str) -> None:
        """A line of the tool's own, to the terminal and the log."""
        with self._lock:
            self.log.write(f"{MARKER}{message}\n")
            self.terminal.write(f"{MARKER}{message}\n")
            self.terminal.flush()

    def _line(self, line: str) -> None:
        error = EXCEPTION.match(line)
        if error:
            self.last_error = f"{error['type']}: {error['message']}"
        _, marker, message = line.partition(MARKER)
        if not marker:
            return
        finished = FINISHED.match(message)
        if message.startswith(GRID):  # the header said what runs; the clock of the ETA starts here
            self._training_start = self.clock()
            # The grid's own count: a kernel ablation's arms are known only once the model's type is.
            total = int(message.removeprefix(GRID).split(" ", 1)[0])
            if total != self.total_runs:
                added = total - self.total_runs
                self.say(f"{total} training runs: the kernel ablation's arms for the model's kernels add {added}")
            self.total_runs = total
            return
        if finished:
            self._run_finished(finished)
        elif message.startswith("report written: "):
            self.terminal.write(f"{MARKER}{message.removeprefix('report written: ')}\n")
        else:
            self.terminal.write(f"{MARKER}{message}\n")
        self.terminal.flush()

    def _run_finished(self, finished: re.Match) -> None:
        status, reason = finished["status"], (finished["reason"] or "").partition("; ")[0]
        again = " (again: its task was re-run)" if finished["key"] in self.finished else ""
        self.finished[finished["key"]] = status
        done = len(self.finished)
        eta = ""
        if self._training_start is not None and done < self.total_runs:
            elapsed = self.clock() - self._training_start
            eta = f"  ETA {duration(elapsed / done * (self.total_runs - done))}"
        if len(reason) > REASON_CHARS:
            reason = reason[:REASON_CHARS].rsplit(" ", 1)[0] + " ..."
        detail = finished["rate"] or (f" ({reason})" if reason else "")
        width = len(str(self.total_runs))
        counter = f"[{done:>{width}}/{self.total_runs}]"
        self.terminal.write(f"{MARKER}{counter} {finished['key']}: {status}{detail}{again}{eta}\n")

    def counts(self) -> str:
        """'9 ok, 9 skipped'."""
        tally = Counter(self.finished.values())
        return ", ".join(f"{n} {status}" for status, n in sorted(tally.items())) or "no run finished"


@contextlib.contextmanager
def captured(progress: ProgressLog) -> Iterator[ProgressLog]:
    """Send this process's stdout and stderr (kfp's output, warnings, child processes) through ``progress``."""
    with contextlib.redirect_stdout(progress), contextlib.redirect_stderr(progress):
        yield progress
    progress.flush()
