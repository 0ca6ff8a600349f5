"""Train one grid point in a child process, so that no crash of it can take the task down.

A segfault, a SIGKILL (the kernel's out-of-memory killer, an operator), a hang or a Python crash of
the training process becomes a ``failed`` or ``oom`` ``RunResult`` with its signal or exit code and
the steps it completed: the child appends every step to a file as it goes, and the parent reads
them back when no result came. The parent only waits, so it survives whatever the child does.

A run of ``gpus_per_run`` > 1 starts ``torchrun`` instead, which runs that same child once per GPU
(``liger_bench.measure.distributed``); a rank that fails writes its own result and exits non-zero, torchrun
then ends every rank, and the parent records that rank's ``oom`` or ``failed``.

The child is ``python -m liger_bench.measure.supervisor --run-key KEY WORK_DIR``: the run key in its command
line tells ``ps`` which grid point a process trains. It runs in its own session (a Ctrl-C in the
terminal reaches the parent, which decides) and dies with its parent (``PR_SET_PDEATHSIG``), so a
killed task never leaves a training process holding the GPU. Its ``oom_score_adj`` is 1000: when a
pod's memory limit is hit, the kernel kills the training process, not the parent that records it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from liger_bench.measure.phases import PhaseClock, cut_short, phases_line, with_exit
from liger_bench.plan.config import TrainConfig
from liger_bench.records import RunResult, read_json, write_json_atomic

REQUEST = "request.json"  # what to train: config, model and dataset folders
STEPS = "steps.jsonl"  # one line per completed step, appended by the child as it trains
OUTCOME = "outcome.json"  # the child's result and steps, written last
PHASES_FILE = "phases.json"  # the phases the child has ended so far, rewritten at each (rank 0's)
# After SIGTERM the child has this long to exit before SIGKILL.
STOP_GRACE_S = 10.0
# Lines of the child's stderr a crashed run's record keeps (a traceback, faulthandler's stack).
STDERR_TAIL_LINES = 200


def environment_snapshot() -> dict[str, str]:
    """A copy of ``os.environ``, taken again when another thread (MLflow's telemetry) changed it meanwhile.

    Copying iterates the variables; one deleted in between raises ``KeyError``.
    """
    while True:
        try:
            return dict(os.environ)
        except (KeyError, RuntimeError):
            continue


def train_supervised(
    config: TrainConfig, model_dir: str, dataset_dir: str, timeout_s: float
) -> tuple[RunResult, list[dict]]:
    """Train ``config`` in a child process; return ``(result, steps)`` whatever becomes of the child.

    Args:
        config: The grid point.
        model_dir: Model folder.
        dataset_dir: Prepared dataset folder.
        timeout_s: Stop the child (and record ``failed``) when it has not finished after this long.

    Returns:
        The child's own result when it finished; otherwise a ``failed`` result, or ``oom`` when the
        kernel's out-of-memory killer ended it, with the steps it completed.
    """
    with tempfile.TemporaryDirectory(prefix=f"liger-bench-{config.run_key}-") as work:
        work_dir = Path(work)
        request = {"config": config.to_dict(), "model_dir": model_dir, "dataset_dir": dataset_dir}
        write_json_atomic(work_dir / REQUEST, request)
        oom_kills_before = oom_kill_count()
        command = child_command(config, work_dir)
        # PYTHONFAULTHANDLER: a segfault prints the Python stack of every thread to the log (in every rank).
        env = {**environment_snapshot(), "PYTHONFAULTHANDLER": "1"}
        started = time.monotonic()
        child = subprocess.Popen(
            command, start_new_session=True, preexec_fn=_child_setup, stderr=subprocess.PIPE, errors="replace", env=env
        )
        print(f"[liger-bench] {config.run_key}: training in process {child.pid}", flush=True)
        stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        relay = threading.Thread(target=_relay, args=(child.stderr, stderr_tail), daemon=True)
        relay.start()
        timed_out = False
        try:
            with _exit_on_signals():
                try:
                    child.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
        finally:
            stop(child)
            relay.join(timeout=STOP_GRACE_S)
        elapsed = time.monotonic() - started
        outcome = work_dir / OUTCOME
        failed_rank = first_failed_rank(work_dir)
        if outcome.is_file() and not timed_out and failed_rank is None:
            # The child's own record is complete once written, also when the process then dies at exit
            # (a CUDA context a device fault poisoned can crash the interpreter's teardown).
            document = read_json(outcome)
            result = RunResult.from_dict(document["result"])
            if child.returncode:
                result.metrics["exit_code"] = child.returncode
            result.phases_s = with_exit(result.phases_s, elapsed)
            print(f"[liger-bench] {phases_line(config.run_key, result.phases_s, document['steps'])}", flush=True)
            return result, document["steps"]
        steps = read_steps(work_dir / STEPS)
        if failed_rank is not None and not timed_out:
            result = failed_rank
            result.phases_s = with_exit(result.phases_s, elapsed)
        else:
            oom_killed = oom_kill_count() > oom_kills_before and child.returncode == -signal.SIGKILL
            timeout = timeout_s if timed_out else None
            result = crashed_result(config, child.returncode, steps, elapsed, timeout, oom_killed, list(stderr_tail))
            recorded = work_dir / PHASES_FILE
            result.phases_s = cut_short(read_json(recorded) if recorded.is_file() else {}, elapsed)
        if result.phases_s:  # none: the process died before its clock started
            print(f"[liger-bench] {phases_line(config.run_key, result.phases_s, steps)}", flush=True)
        return result, steps


def child_command(config: TrainConfig, work_dir: Path) -> list[str]:
    """The training process's command: this module's ``main``, through torchrun for several GPUs."""
    module_args = ["liger_bench.measure.supervisor", "--run-key", config.run_key, str(work_dir)]
    if config.gpus_per_run > 1:
        from liger_bench.measure.distributed import torchrun_command

        return torchrun_command(config.gpus_per_run, module_args)
    return [sys.executable, "-m", *module_args]


def first_failed_rank(work_dir: Path) -> RunResult | None:
    """The result of the first rank that failed (``oom`` before ``failed``), naming the rank; None if none did.

    The other ranks of such a run were ended by torchrun, so their own records say nothing.
    """
    records = [read_json(path) for path in sorted(work_dir.glob("outcome.rank*.json"), key=lambda p: p.stat().st_mtime)]
    if not records:
        return None
    record = next((r for r in records if r["result"]["status"] == "oom"), records[0])
    result = RunResult.from_dict(record["result"])
    result.reason = f"rank {record['rank']}: {result.reason}"
    return result


def _relay(stream, tail: collections.deque[str]) -> None:
    """Copy the child's stderr to ours line by line (the task log), keeping the last lines."""
    for line in stream:
        sys.stderr.write(line)
        tail.append(line.rstrip())


def crashed_result(
    config: TrainConfig,
    returncode: int,
    steps: list[dict],
    elapsed_s: float,
    timeout_s: float | None,
    oom_killed: bool,
    stderr_tail: list[str],
) -> RunResult:
    """The record of a child that ended without writing its result; ``stderr_tail``: its last stderr lines."""
    from liger_bench.measure.envinfo import capture_environment
    from liger_bench.measure.metrics import aggregate
    from liger_bench.measure.training import world_metrics

    if timeout_s is not None:
        status, reason = "failed", f"timeout: no result after {timeout_s:.0f} s (train_timeout_s); training stopped"
    elif returncode < 0:
        name = signal.Signals(-returncode).name
        if oom_killed:
            status, reason = "oom", f"host out of memory: the kernel's OOM killer ended training ({name})"
        else:
            status, reason = "failed", f"training process killed by signal {name} ({-returncode})"
    else:
        error = last_error(stderr_tail)
        status, reason = "failed", f"training process exited with code {returncode} without a result"
        reason += f": {error}" if error else ""
    result = RunResult(
        run_key=config.run_key, status=status, reason=reason, config=config.to_dict(), environment=capture_environment()
    )
    result.metrics.update(
        aggregate(steps),
        steps_completed=len(steps),
        exit_code=returncode,
        elapsed_s=elapsed_s,
        stderr_tail="\n".join(stderr_tail),
    )
    result.metrics.update(world_metrics(config, result.metrics))
    return result


def ended_without_result(result: RunResult) -> bool:
    """Whether ``result`` is ``crashed_result``'s: the child wrote none (only those keep its stderr's tail)."""
    return "stderr_tail" in result.metrics


# What Python prints to open a traceback, and between the tracebacks of chained exceptions: the
# next was raised ``from`` the one before (its cause), or while handling it (its context).
TRACEBACK = "Traceback (most recent call last):"
CAUSED_BY = "The above exception was the direct cause of the following exception:"
WHILE_HANDLING = "During handling of the above exception, another exception occurred:"


def last_error(stderr_tail: list[str]) -> str:
    """The last stderr line, and where the last traceback ends a chain, the first exception of that chain.

    A library that re-raises hides the cause in its message (transformers' lazy imports: "Could not
    import module 'TrainerCallback'. ... Set the logging verbosity to DEBUG for the original import
    error."). The chain is walked back from the last traceback while a separator stands above each; the
    first exception is named "caused by" or "while handling", as the separator after it says. A
    traceback printed earlier and not chained to the last (a handled error that was logged) is not named.
    """
    last = next((line.strip() for line in reversed(stderr_tail) if line.strip()), "")
    starts = [i for i, line in enumerate(stderr_tail) if line.strip() == TRACEBACK]
    if not starts:
        return last
    first, link = len(starts) - 1, ""
    while first > 0:
        above = next((line.strip() for line in reversed(stderr_tail[: starts[first]]) if line.strip()), "")
        if above not in (CAUSED_BY, WHILE_HANDLING):
            break
        first, link = first - 1, above
    # The exception's line is the first after its traceback's header that is not indented (a frame's lines are).
    error = next((line.strip() for line in stderr_tail[starts[first] + 1 :] if line.strip() and line[0] != " "), "")
    if not link or not error:
        return last
    return f"{last} ({'caused by' if link == CAUSED_BY else 'while handling'} {error})"


def read_steps(path: Path) -> list[dict]:
    """The steps a child streamed; a last line cut short by the crash is left out."""
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return steps


def oom_kill_count() -> int:
    """Processes the kernel's OOM killer ended so far, in this container's cgroup and host-wide.

    cgroup v2 ``memory.events`` counts kills for a container's memory limit, ``/proc/vmstat``
    for the whole host; a rise of either while the child ran means it was the victim.
    """
    total = 0
    for path, key in (("/sys/fs/cgroup/memory.events", "oom_kill"), ("/proc/vmstat", "oom_kill")):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        total += sum(int(value) for name, _, value in (line.partition(" ") for line in lines) if name == key)
    return total


def stop(child: subprocess.Popen) -> None:
    """End ``child`` and its process group: SIGTERM, then SIGKILL after ``STOP_GRACE_S``."""
    if child.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def _exit_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into a quiet ``SystemExit`` while the parent waits; ``finally`` stops the child.

    Python takes signals in the main thread only; elsewhere the caller's own handling applies.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_(signum, frame):
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, exit_) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _child_setup() -> None:
    """In the child before exec: die with the parent, be the out-of-memory killer's first choice.

    ``PR_SET_PDEATHSIG`` sends SIGKILL when the parent dies; ``oom_score_adj`` 1000 makes the kernel
    pick the training process, so that the parent survives to record the ``oom``.
    """
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")


