"""kernel_ablation (issue 25): the grid's arms per architecture, their names, and the kernels each arm patches.

The kernels an arm ablates are read from liger-kernel's ``apply_liger_kernel_to_<arch>`` signature
(``liger.ablation_arms``); the expected sets below are liger-kernel 0.8.5's defaults, written out by hand
so that a change of liger-kernel's defaults, or of how the grid reads them, fails here. Every rejected
input is in test_failure_matrix.py.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from liger_bench.cli.progress import FINISHED
from liger_bench.measure.trainjob import job_name
from liger_bench.plan.config import TrainConfig
from liger_bench.plan.grid import GridSpec, expand_grid
from liger_bench.vocabulary import ablated_kernel, variant_of, variant_parts

# liger-kernel's kernels on by default, per model type: Phi-3 four, Gemma GeGLU instead of SwiGLU,
# Granite the plain cross-entropy instead of the fused one, Nemotron ReLU² and no norm or rope kernel.
DEFAULT_KERNELS = {
    "phi3": ["rope", "rms_norm", "swiglu", "fused_linear_cross_entropy"],
    "gemma": ["rope", "rms_norm", "geglu", "fused_linear_cross_entropy"],
    "granite": ["rope", "rms_norm", "swiglu", "cross_entropy"],
    "nemotron": ["relu_squared", "fused_linear_cross_entropy"],
}
# How many kernel flags liger-kernel's function for the type takes (the defaults above, and the loss off by default).
OFFERED = {"phi3": 5, "gemma": 5, "granite": 5, "nemotron": 3}
SMALL = {"per_device_train_batch_size": [2], "max_seq_length": [64], "n_runs": 1, "max_steps": 5}
# MLflow's rule for metric and param names (mlflow.utils.validation), Kubernetes' for label values.
MLFLOW_NAME = re.compile(r"^[/\w.\- :]*$")
LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
DNS_1035 = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")


def _flags(item: dict) -> set[str]:
    """The kernels an item turns on, from its own kernel flags."""
    return {key.removeprefix("liger_") for key, on in item.items() if key.startswith("liger_") and on}


@pytest.mark.parametrize("model_type", sorted(DEFAULT_KERNELS))
def test_each_and_leave_one_out_ablate_the_kernels_liger_kernel_enables_by_default(model_type):
    kernels = DEFAULT_KERNELS[model_type]
    grid = expand_grid(GridSpec(**SMALL, torch_compile=[False], kernel_ablation="both"), model_type)
    arms = [item for item in grid if item["ablation"]]
    assert [item["run_key"] for item in grid if not item["ablation"]] == ["liger-bs2-seq64-r0", "baseline-bs2-seq64-r0"]
    assert [item["run_key"] for item in arms] == [f"liger.{k}-bs2-seq64-r0" for k in kernels] + [
        f"liger.no_{k}-bs2-seq64-r0" for k in kernels
    ]
    for item, kernel in zip(arms, kernels + kernels, strict=True):
        expected = {kernel} if item["ablation"] == kernel else set(kernels) - {kernel}
        assert _flags(item) == expected, item["run_key"]
        # Every kernel the type offers is set, so no default of liger-kernel decides what an arm measures.
        assert sum(key.startswith("liger_") for key in item) == OFFERED[model_type]
        assert (item["use_liger"], item["torch_compile"]) == (True, False)
        assert TrainConfig.from_dict(item).variant == item["run_key"].removesuffix("-bs2-seq64-r0")
    # The exclusive losses never meet: the one off by default stays off in every arm.
    assert not any({"cross_entropy", "fused_linear_cross_entropy"} <= _flags(item) for item in arms)


def test_arms_are_eager_and_crossed_with_batch_sizes_sequence_lengths_and_repeats_in_repeat_major_order():
    spec = GridSpec(
        per_device_train_batch_size=[2, 4], max_seq_length=[64, 128], n_runs=2, max_steps=5, kernel_ablation="each"
    )
    grid = expand_grid(spec, "phi3")
    # 2 use_liger × 2 torch_compile + 4 arms (eager only), × 2 batches × 2 lengths × 2 repeats.
    assert len(grid) == (4 + 4) * 2 * 2 * 2 == len({item["run_key"] for item in grid})
    assert all(item["torch_compile"] is False for item in grid if item["ablation"])
    first = grid[:8]
    assert [item["run_key"] for item in first] == [
        "liger-bs2-seq64-r0",
        "baseline-bs2-seq64-r0",
        "liger-compile-bs2-seq64-r0",
        "compile-bs2-seq64-r0",
        "liger.rope-bs2-seq64-r0",
        "liger.rms_norm-bs2-seq64-r0",
        "liger.swiglu-bs2-seq64-r0",
        "liger.fused_linear_cross_entropy-bs2-seq64-r0",
    ]
    assert [item["repeat"] for item in grid] == [0] * 32 + [1] * 32
    assert len(expand_grid(dataclasses.replace(spec, kernel_ablation="leave-one-out"), "phi3")) == 64
    assert len(expand_grid(dataclasses.replace(spec, kernel_ablation="both"), "phi3")) == 96
    assert len(expand_grid(dataclasses.replace(spec, kernel_ablation="off"), "phi3")) == 32


def test_the_default_is_off_and_an_unknown_model_type_checks_the_ablation_without_its_arms():
    assert GridSpec().kernel_ablation == "off" and TrainConfig().ablation == ""
    assert all(item["ablation"] == "" for item in expand_grid(GridSpec(**SMALL), "phi3"))
    # liger-bench local expands the grid before the model is downloaded: the arms come with prepare_grid.
    assert len(expand_grid(GridSpec(**SMALL, kernel_ablation="both"))) == 4


@pytest.mark.parametrize("model_type", sorted(DEFAULT_KERNELS))
def test_an_arms_run_key_is_valid_for_mlflow_kubernetes_and_the_progress_line(model_type):
    for item in expand_grid(GridSpec(**SMALL, torch_compile=[False], kernel_ablation="both"), model_type):
        key, variant = item["run_key"], TrainConfig.from_dict(item).variant
        assert MLFLOW_NAME.match(key) and MLFLOW_NAME.match(f"gain_pct_{variant}_vs_baseline_bs2_seq64"), key
        assert LABEL_VALUE.match(key), key
        assert DNS_1035.match(job_name(TrainConfig.from_dict(item))), key
        assert FINISHED.match(f"{key}: skipped (Liger needs a CUDA GPU)")["key"] == key


def test_an_arms_variant_names_its_kernel_and_reads_back():
    assert variant_of(True, False, "rope") == "liger.rope"
    assert variant_of(True, False, "no_swiglu") == "liger.no_swiglu"
    assert ablated_kernel("liger.rope") == ("rope", True)
    assert ablated_kernel("liger.no_fused_linear_cross_entropy") == ("fused_linear_cross_entropy", False)
    assert ablated_kernel("liger") is None and ablated_kernel("liger-compile") is None
    assert variant_parts("liger.no_rms_norm") == (True, False)


def test_max_resolves_each_arm_to_its_own_searched_frontier():
    """An arm is a variant: find_frontier searches it on its own, and its "max" trains at its own largest fit.

    The searches' answers are given (no GPU here); what is real is the grid, which points are searched and
    what each record is named (find_frontier's search_grid, skipped), the resolution and the frontier table.
    """
    from liger_bench.analyse.frontier import searches_table
    from liger_bench.measure.frontier_probe import search_grid
    from liger_bench.plan.frontier import FrontierSettings, resolve_at_frontier

    spec = GridSpec(**{**SMALL, "per_device_train_batch_size": ["max"]}, torch_compile=[False], kernel_ablation="each")
    grid = expand_grid(spec, "phi3")
    records = search_grid(grid, "", "", FrontierSettings(), 0, "frontier_search is false")["frontiers"]
    variants = ["liger", "baseline", "liger.rope", "liger.rms_norm", "liger.swiglu", "liger.fused_linear_cross_entropy"]
    assert [record["variant"] for record in records] == variants == [TrainConfig.from_dict(i).variant for i in grid]
    # The longest-sequence search, likewise: one per arm, at frontier_seq_batch_size.
    sequences = search_grid(grid, "", "", FrontierSettings(frontier_seq_batch_size=4), 0, "off")["sequence_frontiers"]
    assert [(r["variant"], r["per_device_train_batch_size"], r["end"]) for r in sequences] == [
        (variant, 4, "skipped") for variant in variants
    ]
    # Each search's answer differs from every other's, so an arm given another variant's fit shows.
    fits = dict(zip(variants, (24, 8, 9, 10, 12, 20), strict=True))
    answered = [{**record, "largest_fit": fits[record["variant"]], "end": "resolved"} for record in records]
    resolved, left_out = resolve_at_frontier(grid, answered)
    assert [(item["run_key"], item["per_device_train_batch_size"]) for item in resolved] == [
        (f"{variant}-bs{fits[variant]}-seq64-r0", fits[variant]) for variant in variants
    ]
    assert [item["ablation"] for item in resolved] == [TrainConfig.from_dict(item).ablation for item in grid]
    assert left_out == []
    assert searches_table(answered)["variant"].tolist() == [
        "baseline",
        "liger",
        "liger.fused_linear_cross_entropy",
        "liger.rms_norm",
        "liger.rope",
        "liger.swiglu",
    ]


def test_each_arm_patches_exactly_the_kernels_it_names_read_from_the_patched_modules(tiny_model):
    """On CPU: each arm's flags patch a tiny Phi-3 on the meta device in a fresh process; the count is of modules."""
    from liger_bench.plan.architecture import try_architecture

    model_dir, _ = tiny_model("phi3")
    arms = [item for item in expand_grid(GridSpec(**SMALL, kernel_ablation="both"), "phi3") if item["ablation"]]
    for item in arms:
        trial = try_architecture(str(model_dir), "", TrainConfig.from_dict(item).liger_flags())
        patched = {kernel for kernel, count in trial.liger_kernels.items() if count}
        kernel, alone = ablated_kernel(TrainConfig.from_dict(item).variant)
        assert patched == ({kernel} if alone else set(DEFAULT_KERNELS["phi3"]) - {kernel}), item["run_key"]
    # Two layers: two RMSNorms each and a final one, one SwiGLU MLP each.
    assert trial.liger_kernels["rms_norm"] == 5 and trial.liger_kernels["swiglu"] == 2


@pytest.mark.parametrize("model_type", ["gemma", "granite", "nemotron"])
def test_prepare_grid_trials_every_arm_of_the_architecture(model_type, tiny_model, prepared_dataset):
    """prepare_grid patches every arm's kernels on the meta model: liger-kernel accepts each arm of these types."""
    from liger_bench.tasks import prepare_grid

    model_dir, info = tiny_model(model_type)
    axes = {**dataclasses.asdict(GridSpec(**SMALL, torch_compile=[False])), "kernel_ablation": "both"}
    data = {"name": "embedded", "rows": 256}
    grid = prepare_grid(info, data, axes, str(model_dir), str(prepared_dataset), 0.0, "", False, {}, 0.0)
    assert len(grid) == 2 + 2 * len(DEFAULT_KERNELS[model_type])


@pytest.mark.slow
def test_each_through_the_real_local_runner_on_the_tiny_model(embedded_assets, tmp_path, capsys):
    """On CPU the arms are skipped like every Liger run: the grid has their run keys and the report says so."""
    import json

    from liger_bench.cli.localrun import run_local

    overrides = {"model_name": str(embedded_assets[0]), "dataset_name": str(embedded_assets[1])}
    overrides |= {"torch_compile": [False], "per_device_train_batch_size": [2], "n_runs": 1, "max_steps": 5}
    report = run_local(tmp_path, {**overrides, "kernel_ablation": "each"})
    # The header counts the grid before the model's kernels are known, then the arms are added and said.
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith("[liger-bench] 2 training runs (use_liger [true, false] × ")
    assert said[0].endswith(""", before the arms of kernel_ablation "each"), one at a time""")
    assert "[liger-bench] 6 training runs: the kernel ablation's arms for the model's kernels add 4" in said
    assert sum("/6] " in line for line in said) == 6
    run_root = report.parent.parent
    grid = json.loads((run_root / "prepare-grid" / "executor_output.json").read_text())["parameterValues"]["Output"]
    seq = grid[0]["max_seq_length"]
    arms = [f"liger.{kernel}" for kernel in DEFAULT_KERNELS["phi3"]]  # the embedded model is a Phi-3
    assert [item["run_key"] for item in grid] == [f"{v}-bs2-seq{seq}-r0" for v in ("liger", "baseline", *arms)]
    results = {
        r["run_key"]: r for r in (json.loads(p.read_text()) for p in run_root.glob("for-loop-*/train-model/result"))
    }
    assert {key: r["status"] for key, r in results.items()} == {
        item["run_key"]: "ok" if item["run_key"].startswith("baseline") else "skipped" for item in grid
    }
    for item in grid[2:]:
        assert _flags(results[item["run_key"]]["config"]) == {item["ablation"]}
    summary = (run_root / "analyze-results" / "summary").read_text()
    assert "Liger was not measured" in summary and "The ablation added 4 runs." in summary
    # No pair of ok runs: every kernel's row has 0 pairs and no number, and no kernel is named in the headline.
    empty = "0 | – | unavailable | – | unavailable"  # pairs, then a number and its interval, twice
    for kernel in DEFAULT_KERNELS["phi3"]:
        name = kernel.replace("_", "\\_")  # as Markdown escapes it
        assert f"| {name} | 2 | {seq} | {empty} | {empty} |" in summary.splitlines()
    assert "carried by" not in summary.splitlines()[2]
    html = report.read_text()
    assert "No kernel-ablation arm has a pair of ok runs to compare, so there is nothing to draw." in html
