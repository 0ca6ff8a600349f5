from typing import Any

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output
from liger_bench.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def start_tracking(
    grid: list[dict[str, Any]],
    model: Input[Model],
    dataset: Input[Dataset],
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    pipeline_run_name: str,
    pipeline_run_id: str,
    tracking: Output[Artifact],
):
    """Open the MLflow parent run of this pipeline run; its id goes into ``tracking``.

    Under Kubeflow Pipelines' own MLflow integration it fills the parent run the backend opened instead.

    A task of its own, never cached, so that prepare_grid stays a pure, cacheable function. The id
    travels as an artifact, not a parameter: kfp 2.17's local runner replaces every task-output
    parameter inside a ParallelFor with the loop item.

    Args:
        grid: The validated grid from prepare_grid (its axes and settings become the run's params).
        model: The downloaded model (name and resolved revision become params).
        dataset: The prepared dataset (name, split and resolved revision become params).
        mlflow_tracking_uri: MLflow server; empty turns tracking off, unless Kubeflow Pipelines' own MLflow
            integration gave the task its run (liger_bench.tracking.tracking_uri).
        mlflow_experiment: MLflow experiment name.
        pipeline_run_name: Name of the pipeline run (names the MLflow parent run).
        pipeline_run_id: Id of the pipeline run (an MLflow tag).
        tracking: JSON ``{"parent_run_id": ..., "tracking_error": ...}``: the parent run's id ("" when
            tracking is off or it could not be created) and why it could not; also in its metadata.
    """
    from liger_bench import tasks
    from liger_bench.records import write_json_atomic

    document = tasks.start_tracking(
        grid=grid,
        model_info=dict(model.metadata),
        dataset_info=dict(dataset.metadata),
        mlflow_tracking_uri=mlflow_tracking_uri,
        mlflow_experiment=mlflow_experiment,
        pipeline_run_name=pipeline_run_name,
        pipeline_run_id=pipeline_run_id,
    )
    write_json_atomic(tracking.path, document)
    tracking.metadata.update(document)
