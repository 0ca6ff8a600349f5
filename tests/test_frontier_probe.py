"""The frontier search with real probes: real training steps of the tiny model in real supervised processes.

On CPU the out-of-memory signal is a real failed allocation under a host memory limit
(``RLIMIT_AS``) that a test-only ``sitecustomize`` (tests/memory_limit) sets in each probe process.
The probes train the tiny model itself, with no extra allocation: with eager attention at 1,024
tokens each sequence of the batch costs about 80 MB of address space (the attention probabilities,
heads × 1,024² floats per layer), well above the ~50 MB by which the address space of two identical
processes differs, so the frontier is a property of the training, not of noise. With ``sdpa`` a
sequence costs ~20 MB, within that noise.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from liger_bench.measure.frontier_probe import (
    batch_axis,
    find_frontier,
    probe_config,
    probe_of,
    sequence_axis,
    supervised_probe,
)
from liger_bench.plan.config import TrainConfig
from liger_bench.plan.frontier import FrontierSettings
from liger_bench.records import RunResult

MEMORY_LIMIT_SITE = Path(__file__).parent / "memory_limit"
MIB = 2**20
# Address space the limit allows above a batch-1 probe's peak: room for about six sequences of 1,024 tokens.
HEADROOM_BYTES = 500 * MIB
SETTINGS = FrontierSettings(
    frontier_max_batch_size=64, frontier_resolution=2, frontier_time_budget_s=1200, frontier_probe_steps=2
)
RUN = TrainConfig(run_key="frontier", max_seq_length=1024, attn_implementation="eager")


@pytest.fixture(scope="module")
def long_rows_assets(tmp_path_factory):
    """The tiny model and a prepared embedded dataset of 1,024 rows: enough tokens for 16 sequences of 1,024."""
    from liger_bench.inputs.embedded import ensure_embedded
    from liger_bench.tasks import download_dataset

    model_dir, dataset_dir = ensure_embedded(tmp_path_factory.mktemp("embedded"), n_rows=1024)
    prepared = tmp_path_factory.mktemp("prepared") / "dataset"
    download_dataset(str(dataset_dir), "train", "", prepared)
    return str(model_dir), str(prepared)


@pytest.fixture
def peak_log(tmp_path, monkeypatch) -> Path:
    """Probe processes from now on load tests/memory_limit/sitecustomize.py, which logs their peaks here."""
    log = tmp_path / "peaks.jsonl"
    path = [str(MEMORY_LIMIT_SITE), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    monkeypatch.setenv("LIGER_BENCH_TEST_PEAK_LOG", str(log))
    return log


def peaks_by_batch(log: Path) -> dict[int, int]:
    """Peak address space (bytes) of every probe process that exited normally, by its batch size."""
    peaks = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        run_key = record["argv"][record["argv"].index("--run-key") + 1]
        peaks[int(run_key.rsplit("-bs", 1)[1].split("-seq")[0])] = record["vm_peak_bytes"]
    return peaks


@pytest.mark.slow
def test_the_search_finds_the_real_frontier_under_a_host_memory_limit(long_rows_assets, peak_log, monkeypatch):
    model_dir, dataset_dir = long_rows_assets
    calibration = supervised_probe(RUN, "per_device_train_batch_size", model_dir, dataset_dir, SETTINGS)(1, 600)
    assert calibration.status == "ok", calibration.reason
    limit = peaks_by_batch(peak_log)[1] + HEADROOM_BYTES
    monkeypatch.setenv("LIGER_BENCH_TEST_ADDRESS_SPACE_LIMIT", str(limit))

    frontier = find_frontier(RUN, batch_axis(SETTINGS), model_dir, dataset_dir, SETTINGS)

    assert frontier.end == "resolved", frontier.reason
    assert 1 < frontier.largest_fit < frontier.smallest_oom <= frontier.largest_fit + SETTINGS.frontier_resolution
    oom = frontier.probe_at(batch_axis(SETTINGS), frontier.smallest_oom)
    assert oom.status == "oom" and "can't allocate memory" in oom.reason, oom.reason  # torch's host allocator
    assert all(probe.status in ("ok", "oom") for probe in frontier.probes)
    assert [p.per_device_train_batch_size for p in frontier.probes][:3] == [1, 2, 4]
    # Where the limit says the frontier is: the peaks of the two largest batches that trained, extended
    # linearly, cross the limit between the largest fit and the smallest out-of-memory batch (±1).
    peaks = peaks_by_batch(peak_log)
    fits = sorted(p.per_device_train_batch_size for p in frontier.probes if p.status == "ok")[-2:]
    per_sequence = (peaks[fits[1]] - peaks[fits[0]]) / (fits[1] - fits[0])
    assert per_sequence > 40 * MIB  # the memory is the batch's, not noise
    crossing = fits[1] + (limit - peaks[fits[1]]) / per_sequence
    assert frontier.largest_fit - 1 <= crossing <= frontier.smallest_oom + 1, (crossing, frontier.to_dict())


@pytest.mark.slow
def test_the_sequence_search_finds_the_real_longest_sequence_under_a_host_memory_limit(
    long_rows_assets, peak_log, monkeypatch
):
    """Batch 4, eager attention: a sequence's attention probabilities grow with its length squared, so a
    limit 500 MB above the 64-token probe's peak stops the search between 64 and the 2,048-token context."""
    model_dir, dataset_dir = long_rows_assets
    run = TrainConfig(run_key="longest", per_device_train_batch_size=4, max_seq_length=64, attn_implementation="eager")
    calibration = supervised_probe(run, "max_seq_length", model_dir, dataset_dir, SETTINGS)(64, 600)
    assert calibration.status == "ok", calibration.reason
    limit = next(iter(peaks_by_batch(peak_log).values())) + HEADROOM_BYTES
    monkeypatch.setenv("LIGER_BENCH_TEST_ADDRESS_SPACE_LIMIT", str(limit))

    frontier = find_frontier(run, sequence_axis(2048), model_dir, dataset_dir, SETTINGS)

    assert frontier.end == "resolved", frontier.reason
    assert 64 < frontier.largest_fit < frontier.smallest_oom == frontier.largest_fit + 64 <= 2048
    oom = frontier.probe_at(sequence_axis(2048), frontier.smallest_oom)
    assert oom.status == "oom" and "can't allocate memory" in oom.reason, oom.reason
    assert all(probe.status in ("ok", "oom") for probe in frontier.probes)
    assert {(p.per_device_train_batch_size, p.max_seq_length % 64) for p in frontier.probes} == {(4, 0)}


