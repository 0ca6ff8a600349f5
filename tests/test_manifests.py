"""manifests/: every kustomization renders, passes strict schema validation, and sets what we rely on.

Rendering uses ``kubectl kustomize`` on a temporary copy of manifests/ in which each committed
``*.env.example`` is copied to the ``*.env`` name its secretGenerator reads, as a user would. Schema
validation is kubernetes-validate's ``--strict`` mode (unknown fields are errors). The MLflow
container's rendered command line is then started for real on loopback, with its volumes mapped to
temporary folders and ``$(POD_NAMESPACE)`` expanded as the kubelet would, to show that the flags
work together, that the Host allow-list admits the Service's DNS names and nothing else, and that
artifacts land on the artifacts volume. No cluster is involved: scheduling, the NetworkPolicy's
effect and the probes' timing are not exercised.
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from liger_bench import versions

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
OVERLAY = "overlays/kubeflow"
TRAINER_OVERLAY = "overlays/kubeflow-trainer"
KUSTOMIZATIONS = sorted(str(p.parent.relative_to(MANIFESTS)) for p in MANIFESTS.rglob("kustomization.yaml"))
V2_COMPONENT_LABEL = {"pipelines.kubeflow.org/v2_component": "true"}
SECRET_KEYS = {
    "liger-bench-hf-token": {"HF_TOKEN"},
    "liger-bench-mlflow": {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """Each kustomization directory, rendered from a copy with the .env.example files as .env."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is needed to render the kustomizations")
    copy = tmp_path_factory.mktemp("manifests") / "manifests"
    shutil.copytree(MANIFESTS, copy)
    for example in copy.rglob("*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    documents = {}
    for directory in KUSTOMIZATIONS:
        completed = subprocess.run(
            ["kubectl", "kustomize", str(copy / directory)], capture_output=True, text=True, check=False
        )
        assert completed.returncode == 0, f"kubectl kustomize {directory}: {completed.stderr}"
        documents[directory] = [doc for doc in yaml.safe_load_all(completed.stdout) if doc]
    return documents


def find(documents: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in documents if d["kind"] == kind and name in (None, d["metadata"]["name"])]


def mlflow_pod(documents: list[dict]) -> dict:
    (deployment,) = find(documents, "Deployment", "mlflow")
    return deployment["spec"]["template"]


def mlflow_container(documents: list[dict]) -> dict:
    (container,) = mlflow_pod(documents)["spec"]["containers"]
    return container


def flags(container: dict) -> dict[str, str | None]:
    """``--name=value`` (or bare ``--name``) arguments as a dict."""
    parsed = {}
    for arg in container["args"]:
        name, _, value = arg.partition("=")
        parsed[name] = value or None
    return parsed


def expand_namespace(text: str, namespace: str) -> str:
    return text.replace("$(POD_NAMESPACE)", namespace)


def test_there_is_a_base_and_a_kubeflow_overlay() -> None:
    assert KUSTOMIZATIONS == ["base", OVERLAY, TRAINER_OVERLAY]


def test_the_trainer_overlay_lets_the_pipeline_manage_trainjobs_and_nothing_else(rendered: dict) -> None:
    documents = rendered[TRAINER_OVERLAY]
    (role,) = find(documents, "Role", "liger-bench-trainjobs")
    verbs = ["create", "get", "list", "watch", "delete"]
    assert role["rules"] == [{"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"], "verbs": verbs}]
    (binding,) = find(documents, "RoleBinding", "liger-bench-trainjobs")
    assert binding["roleRef"]["name"] == "liger-bench-trainjobs"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}]
    (claim,) = find(documents, "PersistentVolumeClaim", "liger-bench-trainjobs")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # the task and every node mount it at once
    assert {d["metadata"].get("namespace") for d in documents} == {"kubeflow"}
    # Everything of the kubeflow overlay is there too.
    assert {(d["kind"], d["metadata"]["name"]) for d in rendered[OVERLAY]} < {
        (d["kind"], d["metadata"]["name"]) for d in documents
    }


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_every_kustomization_passes_strict_schema_validation(rendered: dict, directory: str) -> None:
    from kubernetes_validate import utils, validate

    errors = []
    for document in rendered[directory]:
        try:
            validate(document, "1.37.0", strict=True)
        except utils.ValidationError as error:
            errors.append(f"{document['kind']}/{document['metadata']['name']}: {error.message}")
    assert errors == []


