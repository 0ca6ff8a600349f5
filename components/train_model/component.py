from typing import Any

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output
from liger_bench.components.images import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def train_model(
    config: dict[str, Any],
    model: Input[Model],
    dataset: Input[Dataset],
    mlflow_tracking_uri: str,
    mlflow_experiment: str,
    tracking: Input[Artifact],
    train_timeout_s: int,
    trainer: dict[str, Any],
    gpu_node_selector: dict[str, str],
    gpu_tolerations: list[dict[str, Any]],
    result: Output[Artifact],
    history: Output[Artifact],
):
    """Fine-tune one grid point with or without Liger and measure every step.

    Training runs in a child process. An out-of-memory (CUDA or host), a failure, a crash of the
    child (signal or exit code), a hang past ``train_timeout_s`` or a skip (Liger without CUDA) is
    recorded in ``result``; the task itself succeeds so that one bad grid point never stops the others.
    A grid point of several GPUs runs under torchrun here; one of several nodes runs as a Kubeflow
    Trainer TrainJob that this task submits, watches and collects.

    Args:
        config: One grid item from prepare_grid (a TrainConfig as a dict).
        model: Model folder from download_model.
        dataset: Prepared dataset from download_dataset.
        mlflow_tracking_uri: MLflow server; empty turns tracking off, unless Kubeflow Pipelines' own MLflow
            integration gave the task its run (liger_bench.tracking.tracking_uri).
        mlflow_experiment: MLflow experiment name.
        tracking: From start_tracking: the MLflow parent run to nest this run under.
        train_timeout_s: Stop training and record it as failed when it has not finished after this long.
        result: JSON record of the run: status, reason, aggregates, environment.
        history: JSON per-step training history.
        trainer: Kubeflow Trainer settings for grid points of several nodes ({} when not compiled in).
        gpu_node_selector: Node labels for a TrainJob's nodes.
        gpu_tolerations: Tolerations for a TrainJob's nodes.
    """
    from liger_bench import tasks

    outcome = tasks.train_model(
        config,
        model_dir=model.path,
        dataset_dir=dataset.path,
        model_info=dict(model.metadata),
        dataset_info=dict(dataset.metadata),
        result_path=result.path,
        history_path=history.path,
        mlflow_tracking_uri=mlflow_tracking_uri,
        mlflow_experiment=mlflow_experiment,
        mlflow_parent_run_id=tracking.metadata.get("parent_run_id", ""),
        mlflow_tracking_error=tracking.metadata.get("tracking_error", ""),
        train_timeout_s=train_timeout_s,
        trainer=trainer,
        gpu_placement={"node_selector": gpu_node_selector, "tolerations": gpu_tolerations},
    )
    result.metadata.update(run_key=outcome.run_key, status=outcome.status, reason=outcome.reason[:500])
    history.metadata.update(run_key=outcome.run_key)
