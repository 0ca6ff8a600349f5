"""The one place that pins versions and names images.

pyproject.toml, the Dockerfiles under ``images/`` and the components' ``base_image`` all read
from or are checked against this module (``tests/test_images.py``).
"""

from __future__ import annotations

import os
from importlib import metadata

PACKAGE_NAME = "kfp-liger-bench"

# Exact pins for everything that shapes a measurement or runs inside a pipeline pod.
PINS: dict[str, str] = {
    "kfp": "2.17.3",
    "kfp-kubernetes": "2.17.3",
    "transformers": "5.24.0",
    "trl": "1.16.0",
    "accelerate": "1.15.0",
    "datasets": "5.2.0",
    "tokenizers": "0.23.3",
    "huggingface-hub": "2.4.0",
    "liger-kernel": "0.8.5",
    "mlflow": "3.17.2",
    "pandas": "3.1.1",
    "matplotlib": "3.11.2",
    "seaborn": "0.13.2",
    # The Kubeflow Trainer's TrainJob schema (pydantic models), for grid points of several nodes.
    "kubeflow-trainer-api": "2.3.0",
    # NVML's bindings (the pynvml module): the GPUs' energy counter (liger_bench.measure.energy).
    "nvidia-ml-py": "13.615.71",
}

# torch is pinned per image: CPU wheels for the CPU image and CI, a CUDA build for training.
TORCH_CPU = "2.13.0"
TORCH_CUDA = "2.13.0"
CUDA_BASE_IMAGE = "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"
# The oldest Linux NVIDIA driver of the base image's CUDA (CUDA 12.8 Update 1: NVIDIA's CUDA Toolkit
# release notes, Table 3); a new base image needs its own entry (tests/test_kfp_backend.py).
CUDA_MIN_DRIVER = {"12.8.1": "570.124.06"}
CPU_BASE_IMAGE = "python:3.11-slim-bookworm"
MLFLOW_SERVER_IMAGE = "ghcr.io/mlflow/mlflow:v" + PINS["mlflow"]

REGISTRY_ENV = "LIGER_BENCH_REGISTRY"
DEFAULT_REGISTRY = "ghcr.io/kfp-liger-bench"


def package_version() -> str:
    """The installed version of this project, used as the image tag."""
    try:
        return metadata.version(PACKAGE_NAME)
    except metadata.PackageNotFoundError:
        return "0.0.0.dev0"


def image(kind: str, registry: str | None = None, tag: str | None = None) -> str:
    """Full reference of one of the project's images (``kind`` is ``cpu`` or ``cuda``).

    The registry comes from ``$LIGER_BENCH_REGISTRY`` at compile time, the tag from the package
    version, so a compiled pipeline always names the images built from the same source.
    """
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"image kind must be 'cpu' or 'cuda', got {kind!r}")
    registry = (registry or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY).rstrip("/")
    return f"{registry}/liger-bench-{kind}:{tag or package_version()}"
