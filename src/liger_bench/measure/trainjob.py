"""A grid point of several nodes: a Kubeflow Trainer ``TrainJob`` submitted, watched, collected and deleted.

The TrainJob runs ``torchrun -m liger_bench.measure.supervisor`` on ``nodes_per_run`` nodes of
``gpus_per_run`` GPUs each, through the cluster's ``torch-distributed`` runtime (which sets
torchrun's ``PET_*`` environment: nodes, processes per node, rendezvous). It is the entry point a
one-node run uses, so the step metrics, the FSDP settings and the per-rank failure records are the
same. Storage both sides reach: a ReadWriteMany PersistentVolumeClaim, mounted by the training task
(``ClusterOptions.trainer_pvc``) and patched into the TrainJob's pods; the task stages the model
and the dataset there, and the ranks write the steps and the result there.

The manifest is built from the ``kubeflow-trainer-api`` models (the Trainer's own schema) and sent
with the Kubernetes Python client; the task's service account needs the Role in
``manifests/overlays/kubeflow-trainer``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liger_bench.plan.config import TrainConfig
from liger_bench.records import RunResult, read_json, write_json_atomic

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
# The replicated job and container of the torch-distributed runtime that run the trainer.
TRAINER_NODE = "node"
WORK_VOLUME = "liger-bench-work"
PATCH_MANAGER = "liger-bench"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class TrainerSettings:
    """How this pipeline submits TrainJobs (``ClusterOptions.trainer_settings`` plus the GPU placement)."""

    runtime: str = field(metadata={"help": "ClusterTrainingRuntime, e.g. 'torch-distributed'."})
    image: str = field(metadata={"help": "Training image of the TrainJob's nodes (the train_model image)."})
    work_root: str = field(metadata={"help": "Where the shared PVC is mounted, in the task and in the nodes."})
    pvc: str = field(metadata={"help": "ReadWriteMany PersistentVolumeClaim both sides mount."})
    keep_jobs: bool = field(default=False, metadata={"help": "Keep finished TrainJobs (for their logs)."})
    node_selector: dict = field(default_factory=dict, metadata={"help": "GPU node labels."})
    tolerations: list = field(default_factory=list, metadata={"help": "GPU node tolerations."})
    namespace: str = field(default="", metadata={"help": "Namespace of the TrainJobs; empty: the task's own."})
    poll_s: float = field(default=10.0, metadata={"help": "Seconds between status reads."})


def job_name(config: TrainConfig) -> str:
    """A DNS-1035 name for one TrainJob of ``config``: the run key and a random suffix.

    A kernel-ablation arm's run key has "." and "_" (``liger.no_rms_norm-bs16-...``), which the name writes as "-".
    """
    return re.sub(r"[^a-z0-9-]", "-", f"lb-{config.run_key}-{uuid.uuid4().hex[:6]}"[:63].lower()).rstrip("-")


def build_trainjob(name: str, config: TrainConfig, work_dir: str, settings: TrainerSettings, timeout_s: int) -> dict:
    """The TrainJob that trains ``config`` from ``work_dir``, validated by the Trainer API's models."""
    from kubeflow_trainer_api import models as m

    gpus = str(config.gpus_per_run)
    volume = m.IoK8sApiCoreV1Volume(
        name=WORK_VOLUME,
        persistent_volume_claim=m.IoK8sApiCoreV1PersistentVolumeClaimVolumeSource(claim_name=settings.pvc),
    )
    pod = m.TrainerV1alpha1PodSpecPatch(
        volumes=[volume],
        containers=[
            m.TrainerV1alpha1ContainerPatch(
                name=TRAINER_NODE,
                volume_mounts=[m.IoK8sApiCoreV1VolumeMount(name=WORK_VOLUME, mount_path=settings.work_root)],
            )
        ],
        node_selector=settings.node_selector or None,
        tolerations=[m.IoK8sApiCoreV1Toleration.from_dict(t) for t in settings.tolerations] or None,
    )
    patch = m.TrainerV1alpha1RuntimePatch(
        manager=PATCH_MANAGER,
        training_runtime_spec=m.TrainerV1alpha1TrainingRuntimeSpecPatch(
            template=m.TrainerV1alpha1JobSetTemplatePatch(
                spec=m.TrainerV1alpha1JobSetSpecPatch(
                    replicated_jobs=[
                        m.TrainerV1alpha1ReplicatedJobPatch(
                            name=TRAINER_NODE,
                            template=m.TrainerV1alpha1JobTemplatePatch(
                                spec=m.TrainerV1alpha1JobSpecPatch(template=m.TrainerV1alpha1PodTemplatePatch(spec=pod))
                            ),
                        )
                    ]
                )
            )
        ),
    )
    job = m.TrainerV1alpha1TrainJob(
        api_version=f"{GROUP}/{VERSION}",
        kind="TrainJob",
        metadata=m.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            name=name, labels={"app.kubernetes.io/part-of": "liger-bench", "liger-bench/run-key": config.run_key}
        ),
        spec=m.TrainerV1alpha1TrainJobSpec(
            runtime_ref=m.TrainerV1alpha1RuntimeRef(name=settings.runtime),
            active_deadline_seconds=timeout_s,
            trainer=m.TrainerV1alpha1Trainer(
                image=settings.image,
                # torchrun reads the node count, node rank and rendezvous the runtime puts in PET_*.
                command=["torchrun", "-m", "liger_bench.measure.supervisor", "--run-key", config.run_key, work_dir],
                env=[m.IoK8sApiCoreV1EnvVar(name="PYTHONFAULTHANDLER", value="1")],
                num_nodes=config.nodes_per_run,
                num_proc_per_node=config.gpus_per_run,
                resources_per_node=m.IoK8sApiCoreV1ResourceRequirements.from_dict(
                    {"requests": {"nvidia.com/gpu": gpus}, "limits": {"nvidia.com/gpu": gpus}}
                ),
            ),
            runtime_patches=[patch],
        ),
    )
    return job.to_dict()


