from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output
from liger_bench.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def analyze_results(
    results: Input[list[Artifact]],
    histories: Input[list[Artifact]],
    frontier: Input[Artifact],
    min_success_ratio: float,
    mlflow_tracking_uri: str,
    tracking: Input[Artifact],
    gpu_hour_price: float,
    report: Output[HTML],
    summary: Output[Markdown],
    metrics: Output[Metrics],
    table: Output[Dataset],
):
    """Turn all runs into the HTML report, a Markdown summary, headline metrics and a table.

    Fails only after everything is written, when fewer than ``min_success_ratio`` of the runs
    trained successfully.

    Args:
        results: Result records of all runs (collected from train_model).
        histories: Step histories of all runs (collected from train_model).
        frontier: The memory frontier searches (from find_frontier).
        min_success_ratio: Fail the task when a smaller fraction of runs has status ``ok``.
        mlflow_tracking_uri: MLflow server; empty turns tracking off, unless Kubeflow Pipelines' own MLflow
            integration gave the task its run (liger_bench.tracking.tracking_uri).
        tracking: From start_tracking: the MLflow parent run that receives the report, then ends.
        gpu_hour_price: Price of one GPU-hour (any currency) for the cost per million tokens; 0: no cost figures.
        report: Self-contained HTML report.
        summary: Markdown summary.
        metrics: Headline numbers for the KFP compare view.
        table: Per-cell analysis table (CSV).
    """
    from liger_bench import tasks

    headline = tasks.analyze_results(
        result_paths=[artifact.path for artifact in results],
        history_paths=[artifact.path for artifact in histories],
        frontier_path=frontier.path,
        html_path=report.path,
        markdown_path=summary.path,
        table_path=table.path,
        log_metric=metrics.log_metric,
        min_success_ratio=min_success_ratio,
        mlflow_tracking_uri=mlflow_tracking_uri,
        mlflow_parent_run_id=tracking.metadata.get("parent_run_id", ""),
        gpu_hour_price=gpu_hour_price,
    )
    report.metadata["headline"] = headline
