from kfp import dsl
from kfp.dsl import Dataset, Output
from liger_bench.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def download_dataset(
    dataset_name: str,
    dataset_split: str,
    dataset_revision: str,
    network_retries: int,
    staging_dir: str,
    dataset: Output[Dataset],
):
    """Load a dataset split from the hub or a local path and save it as prompt/completion rows.

    Args:
        dataset_name: Hub id (e.g. ``tatsu-lab/alpaca``) or a local file/folder.
        dataset_split: Split to use, e.g. ``train``.
        dataset_revision: Hub branch, tag or commit; for a local path its content hash, or empty.
        network_retries: Retries of a hub download that failed on the network (other errors fail at once).
        staging_dir: Folder of a shared volume that receives the rows once, in a folder named by their
            content; the artifact then points there. Empty: the artifact holds the rows.
        dataset: Output folder (``datasets.save_to_disk``) that train_model loads offline (or the pointer to it).
    """
    from liger_bench import tasks

    dataset.metadata.update(
        tasks.download_dataset(
            dataset_name, dataset_split, dataset_revision, dataset.path, network_retries, staging_dir
        )
    )
