"""The embedded default: a Phi-3-architecture model and an alpaca-format dataset made offline.

Everything is generated deterministically from a seed into a cache folder on first use, then
loaded by download_model / download_dataset through exactly the code paths a hub id or a local
path takes. Nothing here is a stand-in for a result: the model has random weights and really
trains; the dataset follows the alpaca columns and prompt template.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from liger_bench.inputs.data import ALPACA_COLUMNS, alpaca_prompt
from liger_bench.inputs.modelio import EMBEDDED_CONFIG_KEY

CACHE_ENV = "LIGER_BENCH_CACHE"
# 2: the model's config.json says what the model is (EMBEDDED_CONFIG_KEY).
GENERATOR_VERSION = 2
FAMILY_NAMES = {"phi3": "Phi-3", "llama": "Llama"}

SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "<|endoftext|>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
}

_SUBJECTS = [
    "the model",
    "a kernel",
    "the cluster",
    "our team",
    "the pipeline",
    "a GPU",
    "the dataset",
    "this node",
]
_VERBS = ["trains", "measures", "schedules", "compares", "reports", "caches", "fuses", "streams", "profiles"]
_OBJECTS = ["tokens", "batches", "gradients", "weights", "metrics", "losses", "logits", "activations", "runs"]
_ADVERBS = ["quickly", "carefully", "twice", "in parallel", "on time", "without padding", "per step", "again"]
_TASKS = [
    "Summarize the following note.",
    "Explain what happens in the sentence.",
    "Rewrite the text in plain words.",
    "List the main points.",
    "Give a short answer.",
    "Describe the process step by step.",
]


@dataclass(frozen=True)
class ModelPreset:
    """Sizes of a generated model: Phi-3 (``family="phi3"``) or Llama (``family="llama"``)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    vocab_size: int
    max_position_embeddings: int
    num_key_value_heads: int = 0  # 0: as many as attention heads (no grouped-query attention)
    family: str = "phi3"


MODEL_PRESETS = {
    # Small enough to train a few steps per second on two CPU cores.
    "tiny": ModelPreset(64, 128, 2, 4, 512, 2048),
    # Phi-3-mini-4k's architecture (transformers' Phi3Config defaults), 3.8B parameters.
    "phi3-mini": ModelPreset(3072, 8192, 32, 32, 32064, 4096),
    # Llama-3-8B's sizes (8.03B parameters: 8 KV heads, vocabulary 128256, untied LM head); the
    # embedded 512-token tokenizer uses the first ids only. For the multi-GPU runs of issue 15.
    "llama3-8b": ModelPreset(4096, 14336, 32, 32, 128256, 8192, num_key_value_heads=8, family="llama"),
}
MODEL_FAMILIES = ("phi3", "llama")


def cache_dir() -> Path:
    """Where generated assets live: ``$LIGER_BENCH_CACHE`` or ``~/.cache/liger-bench``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "liger-bench")


def _sentence(rng: random.Random, min_words: int, max_words: int) -> str:
    words: list[str] = []
    target = rng.randint(min_words, max_words)
    while len(words) < target:
        words += [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_ADVERBS) + "."]
    return " ".join(words[:target]).rstrip(".") + "."


# Output lengths of the "alpaca" profile: log-normal words with this median and log-sd, a long
# right tail like alpaca's answers (most a few sentences, a few pages long). An assumption shaped
# after the dataset, not a fit to it.
ALPACA_MEDIAN_OUTPUT_WORDS = 40
ALPACA_OUTPUT_WORDS_LOG_SD = 0.9
LENGTH_PROFILES = ("uniform", "alpaca")


def _output(rng: random.Random, profile: str, min_words: int, max_words: int) -> str:
    if profile == "uniform":
        return _sentence(rng, min_words, max_words)
    words = round(rng.lognormvariate(math.log(ALPACA_MEDIAN_OUTPUT_WORDS), ALPACA_OUTPUT_WORDS_LOG_SD))
    words = min(max(words, min_words), max_words)
    return _sentence(rng, words, words)


def make_alpaca_rows(
    n_rows: int, seed: int, min_output_words: int = 8, max_output_words: int = 60, lengths: str = "uniform"
) -> list[dict]:
    """Rows with alpaca's columns; ``text`` follows the alpaca template exactly.

    ``lengths``: ``"uniform"`` output words between the bounds, or ``"alpaca"``, log-normal with
    alpaca's long tail, clipped to the bounds.
    """
    if lengths not in LENGTH_PROFILES:
        raise ValueError(f"lengths must be one of {LENGTH_PROFILES}, got {lengths!r}")
    rng = random.Random(seed)
    rows = []
    for _ in range(n_rows):
        instruction = rng.choice(_TASKS)
        context = _sentence(rng, 4, 16) if rng.random() < 0.6 else ""
        output = _output(rng, lengths, min_output_words, max_output_words)
        rows.append(
            {
                "instruction": instruction,
                "input": context,
                "output": output,
                "text": alpaca_prompt(instruction, context) + output,
            }
        )
    return rows


def write_dataset(directory: Path, rows: list[dict]) -> Path:
    """Write rows as ``train.jsonl`` in a folder that ``datasets.load_dataset(folder)`` reads."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "train.jsonl.tmp"
    with tmp.open("w") as handle:
        for row in rows:
            handle.write(json.dumps({column: row[column] for column in ALPACA_COLUMNS}) + "\n")
    tmp.replace(directory / "train.jsonl")
    return directory


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained with ``tokenizers``, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=4096, **SPECIAL_TOKENS)


