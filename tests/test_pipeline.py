"""The pipeline: compiled package contents, and one whole run through kfp's local runner."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from liger_bench.cli.main import compile_pipeline
from liger_bench.cluster import TRAIN_POD_GRACE_S, ClusterOptions
from liger_bench.inputs.staging import POINTER_KEY


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = compile_pipeline(tmp_path_factory.mktemp("compiled") / "p.yaml", {"hf_cache_pvc": "hf-cache"})
    spec, platform = yaml.safe_load_all(path.read_text())
    return path, spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_tasks_loop_and_fan_in(compiled):
    _, spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "download-model",
        "download-dataset",
        "prepare-grid",
        "start-tracking",
        "find-frontier",
        "for-loop-1",
        "analyze-results",
    }
    # The frontier search takes prepare_grid's grid and hands the training loop the grid it runs.
    assert tasks["find-frontier"]["inputs"]["parameters"]["grid"]["taskOutputParameter"]["producerTask"] == (
        "prepare-grid"
    )
    loop = tasks["for-loop-1"]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 4
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--find-frontier-Output"
    assert "train-model" in spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    collected = tasks["analyze-results"]["inputs"]["artifacts"]
    assert collected["results"]["taskOutputArtifact"]["producerTask"] == "for-loop-1"
    assert collected["histories"]["taskOutputArtifact"]["producerTask"] == "for-loop-1"
    assert collected["frontier"]["taskOutputArtifact"] == {
        "outputArtifactKey": "frontier",
        "producerTask": "find-frontier",
    }


def test_every_parameter_has_a_default_and_a_description(compiled):
    _, spec, _ = compiled
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert len(parameters) >= 20
    for name, definition in parameters.items():
        assert "defaultValue" in definition, name
        assert len(definition.get("description", "")) > 10, name
    assert parameters["model_name"]["defaultValue"] == "microsoft/Phi-3-mini-4k-instruct"
    assert parameters["dataset_name"]["defaultValue"] == "tatsu-lab/alpaca"
    assert parameters["use_liger"]["defaultValue"] == [True, False]
    assert parameters["torch_compile"]["defaultValue"] == [False, True]
    assert parameters["n_runs"]["defaultValue"] == 3
    assert parameters["mlflow_tracking_uri"]["defaultValue"] == ""


def test_gpu_scheduling_secrets_retries_and_caching(compiled):
    _, spec, executors = compiled
    resources = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]
    assert (
        resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        and resources["accelerator"]["resourceCount"] == "1"
    )
    assert resources["resourceMemoryLimit"] == "128Gi" and resources["resourceCpuLimit"] == "16"
    # The frontier search probes on a GPU node of the same kind, with a training pod's resources.
    search = spec["deploymentSpec"]["executors"]["exec-find-frontier"]["container"]["resources"]
    assert search == resources
    assert executors["exec-find-frontier"]["emptyDirMounts"] == executors["exec-train-model"]["emptyDirMounts"]
    search_pod = executors["exec-find-frontier"]
    assert search_pod["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"] == "gpu_node_selector"
    assert search_pod["tolerations"][0]["tolerationJson"]["componentInputParameter"] == "gpu_tolerations"
    train = executors["exec-train-model"]
    assert train["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith("gpu_node_selector")
    assert train["tolerations"][0]["tolerationJson"]["componentInputParameter"].endswith("gpu_tolerations")
    assert train["emptyDirMounts"] == [
        {"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "16Gi", "volumeName": "dshm"}
    ]
    # train_model stops a hung training itself at train_timeout_s; the pod's deadline is a later backstop.
    train_task = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]["train-model"]
    timeout_s = train_task["inputs"]["parameters"]["train_timeout_s"]["runtimeValue"]["constant"]
    assert (timeout_s, train["activeDeadlineSeconds"]) == (14400, str(14400 + TRAIN_POD_GRACE_S))
    for name in ("exec-download-model", "exec-download-dataset"):
        secret = executors[name]["secretAsEnv"][0]
        assert secret["keyToEnv"] == [{"envVar": "HF_TOKEN", "secretKey": "HF_TOKEN"}] and secret["optional"]
        assert executors[name]["pvcMount"][0]["mountPath"] == "/cache/huggingface"
    for name in ("exec-start-tracking", "exec-train-model", "exec-analyze-results"):
        envs = {e["envVar"] for e in executors[name]["secretAsEnv"][0]["keyToEnv"]}
        assert envs == {"MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    tasks = spec["root"]["dag"]["tasks"]
    for name in ("download-model", "download-dataset"):
        # Network errors are retried inside the task; a kfp retry policy would repeat every error.
        assert "retryPolicy" not in tasks[name]
        assert tasks[name]["inputs"]["parameters"]["network_retries"]["runtimeValue"]["constant"] == 2
        assert tasks[name]["cachingOptions"] == {"enableCache": True}
    assert spec["components"]["comp-for-loop-1"]["dag"]["tasks"]["train-model"].get("cachingOptions") == {}
    assert tasks["prepare-grid"]["cachingOptions"] == {"enableCache": True}
    assert tasks["start-tracking"].get("cachingOptions") == {}  # a new parent run for every pipeline run


def test_components_use_the_project_images_and_install_nothing(compiled):
    from liger_bench.versions import image

    _, spec, _ = compiled
    executors = spec["deploymentSpec"]["executors"]
    assert executors["exec-train-model"]["container"]["image"] == image("cuda")
    cpu_tasks = ("download-model", "download-dataset", "prepare-grid", "start-tracking", "analyze-results")
    for name in (f"exec-{task}" for task in cpu_tasks):
        container = executors[name]["container"]
        assert container["image"] == image("cpu")
        assert "pip install" not in " ".join(container["command"])


def test_cli_compile_is_fast_and_kfp_loads_the_package_back(tmp_path):
    from kfp import components

    output = tmp_path / "liger_benchmark.yaml"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "liger_bench.cli.main", "compile", "--output", str(output)], check=True)
    assert time.monotonic() - started <= 5.0
    loaded = components.load_component_from_file(str(output))
    assert loaded.name == "liger-benchmark"
    assert "per_device_train_batch_size" in loaded.component_spec.inputs


def test_local_run_has_one_result_per_grid_point_and_a_report(local_pipeline_run):
    output_dir, report = local_pipeline_run
    run_root = report.parent.parent
    grid = json.loads((run_root / "prepare-grid" / "executor_output.json").read_text())["parameterValues"]["Output"]
    assert len(grid) == 8  # 2 variants x 2 batch sizes x 2 repeats
    results = [json.loads(p.read_text()) for p in run_root.glob("for-loop-*/train-model/result")]
    histories = {
        json.loads(p.read_text())["run_key"]: json.loads(p.read_text())
        for p in run_root.glob("for-loop-*/train-model/history")
    }
    assert sorted(r["run_key"] for r in results) == sorted(item["run_key"] for item in grid)
    for result in results:
        expected = "skipped" if result["config"]["use_liger"] else "ok"
        assert result["status"] == expected, result["reason"]
        assert len(histories[result["run_key"]]["steps"]) == (0 if expected == "skipped" else 6)
    html = report.read_text()
    assert html == (output_dir / "report.html").read_text()  # a copy a browser opens; the artifact stays
    for item in grid:
        assert item["run_key"] in html
    assert "CPU" in html and "skipped" in html
    summary = (run_root / "analyze-results" / "summary").read_text()
    assert "Liger was not measured" in summary
    metrics = json.loads((run_root / "analyze-results" / "executor_output.json").read_text())
    assert metrics["artifacts"]["metrics"]["artifacts"][0]["metadata"]


def test_local_run_is_tracked_in_mlflow_parent_and_children(mlflow_server, embedded_assets, tmp_path):
    from mlflow.tracking import MlflowClient

    from liger_bench.cli.localrun import run_local

    experiment = "pipeline-tracking-test"
    run_local(
        tmp_path,
        {
            "model_name": str(embedded_assets[0]),
            "dataset_name": str(embedded_assets[1]),
            "torch_compile": [False, True],
            "per_device_train_batch_size": [2],
            "n_runs": 1,
            "max_steps": 5,
            "mlflow_tracking_uri": mlflow_server,
            "mlflow_experiment": experiment,
        },
    )
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    # The run name is the run key, named after the variant's parts.
    assert {c.info.run_name for c in children} == {
        "baseline-bs2-seq128-r0",
        "liger-bs2-seq128-r0",
        "compile-bs2-seq128-r0",
        "liger-compile-bs2-seq128-r0",
    }
    for child in children:
        status = child.data.tags["status"]
        assert status == ("skipped" if child.data.params["use_liger"] == "True" else "ok")
        assert child.data.params["per_device_train_batch_size"] == "2"
        assert child.data.params["learning_rate"] == "6e-06"
        assert child.data.tags["model.revision"].startswith("sha256:") and child.data.tags["dataset.name"] == str(
            embedded_assets[1]
        )
        assert child.data.tags["version.torch"] and "gpu_count" in child.data.tags
        if status == "ok":
            for metric in (
                "tokens_per_s_nonpad",
                "tokens_per_s_padded",
                "tokens_per_s_trained",
                "step_time_s",
                "loss",
                "learning_rate",
            ):
                assert len(client.get_metric_history(child.info.run_id, metric)) == 5, metric
            assert [a.path for a in client.list_artifacts(child.info.run_id)]
            # CPU: no GPU memory and no MFU (no peak for a CPU), so those metrics have no points.
            assert not client.get_metric_history(child.info.run_id, "peak_mem_reserved_gb")
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"report.html", "summary.md", "analysis.csv"}
    assert parent.data.params["per_device_train_batch_size"] == "[2]"
    assert parent.data.params["model_revision"].startswith("sha256:") and parent.data.params["grid_size"] == "4"
    assert parent.data.params["dataset_name"] == str(embedded_assets[1])
    assert "gain_pct_compile_vs_baseline_bs2_seq128" in parent.data.metrics  # the variant's name keys metrics too


def _train_executor(options: dict, tmp_path) -> tuple[dict, dict]:
    path = compile_pipeline(tmp_path / "p.yaml", options)
    spec, platform = yaml.safe_load_all(path.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return spec["deploymentSpec"]["executors"]["exec-train-model"]["container"], executors["exec-train-model"]


def test_a_run_of_several_gpus_asks_for_them_and_prepare_grid_checks_them(tmp_path):
    container, _ = _train_executor({"gpus_per_run": 4, "max_gpus_per_run": 4}, tmp_path)
    assert container["resources"]["accelerator"]["resourceCount"] == "4"
    spec, _ = yaml.safe_load_all((tmp_path / "p.yaml").read_text())
    grid_inputs = spec["root"]["dag"]["tasks"]["prepare-grid"]["inputs"]["parameters"]
    constants = {name: grid_inputs[name]["runtimeValue"]["constant"] for name in ("gpus_per_run", "max_gpus_per_run")}
    assert constants == {"gpus_per_run": 4, "max_gpus_per_run": 4}


def test_a_run_of_several_nodes_submits_a_trainjob_and_asks_for_no_gpu_itself(tmp_path):
    options = {"nodes_per_run": 2, "gpus_per_run": 8, "max_gpus_per_run": 16}
    container, executor = _train_executor(
        {**options, "trainer_runtime": "torch-distributed", "trainer_pvc": "liger-bench-trainjobs"}, tmp_path
    )
    assert "accelerator" not in container.get("resources", {})
    assert executor["pvcMount"][0]["constant"] == "liger-bench-trainjobs"
    spec, _ = yaml.safe_load_all((tmp_path / "p.yaml").read_text())
    train = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]["train-model"]["inputs"]["parameters"]
    trainer = train["trainer"]["runtimeValue"]["constant"]
    assert trainer["runtime"] == "torch-distributed" and trainer["pvc"] == "liger-bench-trainjobs"
    assert trainer["image"].split("/")[-1].startswith("liger-bench-cuda:")


def test_the_model_volume_is_mounted_on_the_tasks_that_stage_or_read_the_inputs_only_when_given(compiled, tmp_path):
    path = compile_pipeline(tmp_path / "p.yaml", {"model_volume": "liger-inputs"})
    spec, platform = yaml.safe_load_all(path.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    mount = ClusterOptions().model_volume_mount
    readers = {
        "exec-download-model",
        "exec-download-dataset",
        "exec-prepare-grid",
        "exec-find-frontier",
        "exec-train-model",
    }
    for name in readers:
        mounts = [m for m in executors[name]["pvcMount"] if m["mountPath"] == mount]
        assert [m["pvcNameParameter"]["runtimeValue"]["constant"] for m in mounts] == ["liger-inputs"], name
    for name in set(executors) - readers:
        assert not [m for m in executors[name].get("pvcMount", []) if m["mountPath"] == mount], name
    tasks = spec["root"]["dag"]["tasks"]
    for name in ("download-model", "download-dataset"):
        assert tasks[name]["inputs"]["parameters"]["staging_dir"]["runtimeValue"]["constant"] == mount
    # Without the option: no such mount anywhere, and the artifacts hold the files (staging_dir empty).
    _, default_spec, default_executors = compiled
    assert not [m for e in default_executors.values() for m in e.get("pvcMount", []) if m["mountPath"] == mount]
    default_tasks = default_spec["root"]["dag"]["tasks"]
    assert default_tasks["download-model"]["inputs"]["parameters"]["staging_dir"]["runtimeValue"]["constant"] == ""


def test_the_training_task_is_retried_only_as_often_as_compiled(compiled, tmp_path):
    _, spec, _ = compiled
    train = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]["train-model"]
    assert train["retryPolicy"]["maxRetryCount"] == ClusterOptions().train_retries == 2
    path = compile_pipeline(tmp_path / "p.yaml", {"train_retries": 0})
    spec, _ = yaml.safe_load_all(path.read_text())
    assert "retryPolicy" not in spec["components"]["comp-for-loop-1"]["dag"]["tasks"]["train-model"]


@pytest.mark.slow
def test_a_local_run_with_a_model_volume_trains_from_the_staged_folder(embedded_assets, tmp_path):
    """The training task's input artifacts are pointers of a few hundred bytes; the weights come from the folder."""
    from liger_bench.cli.localrun import run_local

    volume = tmp_path / "volume"
    overrides = {
        "model_name": str(embedded_assets[0]),
        "dataset_name": str(embedded_assets[1]),
        "use_liger": [False],
        "torch_compile": [False],
        "per_device_train_batch_size": [2],
        "n_runs": 1,
        "max_steps": 4,
    }
    report = run_local(tmp_path / "out", overrides, model_volume=volume)
    run_root = report.parent.parent
    # train_model's input artifacts are download_model's and download_dataset's outputs: what a
    # cluster's launcher copies into every training pod.
    for task, name, kind in (("download-model", "model", "models"), ("download-dataset", "dataset", "datasets")):
        pointer = run_root / task / name
        assert pointer.is_file() and pointer.stat().st_size < 400, name  # bytes, not the files
        staged = Path(json.loads(pointer.read_text())[POINTER_KEY])
        assert staged.parent == volume.resolve() / kind, name
    assert any((volume / "models").glob("*/*.safetensors"))
    (result_path,) = run_root.glob("for-loop-1-*/train-model/result")
    result = json.loads(result_path.read_text())
    assert result["status"] == "ok" and result["metrics"]["tokens_per_s_nonpad"] > 0, result["reason"]
    assert result["model"]["staged_folder"].startswith(str(volume.resolve()))


