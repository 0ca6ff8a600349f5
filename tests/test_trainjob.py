"""Grid points of several nodes: the TrainJob built, submitted, watched, collected and deleted.

Kubernetes with Kubeflow Trainer cannot run here; ``fake_trainer_api.FakeTrainerApi`` stands in for
the API server on loopback (it parses every TrainJob with the Trainer API's models) and runs each
node as a real process, so that two "nodes" of one CPU process each train the tiny model together.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_trainer_api import FakeTrainerApi

from liger_bench.measure.trainjob import TrainerSettings, build_trainjob, train_on_trainer
from liger_bench.plan.config import TrainConfig


def _settings(tmp_path: Path, **overrides) -> TrainerSettings:
    values = {
        "runtime": "torch-distributed",
        "image": "registry.example/liger-bench-cuda:1",
        "work_root": str(tmp_path / "shared"),
        "pvc": "liger-bench-trainjobs",
        "namespace": "team-a",
        "poll_s": 0.2,
        "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    return TrainerSettings(**{**values, **overrides})


def _config(run_key: str = "baseline-bs2-seq64-r0", **overrides) -> TrainConfig:
    values = {"per_device_train_batch_size": 2, "max_seq_length": 64, "max_steps": 6, "nodes_per_run": 2}
    return TrainConfig(run_key=run_key, **{**values, **overrides})


@pytest.fixture
def fake_api():
    servers = []

    def start(**kwargs) -> FakeTrainerApi:
        servers.append(FakeTrainerApi(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_the_trainjob_asks_for_nodes_times_gpus_and_mounts_the_shared_volume(tmp_path):
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    config = _config(gpus_per_run=8, nodes_per_run=2)
    body = build_trainjob("lb-x", config, "/mnt/w/runs/lb-x", _settings(tmp_path, work_root="/mnt/w"), 3600)

    assert TrainerV1alpha1TrainJob.from_dict(body).to_dict() == body  # the Trainer's own schema
    spec = body["spec"]
    assert spec["runtimeRef"]["name"] == "torch-distributed"
    assert (spec["trainer"]["numNodes"], spec["trainer"]["numProcPerNode"]) == (2, 8)
    assert spec["trainer"]["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "8"}
    assert spec["trainer"]["command"] == [
        "torchrun", "-m", "liger_bench.measure.supervisor", "--run-key", config.run_key, "/mnt/w/runs/lb-x"
    ]  # fmt: skip
    assert spec["activeDeadlineSeconds"] == 3600
    pod = spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert pod["name"] == "node"
    pod_spec = pod["template"]["spec"]["template"]["spec"]
    assert pod_spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == "liger-bench-trainjobs"
    assert pod_spec["containers"][0]["volumeMounts"][0]["mountPath"] == "/mnt/w"
    assert pod_spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod_spec["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_a_two_node_grid_point_trains_as_a_trainjob_and_its_result_is_collected(
    fake_api, embedded_assets, prepared_dataset, tmp_path
):
    api = fake_api()
    model_dir, _ = embedded_assets
    config = _config()
    result, steps = train_on_trainer(
        config, str(model_dir), str(prepared_dataset), 600, _settings(tmp_path), api.api_client()
    )

    assert result.status == "ok", result.reason
    assert result.metrics["world_size"] == 2
    assert result.metrics["sharded_parameter_fraction"] == 1.0
    assert len(steps) == config.max_steps and all(len(step["ranks"]) == 2 for step in steps)
    methods = [method for method, _ in api.requests]
    assert methods[0] == "POST" and methods[-1] == "DELETE" and "GET" in methods
    assert all("/namespaces/team-a/trainjobs" in path for _, path in api.requests)
    assert api.jobs == {}  # deleted after collection
    # Inputs were staged once on the shared volume; a second run reuses them.
    assert len(list((tmp_path / "shared" / "inputs").iterdir())) == 2


def test_a_failed_trainjob_is_recorded_with_the_failing_rank_and_kept_when_asked(
    fake_api, embedded_assets, prepared_dataset, tmp_path
):
    api = fake_api()
    model_dir, _ = embedded_assets
    # max_seq_length beyond the model's context: every rank fails in training and writes its record.
    config = _config("baseline-bs2-seq8192-r0", max_seq_length=8192)
    result, _ = train_on_trainer(
        config, str(model_dir), str(prepared_dataset), 600, _settings(tmp_path, keep_jobs=True), api.api_client()
    )

    assert result.status == "failed"
    assert result.reason.startswith("rank ") and "context length" in result.reason
    assert len(api.jobs) == 1  # kept: its pods' logs stay readable


def test_a_trainjob_that_never_ends_is_deleted_and_recorded_as_a_timeout(
    fake_api, embedded_assets, prepared_dataset, tmp_path
):
    api = fake_api(hold=True)
    model_dir, _ = embedded_assets
    result, steps = train_on_trainer(
        _config(), str(model_dir), str(prepared_dataset), 1.0, _settings(tmp_path, keep_jobs=True), api.api_client()
    )

    assert result.status == "failed"
    assert result.reason.startswith("timeout: no result after 1 s")
    assert steps == []
    assert api.jobs == {}  # deleted even with keep_jobs: it would otherwise hold its GPUs


def test_inputs_are_staged_once_per_content_not_per_size(tmp_path):
    from liger_bench.measure.trainjob import stage

    for name, weights in (("a", "1"), ("b", "2"), ("c", "1")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_text(weights)  # same size, different weights for b
    root = tmp_path / "shared"
    staged = [stage(str(tmp_path / name), root, "model") for name in "abc"]
    assert staged[0] != staged[1] and staged[0] == staged[2]
    assert (staged[1] / "model.safetensors").read_text() == "2"
    assert len(list((root / "inputs").iterdir())) == 2