def stage(source: str, root: Path, kind: str) -> Path:
    """Copy a model or dataset folder to the shared volume once; later runs reuse the copy.

    The copy is named by the hash of the source's file names and contents (two fine-tunes of one
    architecture have files of the same sizes) and completed by a rename, so a crash mid-copy
    leaves nothing a later run would take for complete. Hashing reads the local files once per
    task; copying would write them to the shared volume every time.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(source).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(source)}\0".encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 24), b""):  # noqa: B023 - used within the iteration
                digest.update(chunk)
    target = root / "inputs" / f"{kind}-{digest.hexdigest()[:16]}"
    if not target.is_dir():
        partial = target.with_name(f"{target.name}.partial-{uuid.uuid4().hex[:6]}")
        shutil.copytree(source, partial)
        partial.rename(target)
    return target


def _condition(job: dict) -> tuple[str, str]:
    """``(state, message)``: state is Complete or Failed once the job ended, else its newest condition or Pending."""
    conditions = (job.get("status") or {}).get("conditions") or []
    for wanted in ("Failed", "Complete"):
        for cond in conditions:
            if cond.get("type") == wanted and cond.get("status") == "True":
                return wanted, cond.get("message", "")
    if conditions:
        return conditions[-1].get("type", "Pending"), conditions[-1].get("message", "")
    return "Pending", ""


def _custom_objects(api_client: Any = None):
    from kubernetes import client, config

    if api_client is None:
        config.load_incluster_config()
        api_client = client.ApiClient()
    return client.CustomObjectsApi(api_client)


def train_on_trainer(
    config: TrainConfig,
    model_dir: str,
    dataset_dir: str,
    timeout_s: float,
    settings: TrainerSettings,
    api_client: Any = None,
) -> tuple[RunResult, list[dict]]:
    """Train ``config`` as a TrainJob and return ``(result, steps)`` as ``train_supervised`` does.

    ``api_client``: a ``kubernetes.client.ApiClient``; None uses the pod's service account.
    A job that does not end within ``timeout_s`` is deleted and recorded as ``failed``.
    """
    from liger_bench.measure.supervisor import OUTCOME, REQUEST, STEPS, crashed_result, first_failed_rank, read_steps

    api = _custom_objects(api_client)
    namespace = settings.namespace or SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    root = Path(settings.work_root)
    name = job_name(config)
    work_dir = root / "runs" / name
    work_dir.mkdir(parents=True)
    request = {
        "config": config.to_dict(),
        "model_dir": str(stage(model_dir, root, "model")),
        "dataset_dir": str(stage(dataset_dir, root, "dataset")),
    }
    write_json_atomic(work_dir / REQUEST, request)
    body = build_trainjob(name, config, str(work_dir), settings, int(timeout_s))
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    _log(
        f"{config.run_key}: TrainJob {namespace}/{name} submitted ({config.nodes_per_run} nodes × "
        f"{config.gpus_per_run} GPUs, runtime {settings.runtime})"
    )
    started = time.monotonic()
    state, message, seen = "Pending", "", None
    try:
        while time.monotonic() - started < timeout_s:
            job = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            state, message = _condition(job)
            if (state, message) != seen:
                _log(f"{config.run_key}: TrainJob {name}: {state}" + (f" ({message})" if message else ""))
                seen = (state, message)
            if state in ("Complete", "Failed"):
                break
            time.sleep(settings.poll_s)
    finally:
        if not settings.keep_jobs or state not in ("Complete", "Failed"):
            api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    elapsed = time.monotonic() - started
    steps = read_steps(work_dir / STEPS)
    if state == "Complete" and (work_dir / OUTCOME).is_file():
        document = read_json(work_dir / OUTCOME)
        return RunResult.from_dict(document["result"]), document["steps"]
    failed_rank = first_failed_rank(work_dir)
    if failed_rank is not None:
        return failed_rank, steps
    timed_out = state not in ("Complete", "Failed")
    result = crashed_result(config, 1, steps, elapsed, timeout_s if timed_out else None, False, [message])
    del result.metrics["exit_code"]  # a TrainJob reports conditions, not the exit code of a process
    if not timed_out:
        result.reason = f"TrainJob {name} {state.lower()} without a result: {message or 'no message'}"
    return result, steps


def _log(message: str) -> None:
    print(f"[liger-bench] {message}", flush=True)
