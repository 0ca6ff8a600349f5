from typing import Any

from kfp import dsl
from kfp.dsl import Dataset, Input, Model
from liger_bench.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def prepare_grid(
    model: Input[Model],
    dataset: Input[Dataset],
    use_liger: list[bool],
    torch_compile: list[bool],
    per_device_train_batch_size: list,
    max_seq_length: list[int],
    n_runs: int,
    max_steps: int,
    warmup_steps_to_skip: int,
    base_config: dict[str, Any],
    max_grid_size: int,
    kernel_ablation: str,
    min_success_ratio: float,
    mlflow_tracking_uri: str,
    frontier_search: bool,
    frontier_max_batch_size: int,
    frontier_resolution: int,
    frontier_time_budget_s: float,
    frontier_probe_steps: int,
    frontier_seq_batch_size: int,
    gpus_per_run: int,
    nodes_per_run: int,
    max_gpus_per_run: int,
    trainer_configured: bool,
    gpu_hour_price: float,
) -> list[dict[str, Any]]:
    """Validate the experiment and expand it into one training config per run.

    Runs before any GPU is requested; a bad value fails here with a message naming it.

    Args:
        model: The downloaded model (its metadata says the architecture and context length; its config
            is built on the meta device to try the attention implementation and the Liger kernels).
        dataset: The downloaded dataset (its rows must fill every batch; its token lengths tell
            which sequence lengths differ).
        use_liger: Liger on/off axis.
        torch_compile: torch.compile on/off axis (crossed with use_liger).
        per_device_train_batch_size: Batch-size axis; "max": each variant's searched memory frontier.
        max_seq_length: Sequence-length axis.
        n_runs: Repeats of every grid cell.
        max_steps: Optimizer steps per run.
        warmup_steps_to_skip: First steps excluded from every aggregate.
        base_config: Overrides of other training-config fields for every run.
        max_grid_size: Refuse grids with more runs than this.
        kernel_ablation: Per-kernel attribution arms: 'off', 'each', 'leave-one-out' or 'both'.
        min_success_ratio: Checked here (in [0, 1]) so that a bad value fails before training, not after.
        mlflow_tracking_uri: Checked here: an http(s) or file URL without credentials, query or fragment.
        frontier_search: Whether find_frontier searches: "max" in the batch axis needs it.
        frontier_max_batch_size: The search's bound, checked here.
        frontier_resolution: The search's resolution, checked here.
        frontier_time_budget_s: Seconds one search may take, checked here.
        frontier_probe_steps: Optimizer steps each probe trains, checked here.
        frontier_seq_batch_size: The sequence-length search's batch (0: none), checked here with the context length.
        gpus_per_run: GPUs of one node per run (FSDP above 1).
        nodes_per_run: Nodes per run (a Kubeflow Trainer TrainJob above 1).
        max_gpus_per_run: Refuse runs that ask for more GPUs than this in all.
        trainer_configured: Whether the pipeline was compiled with the Kubeflow Trainer path.
        gpu_hour_price: Checked here (a number >= 0) so that a bad price fails before training, not after.

    Returns:
        One training config per run (a TrainConfig as a dict), the items of the training loop.
    """
    from liger_bench import tasks

    return tasks.prepare_grid(
        model_info=dict(model.metadata),
        dataset_info=dict(dataset.metadata),
        axes={
            "use_liger": use_liger,
            "torch_compile": torch_compile,
            "per_device_train_batch_size": per_device_train_batch_size,
            "max_seq_length": max_seq_length,
            "n_runs": n_runs,
            "max_steps": max_steps,
            "warmup_steps_to_skip": warmup_steps_to_skip,
            "base_config": base_config,
            "max_grid_size": max_grid_size,
            "kernel_ablation": kernel_ablation,
            "gpus_per_run": gpus_per_run,
            "nodes_per_run": nodes_per_run,
            "max_gpus_per_run": max_gpus_per_run,
            "trainer_configured": trainer_configured,
        },
        model_dir=model.path,
        dataset_dir=dataset.path,
        min_success_ratio=min_success_ratio,
        mlflow_tracking_uri=mlflow_tracking_uri,
        frontier_search=frontier_search,
        frontier_settings={
            "frontier_max_batch_size": frontier_max_batch_size,
            "frontier_resolution": frontier_resolution,
            "frontier_time_budget_s": frontier_time_budget_s,
            "frontier_probe_steps": frontier_probe_steps,
            "frontier_seq_batch_size": frontier_seq_batch_size,
        },
        gpu_hour_price=gpu_hour_price,
    )