def main(argv: list[str] | None = None) -> int:
    """The child (or one rank of it): train the request in WORK_DIR, stream its steps, write the outcome.

    With several ranks, rank 0 writes the outcome of a run that trained; a rank whose run failed
    writes its own outcome file and exits with 1, so that torchrun ends the other ranks, which
    would otherwise wait for it in their next collective. The run's phases are timed from the process's start.
    """
    clock = PhaseClock(since_process_start=True)
    parser = argparse.ArgumentParser(
        prog="python -m liger_bench.measure.supervisor", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--run-key", required=True, help="the grid point (for ps; the request has it too)")
    parser.add_argument("work_dir", type=Path, help="folder with request.json; receives steps and outcome")
    args = parser.parse_args(argv)
    from liger_bench.measure import distributed

    sharded = distributed.launched_by_torchrun()
    if sharded:
        distributed.die_with_launcher()
    if distributed.rank() == 0:
        clock.record_to(args.work_dir / PHASES_FILE)
    # After record_to: the training module imports transformers, which can fail (an H200 probe died there).
    from liger_bench.measure.training import run_training

    request = read_json(args.work_dir / REQUEST)
    config = TrainConfig.from_dict(request["config"])
    result, steps = run_training(
        config, request["model_dir"], request["dataset_dir"], steps_file=args.work_dir / STEPS, clock=clock
    )
    outcome = {"result": result.to_dict(), "steps": steps}
    if sharded and result.status in ("oom", "failed"):
        rank = distributed.rank()
        write_json_atomic(distributed.rank_outcome_file(args.work_dir, rank), {**outcome, "rank": rank})
        return 1
    if distributed.rank() == 0:
        write_json_atomic(args.work_dir / OUTCOME, outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