@pytest.mark.slow
def test_a_probe_that_is_neither_ok_nor_oom_stops_the_real_search_with_its_reason(embedded_assets, prepared_dataset):
    """A Liger probe on a node without CUDA is ``skipped`` by the training code: the search ends at once."""
    liger = TrainConfig(run_key="frontier-liger", use_liger=True, max_seq_length=64)
    frontier = find_frontier(liger, batch_axis(SETTINGS), str(embedded_assets[0]), str(prepared_dataset), SETTINGS)
    assert (frontier.largest_fit, frontier.smallest_oom, frontier.end) == (None, None, "probe failed")
    assert [(p.per_device_train_batch_size, p.status) for p in frontier.probes] == [(1, "skipped")]
    assert frontier.reason.startswith(
        "the probe of batch 1 ended skipped, neither trained nor out of memory (Liger kernels are Triton GPU kernels"
    )


@pytest.mark.slow
def test_a_probe_process_that_dies_once_is_run_again_and_the_real_search_goes_on(
    embedded_assets, prepared_dataset, tmp_path, monkeypatch
):
    """The H200's accident, for real: the first probe's process dies importing transformers (tests/broken_transformers,
    once), a fresh process trains the same batch, and the search goes on to its bound."""
    broken = Path(__file__).parent / "broken_transformers"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(broken), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("LIGER_BENCH_TEST_BREAK_ONCE", str(tmp_path / "broken-once"))
    settings = FrontierSettings(frontier_max_batch_size=2, frontier_time_budget_s=600, frontier_probe_steps=2)
    run = TrainConfig(run_key="frontier-retry", max_seq_length=64)

    frontier = find_frontier(run, batch_axis(settings), str(embedded_assets[0]), str(prepared_dataset), settings)

    assert [(p.per_device_train_batch_size, p.status) for p in frontier.probes] == [(1, "failed"), (1, "ok"), (2, "ok")]
    assert frontier.probes[0].reason.endswith("(caused by RuntimeError: CUDA driver initialization failed)")
    assert (frontier.largest_fit, frontier.smallest_oom, frontier.end) == (2, None, "bound"), frontier.reason


