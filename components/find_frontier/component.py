from typing import Any

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output
from liger_bench.components.images import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def find_frontier(
    grid: list[dict[str, Any]],
    model: Input[Model],
    dataset: Input[Dataset],
    frontier_search: bool,
    frontier_max_batch_size: int,
    frontier_resolution: int,
    frontier_time_budget_s: float,
    frontier_probe_steps: int,
    frontier_seq_batch_size: int,
    frontier: Output[Artifact],
) -> list[dict[str, Any]]:
    """Search the memory frontier of every (variant, sequence length) of the grid: the largest batch that trains.

    Each search starts at the largest batch the grid trains at its point, doubles it (or halves it while
    it runs out of memory), then bisects, each probe a few full training steps in a fresh supervised
    process; a probe's out-of-memory is data, so the task succeeds whatever the probes do.

    Args:
        grid: The grid from prepare_grid; each search probes the first item of its variant and sequence length.
        model: Model folder from download_model.
        dataset: Prepared dataset from download_dataset.
        frontier_search: Whether to search; false records every search as skipped.
        frontier_max_batch_size: Largest per-device batch a search probes.
        frontier_resolution: A search ends when its largest fit and smallest out-of-memory are this close.
        frontier_time_budget_s: Seconds one search may take.
        frontier_probe_steps: Optimizer steps each probe trains.
        frontier_seq_batch_size: Also search each variant's longest max_seq_length at this batch (0: no).
        frontier: JSON record of every search (batch searches under "frontiers", sequence-length searches
            under "sequence_frontiers"): what it found, why it ended, every probe.

    Returns:
        The grid the training loop runs.
    """
    from liger_bench import tasks

    return tasks.find_frontier(
        grid,
        model_dir=model.path,
        dataset_dir=dataset.path,
        frontier_search=frontier_search,
        settings={
            "frontier_max_batch_size": frontier_max_batch_size,
            "frontier_resolution": frontier_resolution,
            "frontier_time_budget_s": frontier_time_budget_s,
            "frontier_probe_steps": frontier_probe_steps,
            "frontier_seq_batch_size": frontier_seq_batch_size,
        },
        frontier_path=frontier.path,
    )
