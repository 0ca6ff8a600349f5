"""Settings fixed when the pipeline is compiled: the one declaration of their names, defaults and help.

kfp-free, so that ``liger-bench compile --help`` (whose options are these fields) and prepare_grid's
scale checks read them without importing kfp. ``pipelines/liger_benchmark.py`` builds the pipeline
for a ``ClusterOptions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from liger_bench.versions import image

# Time a training pod needs besides training: start, stopping a hung child, records, MLflow's bounded wait.
TRAIN_POD_GRACE_S = 600


def _option(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class ClusterOptions:
    """Settings fixed when the pipeline is compiled (KFP cannot take them as run parameters).

    ``max_concurrency`` is here because kfp 2.17 accepts only a constant ``parallelism`` in
    ``dsl.ParallelFor``; the resources because kfp's local runner cannot resolve parameters used as
    resources inside a loop. ``gpus_per_run`` is a resource (the training pod's GPU count), so it
    is here too; prepare_grid still checks it, with ``nodes_per_run`` and ``max_gpus_per_run``,
    before any GPU is requested. Each field's ``help`` is its ``liger-bench compile`` option's help.
    """

    max_concurrency: int = _option(4, "training runs at a time (GPUs)")
    train_cpu_request: str = _option("4", "CPU request of each training pod")
    train_cpu_limit: str = _option("16", "CPU limit of each training pod")
    train_memory_request: str = _option("32Gi", "memory request of each training pod")
    train_memory_limit: str = _option("128Gi", "memory limit of each training pod")
    train_timeout_s: int = _option(
        4 * 3600,
        "seconds before a training run is stopped as hung and recorded as failed "
        f"(the pod's own deadline is {TRAIN_POD_GRACE_S} s later)",
    )
    train_retries: int = _option(
        2,
        "re-runs of a training task that failed: a grid point's own failure is a record, so a failed task means "
        "lost infrastructure (its pod or node, a full disk); KFP backends that drop a retry inside a ParallelFor "
        "(kubeflow/pipelines#13897) ignore it",
    )
    cache_training: bool = _option(False, "let KFP reuse cached training results")
    hf_cache_pvc: str = _option("", "PVC mounted as HF_HOME in download tasks")
    hf_cache_mount: str = _option("/cache/huggingface", "where download tasks mount --hf-cache-pvc")
    hf_endpoint: str = _option(
        "", "Hugging Face hub or mirror the download tasks use (their HF_ENDPOINT); empty: https://huggingface.co"
    )
    model_volume: str = _option(
        "",
        "ReadWriteMany PVC that receives the model and dataset once (a folder named by content) and that "
        "prepare_grid and every training pod mount and read them from; empty: they travel as KFP artifacts, "
        "copied into every pod",
    )
    model_volume_mount: str = _option("/mnt/liger-bench-inputs", "where tasks mount --model-volume")
    shm_size: str = _option("16Gi", "size of each training pod's /dev/shm (in memory)")
    download_retries: int = _option(
        2, "retries of a hub download after a network error (20 s, then 40 s); other errors are not retried"
    )
    gpus_per_run: int = _option(1, "GPUs of one node per grid point (FSDP above 1)")
    nodes_per_run: int = _option(
        1,
        "nodes per grid point; above 1 each training task submits a Kubeflow Trainer TrainJob of "
        "nodes_per_run × gpus_per_run GPUs and asks for no GPU itself",
    )
    max_gpus_per_run: int = _option(8, "prepare_grid refuses runs asking for more GPUs")
    trainer_runtime: str = _option("", "ClusterTrainingRuntime of TrainJobs, e.g. torch-distributed")
    trainer_pvc: str = _option("", "ReadWriteMany PVC shared by training tasks and TrainJob nodes")
    trainer_pvc_mount: str = _option(
        "/mnt/liger-bench-trainjobs", "where training tasks and TrainJob nodes mount --trainer-pvc"
    )
    keep_trainjobs: bool = _option(False, "keep finished TrainJobs (for their logs)")

    @property
    def staging_dir(self) -> str:
        """The folder download tasks stage the inputs in, as every task sees it; '' without a model volume."""
        return self.model_volume_mount if self.model_volume else ""

    @property
    def trainer_configured(self) -> bool:
        """Whether TrainJobs can be submitted: a runtime to run them and a volume both sides mount."""
        return bool(self.trainer_runtime and self.trainer_pvc)

    def grid_scale(self) -> dict[str, Any]:
        """The hardware prepare_grid checks a grid against, as its keyword arguments."""
        return {
            "gpus_per_run": self.gpus_per_run,
            "nodes_per_run": self.nodes_per_run,
            "max_gpus_per_run": self.max_gpus_per_run,
            "trainer_configured": self.trainer_configured,
        }

    def trainer_settings(self) -> dict:
        """What train_model needs to submit a TrainJob (``measure.trainjob.TrainerSettings``); {} without."""
        if not self.trainer_configured:
            return {}
        return {
            "runtime": self.trainer_runtime,
            "image": image("cuda"),
            "work_root": self.trainer_pvc_mount,
            "pvc": self.trainer_pvc,
            "keep_jobs": self.keep_trainjobs,
        }

    def __post_init__(self) -> None:
        # kfp writes parallelism 0 as "no limit": all training pods at once.
        for name in ("max_concurrency", "train_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {value!r} is not valid; accepted: integers >= 1")
        if isinstance(self.train_retries, bool) or not isinstance(self.train_retries, int) or self.train_retries < 0:
            raise ValueError(f"train_retries: {self.train_retries!r} is not valid; accepted: integers >= 0")
