"""What a measurement ran on: GPU, driver and library versions."""

from __future__ import annotations

import platform
import shutil
import subprocess
from importlib import metadata

LIBRARIES = (
    "torch",
    "transformers",
    "trl",
    "accelerate",
    "liger-kernel",
    "triton",
    "datasets",
    "kfp",
    "mlflow",
)


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape a measurement (absent ones omitted)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def nvidia_driver_version() -> str:
    """Driver version as reported by nvidia-smi, or '' where there is none."""
    if not shutil.which("nvidia-smi"):
        return ""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return ""
    return out.strip().splitlines()[0] if out.strip() else ""


def capture_environment() -> dict:
    """Describe the node: device, GPU name/count/memory, driver, CUDA and library versions."""
    import torch

    env = {
        "python": platform.python_version(),
        "hostname": platform.node(),
        "libraries": library_versions(),
        "cuda_available": torch.cuda.is_available(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "gpu_name": "",
        "gpu_count": 0,
        "gpu_memory_gb": 0.0,
        "driver": "",
        "cuda": torch.version.cuda or "",
        "bf16_supported": False,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(
            gpu_name=props.name,
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gb=round(props.total_memory / 2**30, 2),
            driver=nvidia_driver_version(),
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    return env
