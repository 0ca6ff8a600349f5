"""Build, and optionally push, the project's CPU and CUDA images.

Every version the Dockerfiles use arrives as a ``--build-arg`` read from ``liger_bench.versions``;
the images are named by ``versions.image(kind, registry, tag)``, as the compiled pipeline names them.

    python images/build.py --registry ghcr.io/acme --push
    python images/build.py --registry ghcr.io/acme --dry-run   # print the docker commands only
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

from liger_bench import versions

REPO_ROOT = Path(__file__).resolve().parent.parent
KINDS = ("cpu", "cuda")
TORCH_INDEX = "https://download.pytorch.org/whl"


def python_version() -> str:
    """The Python of both images: the one of the CPU base image (``python:3.11-slim-…`` → ``3.11``)."""
    match = re.fullmatch(r"python:(\d+\.\d+)[.\w-]*", versions.CPU_BASE_IMAGE)
    if not match:
        raise ValueError(f"CPU_BASE_IMAGE must look like 'python:X.Y-…', got {versions.CPU_BASE_IMAGE!r}")
    return match.group(1)


def cuda_wheel_tag() -> str:
    """PyTorch's wheel tag for the CUDA of the base image (``nvidia/cuda:12.8.1-…`` → ``cu128``)."""
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-[\w.-]+", versions.CUDA_BASE_IMAGE)
    if not match:
        raise ValueError(f"CUDA_BASE_IMAGE must look like 'nvidia/cuda:X.Y.Z-…', got {versions.CUDA_BASE_IMAGE!r}")
    return f"cu{match.group(1)}{match.group(2)}"


def build_args(kind: str) -> dict[str, str]:
    """The ``--build-arg`` values of one image's Dockerfile."""
    if kind == "cpu":
        return {
            "BASE_IMAGE": versions.CPU_BASE_IMAGE,
            "TORCH_VERSION": versions.TORCH_CPU,
            "TORCH_INDEX_URL": f"{TORCH_INDEX}/cpu",
        }
    if kind == "cuda":
        return {
            "BASE_IMAGE": versions.CUDA_BASE_IMAGE,
            "PYTHON_VERSION": python_version(),
            "TORCH_VERSION": versions.TORCH_CUDA,
            "TORCH_INDEX_URL": f"{TORCH_INDEX}/{cuda_wheel_tag()}",
        }
    raise ValueError(f"image kind must be one of {KINDS}, got {kind!r}")


def plan(
    registry: str | None,
    tag: str | None,
    kinds: tuple[str, ...] = KINDS,
    push: bool = False,
    platform: str = "",
) -> list[list[str]]:
    """The docker commands that build (and push) the images, run from the repository root.

    Args:
        registry: Registry and namespace, e.g. ``ghcr.io/acme``; None: ``$LIGER_BENCH_REGISTRY``, else
            the project's default registry.
        tag: Image tag; None: the package version.
        kinds: Which images to build.
        push: Also push each image after it is built.
        platform: ``docker build --platform`` value, e.g. ``linux/amd64``; empty: the builder's own.

    Returns:
        One argument list per docker invocation, in order.

    """
    commands = []
    for kind in kinds:
        reference = versions.image(kind, registry, tag)
        build = ["docker", "build", "--file", f"images/{kind}/Dockerfile", "--tag", reference]
        if platform:
            build += ["--platform", platform]
        for name, value in build_args(kind).items():
            build += ["--build-arg", f"{name}={value}"]
        commands.append([*build, "."])
        if push:
            commands.append(["docker", "push", reference])
    return commands


def make_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    registry_help = f"registry/namespace (default: ${versions.REGISTRY_ENV} or {versions.DEFAULT_REGISTRY})"
    parser.add_argument("--registry", default=None, help=registry_help)
    parser.add_argument("--tag", default=None, help=f"image tag (default: {versions.package_version()})")
    parser.add_argument("--kind", choices=KINDS, action="append", help="build only this image (repeatable)")
    parser.add_argument("--platform", default="", help="target platform, e.g. linux/amd64")
    parser.add_argument("--push", action="store_true", help="push the images after building them")
    parser.add_argument("--dry-run", action="store_true", help="print the docker commands, run nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Build (and push) the images, or print the commands with ``--dry-run``."""
    args = make_parser().parse_args(argv)
    kinds = tuple(args.kind) if args.kind else KINDS
    for command in plan(args.registry, args.tag, kinds, args.push, args.platform):
        print(shlex.join(command), flush=True)
        if not args.dry_run:
            subprocess.run(command, cwd=REPO_ROOT, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
