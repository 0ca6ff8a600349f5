"""Where a run's wall time goes, phase by phase, from its training process's start to its exit.

``PHASES`` in order (seconds each, in ``RunResult.phases_s``):

- ``start``: the process's start (the kernel's start time, at fork) to the training entry point:
  exec, the interpreter and the imports of ``liger_bench.measure.supervisor``;
- ``imports``: torch, transformers, trl and datasets (``training.import_training_libraries``; torch alone for a
  run that cannot train: Liger without CUDA);
- ``environment``: ``capture_environment`` (library versions, GPU, driver);
- ``data``: tokenising and packing the run's rows (tokenizer load included);
- ``model``: ``load_model`` and the context-length check;
- ``variant``: ``apply_variant`` (the Liger patch; nothing for the baseline);
- ``trainer``: FLOPs model, ``TrainingArguments`` and the Trainer's construction, which moves the model to the device;
- ``train_setup``: ``Trainer.train`` up to its first step: accelerate's preparation (``torch.compile`` wrap,
  FSDP), optimizer;
- ``first_step``: to the end of the first step (its first batch, compilation, the step itself);
- ``steps``: the other steps, to the end of ``Trainer.train``;
- ``finish``: freeing memory and the run's aggregates, up to its outcome;
- ``exit``: the rest of the supervisor's wall time from spawning the process to its exit: writing the outcome,
  interpreter teardown, releasing the GPU (and torchrun's own start and end with several GPUs).

The step metrics (``step_time_s``) time each step alone; ``first_step`` and ``steps`` are wall time.
A run that fails ends the phase it was in there (``PhaseClock.mark_interrupted``) and skips the later ones. A
training process that crashes, hangs or is killed writes no result: the phases it ended were recorded to a file
as it went (``PhaseClock.record_to``), and the one it was in lasts to its end (``cut_short``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from liger_bench.records import write_json_atomic

PHASES = (
    "start",
    "imports",
    "environment",
    "data",
    "model",
    "variant",
    "trainer",
    "train_setup",
    "first_step",
    "steps",
    "finish",
    "exit",
)


def process_age_s() -> float | None:
    """Seconds since this process started (``/proc/self/stat``'s start time, 10 ms ticks); None off Linux."""
    try:
        stat = Path("/proc/self/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime, clock ticks after boot); the fields after the command's ")" start at field 3.
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")


class PhaseClock:
    """Marks the end of each phase; ``phases_s`` holds the seconds of each phase ended so far, in order.

    Args:
        since_process_start: Record ``start`` (this process's age now) first: for the training process's entry
            point. Otherwise the clock starts now, at ``imports``.
    """

    def __init__(self, since_process_start: bool = False):
        self.phases_s: dict[str, float] = {}
        self._next = PHASES.index("imports")
        age = process_age_s() if since_process_start else None
        if age is not None:
            self.phases_s["start"] = age
        self._last = time.perf_counter()
        self._record: Path | None = None

    def record_to(self, path: Path) -> None:
        """Write ``phases_s`` to ``path`` (JSON) now and at every later mark, for a process that may die unrecorded."""
        self._record = path
        write_json_atomic(path, self.phases_s)

    def mark(self, name: str) -> None:
        """End phase ``name`` now: it lasted since the previous mark (or since the clock started)."""
        now = time.perf_counter()
        self.phases_s[name] = now - self._last
        self._last = now
        self._next = PHASES.index(name) + 1
        if self._record is not None:
            write_json_atomic(self._record, self.phases_s)

    def current(self) -> str:
        """The phase in progress: the one after the last marked."""
        return PHASES[self._next]

    def mark_interrupted(self) -> None:
        """End the phase in progress now, as a failure ends it."""
        self.mark(self.current())


def with_exit(phases_s: dict[str, float], elapsed_s: float) -> dict[str, float]:
    """``phases_s`` with ``exit``: what the supervisor's ``elapsed_s`` (spawn to exit) has beyond them.

    Never below 0: the process's start time is known to a 10 ms tick.
    """
    return {**phases_s, "exit": max(0.0, elapsed_s - sum(phases_s.values()))}


def cut_short(phases_s: dict[str, float], elapsed_s: float) -> dict[str, float]:
    """The phases of a process that ended without a result: those it recorded, then the one it was in, to its end.

    Args:
        phases_s: The phases ``record_to`` wrote ({}: it wrote none, nothing is known).
        elapsed_s: The supervisor's wall time from spawning the process to its end.
    """
    if not phases_s:
        return {}
    current = PHASES[PHASES.index(list(phases_s)[-1]) + 1]
    return {**phases_s, current: max(0.0, elapsed_s - sum(phases_s.values()))}


def phases_line(run_key: str, phases_s: dict[str, float], steps: list[dict]) -> str:
    """One log line: the phases' total, how much of it the measured steps are not, and each phase."""
    total = sum(phases_s.values())
    outside = total - sum(step["step_time_s"] for step in steps)
    each = ", ".join(f"{name} {seconds:.1f}" for name, seconds in phases_s.items())
    return f"{run_key}: {total:.1f} s in its process, {outside:.1f} s of it outside its steps ({each})"
