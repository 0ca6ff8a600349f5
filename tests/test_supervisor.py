"""The supervised training process: real training of the tiny model in a real child process, ended by
real signals and a real timeout."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from liger_bench.measure.phases import PHASES, phases_line
from liger_bench.measure.supervisor import STEPS, crashed_result, oom_kill_count, train_supervised
from liger_bench.plan.config import TrainConfig


def training_process(run_key: str, ancestor: int | None = None, timeout_s: float = 120.0) -> psutil.Process:
    """The child training ``run_key``, found by its command line as an operator would with ``ps``.

    Only descendants of ``ancestor`` (default: this test process) are searched: other test sessions on
    the same machine train grid points of the same keys.
    """
    root = psutil.Process(ancestor or os.getpid())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in root.children(recursive=True):
            try:
                cmdline = process.cmdline()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue  # ended between the listing and the look
            if "liger_bench.measure.supervisor" in cmdline and run_key in cmdline:
                return process
        time.sleep(0.05)
    raise TimeoutError(f"no training process for {run_key} under process {root.pid}")


def wait_for_steps(process: psutil.Process, n_steps: int, timeout_s: float = 120.0) -> None:
    """Wait until the child has streamed ``n_steps`` steps to the steps file in its work folder."""
    steps_file = Path(process.cmdline()[-1]) / STEPS
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if steps_file.is_file() and len(steps_file.read_text().splitlines()) >= n_steps:
            return
        time.sleep(0.02)
    raise TimeoutError(f"{process.pid} did not complete {n_steps} steps")


def _config(run_key: str, max_steps: int = 2000) -> TrainConfig:
    return TrainConfig(run_key=run_key, per_device_train_batch_size=2, max_seq_length=64, max_steps=max_steps)


def _in_thread(action, *args) -> threading.Thread:
    """Run ``action(*args)`` beside the supervisor, which waits in the main thread as in a task."""
    thread = threading.Thread(target=action, args=args, daemon=True)
    thread.start()
    return thread


def _kill_after_steps(run_key: str, n_steps: int, sig: signal.Signals) -> None:
    child = training_process(run_key)
    wait_for_steps(child, n_steps)
    child.send_signal(sig)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV], ids=["sigkill", "sigsegv"])
def test_a_killed_training_process_is_recorded_with_its_signal_and_completed_steps(
    sig, embedded_assets, prepared_dataset, capsys
):
    config = _config(f"killed-{sig.name.lower()}")
    killer = _in_thread(_kill_after_steps, config.run_key, 3, sig)
    started = time.monotonic()
    result, steps = train_supervised(config, str(embedded_assets[0]), str(prepared_dataset), timeout_s=300)
    wall_s = time.monotonic() - started
    killer.join()
    # The phases it ended, then the one it died in (its steps), to its end; and their log line.
    assert tuple(result.phases_s) == PHASES[: PHASES.index("steps") + 1]
    assert sum(step["step_time_s"] for step in steps) <= result.phases_s["first_step"] + result.phases_s["steps"]
    assert sum(result.phases_s.values()) <= wall_s
    assert f"[liger-bench] {phases_line(config.run_key, result.phases_s, steps)}" in capsys.readouterr().out
    assert (result.status, result.reason) == ("failed", f"training process killed by signal {sig.name} ({sig.value})")
    assert len(steps) >= 3 and [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    assert all(s["loss"] is not None for s in steps)  # every streamed step is complete
    assert result.metrics["steps_completed"] == len(steps) and result.metrics["exit_code"] == -sig.value
    assert result.metrics["n_measured_steps"] == len(steps) - config.warmup_steps_to_skip
    assert result.environment["python"]
    if sig == signal.SIGSEGV:  # faulthandler's stack dump is in the record
        assert "Fatal Python error: Segmentation fault" in result.metrics["stderr_tail"]


def test_a_hung_training_process_is_stopped_at_the_timeout_and_recorded(embedded_assets, prepared_dataset):
    """A child that does not finish within the timeout (here: far too many steps) is stopped, not waited for."""
    config = _config("hung")
    started = time.monotonic()
    result, steps = train_supervised(config, str(embedded_assets[0]), str(prepared_dataset), timeout_s=15)
    assert time.monotonic() - started < 15 + 15
    assert result.status == "failed"
    assert result.reason == "timeout: no result after 15 s (train_timeout_s); training stopped"
    assert result.metrics["steps_completed"] == len(steps)
    # Where it hung shows: the phases it ended and the one it was in at the timeout, to its end.
    assert len(result.phases_s) >= 2 and tuple(result.phases_s) == PHASES[: len(result.phases_s)]
    assert sum(result.phases_s.values()) == pytest.approx(result.metrics["elapsed_s"])
    with pytest.raises(TimeoutError):
        training_process(config.run_key, timeout_s=0.5)  # no training process left behind


def test_a_sigkill_while_the_oom_killer_count_rose_is_host_oom():
    """The OOM killer cannot be triggered safely on a shared machine: this checks the classification
    of the kill (``oom_kill_count`` rose while the child ran) on the record-building function."""
    result = crashed_result(_config("oom-killed"), -signal.SIGKILL, [], 1.0, None, oom_killed=True, stderr_tail=[])
    assert (result.status, result.reason) == (
        "oom",
        "host out of memory: the kernel's OOM killer ended training (SIGKILL)",
    )
    assert oom_kill_count() >= 0


def test_a_finished_training_process_returns_its_own_result(embedded_assets, prepared_dataset):
    result, steps = train_supervised(
        _config("finished", max_steps=4), str(embedded_assets[0]), str(prepared_dataset), timeout_s=300
    )
    assert (result.status, len(steps), result.metrics["steps_completed"]) == ("ok", 4, 4)
    assert "exit_code" not in result.metrics


def test_the_training_process_dies_with_its_supervisor_and_is_the_oom_killers_first_choice(
    embedded_assets, prepared_dataset, tmp_path
):
    """A supervisor SIGKILLed itself (no chance to clean up) must not leave its training process behind."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        f"""
        from liger_bench.plan.config import TrainConfig
        from liger_bench.measure.supervisor import train_supervised

        config = TrainConfig(run_key="orphan", per_device_train_batch_size=2, max_seq_length=64, max_steps=2000)
        train_supervised(config, {str(embedded_assets[0])!r}, {str(prepared_dataset)!r}, timeout_s=600)
        """
    )
    supervisor = subprocess.Popen([sys.executable, "-c", code])
    try:
        child = training_process("orphan")
        assert Path(f"/proc/{child.pid}/oom_score_adj").read_text().strip() == "1000"
        supervisor.kill()
        supervisor.wait()
        child.wait(timeout=10)
    finally:
        supervisor.kill()
    assert not child.is_running()


def test_a_training_process_that_fails_outside_training_is_recorded_with_its_last_error_line(
    embedded_assets, prepared_dataset
):
    """The child reads a request it cannot use (a config changed after validation) and exits with code 1."""
    config = _config("unusable-request", max_steps=4)
    config.precision = "fp8"
    result, steps = train_supervised(config, str(embedded_assets[0]), str(prepared_dataset), timeout_s=300)
    assert (result.status, steps) == ("failed", [])
    assert result.reason == (
        "training process exited with code 1 without a result: "
        "ValueError: precision must be 'auto', 'bf16' or 'fp32', got 'fp8'"
    )
    assert result.metrics["stderr_tail"].startswith("Traceback")


BROKEN_TRANSFORMERS = Path(__file__).parent / "broken_transformers"


def test_a_training_process_that_dies_importing_transformers_keeps_its_phases_and_names_the_hidden_cause(
    embedded_assets, prepared_dataset, monkeypatch, capsys
):
    """The H200 probe's death, for real: the child's ``import transformers`` raises transformers' lazy-import error
    chained from its cause (tests/broken_transformers leads the child's ``PYTHONPATH``)."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(BROKEN_TRANSFORMERS), os.environ.get("PYTHONPATH")]))
    )
    config = _config("broken-import", max_steps=4)
    result, steps = train_supervised(config, str(embedded_assets[0]), str(prepared_dataset), timeout_s=300)
    assert (result.status, steps) == ("failed", [])
    assert result.reason == (
        "training process exited with code 1 without a result: ModuleNotFoundError: Could not import module "
        "'TrainerCallback'. Are this object's requirements defined correctly? Set the logging verbosity to DEBUG "
        "for the original import error. (caused by RuntimeError: CUDA driver initialization failed)"
    )
    assert list(result.phases_s) == ["start", "imports"]
    assert result.phases_s["imports"] > 0
    assert f"[liger-bench] {phases_line('broken-import', result.phases_s, [])}" in capsys.readouterr().out


