"""Models: materialise a hub id or a local folder as a self-contained model folder."""

from __future__ import annotations

import json
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from liger_bench.inputs.hub import from_hub, hub_token, is_local
from liger_bench.inputs.localfiles import check_revision

# Weights in safetensors, configs and tokenizer files; never pickled .bin/.pth weights.
MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
# Names of the context length in model configs: most architectures, then GPT-2/GPT-J, then others.
CONTEXT_LENGTH_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
# The config.json key under which a model liger-bench generated (liger_bench.embedded) says what it is.
EMBEDDED_CONFIG_KEY = "liger_bench_embedded"
# Where a context length read from the model's configuration comes from (the fallback: the tokenizer).
CONFIG_SOURCE = "the model's config"
# transformers' model_max_length of a tokenizer that states none is int(1e30); real limits are far below this.
UNSET_MODEL_MAX_LENGTH = 10**12


class ModelError(ValueError):
    """The model cannot be used; the message says why and what to do."""


def fetch_model(name: str, destination: str | os.PathLike, revision: str = "", network_retries: int = 0) -> str:
    """Check a local model folder and copy it, or download a hub snapshot, into ``destination``.

    Returns the resolved revision: the hub commit sha, or a local folder's content hash (a
    ``revision`` given for a local folder must match it). ``HF_TOKEN`` from the environment is used
    for gated models; network errors are retried ``network_retries`` times.
    """
    destination = Path(destination)
    if is_local(name):
        source = Path(name).expanduser()
        if not source.is_dir():
            raise ModelError(f"model_name: local path {str(source)!r} is not a folder")
        try:
            resolved = check_revision(source, revision, "model_revision")
        except ValueError as err:
            raise ModelError(str(err)) from err
        check_model_folder(source, f"model_name: the folder {str(source)!r}")
        shutil.copytree(source, destination, dirs_exist_ok=True)
        return resolved

    from huggingface_hub import HfApi, snapshot_download

    token = hub_token()

    def download() -> str:
        sha = HfApi(token=token).model_info(name, revision=revision or None).sha
        snapshot_download(name, revision=sha, local_dir=destination, allow_patterns=MODEL_FILE_PATTERNS, token=token)
        return sha

    resolved = from_hub(download, "model", name, revision, ModelError, network_retries)
    check_model_folder(destination, f"model_name: the hub model {name!r} at {resolved}")
    return resolved


def check_model_folder(folder: str | os.PathLike, label: str) -> None:
    """Raise ``ModelError`` unless ``folder`` holds a model transformers can load as a causal LM.

    Checked on the CPU, before any GPU: a config of a model type transformers knows as a causal
    LM; safetensors weights with intact headers, every shard a sharded index names present; a
    tokenizer that loads, has a pad or EOS token for padding, and whose token ids fit the model's
    embedding. ``label`` names the folder in messages as the user knows it.
    """
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise ModelError(f"{label} has no config.json")
    config = _read_config(folder, label)
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise ModelError(f"{label} has no *.safetensors weights")
    index = folder / "model.safetensors.index.json"
    if index.exists():
        missing = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()) - {w.name for w in weights})
        if missing:
            raise ModelError(f"{label}: model.safetensors.index.json names shards that are missing: {missing}")
    for file in weights:
        problem = safetensors_problem(file)
        if problem:
            raise ModelError(f"{label}: the weights file {file.name!r} is unusable ({problem})")
    if not any((folder / name).exists() for name in TOKENIZER_FILES):
        raise ModelError(f"{label} has no tokenizer (one of {list(TOKENIZER_FILES)})")
    _check_tokenizer(folder, label, int(config.get("vocab_size") or 0))


def _read_config(folder: Path, label: str) -> dict[str, Any]:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{label}: config.json is not valid JSON ({err})") from err
    model_type = config.get("model_type", "") if isinstance(config, dict) else ""
    if model_type not in CONFIG_MAPPING_NAMES:
        raise ModelError(
            f"{label}: config.json has model_type {model_type!r}, which transformers "
            f"{metadata.version('transformers')} does not know"
        )
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelError(
            f"{label}: model_type {model_type!r} has no causal language model in transformers; accepted: one of "
            f"{sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)}"
        )
    _refuse_multimodal(model_type, label)
    return config


