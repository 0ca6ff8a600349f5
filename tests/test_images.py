"""images/: the Dockerfiles, build.py and pyproject agree with liger_bench.versions, and the install resolves.

There is no Docker engine here, so no image is built. What is checked instead: every version the
Dockerfiles use arrives as a build argument that build.py fills from versions.py; the build plan
(``build.py --dry-run``, the real CLI) names the images as the compiled pipeline does; the files the
Dockerfiles copy exist and pass their .dockerignore; and pip, asked the very install the Dockerfiles
run (torch pinned, then the project under a torch constraint), resolves it to the pinned versions.
PyTorch's own wheel index (download.pytorch.org) is not reachable here, so that resolution takes the
same torch version from the configured package index instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from liger_bench import versions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli along on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "images" / "build.py"
KINDS = ("cpu", "cuda")
TORCH = {"cpu": versions.TORCH_CPU, "cuda": versions.TORCH_CUDA}
BASE_IMAGE = {"cpu": versions.CPU_BASE_IMAGE, "cuda": versions.CUDA_BASE_IMAGE}


def load_build_module():
    spec = importlib.util.spec_from_file_location("images_build", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = load_build_module()


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def dockerfile_lines(kind: str) -> list[str]:
    """Instruction lines of a Dockerfile, comments dropped and continuation lines joined."""
    text = (ROOT / "images" / kind / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [line.strip() for line in "\n".join(lines).replace("\\\n", " ").splitlines() if line.strip()]


def dry_run(*args: str, env: dict[str, str] | None = None) -> list[list[str]]:
    """The docker commands ``images/build.py --dry-run`` prints, each split back into arguments."""
    completed = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--dry-run", *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return [shlex.split(line) for line in completed.stdout.splitlines()]


def option_values(command: list[str], option: str) -> list[str]:
    return [command[i + 1] for i, arg in enumerate(command) if arg == option]


def test_pyproject_pins_exactly_what_versions_pins() -> None:
    exact = {}
    for line in pyproject()["project"]["dependencies"]:
        requirement = Requirement(line)
        specs = list(requirement.specifier)
        if len(specs) == 1 and specs[0].operator == "==":
            exact[requirement.name] = specs[0].version

    assert exact == versions.PINS


def test_pyproject_leaves_torch_to_the_images() -> None:
    (torch,) = [Requirement(r) for r in pyproject()["project"]["dependencies"] if Requirement(r).name == "torch"]

    assert not any(spec.operator == "==" for spec in torch.specifier)
    assert torch.specifier.contains(versions.TORCH_CPU) and torch.specifier.contains(versions.TORCH_CUDA)


@pytest.mark.parametrize("kind", KINDS)
def test_build_args_come_from_versions(kind: str) -> None:
    args = build.build_args(kind)

    assert args["BASE_IMAGE"] == BASE_IMAGE[kind]
    assert args["TORCH_VERSION"] == TORCH[kind]
    assert args["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/")


def test_cuda_torch_build_matches_the_base_image_cuda() -> None:
    cuda_version = re.search(r":(\d+)\.(\d+)\.", versions.CUDA_BASE_IMAGE)

    assert build.build_args("cuda")["TORCH_INDEX_URL"].endswith(f"/cu{cuda_version[1]}{cuda_version[2]}")
    assert build.build_args("cpu")["TORCH_INDEX_URL"].endswith("/cpu")


def test_both_images_run_the_python_of_the_cpu_base_image() -> None:
    python = build.build_args("cuda")["PYTHON_VERSION"]

    assert versions.CPU_BASE_IMAGE.startswith(f"python:{python}-")
    assert SpecifierSet(pyproject()["project"]["requires-python"]).contains(Version(python))


@pytest.mark.parametrize("kind", KINDS)
def test_dockerfile_gets_every_version_from_a_build_arg(kind: str) -> None:
    lines = dockerfile_lines(kind)
    declared = {line.split()[1].split("=")[0] for line in lines if line.startswith("ARG ")}

    assert declared == set(build.build_args(kind))
    assert not any("=" in line for line in lines if line.startswith("ARG ")), "ARG defaults would duplicate pins"
    assert [line for line in lines if line.startswith("FROM ")] == ["FROM ${BASE_IMAGE}"]
    literal_versions = [line for line in lines if re.search(r"\d+\.\d+", line)]
    assert literal_versions == [], "versions belong in liger_bench/versions.py"


@pytest.mark.parametrize("kind", KINDS)
def test_dockerfile_runs_as_a_numeric_non_root_user(kind: str) -> None:
    lines = dockerfile_lines(kind)
    env = " ".join(line for line in lines if line.startswith("ENV "))

    assert lines[-2:] == ["USER 1000", "WORKDIR /home/bench"]
    assert "PIP_NO_CACHE_DIR=1" in env
    assert re.search(r"HF_HOME=/\S+", env)
    assert not re.search(r"(TOKEN|PASSWORD|SECRET)", "\n".join(lines)), "no credentials in images"


@pytest.mark.parametrize("kind", KINDS)
def test_dockerfile_copies_the_whole_installable_project(kind: str) -> None:
    copied = set()
    for line in dockerfile_lines(kind):
        if line.startswith("COPY "):
            copied.update(line.split()[1:-1])
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / "images" / kind / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    package_roots = {Path(path).parts[0] for path in pyproject()["tool"]["setuptools"]["package-dir"].values()}

    assert all((ROOT / path).exists() for path in copied)
    assert copied <= allowed, "the .dockerignore must let every copied path into the build context"
    assert package_roots | {"pyproject.toml", pyproject()["project"]["readme"]} <= copied


def test_pyproject_packages_every_folder_that_is_a_package() -> None:
    """An image installs only the listed packages: a stage folder left out would be missing there."""
    setuptools = pyproject()["tool"]["setuptools"]
    folders = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            folders.add(".".join((package, *init.parent.relative_to(ROOT / folder).parts)))
    assert set(setuptools["packages"]) == folders | {"liger_bench"}


def test_build_plan_names_the_images_as_the_pipeline_does() -> None:
    commands = dry_run("--registry", "registry.example:5000/team", "--tag", "1.2.3", "--push")

    builds = [c for c in commands if c[:2] == ["docker", "build"]]
    pushes = [c for c in commands if c[:2] == ["docker", "push"]]
    expected = [versions.image(kind, "registry.example:5000/team", "1.2.3") for kind in KINDS]
    assert [option_values(c, "--tag") for c in builds] == [[image] for image in expected]
    assert [c[2:] for c in pushes] == [[image] for image in expected]
    assert expected == [
        "registry.example:5000/team/liger-bench-cpu:1.2.3",
        "registry.example:5000/team/liger-bench-cuda:1.2.3",
    ]
    for kind, command in zip(KINDS, builds, strict=True):
        assert option_values(command, "--file") == [f"images/{kind}/Dockerfile"]
        assert command[-1] == "."
        passed = dict(arg.split("=", 1) for arg in option_values(command, "--build-arg"))
        assert passed == build.build_args(kind)


def test_build_plan_defaults_to_the_package_version_and_the_registry_variable() -> None:
    commands = dry_run("--kind", "cuda", env={versions.REGISTRY_ENV: "quay.io/lab"})

    assert [option_values(c, "--tag") for c in commands] == [
        [f"quay.io/lab/liger-bench-cuda:{versions.package_version()}"]
    ]


def _index_url() -> str:
    return os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def _index_reachable() -> bool:
    try:
        with urllib.request.urlopen(f"{_index_url()}/pip/", timeout=10):
            return True
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.parametrize("kind", KINDS)
def test_the_install_step_resolves_to_the_pins(kind: str, tmp_path: Path) -> None:
    """pip resolves what the Dockerfile installs: ``torch==X``, then the project under ``torch==X``."""
    if not _index_reachable():
        pytest.skip(f"package index {_index_url()} not reachable")
    constraint = tmp_path / "torch-constraint.txt"
    constraint.write_text(f"torch=={TORCH[kind]}\n")
    report = tmp_path / "report.json"
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), "--constraint", str(constraint), f"torch=={TORCH[kind]}", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]

    resolved = {
        item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert {name: resolved.get(name) for name in versions.PINS} == versions.PINS
    assert Version(resolved["torch"]).base_version == TORCH[kind]
    assert resolved[versions.PACKAGE_NAME] == versions.package_version()