def model_config(preset: ModelPreset, tokenizer):
    """The transformers config of ``preset`` (random weights are drawn from it), ids from ``tokenizer``."""
    from transformers import LlamaConfig, Phi3Config

    if preset.family not in MODEL_FAMILIES:
        raise ValueError(f"family must be one of {MODEL_FAMILIES}, got {preset.family!r}")
    if len(tokenizer) > preset.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens, more than the model's {preset.vocab_size}")
    common = dict(
        vocab_size=preset.vocab_size,
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.num_hidden_layers,
        num_attention_heads=preset.num_attention_heads,
        num_key_value_heads=preset.num_key_value_heads or preset.num_attention_heads,
        max_position_embeddings=preset.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    if preset.family == "llama":
        return LlamaConfig(**common)
    return Phi3Config(**common, original_max_position_embeddings=preset.max_position_embeddings)


def describe_preset(name: str) -> str:
    """What the model of preset ``name`` is, in words: ``a tiny random Phi-3 (…)``."""
    preset = MODEL_PRESETS[name]
    size = "tiny " if name == "tiny" else ""
    return (
        f"a {size}random {FAMILY_NAMES[preset.family]} (liger-bench's embedded model, preset {name!r}: "
        f"{preset.num_hidden_layers} layers, hidden size {preset.hidden_size}, random weights)"
    )


def write_model(directory: Path, preset_name: str, tokenizer, seed: int) -> Path:
    """Save a randomly initialised model of preset ``preset_name`` with ``tokenizer`` as a local model folder.

    Its config.json carries ``describe_preset``'s words under ``EMBEDDED_CONFIG_KEY``.
    """
    import torch
    from transformers import LlamaForCausalLM, Phi3ForCausalLM

    preset = MODEL_PRESETS[preset_name]
    config = model_config(preset, tokenizer)
    config.update({EMBEDDED_CONFIG_KEY: describe_preset(preset_name)})
    model_class = LlamaForCausalLM if preset.family == "llama" else Phi3ForCausalLM
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = model_class(config).to(torch.bfloat16)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(directory)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return directory


def ensure_embedded(
    root: Path | None = None,
    preset: str = "tiny",
    n_rows: int = 256,
    seed: int = 0,
    min_output_words: int = 8,
    max_output_words: int = 60,
    lengths: str = "uniform",
) -> tuple[Path, Path]:
    """Make (once) and return ``(model_dir, dataset_dir)`` of the embedded default (see ``make_alpaca_rows``)."""
    if preset not in MODEL_PRESETS:
        raise ValueError(f"preset must be one of {sorted(MODEL_PRESETS)}, got {preset!r}")
    root = Path(root or cache_dir())
    tag = f"v{GENERATOR_VERSION}-seed{seed}"
    profile = "" if lengths == "uniform" else f"-{lengths}"
    dataset_dir = root / f"alpaca-{tag}-rows{n_rows}-words{min_output_words}-{max_output_words}{profile}"
    model_dir = root / f"{MODEL_PRESETS[preset].family}-{preset}-{tag}"
    if not (dataset_dir / "train.jsonl").exists():
        write_dataset(dataset_dir, make_alpaca_rows(n_rows, seed, min_output_words, max_output_words, lengths))
    if not (model_dir / "config.json").exists():
        corpus = [row["text"] for row in make_alpaca_rows(512, seed)]
        tokenizer = train_tokenizer(corpus, vocab_size=min(MODEL_PRESETS[preset].vocab_size, 512))
        write_model(model_dir, preset, tokenizer, seed)
    return model_dir, dataset_dir
