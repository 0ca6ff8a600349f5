"""benchmarks/gpu_benchmark.py's record keeping: a worker that died without a record is a failed variant.

The committed summaries of the fourth GPU session are what ``--merge`` renders from their ``cells.json``.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_benchmark.py"
SESSION4 = ROOT / "benchmarks" / "results" / "h200-compile" / "session4"


@pytest.fixture(scope="module")
def gpu_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(run_key: str, status: str, **config) -> dict:
    return {"result": {"run_key": run_key, "status": status, "config": {"run_key": run_key, **config}}, "steps": []}


def test_a_worker_that_died_before_a_record_gets_a_failed_run_with_the_crash(gpu_benchmark):
    template = {"use_liger": False, "torch_compile": False, "per_device_train_batch_size": 16, "max_seq_length": 512}
    cells = {
        "baseline-bs16": {"runs": [_run("baseline-bs16-seq512-r0", "ok", repeat=0, **template)], "crash": ""},
        # Repeat 0 trained, then the process died in repeat 1.
        "liger-compile-bs8": {
            "runs": [_run("liger-compile-bs8-seq512-r0", "ok", repeat=0, **template)],
            "crash": "process killed by signal SIGSEGV; its last stderr line: boom",
        },
        # The process wrote its failed run before it ended: nothing to add.
        "compile-bs16": {
            "runs": [_run("compile-bs16-seq512-r0", "failed", repeat=0, **template)],
            "crash": "process exited with code 1; its last stderr line: x",
        },
    }
    filled = gpu_benchmark.with_crashed_runs(cells)
    assert filled["baseline-bs16"] == cells["baseline-bs16"]
    assert filled["compile-bs16"] == cells["compile-bs16"]
    failed = filled["liger-compile-bs8"]["runs"][1]["result"]
    assert failed["status"] == "failed"
    assert failed["reason"] == "process killed by signal SIGSEGV; its last stderr line: boom"
    assert failed["run_key"] == failed["config"]["run_key"] == "liger-compile-bs8-seq512-r1"
    fields = ("use_liger", "torch_compile", "per_device_train_batch_size", "repeat")
    assert {k: failed["config"][k] for k in fields} == {
        "use_liger": True,
        "torch_compile": True,
        "per_device_train_batch_size": 8,
        "repeat": 1,
    }
    assert len(cells["liger-compile-bs8"]["runs"]) == 1  # the input is not changed
    # A call whose every cell died has no config to report a failed run from.
    dead = {"liger-bs16": {"runs": [], "crash": "process killed by signal SIGSEGV"}}
    assert gpu_benchmark.with_crashed_runs(dead) == dead


def test_merge_renders_the_committed_summary_with_the_crashed_variant_and_its_cost(tmp_path):
    cells = SESSION4 / "fixed-bs16" / "cells.json"
    assert "liger-compile-bs16" in json.loads(cells.read_text())  # died of SIGSEGV without a record
    subprocess.run(
        [sys.executable, str(SCRIPT), "--merge", str(cells), "--warmup", "3", "--gpu-hour-price", "3.5",
         "--preset", "phi3-mini", "--out", str(tmp_path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    title, summary = (tmp_path / "summary.md").read_text().split("\n", 1)
    assert title == "# Liger Kernel benchmark: the embedded phi3-mini preset, one GPU"
    assert summary == (SESSION4 / "fixed-bs16" / "summary.md").read_text().split("\n", 1)[1]
    assert "Not recommended at batch 16: liger-compile: failed (process exited with code -11: " in summary
    # 3.50 per GPU-hour × 1e6 tokens / 16,672 tokens/s / 3,600 s = 0.0583; with Liger 21,244 tokens/s: 0.0458.
    assert "| baseline | 16 | 512 | ok | 0.058 |" in summary
    assert "| Liger | 16 | 512 | ok | 0.046 |" in summary


def test_merge_titles_the_report_with_the_preset_its_parts_record_and_refuses_to_guess(tmp_path):
    """A call's benchmark.json records its --preset; a cells.json (a call cut short) does not, so it must be given."""
    llama = ROOT / "benchmarks" / "results" / "h200-ablation" / "llama3-8b-ceiling"
    merge = [sys.executable, str(SCRIPT), "--warmup", "3", "--out", str(tmp_path), "--merge"]
    subprocess.run([*merge, str(llama / "benchmark.json")], check=True, capture_output=True, text=True)
    title = (tmp_path / "summary.md").read_text().split("\n", 1)[0]
    assert title == "# Liger Kernel benchmark: the embedded llama3-8b preset, one GPU"
    cut_short = subprocess.run([*merge, str(llama / "cells.json")], capture_output=True, text=True)
    assert cut_short.returncode == 1 and "no part records its preset" in cut_short.stderr
    mixed = [str(llama / "benchmark.json"), "--preset", "phi3-mini"]
    disagree = subprocess.run([*merge, *mixed], capture_output=True, text=True)
    assert "name different presets: ['llama3-8b', 'phi3-mini']" in disagree.stderr


def test_the_span_check_reads_the_counter_and_the_samples_over_one_wall_clock_span(gpu_benchmark):
    """Steps: a warm-up (0-1 s), a measured one (2-3 s), a new shape's (3.5-4.5 s), a measured one (5-6 s).
    The span is 2-6 s: the counter's energy of the three steps in it, 700 + 500 + 700 J over 4 s = 475 W
    (the gaps at 0 W); the samples in it 600 and 400 W = 500 W. The warm-up step and the sample at 7 s are
    outside."""

    def step(warmup: bool, first_shape: bool, energy: float) -> dict:
        return {"warmup": warmup, "first_shape": first_shape, "energy_j": energy}

    run = {
        "steps": [
            step(True, True, 900.0),
            step(False, False, 700.0),
            step(False, True, 500.0),
            step(False, False, 700.0),
        ],
        "step_windows": [[0.0, 1.0], [2.0, 3.0], [3.5, 4.5], [5.0, 6.0]],
        "power_samples": [[0.5, 900.0], [2.5, 600.0], [5.5, 400.0], [7.0, 100.0]],
    }
    assert gpu_benchmark.span_power_w(run) == (475.0, 500.0)
    run["steps"][2]["energy_j"] = None  # a step without a counter reading: no floor to give
    assert gpu_benchmark.span_power_w(run) == (None, 500.0)
    for s in run["steps"]:
        s["warmup"] = True  # nothing measured: no span
    assert gpu_benchmark.span_power_w(run) == (None, None)