CUDA_INIT = "try:\n    raise RuntimeError('CUDA driver initialization failed')\nexcept RuntimeError as err:\n    "


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (
            CUDA_INIT + "raise ModuleNotFoundError(\"Could not import module 'TrainerCallback'\") from err",
            "ModuleNotFoundError: Could not import module 'TrainerCallback' "
            "(caused by RuntimeError: CUDA driver initialization failed)",
        ),
        (CUDA_INIT + "raise KeyError('mlflow') from None", "KeyError: 'mlflow'"),
        (
            CUDA_INIT + "undefined_name",
            "NameError: name 'undefined_name' is not defined "
            "(while handling RuntimeError: CUDA driver initialization failed)",
        ),
        (  # a cause whose message has two lines and a note: its exception line is named, not its last line
            "try:\n    err = OSError('hub offline\\nsecond line')\n    err.add_note('hint: set HF_HUB_OFFLINE')\n"
            "    raise err\nexcept OSError as err:\n    raise ValueError('no model') from err",
            "ValueError: no model (caused by OSError: hub offline)",
        ),
        (  # a handled error logged before an unrelated crash is not its cause
            "import traceback\ntry:\n    raise OSError('hub offline')\nexcept OSError:\n    traceback.print_exc()\n"
            "raise KeyError('mlflow')",
            "KeyError: 'mlflow'",
        ),
    ],
    ids=["from", "from-none", "while-handling", "multi-line-cause", "unrelated-earlier-traceback"],
)
def test_a_crash_without_a_result_names_the_first_exception_of_a_chain_its_last_line_hides(code, reason):
    """A real interpreter's traceback: a library that re-raises (transformers' lazy import, in one H200 probe) hides
    the cause; ``from None`` suppresses it, so there is none to name."""
    import subprocess
    import sys

    crash = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert crash.returncode == 1, crash.stderr
    result = crashed_result(
        _config("chained"), 1, [], 1.0, None, oom_killed=False, stderr_tail=crash.stderr.splitlines()
    )
    assert result.reason == f"training process exited with code 1 without a result: {reason}"


def test_a_crashed_runs_record_keeps_what_its_completed_steps_measured():
    """Steps streamed before a crash (synthetic, 2,000 non-padding tokens/s on two GPUs) make the record's numbers."""
    from dataclasses import replace

    from synthetic_results import Run, make_run

    _, history = make_run(Run(False, 2, 64, tokens_per_s=2000.0, gpus=2), max_steps=12, cuda=False)
    config = replace(_config("crashed"), gpus_per_run=2)
    result = crashed_result(
        config, -signal.SIGSEGV, history["steps"], 42.5, None, oom_killed=False, stderr_tail=["", "Fatal", ""]
    )
    metrics = result.metrics
    assert (result.status, result.reason) == ("failed", "training process killed by signal SIGSEGV (11)")
    assert (metrics["steps_completed"], metrics["n_steps"], metrics["n_measured_steps"]) == (12, 12, 9)
    assert (metrics["exit_code"], metrics["elapsed_s"], metrics["stderr_tail"]) == (-11, 42.5, "\nFatal\n")
    assert (metrics["world_size"], metrics["tokens_per_s_nonpad"]) == (2, pytest.approx(2000.0))
    assert metrics["tokens_per_s_nonpad_per_gpu"] == pytest.approx(1000.0)
