from kfp import dsl
from kfp.dsl import Model, Output
from liger_bench.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def download_model(model_name: str, model_revision: str, network_retries: int, staging_dir: str, model: Output[Model]):
    """Materialise a hub model or a local model folder as a self-contained model artifact, or stage it once.

    Args:
        model_name: Hub id (e.g. ``microsoft/Phi-3-mini-4k-instruct``) or a local folder.
        model_revision: Hub branch, tag or commit; for a local folder its content hash, or empty.
        network_retries: Retries of a hub download that failed on the network (other errors fail at once).
        staging_dir: Folder of a shared volume that receives the files once, in a folder named by their
            content; the artifact then points there. Empty: the artifact holds the files.
        model: Output folder with config, safetensors weights and tokenizer (or the pointer to them).
    """
    from liger_bench import tasks

    model.metadata.update(tasks.download_model(model_name, model_revision, model.path, network_retries, staging_dir))
