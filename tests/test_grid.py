"""Grid expansion: keys, order, types. (Every rejected input is in test_failure_matrix.py.)"""

import itertools

from liger_bench.plan.config import LIGER_KERNELS, TrainConfig
from liger_bench.plan.grid import GridSpec, expand_grid, run_key
from liger_bench.vocabulary import VARIANTS, variant_of, variant_parts


def test_grid_is_the_cartesian_product_times_repeats_in_repeat_major_order():
    grid = expand_grid(
        GridSpec(use_liger=[True, False], torch_compile=[False], per_device_train_batch_size=[8, 16], n_runs=2)
    )
    assert len(grid) == 8
    assert [item["run_key"] for item in grid[:4]] == [
        "liger-bs8-seq512-r0",
        "baseline-bs8-seq512-r0",
        "liger-bs16-seq512-r0",
        "baseline-bs16-seq512-r0",
    ]
    assert grid[-1]["run_key"] == "baseline-bs16-seq512-r1" and grid[-1]["repeat"] == 1
    assert len({item["run_key"] for item in grid}) == 8


def test_torch_compile_crosses_use_liger_into_four_variants_named_after_their_parts():
    grid = expand_grid(GridSpec(use_liger=[False, True], torch_compile=[False, True], per_device_train_batch_size=[8]))
    first_repeat = [item for item in grid if item["repeat"] == 0]
    assert [(item["run_key"], item["use_liger"], item["torch_compile"]) for item in first_repeat] == [
        ("baseline-bs8-seq512-r0", False, False),
        ("liger-bs8-seq512-r0", True, False),
        ("compile-bs8-seq512-r0", False, True),
        ("liger-compile-bs8-seq512-r0", True, True),
    ]
    assert [TrainConfig.from_dict(item).variant for item in first_repeat] == list(VARIANTS)
    assert all(variant_parts(variant_of(*parts)) == parts for parts in itertools.product((False, True), repeat=2))


def test_run_keys_are_unique_and_name_their_own_point_across_sequence_lengths():
    grid = expand_grid(GridSpec(per_device_train_batch_size=[4, 8], max_seq_length=[256, 1024], n_runs=2))
    assert len(grid) == 32 and len({item["run_key"] for item in grid}) == 32
    for item in grid:
        variant = variant_of(item["use_liger"], item["torch_compile"])
        assert item["run_key"] == run_key(
            variant, item["per_device_train_batch_size"], item["max_seq_length"], item["repeat"]
        )
    assert {(item["max_seq_length"], item["repeat"]) for item in grid} == {(s, r) for s in (256, 1024) for r in (0, 1)}


def test_items_are_complete_train_configs_and_survive_kfp_float_ints():
    item = expand_grid(GridSpec(per_device_train_batch_size=[4], use_liger=[False], n_runs=1))[0]
    unset_kernel_flags = {f"liger_{kernel}" for kernel in LIGER_KERNELS}  # left out: KFP carries no null
    assert set(item) == set(TrainConfig.field_names()) - unset_kernel_flags
    as_kfp_delivers = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in item.items()}
    config = TrainConfig.from_dict(as_kfp_delivers)
    assert config.per_device_train_batch_size == 4 and isinstance(config.max_steps, int)


def test_base_config_reaches_every_item():
    grid = expand_grid(GridSpec(n_runs=1, base_config={"learning_rate": 1e-5, "liger_swiglu": False}))
    assert all(item["learning_rate"] == 1e-5 and item["liger_swiglu"] is False for item in grid)


def test_run_key_format():
    assert run_key("liger", 16, 512, 2) == "liger-bs16-seq512-r2"
    assert run_key("baseline", 4, 128, 0) == "baseline-bs4-seq128-r0"
    assert run_key("liger-compile", 8, 512, 1) == "liger-compile-bs8-seq512-r1"


def test_describe_experiment_gives_axes_repeats_and_shared_settings_with_kfp_floats():
    from liger_bench.plan.grid import describe_experiment

    grid = expand_grid(GridSpec(per_device_train_batch_size=[16, 8], n_runs=2, base_config={"learning_rate": 1e-5}))
    as_kfp_delivers = [{k: float(v) if type(v) is int else v for k, v in item.items()} for item in grid]
    described = describe_experiment(as_kfp_delivers)
    assert described["per_device_train_batch_size"] == [8, 16]
    assert described["use_liger"] == [False, True]
    assert described["torch_compile"] == [False, True]
    assert described["n_runs"] == 2 and described["grid_size"] == 16
    assert described["learning_rate"] == 1e-5 and described["max_steps"] == GridSpec().max_steps
    assert "run_key" not in described and "repeat" not in described


def test_base_config_cannot_override_what_the_grid_sets():
    import pytest

    from liger_bench.plan.grid import GridError

    with pytest.raises(GridError, match=r"base_config: keys \['warmup_steps_to_skip'\] are set by the grid"):
        expand_grid(GridSpec(base_config={"warmup_steps_to_skip": 0}))


