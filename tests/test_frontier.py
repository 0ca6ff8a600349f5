"""The memory frontier search against deterministic fake oracles, and its settings' checks.

A fake oracle stands in for the probe here because the search's logic is what is under test: the
same search with real supervised training processes is in test_frontier_probe.py. The oracle answers
in units of the searched axis' granule (a sequence, or 64 tokens), so one test runs along both axes:
the batch at a sequence length, and the sequence length at a batch.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from liger_bench.measure.frontier import NOUNS, Frontier, Probe, search_frontier
from liger_bench.measure.frontier_probe import batch_axis, sequence_axis
from liger_bench.plan.config import TrainConfig
from liger_bench.plan.frontier import (
    SEQ_GRANULE,
    FrontierSettings,
    batch_start,
    search_points,
    sequence_bound,
    sequence_start,
)
from liger_bench.plan.grid import GridError, GridSpec, expand_grid

BATCH, SEQUENCE = "per_device_train_batch_size", "max_seq_length"
UNIT = {BATCH: 1, SEQUENCE: SEQ_GRANULE}  # one oracle unit in the axis' values
BOTH_AXES = pytest.mark.parametrize("axis", [BATCH, SEQUENCE])


@dataclass
class Oracle:
    """A fake GPU: units up to ``edge`` train; ``band`` units below the edge fit or not, by a hash.

    Peak memory grows with the units (1 GB plus 0.5 GB per unit); each probe takes ``probe_s`` of the
    fake clock. ``crash_at`` units end ``failed``, as a segfault would, each time; ``crash_once_at`` units the
    first time only, as a process that died of something the next does not repeat. ``axis`` is the field probed
    (a unit is ``UNIT[axis]`` of it); the other field of the shape stays at batch 4 or 512 tokens.
    """

    edge: int
    band: int = 0
    probe_s: float = 10.0
    crash_at: frozenset[int] = frozenset()
    crash_once_at: frozenset[int] = frozenset()
    axis: str = BATCH
    now: float = 0.0
    calls: list[tuple[int, float]] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def fits(self, batch: int) -> bool:
        if batch <= self.edge - self.band:
            return True
        if batch > self.edge:
            return False
        return hashlib.sha256(f"{batch}".encode()).digest()[0] % 2 == 0

    def __call__(self, value: int, timeout_s: float) -> Probe:
        assert value % UNIT[self.axis] == 0, value  # every probe on the axis' granule
        unit = value // UNIT[self.axis]
        first_time = all(called != unit for called, _ in self.calls)
        self.calls.append((unit, timeout_s))
        self.now += self.probe_s
        shape = {BATCH: 4, SEQUENCE: 512, self.axis: value}
        if unit in self.crash_at or (unit in self.crash_once_at and first_time):
            crash = "training process killed by signal SIGSEGV (11)"
            return Probe(**shape, status="failed", reason=crash, elapsed_s=self.probe_s, crashed=True)
        peak = 1.0 + 0.5 * unit
        status, reason = ("ok", "") if self.fits(unit) else ("oom", "OutOfMemoryError: CUDA out of memory.")
        return Probe(
            **shape,
            status=status,
            reason=reason,
            peak_mem_reserved_gb=peak,
            peak_mem_allocated_gb=peak - 0.25,
            elapsed_s=self.probe_s,
        )


def search(oracle: Oracle, start: int | None = None, **settings) -> Frontier:
    """The batch search with these settings, or, for an oracle of the sequence axis, the sequence search
    bounded by ``frontier_max_batch_size`` units (the only setting that means anything to it); it starts at
    ``start`` units (None: the axis' granule)."""
    frontier = FrontierSettings(**settings)
    first = None if start is None else start * UNIT[oracle.axis]
    axis = (
        batch_axis(frontier, first)
        if oracle.axis == BATCH
        else sequence_axis(frontier.frontier_max_batch_size * SEQ_GRANULE, first)
    )
    return search_frontier(oracle, axis, frontier.frontier_time_budget_s, clock=oracle.clock)


def probed(frontier: Frontier, axis: str = BATCH) -> list[int]:
    """The units of ``axis`` probed, in order."""
    return [getattr(p, axis) // UNIT[axis] for p in frontier.probes]


def test_the_issue_example_stock_fits_40_and_runs_out_at_48_at_resolution_8():
    """The H200 figures of issue 24 (stock Phi-3-mini, 512 tokens): doubling to 64, then two bisections."""
    frontier = search(Oracle(edge=47), frontier_resolution=8)
    assert (frontier.largest_fit, frontier.smallest_oom, frontier.end) == (40, 48, "resolved")
    assert probed(frontier) == [1, 2, 4, 8, 16, 32, 64, 48, 40]
    assert frontier.reason == "batch 40 trained and batch 48 ran out of memory (frontier_resolution=8)"


@BOTH_AXES
def test_resolution_1_finds_the_exact_edge_and_records_every_probes_peak_memory(axis):
    frontier = search(Oracle(edge=45, axis=axis))
    unit = UNIT[axis]
    assert (frontier.largest_fit, frontier.smallest_oom) == (45 * unit, 46 * unit)
    assert probed(frontier, axis) == [1, 2, 4, 8, 16, 32, 64, 48, 40, 44, 46, 45]
    assert [(p.status, p.peak_mem_reserved_gb, p.peak_mem_allocated_gb) for p in frontier.probes[-2:]] == [
        ("oom", 24.0, 23.75),
        ("ok", 23.5, 23.25),
    ]
    searched = batch_axis(FrontierSettings()) if axis == BATCH else sequence_axis(1024 * SEQ_GRANULE)
    assert frontier.probe_at(searched, frontier.largest_fit).peak_mem_reserved_gb == 23.5
    assert frontier.probe_at(searched, 3 * unit) is None


def test_the_sequence_search_probes_multiples_of_64_tokens_and_says_so():
    """Phi-3-mini's 4,096-token context; at batch 4 the edge is 2,900 tokens: 2,880 fits, 2,944 does not."""
    oracle = Oracle(edge=2900 // SEQ_GRANULE, axis=SEQUENCE)
    frontier = search_frontier(oracle, sequence_axis(4096), 3600.0, clock=oracle.clock)
    assert [p.max_seq_length for p in frontier.probes] == [
        64,
        128,
        256,
        512,
        1024,
        2048,
        4096,
        3072,
        2560,
        2816,
        2944,
        2880,
    ]
    assert {p.per_device_train_batch_size for p in frontier.probes} == {4}
    assert (frontier.largest_fit, frontier.smallest_oom, frontier.end) == (2880, 2944, "resolved")
    assert (
        frontier.reason
        == "max_seq_length 2880 trained and max_seq_length 2944 ran out of memory (resolution 64 tokens)"
    )


@pytest.mark.parametrize("start", [1, 16, 24, 299])
@pytest.mark.parametrize(
    ("axis", "resolution"), [(BATCH, 1), (BATCH, 2), (BATCH, 3), (BATCH, 8), (BATCH, 64), (SEQUENCE, 1)]
)
def test_on_a_monotone_oracle_the_search_brackets_the_edge_to_its_resolution_for_every_edge(axis, resolution, start):
    """What a brute-force sweep would find, for every edge from 1 to the bound: fit <= edge < oom (in units),
    from any start, below the edge or above it."""
    for edge in range(1, 300):
        oracle = Oracle(edge=edge, axis=axis)
        frontier = search(oracle, start, frontier_max_batch_size=300, frontier_resolution=resolution)
        fit, oom = frontier.largest_fit // UNIT[axis], frontier.smallest_oom // UNIT[axis]
        assert fit <= edge < oom, edge
        assert oom - fit <= resolution, edge
        assert len(set(probed(frontier, axis))) == len(frontier.probes), edge  # no value probed twice


@pytest.mark.parametrize("start", [1, 64])
@BOTH_AXES
def test_noise_near_the_edge_gives_an_answer_in_the_noisy_band_that_no_probe_contradicts(axis, start):
    """Units 33 to 40 fit in some processes and not in others (fragmentation, autotuning)."""
    for edge in range(40, 80):
        frontier = search(Oracle(edge=edge, band=8, axis=axis), start, frontier_max_batch_size=300)
        fits = [getattr(p, axis) for p in frontier.probes if p.status == "ok"]
        ooms = [getattr(p, axis) for p in frontier.probes if p.status == "oom"]
        assert max(fits) == frontier.largest_fit < frontier.smallest_oom == min(ooms), edge
        fit = frontier.largest_fit // UNIT[axis]
        assert edge - 8 <= fit <= edge and frontier.smallest_oom == frontier.largest_fit + UNIT[axis], edge


@pytest.mark.parametrize(
    ("axis", "reason"),
    [
        (BATCH, "every batch probed up to frontier_max_batch_size=100 trained: the frontier is above it"),
        (
            SEQUENCE,
            "every max_seq_length probed up to the model's context length (6400) trained: the frontier is above it",
        ),
    ],
)
def test_everything_fits_up_to_the_bound_ends_at_the_bound(axis, reason):
    frontier = search(Oracle(edge=10_000, axis=axis), frontier_max_batch_size=100)
    assert probed(frontier, axis) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert (frontier.largest_fit, frontier.smallest_oom, frontier.end) == (100 * UNIT[axis], None, "bound")
    assert frontier.reason == reason


@pytest.mark.parametrize(
    ("axis", "reason"),
    [
        (BATCH, "batch 1 ran out of memory: no batch fits"),
        (SEQUENCE, "max_seq_length 64 ran out of memory: no max_seq_length fits"),
    ],
)
def test_nothing_fits_ends_after_one_probe(axis, reason):
    frontier = search(Oracle(edge=0, axis=axis))
    assert probed(frontier, axis) == [1]
    assert (frontier.largest_fit, frontier.smallest_oom, frontier.end) == (None, UNIT[axis], "nothing fits")
    assert frontier.reason == reason


@pytest.mark.parametrize(("axis", "probe"), [(BATCH, "batch 48"), (SEQUENCE, "max_seq_length 3072")])
def test_a_probe_that_crashes_twice_stops_the_search_with_its_reason_and_keeps_what_was_found(axis, probe):
    oracle = Oracle(edge=45, crash_at=frozenset({48}), axis=axis)
    frontier = search(oracle)
    assert probed(frontier, axis) == [1, 2, 4, 8, 16, 32, 64, 48, 48]
    assert (frontier.largest_fit, frontier.smallest_oom, frontier.end) == (
        32 * UNIT[axis],
        64 * UNIT[axis],
        "probe failed",
    )
    assert frontier.reason == (
        f"the probe of {probe} ended failed in each of 2 fresh processes, neither trained nor out of memory "
        "(training process killed by signal SIGSEGV (11)); the search stopped there"
    )


@BOTH_AXES
def test_a_probe_that_crashes_once_is_run_again_and_the_search_resolves_as_without_the_crash(axis):
    """The H200's case: the baseline's probe of batch 32 died importing transformers; a fresh process trains it."""
    crashed, clean = (
        search(Oracle(edge=42, crash_once_at=frozenset({32}), axis=axis), 16),
        search(Oracle(edge=42, axis=axis), 16),
    )
    assert probed(crashed, axis) == [16, 32, 32, 64, 48, 40, 44, 42, 43]
    assert [p.status for p in crashed.probes[1:3]] == ["failed", "ok"]
    assert (crashed.largest_fit, crashed.smallest_oom, crashed.end, crashed.reason) == (
        clean.largest_fit,
        clean.smallest_oom,
        "resolved",
        clean.reason,
    )


def test_the_fit_probed_again_after_a_crash_reads_its_peak_from_the_probe_that_trained():
    """The report's table and probe_at take a value's last probe: the crashed one has no peak."""
    from liger_bench.analyse.frontier import searches_table

    crashed = search(Oracle(edge=42, crash_once_at=frozenset({42})), 16)
    assert probed(crashed) == [16, 32, 64, 48, 40, 44, 42, 42, 43] and crashed.largest_fit == 42
    axis = batch_axis(FrontierSettings())
    assert (crashed.probe_at(axis, 42).status, crashed.probe_at(axis, 42).peak_mem_reserved_gb) == ("ok", 22.0)
    record = {"variant": "baseline", "max_seq_length": 512, **crashed.to_dict()}
    assert searches_table([record])["peak_mem_reserved_gb"].tolist() == [22.0]


def test_a_value_whose_retry_ends_otherwise_names_the_crash_before_it():
    """A first process dies, the fresh one skips (a Liger probe without CUDA decides after its imports)."""
    outcomes = iter(
        [
            Probe(8, 512, "failed", "training process killed by signal SIGSEGV (11)", crashed=True),
            Probe(8, 512, "skipped", "Liger kernels are Triton GPU kernels"),
        ]
    )
    frontier = search_frontier(lambda value, left: next(outcomes), batch_axis(FrontierSettings(), 8), 600)
    assert frontier.end == "probe failed"
    assert frontier.reason == (
        "the probe of batch 8 ended skipped in a fresh process, after 1 that crashed (training process killed by "
        "signal SIGSEGV (11)), neither trained nor out of memory (Liger kernels are Triton GPU kernels); the search "
        "stopped there"
    )


@pytest.mark.parametrize(
    ("axis", "so_far"),
    [
        (BATCH, "batch 32 trained and batch 48 ran out of memory"),
        (SEQUENCE, "max_seq_length 2048 trained and max_seq_length 3072 ran out of memory"),
    ],
)
def test_the_time_budget_ends_the_search_with_the_bracket_so_far_and_bounds_each_probe(axis, so_far):
    oracle = Oracle(edge=45, probe_s=10.0, axis=axis)
    frontier = search(oracle, frontier_time_budget_s=75)
    assert [timeout for _, timeout in oracle.calls] == [75, 65, 55, 45, 35, 25, 15, 5]
    assert (frontier.largest_fit, frontier.smallest_oom, frontier.end) == (
        32 * UNIT[axis],
        48 * UNIT[axis],
        "time budget",
    )
    assert frontier.reason == f"frontier_time_budget_s=75 spent after 8 probes; so far {so_far}"


def test_a_probe_stopped_by_the_time_budget_ends_the_search_as_out_of_time_not_as_a_crash():
    """The real probe stops its process at the seconds left and reports ``failed`` (a timeout)."""
    oracle = Oracle(edge=45, probe_s=30.0, crash_at=frozenset({4}))
    frontier = search(oracle, frontier_time_budget_s=90)
    assert (frontier.largest_fit, frontier.smallest_oom, frontier.end) == (2, None, "time budget")
    assert frontier.reason.endswith("spent after 3 probes; so far batch 2 trained, none ran out of memory")


# Where the search starts: the pipeline starts it at the grid's batch (or sequence length), not at the granule.


def test_a_start_below_the_frontier_doubles_up_and_saves_the_probes_below_it():
    """Frontier 42 at resolution 1: 12 probes from batch 1, 8 from the grid's batch 16 (the same bisection)."""
    from_one, from_grid = search(Oracle(edge=42)), search(Oracle(edge=42), 16)
    assert probed(from_one) == [1, 2, 4, 8, 16, 32, 64, 48, 40, 44, 42, 43]
    assert probed(from_grid) == [16, 32, 64, 48, 40, 44, 42, 43]
    assert (from_grid.largest_fit, from_grid.smallest_oom, from_grid.end) == (42, 43, "resolved")
    reason = "batch 42 trained and batch 43 ran out of memory (frontier_resolution=1)"
    assert from_grid.reason == from_one.reason == reason


@BOTH_AXES
def test_a_start_above_the_frontier_halves_down_then_bisects_to_the_exact_frontier(axis):
    frontier = search(Oracle(edge=42, axis=axis), 128)
    assert probed(frontier, axis) == [128, 64, 32, 48, 40, 44, 42, 43]
    assert [p.status for p in frontier.probes[:3]] == ["oom", "oom", "ok"]
    unit = UNIT[axis]
    assert (frontier.largest_fit, frontier.smallest_oom, frontier.end) == (42 * unit, 43 * unit, "resolved")


@pytest.mark.parametrize(
    ("axis", "reason"),
    [
        (BATCH, "batch 1 ran out of memory: no batch fits"),
        (SEQUENCE, "max_seq_length 64 ran out of memory: no max_seq_length fits"),
    ],
)
def test_a_start_where_nothing_fits_halves_down_to_the_granule_and_ends_there(axis, reason):
    """Halving rounds down to the granule: 3 units halve to 1 (a sequence of 192 tokens to 64, not 96)."""
    frontier = search(Oracle(edge=0, axis=axis), 24)
    assert probed(frontier, axis) == [24, 12, 6, 3, 1]
    assert [getattr(p, axis) for p in frontier.probes][-2:] == [3 * UNIT[axis], UNIT[axis]]
    assert (frontier.largest_fit, frontier.smallest_oom, frontier.end) == (None, UNIT[axis], "nothing fits")
    assert frontier.reason == reason


@BOTH_AXES
def test_a_start_at_the_bound_that_trains_ends_at_the_bound_after_one_probe(axis):
    frontier = search(Oracle(edge=10_000, axis=axis), 100, frontier_max_batch_size=100)
    assert probed(frontier, axis) == [100]
    assert (frontier.largest_fit, frontier.smallest_oom, frontier.end) == (100 * UNIT[axis], None, "bound")
    assert frontier.reason.startswith(f"every {NOUNS[axis]} probed up to ")


@pytest.mark.parametrize(
    ("axis", "start", "message"),
    [
        (BATCH, 0, "the batch search's start 0 is not a multiple of 1 from 1 to 100"),
        (BATCH, 101, "the batch search's start 101 is not a multiple of 1 from 1 to 100"),
        (SEQUENCE, 100, "the max_seq_length search's start 100 is not a multiple of 64 from 64 to 6400"),
        (SEQUENCE, 0, "the max_seq_length search's start 0 is not a multiple of 64 from 64 to 6400"),
        (SEQUENCE, 6464, "the max_seq_length search's start 6464 is not a multiple of 64 from 64 to 6400"),
    ],
)
def test_an_invalid_start_is_refused_where_the_axis_is_made(axis, start, message):
    """The pipeline computes the start (plan.frontier): a bad one is a programming error, refused before any probe."""
    settings = FrontierSettings(frontier_max_batch_size=100)
    with pytest.raises(ValueError) as refused:
        batch_axis(settings, start) if axis == BATCH else sequence_axis(100 * SEQ_GRANULE, start)
    assert str(refused.value) == message


def test_without_a_start_the_axis_starts_at_its_granule():
    assert batch_axis(FrontierSettings()).start == 1
    assert sequence_axis(4096).start == SEQ_GRANULE


def test_the_search_starts_at_the_largest_batch_and_longest_sequence_the_grid_trains():
    """A grid of "max" and two batch sizes at two sequence lengths, with kernel-ablation arms (each a variant)."""
    spec = GridSpec(
        use_liger=[True, False],
        torch_compile=[False],
        per_device_train_batch_size=["max", 8, 16],
        max_seq_length=[512, 2048],
        n_runs=1,
        kernel_ablation="each",
    )
    grid = expand_grid(spec, "phi3")
    # The baseline trains only batch 8 at 2,048 tokens, the swiglu arm only "max" at 512 and no 2,048 at all.
    grid = [
        item
        for item in grid
        if not (item["run_key"].startswith("baseline-bs16-seq2048") or item["run_key"].startswith("liger.swiglu-bs"))
        or item["run_key"].startswith("liger.swiglu-bsmax-seq512")
    ]
    points = [TrainConfig.from_dict(item) for item in search_points(grid)]
    starts = {(c.variant, c.max_seq_length): batch_start(grid, c, 1024) for c in points}
    variants = ["liger", "baseline", "liger.rope", "liger.rms_norm", "liger.fused_linear_cross_entropy"]
    assert starts == {
        **{(variant, seq): 16 for variant in variants for seq in (512, 2048)},
        ("baseline", 2048): 8,
        ("liger.swiglu", 512): 1,  # only "max": no batch of the grid to start from
    }
    assert {batch_start(grid, c, 12) for c in points if c.variant == "liger"} == {12}  # frontier_max_batch_size=12
    assert sequence_start(grid, "liger", 4096) == sequence_start(grid, "baseline", 4096) == 2048
    assert sequence_start(grid, "liger.swiglu", 4096) == 512
    assert sequence_start(grid, "liger", 1024) == 1024  # the model's context length, down to a granule


@pytest.mark.parametrize(("lengths", "start"), [([1000, 40], 960), ([40], SEQ_GRANULE)], ids=["rounded", "at-least"])
def test_the_sequence_start_is_on_the_granule(lengths, start):
    grid = expand_grid(GridSpec(use_liger=[False], torch_compile=[False], max_seq_length=lengths, n_runs=1))
    assert sequence_start(grid, "baseline", 4096) == start


def test_the_answer_is_json_ready_with_every_probe():
    frontier = search(Oracle(edge=3), frontier_resolution=1)
    document = frontier.to_dict()
    assert document["largest_fit"] == 3 and document["smallest_oom"] == 4 and document["end"] == "resolved"
    assert [p["per_device_train_batch_size"] for p in document["probes"]] == [1, 2, 4, 3]
    assert document["probes"][-1] == {
        "per_device_train_batch_size": 3,
        "max_seq_length": 512,
        "status": "ok",
        "reason": "",
        "peak_mem_reserved_gb": 2.5,
        "peak_mem_allocated_gb": 2.25,
        "elapsed_s": 10.0,
        "gpu_memory_gb": 0.0,
        "crashed": False,
    }


# Settings: refused with one clear message before any probe (and, wired into prepare_grid, before any GPU).


@dataclass(frozen=True)
class SettingsCase:
    id: str
    values: dict
    message: str  # the whole message


SETTINGS_CASES = [
    SettingsCase(
        "zero-resolution",
        {"frontier_resolution": 0},
        "frontier_resolution: 0 is out of range; accepted: integers from 1 to frontier_max_batch_size (1024)",
    ),
    SettingsCase(
        "resolution-above-the-bound",
        {"frontier_max_batch_size": 64, "frontier_resolution": 128},
        "frontier_resolution: 128 is out of range; accepted: integers from 1 to frontier_max_batch_size (64)",
    ),
    SettingsCase(
        "fractional-resolution",
        {"frontier_resolution": 2.5},
        "frontier_resolution: 2.5 is not an integer; accepted: integers from 1 to frontier_max_batch_size (1024)",
    ),
    SettingsCase(
        "zero-bound",
        {"frontier_max_batch_size": 0},
        "frontier_max_batch_size: 0 is out of range; accepted: integers >= 1",
    ),
    SettingsCase(
        "bound-not-a-number",
        {"frontier_max_batch_size": "lots"},
        "frontier_max_batch_size: 'lots' is not an integer; accepted: integers >= 1",
    ),
    SettingsCase(
        "zero-time-budget",
        {"frontier_time_budget_s": 0},
        "frontier_time_budget_s: 0.0 is not valid; accepted: a finite number of seconds > 0",
    ),
    SettingsCase(
        "infinite-time-budget",
        {"frontier_time_budget_s": math.inf},
        "frontier_time_budget_s: inf is not valid; accepted: a finite number of seconds > 0",
    ),
    SettingsCase(
        "nan-time-budget",
        {"frontier_time_budget_s": math.nan},
        "frontier_time_budget_s: nan is not valid; accepted: a finite number of seconds > 0",
    ),
    SettingsCase(
        "one-probe-step",
        {"frontier_probe_steps": 1},
        "frontier_probe_steps: 1 is out of range; accepted: integers >= 2 (the first step allocates the "
        "optimizer's state)",
    ),
    SettingsCase(
        "unknown-setting",
        {"frontier_resolutoin": 4},
        "unknown frontier settings ['frontier_resolutoin']; accepted: ['frontier_max_batch_size', "
        "'frontier_resolution', 'frontier_time_budget_s', 'frontier_probe_steps', 'frontier_seq_batch_size']",
    ),
    SettingsCase(
        "negative-seq-batch",
        {"frontier_seq_batch_size": -4},
        "frontier_seq_batch_size: -4 is out of range; accepted: integers >= 0 (0: no sequence-length search)",
    ),
    SettingsCase(
        "fractional-seq-batch",
        {"frontier_seq_batch_size": 2.5},
        "frontier_seq_batch_size: 2.5 is not an integer; accepted: integers >= 0 (0: no sequence-length search)",
    ),
]


@pytest.mark.parametrize("case", SETTINGS_CASES, ids=[case.id for case in SETTINGS_CASES])
def test_bad_frontier_settings_are_refused_with_one_message(case):
    with pytest.raises(GridError) as refused:
        FrontierSettings.from_dict(case.values)
    assert str(refused.value) == case.message


def test_settings_as_kfp_hands_them_over_are_accepted():
    """KFP passes integers inside loop items and parameters as floats; numeric strings come from the CLI."""
    settings = FrontierSettings.from_dict(
        {"frontier_max_batch_size": 256.0, "frontier_resolution": "4", "frontier_time_budget_s": 600}
    )
    assert settings == FrontierSettings(256, 4, 600.0, 3, 0)
    assert isinstance(settings.frontier_max_batch_size, int) and isinstance(settings.frontier_time_budget_s, float)


@pytest.mark.parametrize(
    ("context", "bound"), [(4096, 4096), (131_072, 131_072), (2047, 1984), (64, 64)], ids=lambda v: str(v)
)
def test_the_sequence_search_is_bounded_by_the_context_length_down_to_a_granule(context, bound):
    assert sequence_bound(FrontierSettings(frontier_seq_batch_size=4), context, "config.json") == bound


def test_no_sequence_search_needs_no_context_length():
    assert sequence_bound(FrontierSettings(), 0, "") == 0


@pytest.mark.parametrize(
    ("context", "known"),
    [(0, "is unknown"), (32, "is 32 (from config.json: max_position_embeddings)")],
    ids=["unknown-context", "context-below-a-granule"],
)
def test_a_sequence_search_without_a_context_length_of_a_granule_is_refused(context, known):
    with pytest.raises(GridError) as refused:
        sequence_bound(FrontierSettings(frontier_seq_batch_size=4), context, "config.json: max_position_embeddings")
    assert str(refused.value) == (
        f"frontier_seq_batch_size: 4 searches max_seq_length up to the model's context length, which {known}; "
        "accepted: 0 (no sequence-length search) with this model, or a model whose context length is at least 64 tokens"
    )


def test_settings_made_directly_are_checked_too():
    with pytest.raises(GridError, match=r"^frontier_resolution: 0 is out of range"):
        FrontierSettings(frontier_resolution=0)


def test_every_settings_case_is_a_row_of_the_failure_matrix():
    text = (Path(__file__).parents[1] / "docs" / "failure-matrix.md").read_text()
    block = text.split("## Memory frontier search", 1)[1].split("\n## ", 1)[0]
    assert [case.id for case in SETTINGS_CASES if not re.search(rf"`{re.escape(case.id)}`", block)] == []
    cited = set(re.findall(r"test_frontier(?:_probe)?\.py::(test_[a-z0-9_]+)", block))
    import test_frontier_probe

    defined = {name for name in globals() if name.startswith("test_")} | set(dir(test_frontier_probe))
    assert cited and cited <= defined, sorted(cited - defined)
