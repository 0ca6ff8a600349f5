"""The components' work, one function per component and of its name.

Each component body turns artifact paths into arguments and calls the function of its own name
here, which combines the plain modules (data, models, grid, training, tracking, report); the same
functions run under the kfp local runner and in cluster pods.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from liger_bench import tracking
from liger_bench.inputs.data import load_raw, save_prepared, to_prompt_completion
from liger_bench.inputs.modelio import CONFIG_SOURCE, describe_model, fetch_model
from liger_bench.inputs.staging import input_folder, staged_name, write_inputs
from liger_bench.plan.config import TrainConfig
from liger_bench.records import RunResult, history_document, read_json, write_json_atomic


def progress(message: str) -> None:
    """One progress line in the task's log (kfp's local runner and pod logs show stdout)."""
    print(f"[liger-bench] {message}", flush=True)


def say_if_not_logged(status: dict[str, Any]) -> None:
    """A progress line when a tracking call that should have logged did not: the terminal hears of it."""
    if status["enabled"] and not status["available"]:
        progress(status["message"])


def download_dataset(
    name: str,
    split: str,
    revision: str,
    destination: str | os.PathLike,
    network_retries: int = 0,
    staging_dir: str = "",
) -> dict[str, Any]:
    """Load a split, check and normalise it to prompt/completion rows, save it; return the artifact metadata.

    ``rows`` counts the rows with a completion, the ones the runs draw from; when rows were dropped
    the task log (and ``liger-bench local``'s terminal) says how many are left. With a
    ``staging_dir`` the rows are saved there once and ``destination`` points to them (``inputs.staging``).
    """
    from liger_bench.versions import package_version

    def save(folder) -> dict[str, Any]:
        raw, resolved = load_raw(name, split, revision, network_retries)
        prepared, fmt = to_prompt_completion(raw, name)
        save_prepared(prepared, folder)
        if len(prepared) < len(raw):
            progress(
                f"dataset {name!r}: training draws from {len(prepared):,} of its {len(raw):,} rows "
                f"({len(raw) - len(prepared):,} dropped: empty completion/output/text)"
            )
        return {
            "name": name,
            "split": split,
            "revision": resolved,
            "source_format": fmt,
            "source_rows": len(raw),
            "rows": len(prepared),
        }

    def folder_name(info: dict[str, Any]) -> str:
        # The rows are this project's conversion of the split: its version is part of their content.
        return staged_name(name, info["revision"], split, f"liger-bench-{package_version()}")

    return write_inputs(save, destination, staging_dir, "datasets", folder_name)


def download_model(
    name: str, revision: str, destination: str | os.PathLike, network_retries: int = 0, staging_dir: str = ""
) -> dict[str, Any]:
    """Fetch and check the model; return the artifact metadata.

    The task log (and ``liger-bench local``'s terminal) warns when the model's config states no
    context length: prepare_grid then checks ``max_seq_length`` against the fallback, or not at all.
    With a ``staging_dir`` the files are written there once and ``destination`` points to them.
    """

    def fetch(folder) -> dict[str, Any]:
        resolved = fetch_model(name, folder, revision, network_retries)
        return {"name": name, "revision": resolved, **describe_model(folder)}

    info = write_inputs(fetch, destination, staging_dir, "models", lambda info: staged_name(name, info["revision"]))
    if not info["context_length_source"].startswith(CONFIG_SOURCE):
        fallback = info["context_length_source"] or "none: max_seq_length cannot be checked against one"
        progress(f"warning: model {name!r}: its config states no context length; fallback: {fallback}")
    return info


def prepare_grid(
    model_info: dict,
    dataset_info: dict,
    axes: dict,
    model_dir: str,
    dataset_dir: str,
    min_success_ratio: float,
    mlflow_tracking_uri: str,
    frontier_search: bool,
    frontier_settings: dict,
    gpu_hour_price: float,
) -> list[dict]:
    """Validate and expand the grid, also against the model and the dataset; the cheap checks first.

    ``model_dir`` and ``dataset_dir`` are the artifacts' paths: their folders, or pointers to staged
    folders (``inputs.staging``). Every item gets the attention implementation the architecture trial
    resolved, so both variants use the same one whatever the training node would pick. A tracking URI holding
    credentials is refused here, before a training task could log it. The frontier search's settings
    (``frontier_settings``, a ``FrontierSettings`` as a dict) are checked here too, before find_frontier asks
    for a GPU, and "max" in the batch axis only where a search will resolve it.
    """
    from liger_bench.credentials import check_tracking_uri
    from liger_bench.plan.frontier import FrontierSettings, check_at_frontier, sequence_bound
    from liger_bench.plan.grid import GridSpec, check_against_model, expand_grid
    from liger_bench.plan.validation import (
        check_against_data,
        check_gpu_hour_price,
        check_gradient_checkpointing,
        check_min_success_ratio,
        check_training_arguments,
    )

    check_tracking_uri(mlflow_tracking_uri)
    check_min_success_ratio(min_success_ratio)
    frontier = FrontierSettings.from_dict(frontier_settings)
    check_gpu_hour_price(gpu_hour_price)
    model_dir, dataset_dir = input_folder(model_dir, "model"), input_folder(dataset_dir, "dataset")
    grid = expand_grid(GridSpec(**axes), model_info.get("model_type", ""))
    check_at_frontier(frontier_search, grid)
    if frontier_search:
        sequence_bound(
            frontier, int(model_info.get("context_length") or 0), model_info.get("context_length_source", "")
        )
    check_against_data(grid, dataset_info)
    check_training_arguments(TrainConfig.from_dict(grid[0]))  # the grid's items share these settings
    check_gradient_checkpointing(grid, model_info)
    trial = check_against_model(grid, model_info, model_dir)
    grid = [{**item, "attn_implementation": trial.attn_implementation} for item in grid]
    kernels = ", ".join(f"{kernel} ({n})" for kernel, n in trial.liger_kernels.items() if n) or "none (no Liger run)"
    progress(
        f"model type {trial.model_type!r} ({trial.architecture}), attention {trial.attn_implementation!r}, "
        f"Liger kernels: {kernels}"
    )
    check_training_rows(grid, model_dir, dataset_dir, dataset_info.get("name", ""))
    progress(f"grid of {len(grid)} runs: {', '.join(item['run_key'] for item in grid)}")
    return grid


def check_training_rows(grid: list[dict], model_dir: str, dataset_dir: str, dataset_name: str) -> None:
    """Tokenise the rows each sequence length's runs train on, as train_model will; refuse what cannot train.

    Refused: rows that truncation leaves too few for full steps, chat rows without a chat template,
    and several sequence lengths that would train identical batches. When truncation cut or dropped
    rows, the task log says how many rows the runs train on.
    """
    from liger_bench.measure.training import load_tokenizer, training_rows
    from liger_bench.plan.grid import GridError
    from liger_bench.plan.validation import check_distinct_sequence_lengths, rows_problem

    tokenizer = load_tokenizer(model_dir)
    longest = {}
    for seq_length in sorted({item["max_seq_length"] for item in grid}):
        configs = [TrainConfig.from_dict(item) for item in grid if item["max_seq_length"] == seq_length]
        # A smaller run's rows are the first of the largest run's (one shuffle, one seed).
        tokenized = training_rows(max(configs, key=lambda config: config.sequences_per_run), tokenizer, dataset_dir)
        longest[seq_length] = max(len(row["input_ids"]) for row in tokenized.rows)
        for config in configs:
            problem = "" if config.packing else rows_problem(len(tokenized.rows), config)
            if problem:
                raise GridError(
                    f"max_seq_length: {seq_length} and dataset {dataset_name!r}: after tokenising, {problem}"
                )
        if tokenized.n_truncated or tokenized.n_dropped:
            progress(
                f"max_seq_length={seq_length}: the runs train on up to {len(tokenized.rows):,} of the dataset's "
                f"{tokenized.n_source_rows:,} rows; of the rows tokenised, {tokenized.n_truncated:,} were truncated "
                f"and {tokenized.n_dropped:,} dropped (no completion token left)"
            )
    check_distinct_sequence_lengths(list(longest), longest[max(longest)], dataset_name)


def start_tracking(
    grid: list[dict],
    model_info: dict,
    dataset_info: dict,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    pipeline_run_name: str,
    pipeline_run_id: str,
) -> dict[str, str]:
    """Open the MLflow parent run, its params describing the experiment.

    Returns:
        The tracking document: ``parent_run_id`` ("" when none was created) and ``tracking_error``
        (why not, "" when it was or tracking is off), which the training tasks record in their results.

    """
    from liger_bench.plan.grid import describe_experiment

    params = {
        **describe_experiment(grid),
        **{f"model_{key}": model_info.get(key, "") for key in ("name", "revision")},
        **{f"dataset_{key}": dataset_info.get(key, "") for key in ("name", "split", "revision", "rows")},
    }
    status = tracking.start_parent_run(
        mlflow_tracking_uri,
        mlflow_experiment,
        run_name=pipeline_run_name,
        params=params,
        tags={
            "kfp.pipeline_run_name": pipeline_run_name,
            "kfp.pipeline_run_id": pipeline_run_id,
            "kfp.pod_name": os.environ.get("HOSTNAME", ""),
        },
    )
    say_if_not_logged(status)
    failed = status["enabled"] and not status["available"]
    return {"parent_run_id": status["run_id"], "tracking_error": status["message"] if failed else ""}


def find_frontier(
    grid: list[dict],
    model_dir: str,
    dataset_dir: str,
    frontier_search: bool,
    settings: dict,
    frontier_path: str,
) -> list[dict]:
    """Search the memory frontier of each (variant, sequence length), write the searches; return the grid to train.

    ``model_dir`` and ``dataset_dir`` are the artifacts' paths: their folders, or pointers to staged
    folders (``inputs.staging``). Without ``frontier_search``, or for runs of several nodes (a probe is one
    node's processes), every search is recorded as skipped with the reason. A "max" batch becomes its
    variant's largest fit; one whose search found none is not trained, and the task log says so. With
    ``frontier_seq_batch_size`` > 0, each variant's longest sequence at that batch is searched too, up to
    the model's context length.
    """
    from liger_bench.inputs.modelio import context_length
    from liger_bench.measure.frontier_probe import search_grid
    from liger_bench.plan.frontier import FrontierSettings, resolve_at_frontier, sequence_bound, skip_reason

    model_dir, dataset_dir = input_folder(model_dir, "model"), input_folder(dataset_dir, "dataset")
    skipped = skip_reason(frontier_search, grid)
    frontier = FrontierSettings.from_dict(settings)
    bound = 0 if skipped else sequence_bound(frontier, *context_length(model_dir))
    searches = search_grid(grid, model_dir, dataset_dir, frontier, bound, skipped)
    write_json_atomic(frontier_path, searches)
    resolved, left_out = resolve_at_frontier(grid, searches["frontiers"])
    if skipped:
        progress(f"memory frontier not searched: {skipped}")
    for record in [] if skipped else searches["frontiers"]:
        progress(
            f"memory frontier of {record['variant']} at max_seq_length={record['max_seq_length']}: "
            f"{record['end']} ({record['reason']})"
        )
    for record in [] if skipped else searches["sequence_frontiers"]:
        progress(
            f"longest sequence of {record['variant']} at per_device_train_batch_size="
            f"{record['per_device_train_batch_size']}: {record['end']} ({record['reason']})"
        )
    for line in left_out:
        progress(f'per_device_train_batch_size "max" not trained: {line}')
    return resolved


def train_model(
    config: dict,
    model_dir: str,
    dataset_dir: str,
    model_info: dict,
    dataset_info: dict,
    result_path: str,
    history_path: str,
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    mlflow_parent_run_id: str,
    mlflow_tracking_error: str,
    train_timeout_s: float,
    trainer: dict | None = None,
    gpu_placement: dict | None = None,
) -> RunResult:
    """Train one grid point, write its history and result, mirror them to MLflow.

    ``model_dir`` and ``dataset_dir`` are the artifacts' paths: their folders, or pointers to staged
    folders (``inputs.staging``). One node: in a supervised child process (torchrun's ranks for
    several GPUs). Several nodes: a Kubeflow Trainer TrainJob (``trainer``:
    ``trainjob.TrainerSettings`` as a dict), placed on GPU nodes by ``gpu_placement`` (``node_selector``,
    ``tolerations``). MLflow failures never fail it: a run without a parent run (``mlflow_tracking_error``
    says why, start_tracking said it) is not logged, and a child run that cannot be logged is said in the
    progress and the result.
    """
    from liger_bench.measure.supervisor import train_supervised

    train_config = TrainConfig.from_dict(config)
    model_dir, dataset_dir = input_folder(model_dir, "model"), input_folder(dataset_dir, "dataset")
    if train_config.nodes_per_run > 1:
        from liger_bench.measure.trainjob import TrainerSettings, train_on_trainer

        settings = TrainerSettings(**(trainer or {}), **(gpu_placement or {}))
        trained, steps = train_on_trainer(train_config, model_dir, dataset_dir, train_timeout_s, settings)
    else:
        trained, steps = train_supervised(train_config, model_dir, dataset_dir, train_timeout_s)
    inputs = {"model": model_info, "dataset": dataset_info}
    # The history is the source of truth that MLflow mirrors; the result, written last, records
    # whether the mirroring worked and marks the run complete.
    write_json_atomic(history_path, history_document(trained, steps))
    described = {**trained.to_dict(), **inputs}
    mirrored = tracking.log_child_run(
        mlflow_tracking_uri, mlflow_experiment, mlflow_parent_run_id, described, steps, history_path
    )
    if mlflow_parent_run_id:
        say_if_not_logged(mirrored)
    elif mlflow_tracking_error and not mirrored["available"]:  # the backend's own run can take it still
        mirrored["message"] = mlflow_tracking_error
    result = replace(trained, **inputs, mlflow={**mirrored, "parent_run_id": mlflow_parent_run_id})
    write_json_atomic(result_path, result.to_dict())
    rate = result.metrics.get("tokens_per_s_nonpad")
    outcome = f", {rate:,.0f} tokens/s" if result.status == "ok" and rate else f" ({result.reason})"
    progress(f"{result.run_key}: {result.status}{outcome}")
    return result


def analyze_results(
    result_paths: list[str],
    history_paths: list[str],
    frontier_path: str,
    html_path: str,
    markdown_path: str,
    table_path: str,
    log_metric: Callable[[str, float], None],
    min_success_ratio: float,
    mlflow_tracking_uri: str,
    mlflow_parent_run_id: str,
    gpu_hour_price: float,
) -> str:
    """Write the report, summary, table and metrics; log them to MLflow; then check the success ratio.

    The MLflow parent run ends FINISHED, or FAILED when the success ratio fails the pipeline.
    ``gpu_hour_price`` 0 means no price was given: the report shows no cost.
    """
    from liger_bench.analyse.analysis import check_success_ratio
    from liger_bench.render.report import build_report, write_bundle

    results = [read_json(path) for path in result_paths]
    histories = [read_json(path) for path in history_paths]
    searches = read_json(frontier_path)
    bundle = build_report(
        results,
        histories,
        searches["frontiers"],
        searches["sequence_frontiers"],
        gpu_hour_price=gpu_hour_price or None,
    )
    write_bundle(bundle, html_path, markdown_path, table_path)
    for name, value in bundle.metrics.items():
        log_metric(name, value)
    try:
        check_success_ratio(bundle.analysis, min_success_ratio)
        failure = None
    except ValueError as err:
        failure = err
    named = {"report.html": html_path, "summary.md": markdown_path, "analysis.csv": table_path}
    status = "FAILED" if failure else "FINISHED"
    logged = tracking.log_analysis(mlflow_tracking_uri, mlflow_parent_run_id, bundle.metrics, named, status)
    if mlflow_parent_run_id:
        say_if_not_logged(logged)
    progress(f"report written: {bundle.headline}")
    if failure:
        raise failure
    return bundle.headline