def test_the_overlay_puts_everything_in_the_kubeflow_namespace(rendered: dict) -> None:
    assert {d["metadata"].get("namespace") for d in rendered[OVERLAY]} == {"kubeflow"}


def test_mlflow_runs_the_pinned_image(rendered: dict) -> None:
    assert mlflow_container(rendered[OVERLAY])["image"] == versions.MLFLOW_SERVER_IMAGE


def test_mlflow_runs_locked_down(rendered: dict) -> None:
    pod = mlflow_pod(rendered[OVERLAY])
    container = mlflow_container(rendered[OVERLAY])
    pod_security = pod["spec"]["securityContext"]
    security = container["securityContext"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}

    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] > 0 and pod_security["fsGroup"] > 0
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "emptyDir" in mounts["/tmp"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}


def test_mlflow_writes_only_to_mounted_volumes(rendered: dict) -> None:
    container = mlflow_container(rendered[OVERLAY])
    pod = mlflow_pod(rendered[OVERLAY])
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    claims = {d["metadata"]["name"] for d in find(rendered[OVERLAY], "PersistentVolumeClaim")}
    args = flags(container)
    env = {e["name"]: e.get("value") for e in container["env"]}
    database = args["--backend-store-uri"].removeprefix("sqlite:///")

    assert args["--backend-store-uri"].startswith("sqlite:////")
    assert "--serve-artifacts" in args
    for path in (str(Path(database).parent), args["--artifacts-destination"]):
        assert mounts[path]["persistentVolumeClaim"]["claimName"] in claims
    assert env["HOME"] in mounts
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert args["--host"] == "0.0.0.0" and args["--workers"] == "1"
    assert find(rendered[OVERLAY], "Deployment", "mlflow")[0]["spec"]["strategy"]["type"] == "Recreate"


def test_probes_ask_mlflow_health_on_its_port(rendered: dict) -> None:
    container = mlflow_container(rendered[OVERLAY])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/health"
        assert ports.get(check["port"], check["port"]) == 5000


def test_allowed_hosts_admit_the_service_names_and_nothing_else(rendered: dict) -> None:
    from mlflow.server.security_utils import is_allowed_host_header

    container = mlflow_container(rendered[OVERLAY])
    (service,) = find(rendered[OVERLAY], "Service", "mlflow")
    namespace = service["metadata"]["namespace"]
    allowed = expand_namespace(flags(container)["--allowed-hosts"], namespace).split(",")
    (port,) = [p["port"] for p in service["spec"]["ports"]]
    names = [
        f"mlflow.{namespace}.svc.cluster.local",
        f"mlflow.{namespace}.svc",
        f"mlflow.{namespace}",
        "mlflow",
    ]

    for name in names:
        for host in (name, f"{name}:{port}"):
            assert is_allowed_host_header(allowed, host), host
    assert is_allowed_host_header(allowed, "localhost:8080")  # kubectl port-forward
    for host in (
        "evil.example.com",
        "mlflow.evil.example.com:5000",
        "mlflow.other-namespace:5000",
        "10.0.0.7:5000",
    ):
        assert not is_allowed_host_header(allowed, host), host
    assert "*" not in allowed


def test_the_service_selects_the_mlflow_pods(rendered: dict) -> None:
    (service,) = find(rendered[OVERLAY], "Service", "mlflow")
    pod_labels = mlflow_pod(rendered[OVERLAY])["metadata"]["labels"]

    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(5000, "http")]


def test_only_pipeline_pods_reach_mlflow_and_only_on_its_port(rendered: dict) -> None:
    (policy,) = find(rendered[OVERLAY], "NetworkPolicy")
    pod_labels = mlflow_pod(rendered[OVERLAY])["metadata"]["labels"]
    (rule,) = policy["spec"]["ingress"]

    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert rule["ports"] == [{"protocol": "TCP", "port": 5000}]
    assert [peer["podSelector"] for peer in rule["from"]] == [{"matchLabels": V2_COMPONENT_LABEL}]
    assert all(set(peer) == {"podSelector", "namespaceSelector"} for peer in rule["from"])