def _refuse_multimodal(model_type: str, label: str) -> None:
    """Refuse a multimodal model (its config nests a text and a vision or audio config).

    transformers maps some of them (Gemma-3, Llama-4, Qwen3.5) to a causal-LM class, but their
    sizes and context length live in the nested text config, which the FLOP model, the context
    check and the training setup do not read: such a run would fail only on the GPU.
    """
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    nested = CONFIG_MAPPING[model_type].sub_configs
    if not nested:
        return
    text_type = getattr(nested.get("text_config"), "model_type", "")
    if text_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        instead = f"its language model saved alone as model_type {text_type!r}"
    else:
        instead = "a text-only causal language model"
    raise ModelError(
        f"{label}: model_type {model_type!r} is multimodal (its config nests {sorted(nested)}); this benchmark "
        f"fine-tunes text-only causal language models; accepted: {instead}"
    )


def safetensors_problem(file: Path) -> str:
    """Why the safetensors file's header is unreadable or does not cover the file; "" when intact."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as weights:
            weights.keys()
    except (SafetensorError, OSError) as err:
        return f"{type(err).__name__}: {err}"
    return ""


def _check_tokenizer(folder: Path, label: str, vocab_size: int) -> None:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:  # noqa: BLE001 - any tokenizer that does not load is refused here, not on a GPU
        raise ModelError(f"{label}: the tokenizer does not load ({type(err).__name__}: {err})") from err
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
        raise ModelError(f"{label}: the tokenizer has neither a pad nor an EOS token, so batches cannot be padded")
    if vocab_size and len(tokenizer) > vocab_size:
        raise ModelError(
            f"{label}: the tokenizer has {len(tokenizer)} tokens but config.json's vocab_size is {vocab_size}: "
            "token ids past the embedding would fail on the GPU; use the tokenizer made for this model"
        )


def context_length(folder: str | os.PathLike) -> tuple[int, str]:
    """The longest sequence the model in ``folder`` takes, and where that number comes from.

    Read from the model's configuration as transformers builds it (so a key config.json leaves out
    is the config class's default, which the model then uses), under any of the names
    architectures give it (``CONTEXT_LENGTH_KEYS``), also in a nested ``text_config``. Where the
    configuration states none, the fallback is the tokenizer's ``model_max_length``; where that is
    unset too, ``(0, "")``: the length is unknown and cannot be checked.
    """
    from transformers import AutoConfig

    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder)
    written = json.loads((folder / "config.json").read_text())
    for prefix, part in (("", config), ("text_config.", getattr(config, "text_config", None))):
        for key in CONTEXT_LENGTH_KEYS:
            value = getattr(part, key, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                name = part.attribute_map.get(key, key)  # GPT-2 answers to max_position_embeddings, stores n_positions
                stated = name in (written.get("text_config", {}) if prefix else written)
                where = "config.json" if stated else f"the default of transformers' {type(part).__name__}"
                return value, f"{CONFIG_SOURCE}: {prefix}{name} in {where}"
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.exists():
        value = json.loads(tokenizer_config.read_text()).get("model_max_length")
        if isinstance(value, int) and 0 < value < UNSET_MODEL_MAX_LENGTH:
            return value, "the tokenizer: model_max_length in tokenizer_config.json"
    return 0, ""


def describe_model(folder: str | os.PathLike) -> dict[str, Any]:
    """Facts prepare_grid validates against: architecture, model type, context length and its source.

    A model liger-bench generated (``liger_bench.embedded``) also says what it is, under ``embedded``.
    """
    config = json.loads((Path(folder) / "config.json").read_text())
    context, source = context_length(folder)
    facts = {
        "model_type": config.get("model_type", ""),
        "architectures": config.get("architectures") or [],
        "context_length": context,
        "context_length_source": source,
        "n_layers": int(config.get("num_hidden_layers") or 0),
        "hidden_size": int(config.get("hidden_size") or 0),
        "vocab_size": int(config.get("vocab_size") or 0),
    }
    if config.get(EMBEDDED_CONFIG_KEY):
        facts["embedded"] = str(config[EMBEDDED_CONFIG_KEY])
    return facts
