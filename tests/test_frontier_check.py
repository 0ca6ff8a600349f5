"""benchmarks/frontier_check.py's pure parts against fake probes: the sweep, the agreement, the plan, the table.

The script's real probes need a GPU (the coordinator runs it on the device machine); here a fake
GPU answers each batch, as in test_frontier.py, and the CLI runs for real without one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from liger_bench.measure.frontier import Probe
from liger_bench.plan.frontier import FrontierSettings
from liger_bench.plan.grid import GridSpec

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "frontier_check.py"
sys.path.insert(0, str(SCRIPT.parent))
import frontier_check  # noqa: E402 - a script of benchmarks/, importable from its folder
from memory_model import PHI3_MINI  # noqa: E402

SETTINGS = FrontierSettings(frontier_resolution=1, frontier_max_batch_size=1024)


class FakeGpu:
    """Batches up to ``edge`` train, above it they run out of memory; ``flaky`` batches answer the other way
    from their second probe on (a process that fits where the last did not). Peaks as an H200's: 21 GiB
    plus 2.4 GiB a sequence; each probe takes 15 s of the fake clock."""

    def __init__(self, edge: int, flaky: frozenset[int] = frozenset()):
        self.edge, self.flaky, self.now, self.seen = edge, flaky, 0.0, []

    def clock(self) -> float:
        return self.now

    def __call__(self, batch: int, _left: float) -> Probe:
        fits = batch <= self.edge
        if batch in self.flaky and batch in self.seen:
            fits = not fits
        self.seen.append(batch)
        self.now += 15.0
        peak = 21.0 + 2.4 * batch
        return Probe(
            batch, 512, "ok" if fits else "oom", "" if fits else "OutOfMemoryError", peak + 2, peak, 15.0, 139.8
        )


def check(gpu: FakeGpu, variant: str = "baseline", settings: FrontierSettings = SETTINGS) -> dict:
    """A point searched from batch 1, as the committed h200-frontier results were (``--start 1``)."""
    return frontier_check.check_point(variant, 512, gpu, settings, PHI3_MINI, 1, clock=gpu.clock)


def test_the_sweep_covers_three_steps_below_the_fit_and_two_above_at_the_searchs_resolution():
    assert frontier_check.sweep_batches(40, 1) == [37, 38, 39, 40, 41, 42]
    assert frontier_check.sweep_batches(40, 8) == [16, 24, 32, 40, 48, 56]
    assert frontier_check.sweep_batches(2, 1) == [1, 2, 3, 4]  # none below batch 1
    assert frontier_check.sweep_batches(None, 1) == []


def test_a_monotone_gpu_agrees_with_the_search_and_the_model_is_checked_at_the_fit():
    gpu = FakeGpu(edge=45)
    point = check(gpu)
    assert (point["search"]["largest_fit"], point["search"]["smallest_oom"], point["search"]["end"]) == (
        45,
        46,
        "resolved",
    )
    assert point["sweep"]["batches"] == [42, 43, 44, 45, 46, 47]
    assert gpu.seen[-6:] == [42, 43, 44, 45, 46, 47]  # each swept batch probed again, after the search
    assert {k: point["sweep"][k] for k in ("largest_fit", "smallest_oom", "monotone")} == {
        "largest_fit": 45,
        "smallest_oom": 46,
        "monotone": True,
    }
    assert point["agree"] is True
    assert point["n_probes"] == {"search": 12, "sweep": 6}
    assert point["seconds"] == {"search": 12 * 15.0, "sweep": 6 * 15.0}
    model = point["memory_model"]
    assert (model["searched_fit"], model["measured_gib"]) == (45, 21.0 + 2.4 * 45)
    assert model["peak_error"] == pytest.approx(model["predicted_gib"] / model["measured_gib"] - 1)


def test_a_sweep_one_step_off_still_agrees_and_two_steps_off_does_not():
    """Batch 46 fits in the sweep's process where it ran out of memory in the search's: one step, agreed."""
    one_off = check(FakeGpu(edge=45, flaky=frozenset({46})))
    assert (one_off["sweep"]["largest_fit"], one_off["sweep"]["smallest_oom"], one_off["agree"]) == (46, 47, True)
    # Batches 44 and 45 trained in the search, and run out of memory in the sweep: the frontier moved two steps.
    two_off = check(FakeGpu(edge=45, flaky=frozenset({44, 45})))
    assert (two_off["sweep"]["largest_fit"], two_off["sweep"]["smallest_oom"]) == (43, 44)
    assert two_off["agree"] is False and two_off["sweep"]["monotone"] is True


def test_a_sweep_that_trains_above_an_out_of_memory_batch_is_not_monotone():
    point = check(FakeGpu(edge=45, flaky=frozenset({44})))  # 44 runs out of memory in the sweep, 45 trains
    sweep = point["sweep"]
    assert (sweep["largest_fit"], sweep["smallest_oom"], sweep["monotone"]) == (43, 44, False)
    assert point["agree"] is False


def test_a_sweep_that_sees_no_out_of_memory_does_not_agree():
    assert frontier_check.agrees(45, {"largest_fit": 47, "smallest_oom": None, "monotone": True}, 1) is False
    assert frontier_check.agrees(45, {"largest_fit": 44, "smallest_oom": 45, "monotone": True}, 1) is True


@pytest.mark.parametrize(("edge", "end"), [(0, "nothing fits"), (5000, "bound")])
def test_a_search_that_did_not_resolve_is_not_swept(edge, end):
    gpu = FakeGpu(edge=edge)
    point = check(gpu)
    assert point["search"]["end"] == end
    assert (point["sweep"]["batches"], point["agree"], point["n_probes"]["sweep"]) == ([], None, 0)
    assert len(gpu.seen) == point["n_probes"]["search"]


def test_the_plan_counts_the_search_and_the_sweep_at_the_memory_models_frontier():
    """The model predicts 49 (stock) and 74 (Liger) sequences of 512 on 139.8 GiB (test_memory_model's hand count).

    At 49: doubling 1 … 64 (7 probes), bisection 48, 56, 52, 50, 49 (5), sweep 6: 18. At 74: 1 … 128 (8),
    96, 80, 72, 76, 74, 75 (6), sweep 6: 20."""
    assert frontier_check.estimated_probes(49, 512, SETTINGS, 1) == 18
    assert frontier_check.estimated_probes(74, 512, SETTINGS, 1) == 20
    plan = frontier_check.plan(["baseline", "liger"], [512], SETTINGS, PHI3_MINI, 139.8, start=1)
    assert plan.splitlines() == [
        "Plan at 20 s a probe, for 139.8 GiB:",
        "  baseline seq 512: the memory model predicts a largest fit of 49; from batch 1: ~18 probes (search and "
        "sweep), ~360 s",
        "  liger seq 512: the memory model predicts a largest fit of 74; from batch 1: ~20 probes (search and sweep), "
        "~400 s",
        "  total ~760 s; one device call runs 600 s at most: split with --variants/--seq-lens",
    ]
    assert "no estimate" in frontier_check.plan(["baseline"], [512], SETTINGS, PHI3_MINI, None)
    assert "no estimate" in frontier_check.plan(["baseline"], [512], SETTINGS, None, 139.8)  # the tiny preset


def test_a_search_from_the_default_grids_batch_skips_the_doublings_below_it():
    """By default the check starts where find_frontier starts on the pipeline's default grid (batch 8 and 16) at
    each length: 16, capped at the bound. At 49, 16, 32, 64 and bisection's 5, plus the sweep's 6: 14 probes,
    4 fewer than from 1; at 74, 16 … 128 and 6: 16. The probes the check makes start there."""
    default_batches = GridSpec().per_device_train_batch_size
    for variant, seq in (("baseline", 512), ("liger", 2048)):
        assert frontier_check.pipeline_start(variant, seq, SETTINGS) == max(default_batches) == 16
    assert frontier_check.pipeline_start("liger", 512, FrontierSettings(frontier_max_batch_size=12)) == 12
    assert "from batch 16: ~14 probes" in frontier_check.plan(["baseline"], [512], SETTINGS, PHI3_MINI, 139.8)
    assert frontier_check.estimated_probes(49, 512, SETTINGS, 16) == 14
    assert frontier_check.estimated_probes(74, 512, SETTINGS, 16) == 16
    gpu = FakeGpu(edge=45)
    point = frontier_check.check_point("baseline", 512, gpu, SETTINGS, PHI3_MINI, 16, clock=gpu.clock)
    assert gpu.seen[:4] == [16, 32, 64, 48] and point["search"]["largest_fit"] == 45 and point["agree"] is True


def test_the_table_has_one_row_per_point_by_sequence_length_then_variant():
    points = [check(FakeGpu(edge=30), "liger"), check(FakeGpu(edge=45), "baseline"), check(FakeGpu(edge=0), "baseline")]
    points[2]["seq_len"] = 2048
    lines = frontier_check.table(points).splitlines()
    assert len(lines) == 5 and lines[1].count("|") == lines[0].count("|")
    liger = points[0]["memory_model"]
    assert lines[2].startswith(
        "| baseline | 512 | 45 | 46 | resolved | 42, 43, 44, 45, 46, 47 | 45 | 46 | yes | yes | 12 + 6 |"
    )
    assert lines[3] == (
        "| liger | 512 | 30 | 31 | resolved | 27, 28, 29, 30, 31, 32 | 30 | 31 | yes | yes | 10 + 6 | 150 + 90 | "
        f"{liger['predicted_gib']:.1f} | {21.0 + 2.4 * 30:.1f} | {100 * liger['peak_error']:+.1f} |"
    )
    assert (
        lines[4]
        == "| baseline | 2048 | – | 1 | nothing fits | – | – | – | yes | not swept | 1 + 0 | 15 + 0 | – | – | – |"
    )


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_a_point_cut_short_is_saved_after_every_probe_and_resumed_without_probing_again():
    """A device call killed after the search and two sweep probes: --resume probes the four sweep batches left."""
    saved = []
    whole = frontier_check.check_point("baseline", 512, FakeGpu(edge=45), SETTINGS, PHI3_MINI, 1, save=saved.append)
    assert len(saved) == 1 + 6 and [doc["complete"] for doc in saved] == [False] * 6 + [True]
    assert [doc["n_probes"]["sweep"] for doc in saved] == list(range(7))
    cut = json.loads(json.dumps(saved[2]))  # as read back from the file
    assert cut["agree"] is None and frontier_check.table([cut]).splitlines()[-1].split(" | ")[9] == "sweep cut short"
    gpu = FakeGpu(edge=45)
    resumed = frontier_check.check_point("baseline", 512, gpu, SETTINGS, PHI3_MINI, 1, saved=cut)
    assert gpu.seen == [44, 45, 46, 47]
    for key in ("search", "sweep", "agree", "complete", "memory_model", "n_probes"):
        assert resumed[key] == whole[key], key
    assert resumed["agree"] is True


def test_the_cli_prints_its_help_and_a_plan_without_a_gpu_and_the_table_of_written_parts(tmp_path):
    help_text = run_cli("--help")
    assert help_text.returncode == 0 and "--variants" in help_text.stdout and "--resume" in help_text.stdout
    planned = run_cli("--plan-only", "--capacity-gib", "139.8", "--variants", "liger", "--seq-lens", "2048")
    assert planned.returncode == 0, planned.stderr
    assert "liger seq 2048: the memory model predicts a largest fit of 18; from batch 16:" in planned.stdout
    assert "liger seq 2048: the memory model predicts a largest fit of" in planned.stdout
    part = check(FakeGpu(edge=45))
    (tmp_path / "baseline-seq512.json").write_text(json.dumps(part))
    tabled = run_cli("--table", str(tmp_path))
    assert tabled.returncode == 0, tabled.stderr
    assert tabled.stdout.splitlines() == frontier_check.table([part]).splitlines()


def test_the_cli_refuses_a_start_off_the_searchs_axis_in_one_line_before_any_probe():
    refused = run_cli("--start", "2000", "--out", "/nonexistent/out")
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1].endswith(
        "--start: the batch search's start 2000 is not a multiple of 1 from 1 to 1024"
    )


def test_the_cli_refuses_a_bad_resolution_in_one_line_before_any_probe():
    refused = run_cli("--resolution", "0", "--out", "/nonexistent/out")
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1].endswith(
        "error: frontier_resolution: 0 is out of range; accepted: integers from 1 to frontier_max_batch_size (1024)"
    )