@pytest.mark.parametrize(
    ("axis", "value", "shape"),
    [("per_device_train_batch_size", 48, (48, 512)), ("max_seq_length", 3072, (4, 3072))],
)
def test_a_probe_trains_the_runs_settings_at_its_value_for_a_few_steps_of_full_length_rows(axis, value, shape):
    run = TrainConfig(
        run_key="liger-seq512",
        use_liger=True,
        max_seq_length=512,
        per_device_train_batch_size=4,
        optim="adamw_torch",
        max_steps=50,
    )
    probe = probe_config(run, axis, value, SETTINGS)
    assert (probe.per_device_train_batch_size, probe.max_seq_length) == shape
    assert probe.run_key == f"liger-seq512-probe-bs{shape[0]}-seq{shape[1]}"
    assert (probe.max_steps, probe.warmup_steps_to_skip, probe.packing) == (2, 0, True)
    unchanged = {"run_key", axis, "max_steps", "warmup_steps_to_skip", "packing"}
    assert {k: v for k, v in probe.to_dict().items() if k not in unchanged} == {
        k: v for k, v in run.to_dict().items() if k not in unchanged
    }


@pytest.mark.slow
def test_a_dataset_too_short_to_fill_the_length_ends_the_sequence_search_with_its_reason(tmp_path):
    """16 short rows hold a few hundred tokens: the search stops at the first length they cannot fill."""
    from liger_bench.inputs.embedded import ensure_embedded
    from liger_bench.tasks import download_dataset

    model_dir, dataset_dir = ensure_embedded(tmp_path / "embedded", n_rows=16)
    download_dataset(str(dataset_dir), "train", "", tmp_path / "prepared")
    run = TrainConfig(run_key="short", per_device_train_batch_size=2, max_seq_length=64)

    frontier = find_frontier(run, sequence_axis(2048), str(model_dir), str(tmp_path / "prepared"), SETTINGS)

    assert frontier.end == "probe failed", frontier.reason
    *trained, short = frontier.probes
    assert trained and all(p.status == "ok" for p in trained)
    assert [p.max_seq_length for p in frontier.probes] == [64 * 2**i for i in range(len(frontier.probes))]
    assert frontier.largest_fit == trained[-1].max_seq_length and frontier.smallest_oom is None
    assert re.search(
        rf"packing at max_seq_length={short.max_seq_length}, .*cannot fill|fill no sequence of max_seq_length",
        frontier.reason,
    ), frontier.reason


def test_a_probes_peak_memory_is_the_runs_peak_or_the_peak_at_its_out_of_memory_error_with_the_capacity():
    metrics = {"peak_mem_reserved_gb": 70.5, "peak_mem_allocated_gb": 61.0}
    h200 = {"gpu_name": "NVIDIA H200", "gpu_memory_gb": 139.8}
    trained = RunResult(run_key="p", status="ok", config={}, metrics=metrics, environment=h200)
    ran_out = RunResult(
        run_key="p",
        status="oom",
        config={},
        reason="OutOfMemoryError: CUDA out of memory.",
        metrics={"peak_mem_reserved_gb": None, "oom_peak_mem_reserved_gb": 139.0, "oom_peak_mem_allocated_gb": 137.5},
    )
    probed = TrainConfig(run_key="p", per_device_train_batch_size=40, max_seq_length=512)
    assert probe_of(probed, trained, 31.0).__dict__ == {
        "per_device_train_batch_size": 40,
        "max_seq_length": 512,
        "status": "ok",
        "reason": "",
        "peak_mem_reserved_gb": 70.5,
        "peak_mem_allocated_gb": 61.0,
        "elapsed_s": 31.0,
        "gpu_memory_gb": 139.8,
        "crashed": False,
    }
    at_error = probe_of(probed, ran_out, 12.0)
    assert (at_error.status, at_error.peak_mem_reserved_gb, at_error.peak_mem_allocated_gb) == ("oom", 139.0, 137.5)


def test_a_probe_crashed_only_when_its_process_wrote_no_result_not_when_the_training_code_recorded_an_error():
    """Only a crash is run again (frontier.CRASHED_PROBE_ATTEMPTS): the supervisor's record of a process that died."""
    from liger_bench.measure.supervisor import crashed_result

    probed = TrainConfig(run_key="p", per_device_train_batch_size=8, max_seq_length=512)
    died = crashed_result(probed, -11, [], 5.0, None, oom_killed=False, stderr_tail=["Fatal Python error"])
    recorded = RunResult(run_key="p", status="failed", config={}, reason="ValueError: packing: ...")
    assert (probe_of(probed, died, 5.0).crashed, probe_of(probed, recorded, 5.0).crashed) == (True, False)