def _processes() -> dict[int, tuple[int, bytes]]:
    """Every live process here: pid to (parent pid, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                found[int(entry.name)] = (parent, (entry / "cmdline").read_bytes())
            except (OSError, ValueError, IndexError):  # it ended while being read
                continue
    return found


def _descendants(root: int, processes: dict[int, tuple[int, bytes]]) -> set[int]:
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, (parent, _) in processes.items() if parent in frontier} - found
        found |= frontier
    return found


def _kill_the_first_training_task_once_it_trains(cli: subprocess.Popen, deadline: float) -> int:
    """SIGKILL the first train_model task's process (as a lost pod) once its training child runs; its pid."""
    import signal

    while time.monotonic() < deadline and cli.poll() is None:
        processes = _processes()
        mine = _descendants(cli.pid, processes)
        for pid in sorted(mine):
            parent, cmdline = processes[pid]
            is_task = b"kfp.dsl.executor_main" in cmdline and b"--function_to_execute\0train_model\0" in cmdline
            if is_task and any(processes[child][0] == pid for child in mine if child in processes):
                os.kill(pid, signal.SIGKILL)
                return pid
        time.sleep(0.2)
    raise AssertionError("no training task started")


@pytest.mark.slow
def test_a_training_task_killed_like_a_lost_pod_is_retried_and_the_report_has_every_grid_point(
    embedded_assets, tmp_path
):
    """The kfp local runner honours the retry policy inside the ParallelFor, as a backend with #13897 fixed would."""
    args = [
        "local",
        "--output-dir",
        str(tmp_path / "out"),
        "--param",
        f"model_name={json.dumps(str(embedded_assets[0]))}",
        "--param",
        f"dataset_name={json.dumps(str(embedded_assets[1]))}",
        "--param",
        "use_liger=[false]",
        "--param",
        "torch_compile=[false]",
        "--param",
        "per_device_train_batch_size=[2]",
        "--param",
        "n_runs=2",
        "--param",
        "max_steps=6",
        "--param",
        "train_retries=2",  # the cluster's default; a local run's is 0
    ]
    cli = subprocess.Popen(
        [sys.executable, "-m", "liger_bench.cli.main", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    killed = _kill_the_first_training_task_once_it_trains(cli, time.monotonic() + 300)
    stdout, stderr = cli.communicate(timeout=600)
    assert cli.returncode == 0, stderr
    assert "finished in" in stdout and ": 2 ok" in stdout  # the re-run grid point counts once
    (run_root,) = (tmp_path / "out" / "pipeline_root").glob("liger-benchmark-*")
    results = [json.loads(p.read_text()) for p in run_root.glob("for-loop-1-*/train-model/result")]
    assert sorted(r["run_key"] for r in results) == ["baseline-bs2-seq128-r0", "baseline-bs2-seq128-r1"]
    assert all(r["status"] == "ok" for r in results)
    (log,) = (tmp_path / "out" / "logs").glob("local-*.log")
    train_ends = re.findall(r"Task \S*'train-model'\S* finished with status \S*(SUCCESS|FAILURE)", log.read_text())
    assert train_ends == ["FAILURE", "SUCCESS", "SUCCESS"]  # the killed attempt, its re-run, the other run
    assert killed not in _processes()
    assert (tmp_path / "out" / "report.html").is_file()


def test_the_hub_mirror_reaches_the_download_tasks_only_when_given(compiled, tmp_path):
    path = compile_pipeline(tmp_path / "p.yaml", {"hf_endpoint": "http://hf-mirror.internal:8080"})
    spec, _ = yaml.safe_load_all(path.read_text())
    executors = spec["deploymentSpec"]["executors"]
    for name, container in ((name, e["container"]) for name, e in executors.items()):
        endpoints = [env["value"] for env in container.get("env", []) if env["name"] == "HF_ENDPOINT"]
        expected = (
            ["http://hf-mirror.internal:8080"] if name in ("exec-download-model", "exec-download-dataset") else []
        )
        assert endpoints == expected, name
    _, default_spec, _ = compiled
    default_envs = [
        e for x in default_spec["deploymentSpec"]["executors"].values() for e in x["container"].get("env", [])
    ]
    assert "HF_ENDPOINT" not in {env["name"] for env in default_envs}


def test_gpu_hour_price_is_optional_and_reaches_prepare_grid_and_analyze_results(compiled):
    """Issue 27: no price by default; prepare_grid checks it before any GPU, analyze_results prices the tokens."""
    _, spec, _ = compiled
    assert spec["root"]["inputDefinitions"]["parameters"]["gpu_hour_price"]["defaultValue"] == 0.0
    tasks = spec["root"]["dag"]["tasks"]
    for name in ("prepare-grid", "analyze-results"):
        given = tasks[name]["inputs"]["parameters"]["gpu_hour_price"]
        assert given["componentInputParameter"] == "gpu_hour_price", name


def test_the_readmes_list_of_pipeline_parameters_is_the_pipelines_signature():
    """The list is written by hand: it must name every parameter, in the signature's order, and no other."""
    from liger_bench.plan.signature import pipeline_parameters

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    listed = readme.split("Pipeline parameters (all have defaults", 1)[1].split("Compile-time options", 1)[0]
    assert re.findall(r"`([a-z_]+)`", listed.split("):", 1)[1]) == list(pipeline_parameters())