def test_the_volumes_and_secrets_the_pipeline_names_exist(rendered: dict) -> None:
    claims = {d["metadata"]["name"]: d for d in find(rendered[OVERLAY], "PersistentVolumeClaim")}
    secrets = {d["metadata"]["name"]: d for d in find(rendered[OVERLAY], "Secret")}

    assert "liger-bench-hf-cache" in claims
    # --model-volume's volume: every training pod, on any node, mounts it while the others do.
    assert claims["liger-bench-inputs"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert set(secrets) == set(SECRET_KEYS)  # exact names: no hash suffix
    assert all(not secret.get("data") for secret in secrets.values()), "the templates must hold no values"


def test_no_secret_value_is_committed() -> None:
    examples = sorted(MANIFESTS.rglob("*.env.example"))
    tracked = subprocess.run(
        ["git", "ls-files", "manifests"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()

    assert {p.name for p in examples} == {"hf-token.env.example", "mlflow-credentials.env.example"}
    for example in examples:
        for line in example.read_text().splitlines():
            assert not re.match(r"\s*[A-Za-z_]+\s*=\s*\S", line), f"{example}: {line!r} sets a value"
        real = example.with_suffix("")
        ignored = subprocess.run(["git", "check-ignore", "-q", str(real)], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{real} must be git-ignored"
        assert str(real.relative_to(ROOT)) not in tracked
    mentioned = {m for p in examples for m in re.findall(r"^#\s*([A-Z_]+)=", p.read_text(), flags=re.M)}
    assert mentioned == set().union(*SECRET_KEYS.values())
    for manifest in MANIFESTS.rglob("*.yaml"):
        for document in yaml.safe_load_all(manifest.read_text()):
            assert not (document or {}).get("kind") == "Secret", f"{manifest} commits a Secret"


@pytest.mark.slow
def test_the_rendered_mlflow_command_serves_the_service_names(rendered: dict, tmp_path: Path) -> None:
    """Start the container's exact command line on loopback and talk to it as pipeline pods would."""
    from mlflow import MlflowClient
    from mlflow_server import _stop, _wait_healthy, free_port

    container = mlflow_container(rendered[OVERLAY])
    namespace = find(rendered[OVERLAY], "Deployment", "mlflow")[0]["metadata"]["namespace"]
    volumes = {m["mountPath"]: tmp_path / m["name"] for m in container["volumeMounts"]}
    for folder in volumes.values():
        folder.mkdir()

    mount_paths = "|".join(re.escape(mount) for mount in sorted(volumes, key=len, reverse=True))
    mount_path = re.compile(rf"(?<![\w.-])({mount_paths})(?=/|$)")

    def localize(text: str) -> str:
        return mount_path.sub(lambda match: str(volumes[match[1]]), expand_namespace(text, namespace))

    port = free_port()
    args = [localize(a) for a in container["args"]]
    args = [a.replace("--host=0.0.0.0", "--host=127.0.0.1").replace("--port=5000", f"--port={port}") for a in args]
    assert container["command"][0] == "mlflow"
    command = [sys.executable, "-m", "mlflow", *container["command"][1:], *args]
    env = {e["name"]: localize(e["value"]) for e in container["env"] if "value" in e}
    env = {**env, "PATH": str(Path(sys.executable).parent), "TMPDIR": str(volumes["/tmp"])}
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True
        )
    try:
        uri = f"http://127.0.0.1:{port}"
        _wait_healthy(uri, process, log_path)
        statuses = {}
        for host in (
            f"mlflow.{namespace}.svc.cluster.local:5000",
            f"mlflow.{namespace}:5000",
            "mlflow:5000",
            "evil.example.com",
        ):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host})
            statuses[host] = connection.getresponse().status
            connection.close()
        client = MlflowClient(tracking_uri=uri)
        run = client.create_run(client.create_experiment("manifest-probe"))
        client.log_text(run.info.run_id, "probe", "probe.txt")
    finally:
        _stop(process)

    assert statuses == {
        f"mlflow.{namespace}.svc.cluster.local:5000": 200,
        f"mlflow.{namespace}:5000": 200,
        "mlflow:5000": 200,
        "evil.example.com": 403,
    }
    # Run from tmp_path, the server wrote nowhere but its volumes (the root filesystem is read-only).
    assert {p.name for p in tmp_path.iterdir()} == {f.name for f in volumes.values()} | {log_path.name}
    assert (volumes["/mlflow/db"] / "mlflow.db").is_file()
    assert [p.read_text() for p in volumes["/mlflow/artifacts"].rglob("probe.txt")] == ["probe"]
