"""The memory frontier search wired in: find_frontier's task, the compiled pipeline, and a whole local run.

On a CPU the search probes host memory; the whole-pipeline test bounds it at batch 2
(``frontier_max_batch_size``), so a real frontier exists there in two probes of real training.
"""

import json
import runpy
from pathlib import Path

import pytest
import yaml

from liger_bench.cli.main import compile_pipeline
from liger_bench.plan.frontier import resolve_at_frontier, search_points, skip_reason
from liger_bench.plan.grid import GridSpec, describe_experiment, expand_grid

TWO_VARIANTS = [
    {
        "run_key": f"{variant}-bs2-seq64-r{repeat}",
        "use_liger": liger,
        "torch_compile": False,
        "per_device_train_batch_size": 2,
        "max_seq_length": 64,
        "repeat": repeat,
        "at_frontier": False,
        "nodes_per_run": 1,
    }
    for repeat in (0, 1)
    for variant, liger in (("liger", True), ("baseline", False))
]


def test_each_variant_and_sequence_length_is_searched_once_from_its_first_grid_item():
    longer = [{**item, "max_seq_length": 128, "run_key": item["run_key"] + "-long"} for item in TWO_VARIANTS]
    points = search_points(TWO_VARIANTS + longer)
    assert [item["run_key"] for item in points] == [
        "liger-bs2-seq64-r0",
        "baseline-bs2-seq64-r0",
        "liger-bs2-seq64-r0-long",
        "baseline-bs2-seq64-r0-long",
    ]


def test_find_frontier_without_the_search_records_every_search_skipped(embedded_assets, tmp_path, capsys):
    from liger_bench.tasks import find_frontier

    model_dir, dataset_dir = embedded_assets
    path = tmp_path / "frontier"
    grid = find_frontier(TWO_VARIANTS, str(model_dir), str(dataset_dir), False, {}, str(path))
    assert grid == TWO_VARIANTS  # the training loop runs the grid as prepare_grid made it
    records = json.loads(path.read_text())["frontiers"]
    assert [(r["variant"], r["max_seq_length"], r["end"], r["reason"], r["probes"]) for r in records] == [
        ("liger", 64, "skipped", "frontier_search is false", []),
        ("baseline", 64, "skipped", "frontier_search is false", []),
    ]
    assert json.loads(path.read_text())["sequence_frontiers"] == []  # frontier_seq_batch_size 0: none
    # The task log says it once, not once per search.
    assert capsys.readouterr().out == "[liger-bench] memory frontier not searched: frontier_search is false\n"


def test_a_skipped_search_records_each_variants_longest_sequence_search_skipped_too(embedded_assets, tmp_path):
    from liger_bench.tasks import find_frontier

    model_dir, dataset_dir = embedded_assets
    path = tmp_path / "frontier"
    find_frontier(TWO_VARIANTS, str(model_dir), str(dataset_dir), False, {"frontier_seq_batch_size": 4}, str(path))
    records = json.loads(path.read_text())["sequence_frontiers"]
    assert [(r["variant"], r["per_device_train_batch_size"], r["end"], r["probes"]) for r in records] == [
        ("liger", 4, "skipped", []),
        ("baseline", 4, "skipped", []),
    ]


@pytest.mark.slow
def test_find_frontier_starts_each_search_at_the_grids_batch_and_longest_sequence(
    embedded_assets, prepared_dataset, tmp_path
):
    """Real probes of the tiny model: the batch search starts at the grid's batch 2 (its bound here: one probe),
    the sequence search at the grid's 1,024 tokens (then 2,048, the context length); not at batch 1 or 64 tokens."""
    from liger_bench.tasks import find_frontier

    baseline = {**TWO_VARIANTS[1], "max_seq_length": 1024, "run_key": "baseline-bs2-seq1024-r0"}
    settings = {"frontier_max_batch_size": 2, "frontier_probe_steps": 2, "frontier_seq_batch_size": 1}
    path = tmp_path / "frontier"
    find_frontier([baseline], str(embedded_assets[0]), str(prepared_dataset), True, settings, str(path))
    searches = json.loads(path.read_text())
    shapes = {
        kind: [(p["per_device_train_batch_size"], p["max_seq_length"], p["status"]) for p in record["probes"]]
        for kind, (record,) in searches.items()
    }
    assert shapes == {"frontiers": [(2, 1024, "ok")], "sequence_frontiers": [(1, 1024, "ok"), (1, 2048, "ok")]}
    answers = [(record["largest_fit"], record["end"]) for (record,) in searches.values()]
    assert answers == [(2, "bound"), (2048, "bound")]


def test_runs_of_several_nodes_are_not_searched(tmp_path):
    several = [{**item, "nodes_per_run": 2} for item in TWO_VARIANTS]
    assert skip_reason(True, several) == "runs of several nodes (nodes_per_run=2): a probe trains on one node"
    assert skip_reason(True, TWO_VARIANTS) == ""
    options = {"nodes_per_run": 2, "gpus_per_run": 8, "max_gpus_per_run": 16}
    options.update(trainer_runtime="torch-distributed", trainer_pvc="liger-bench-trainjobs")
    path = compile_pipeline(tmp_path / "p.yaml", options)
    spec, _ = yaml.safe_load_all(path.read_text())
    assert "accelerator" not in spec["deploymentSpec"]["executors"]["exec-find-frontier"]["container"]["resources"]


