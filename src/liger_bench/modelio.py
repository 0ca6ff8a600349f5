"""Models: materialise a hub id or a local folder as a self-contained model folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from liger_bench.data import hub_errors, is_local

# Weights in safetensors, configs and tokenizer files; never pickled .bin/.pth weights.
MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
# config.json keys of the context length: most architectures, then GPT-2/GPT-J, then others.
CONTEXT_LENGTH_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


class ModelError(ValueError):
    """The model cannot be used; the message says why and what to do."""


def fetch_model(name: str, destination: str | os.PathLike, revision: str = "") -> str:
    """Copy a local model folder or download a hub snapshot into ``destination``.

    Returns the resolved revision: the hub commit sha, or ``"local"``. ``HF_TOKEN`` from the
    environment is used for gated models.
    """
    destination = Path(destination)
    if is_local(name):
        source = Path(name).expanduser()
        if not source.is_dir():
            raise ModelError(f"model_name: local path {str(source)!r} is not a folder")
        shutil.copytree(source, destination, dirs_exist_ok=True)
        resolved = "local"
    else:
        from huggingface_hub import HfApi, snapshot_download

        token = os.environ.get("HF_TOKEN") or None
        with hub_errors("model", name, revision, ModelError):
            resolved = HfApi(token=token).model_info(name, revision=revision or None).sha
            snapshot_download(
                name,
                revision=resolved,
                local_dir=destination,
                allow_patterns=MODEL_FILE_PATTERNS,
                token=token,
            )
    check_model_folder(destination)
    return resolved


def check_model_folder(folder: str | os.PathLike) -> None:
    """Raise unless ``folder`` holds a config, weights in safetensors and a tokenizer."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise ModelError(f"model folder {str(folder)!r} has no config.json")
    if not any(folder.glob("*.safetensors")):
        raise ModelError(f"model folder {str(folder)!r} has no *.safetensors weights")
    if not any((folder / name).exists() for name in TOKENIZER_FILES):
        raise ModelError(f"model folder {str(folder)!r} has no tokenizer (one of {list(TOKENIZER_FILES)})")


def context_length(config: dict[str, Any]) -> int:
    """The longest sequence the model's positions allow, under the names architectures give it; 0 if unknown."""
    return next((int(config[key]) for key in CONTEXT_LENGTH_KEYS if config.get(key)), 0)


def describe_model(folder: str | os.PathLike) -> dict[str, Any]:
    """Facts prepare_grid validates against: architecture, model type, context length."""
    config = json.loads((Path(folder) / "config.json").read_text())
    return {
        "model_type": config.get("model_type", ""),
        "architectures": config.get("architectures") or [],
        "max_position_embeddings": context_length(config),
        "n_layers": int(config.get("num_hidden_layers") or 0),
        "hidden_size": int(config.get("hidden_size") or 0),
        "vocab_size": int(config.get("vocab_size") or 0),
    }


def prepare_model(name: str, revision: str, destination: str | os.PathLike) -> dict[str, Any]:
    """download_model's work: fetch and check the model; return the artifact metadata."""
    resolved = fetch_model(name, destination, revision)
    return {"name": name, "revision": resolved, **describe_model(destination)}