def test_grid_and_config_defaults_are_the_pipelines_and_the_compile_options():
    import dataclasses

    from liger_bench.cluster import ClusterOptions
    from liger_bench.plan.signature import pipeline_parameters

    declared, compiled = pipeline_parameters(), ClusterOptions()
    spec = GridSpec()
    for name in (f.name for f in dataclasses.fields(GridSpec)):
        expected = declared[name].default if name in declared else getattr(compiled, name)
        assert getattr(spec, name) == expected, name
    config = TrainConfig()
    assert (config.max_steps, config.warmup_steps_to_skip) == (spec.max_steps, spec.warmup_steps_to_skip)
    assert (config.gpus_per_run, config.nodes_per_run) == (compiled.gpus_per_run, compiled.nodes_per_run)
    # A lone config is the smallest point of the default grid: the baseline, the smallest batch, the shortest sequence.
    axes = ("use_liger", "torch_compile", "per_device_train_batch_size", "max_seq_length")
    smallest = [min(declared[axis].default) for axis in axes]
    assert [getattr(config, axis) for axis in axes] == smallest == [False, False, 8, 512]
    assert config.variant == "baseline"
    spec.per_device_train_batch_size.append(64)
    assert GridSpec().per_device_train_batch_size == declared["per_device_train_batch_size"].default  # not shared


def test_every_limit_accepts_its_own_value():
    """The boundaries of the grid's checks: each limit is allowed, one past it is refused (test_failure_matrix)."""
    import pytest

    from liger_bench.plan.grid import GridError

    spec = GridSpec(per_device_train_batch_size=[4, 8], max_seq_length=[128], n_runs=3, max_grid_size=24)
    assert len(expand_grid(spec)) == 24  # 2 use_liger × 2 torch_compile × 2 batches × 1 length × 3 runs
    with pytest.raises(GridError, match=r"grid size 24 \(= 2 use_liger × 2 torch_compile × 2 batch sizes × 1 "):
        expand_grid(GridSpec(per_device_train_batch_size=[4, 8], max_seq_length=[128], n_runs=3, max_grid_size=23))
    one = {"use_liger": [False], "torch_compile": [False], "per_device_train_batch_size": [4], "max_seq_length": [128]}
    one["n_runs"] = 1
    grid = expand_grid(GridSpec(**one, max_steps=1, warmup_steps_to_skip=0))
    assert [(item["max_steps"], item["warmup_steps_to_skip"]) for item in grid] == [(1, 0)]
    grid = expand_grid(GridSpec(**one, max_steps=7, warmup_steps_to_skip=6))
    assert [(item["max_steps"], item["warmup_steps_to_skip"]) for item in grid] == [(7, 6)]
    grid = expand_grid(GridSpec(**one, gpus_per_run=4, max_gpus_per_run=4))
    assert [(item["gpus_per_run"], item["nodes_per_run"]) for item in grid] == [(4, 1)]
    with pytest.raises(GridError, match=r"= 4 × 1 = 4 GPUs per run exceeds max_gpus_per_run=3"):
        expand_grid(GridSpec(gpus_per_run=4, max_gpus_per_run=3))


def test_the_data_checks_accept_their_limits_and_refuse_one_past_them():
    """rows_problem, check_distinct_sequence_lengths and check_min_success_ratio at their boundaries."""
    import pytest

    from liger_bench.plan.grid import GridError
    from liger_bench.plan.validation import check_distinct_sequence_lengths, check_min_success_ratio, rows_problem

    config = TrainConfig(per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=5)
    assert rows_problem(8, config) == ""  # one step's 2 × 4 rows: 2 batches per epoch, a multiple of 2
    assert rows_problem(7, config).startswith(
        "7 rows cannot fill one optimizer step of per_device_train_batch_size=4 × gradient_accumulation_steps=2 = 8 "
        "rows; accepted: batch sizes <= 3"
    )
    assert rows_problem(12, config).startswith("12 rows give 3 batches of 4 per epoch, not a multiple of")
    assert rows_problem(40, config) == ""  # 10 batches: one epoch holds all 5 steps
    assert rows_problem(36, config) != ""  # 9 batches: a second epoch, and 9 is odd
    assert rows_problem(44, config) == ""  # 11 batches, but one epoch already holds the 10 of the run
    # A row as long as max_seq_length is not truncated: 300 and 512 both reach a longest row of 300.
    check_distinct_sequence_lengths([299, 300], 300, "d")
    with pytest.raises(GridError, match=r"max_seq_length: \[300, 512\] all reach the longest row of dataset 'd' "):
        check_distinct_sequence_lengths([512, 300, 299], 300, "d")
    assert (check_min_success_ratio(0), check_min_success_ratio(1)) == (0.0, 1.0)
    with pytest.raises(GridError, match="min_success_ratio: 1.01 is out of range"):
        check_min_success_ratio(1.01)