def test_max_in_the_batch_axis_expands_at_batch_1_until_the_search_resolves_it_per_variant():
    grid = expand_grid(
        GridSpec(
            use_liger=[True, False],
            torch_compile=[False],
            per_device_train_batch_size=["max", 40],
            max_seq_length=[512],
            n_runs=1,
        )
    )
    assert [(i["run_key"], i["per_device_train_batch_size"], i["at_frontier"]) for i in grid] == [
        ("liger-bsmax-seq512-r0", 1, True),
        ("baseline-bsmax-seq512-r0", 1, True),
        ("liger-bs40-seq512-r0", 40, False),
        ("baseline-bs40-seq512-r0", 40, False),
    ]
    assert describe_experiment(grid)["per_device_train_batch_size"] == [40, "max"]  # the MLflow parent run's param
    frontiers = [
        {"variant": "baseline", "max_seq_length": 512, "largest_fit": 40, "end": "resolved", "reason": "r"},
        {"variant": "liger", "max_seq_length": 512, "largest_fit": 48, "end": "resolved", "reason": "r"},
    ]
    resolved, left_out = resolve_at_frontier(grid, frontiers)
    # Liger's max is 48; the baseline's is 40, which the grid measures anyway: that run is trained once.
    assert [(i["run_key"], i["per_device_train_batch_size"], i["at_frontier"]) for i in resolved] == [
        ("liger-bs48-seq512-r0", 48, True),
        ("baseline-bs40-seq512-r0", 40, True),
        ("liger-bs40-seq512-r0", 40, False),
    ]
    assert left_out == []
    frontiers[1].update(largest_fit=None, end="nothing fits", reason="batch 1 ran out of memory: no batch fits")
    resolved, left_out = resolve_at_frontier(grid, frontiers)
    assert [i["run_key"] for i in resolved] == ["baseline-bs40-seq512-r0", "liger-bs40-seq512-r0"]
    assert left_out == ["liger-bsmax-seq512-r0: no batch fits (nothing fits: batch 1 ran out of memory: no batch fits)"]


@pytest.mark.slow
def test_the_local_pipeline_searches_on_cpu_when_asked_and_reports_the_frontier(embedded_assets, tmp_path):
    """The real kfp local runner: the search's two probes train for real, and "max" trains at what they found.

    Liger's probe is skipped on a CPU, so its search finds no batch and its "max" run is not trained.
    """
    from liger_bench.cli.localrun import run_local

    model_dir, dataset_dir = embedded_assets
    overrides = {
        "model_name": str(model_dir),
        "dataset_name": str(dataset_dir),
        "use_liger": [True, False],
        "torch_compile": [False],
        "per_device_train_batch_size": ["max"],
        "max_seq_length": [64],
        "n_runs": 1,
        "max_steps": 4,
        "frontier_search": True,
        "frontier_max_batch_size": 2,
        "frontier_probe_steps": 2,
        "frontier_seq_batch_size": 1,
    }
    report = run_local(tmp_path, overrides)
    run_root = report.parent.parent
    records = {r["variant"]: r for r in json.loads((run_root / "find-frontier" / "frontier").read_text())["frontiers"]}
    baseline, liger = records["baseline"], records["liger"]
    assert [(p["per_device_train_batch_size"], p["status"]) for p in baseline["probes"]] == [(1, "ok"), (2, "ok")]
    assert (baseline["largest_fit"], baseline["smallest_oom"], baseline["end"]) == (2, None, "bound")
    assert baseline["probes"][0]["peak_mem_reserved_gb"] is None  # no CUDA: no GPU memory to measure
    assert (liger["end"], liger["largest_fit"]) == ("probe failed", None)
    assert "ended skipped" in liger["reason"]
    # "max" trains the baseline at its frontier, 2; Liger's search found no batch, so its "max" run is not trained.
    results = [json.loads(p.read_text()) for p in run_root.glob("for-loop-*/train-model/result")]
    assert [(r["run_key"], r["status"], r["config"]["at_frontier"]) for r in results] == [
        ("baseline-bs2-seq64-r0", "ok", True)
    ]
    # The longest sequence at batch 1: the tiny model trains every length up to its 2,048-token context.
    sequences = {
        r["variant"]: r for r in json.loads((run_root / "find-frontier" / "frontier").read_text())["sequence_frontiers"]
    }
    lengths = [
        (p["per_device_train_batch_size"], p["max_seq_length"], p["status"]) for p in sequences["baseline"]["probes"]
    ]
    assert lengths == [(1, 64 * 2**i, "ok") for i in range(6)]
    assert (sequences["baseline"]["largest_fit"], sequences["baseline"]["end"]) == (2048, "bound")
    assert (sequences["liger"]["end"], sequences["liger"]["largest_fit"]) == ("probe failed", None)
    html = Path(report).read_text()
    assert "Memory frontier, searched" in html and "every batch probed up to frontier_max_batch_size=2" in html
    assert "Longest sequence that fits, searched" in html
    assert "every max_seq_length probed up to the model&#x27;s context length (2048) trained" in html
    # benchmarks/rerender_local.py packs this run's records and renders the same summary from them.
    rerender = runpy.run_path(str(Path(__file__).resolve().parent.parent / "benchmarks" / "rerender_local.py"))
    assert rerender["pack"](run_root, tmp_path / "records.tgz") == 1
    rerender["render"](tmp_path / "records.tgz", tmp_path / "again")
    assert (tmp_path / "again" / "summary.md").read_text() == (run_root / "analyze-results" / "summary").read_text()
