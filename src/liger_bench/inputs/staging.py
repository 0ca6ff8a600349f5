"""Inputs staged once on a shared volume, handed on as a pointer of a few hundred bytes.

On a cluster KFP's launcher copies every input artifact from the object store into each pod that
reads it: a model artifact of 7.6 GB (Phi-3-mini) is copied into every training pod. Compiled with
``--model-volume PVC``, download_model and download_dataset write the files once to a ReadWriteMany
volume, in a folder named by their content (name, resolved revision, and for a dataset its split and
this project's version, whose conversion shaped it), and their artifact is a small JSON pointer to
that folder. prepare_grid, find_frontier and train_model read the folder where the pointer says.
Without a volume the artifact holds the files, as before. ``liger-bench local --model-volume DIR`` uses a plain folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The pointer document's marker: an artifact file with this key points to a staged folder.
POINTER_KEY = "liger_bench_staged_folder"
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")


class StagingError(ValueError):
    """The staging folder, or a staged folder a pointer names, is not usable; the message says what to do."""


def staged_name(name: str, revision: str, *qualifiers: str) -> str:
    """The folder name of one input's content: its name, qualifiers and revision, safe as one path segment.

    Args:
        name: Hub id or local path of the input.
        revision: Its resolved revision (hub commit or local content hash).
        qualifiers: What else shaped the files (a dataset's split, the converting code's version).
    """
    parts = [name.strip("/").replace("/", "--"), *qualifiers, revision]
    return _UNSAFE.sub("_", "@".join(parts))[-200:]


def write_inputs(
    write: Callable[[Path], dict[str, Any]],
    destination: str | os.PathLike,
    staging_dir: str,
    kind: str,
    folder_name: Callable[[dict[str, Any]], str],
) -> dict[str, Any]:
    """Write one input with ``write``: into ``destination``, or once into ``staging_dir`` with a pointer there.

    With a staging folder the files go to a new folder beside the staged ones, which then takes the
    content's name by an atomic rename; when that name exists already (the same content, staged by an
    earlier run or a concurrent task) the new copy is dropped and the existing one is used.

    Args:
        write: Writes the input into the folder it gets; returns the artifact metadata.
        destination: The artifact's path.
        staging_dir: The shared volume's folder as this task sees it; empty: no staging.
        kind: ``models`` or ``datasets``, the subfolder of ``staging_dir``.
        folder_name: The content's folder name, from the metadata ``write`` returned.

    Returns:
        The metadata, with ``staged_folder`` when the input was staged.

    Raises:
        StagingError: ``staging_dir`` is not a writable folder.
    """
    if not staging_dir:
        return write(Path(destination))
    root = Path(staging_dir)
    if not root.is_dir() or not os.access(root, os.W_OK | os.X_OK):
        raise StagingError(
            f"staging folder {staging_dir!r} is not a writable folder in this pod; check that the volume given "
            "to 'liger-bench compile --model-volume' exists, is ReadWriteMany and is writable by the pipeline's user"
        )
    (root / kind).mkdir(exist_ok=True)
    incoming = Path(tempfile.mkdtemp(prefix=".incoming-", dir=root / kind))
    incoming.chmod(0o755)  # mkdtemp's 0700 would hide the files from pods of another user
    try:
        info = write(incoming)
        staged = root / kind / folder_name(info)
        try:
            incoming.rename(staged)
        except OSError:  # the same content is staged already: keep that copy
            if not staged.is_dir():
                raise
    finally:
        if incoming.exists():
            shutil.rmtree(incoming)
    with open(destination, "w", encoding="utf-8") as pointer:
        json.dump({POINTER_KEY: str(staged)}, pointer)
    return {**info, "staged_folder": str(staged)}


def input_folder(artifact_path: str | os.PathLike, label: str) -> str:
    """The folder that holds an input's files: the staged folder a pointer names, or the artifact itself.

    Args:
        artifact_path: Path of a model or dataset artifact.
        label: The input, for the message (``model`` or ``dataset``).

    Raises:
        StagingError: The pointer names a folder that is not there (volume not mounted, or cleaned).
    """
    path = Path(artifact_path)
    if not path.is_file():
        return str(path)
    with open(path, encoding="utf-8") as stream:
        staged = json.load(stream)[POINTER_KEY]
    if not Path(staged).is_dir():
        raise StagingError(
            f"{label}: the staged folder {staged!r} is not in this pod: mount the volume given to "
            "'liger-bench compile --model-volume' at the same path in every task, and do not delete its "
            "folders while a cached download still points at them (or run once with caching off)"
        )
    return staged
