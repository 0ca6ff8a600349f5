"""The embedded model presets: the Llama-3-8B-shaped one has Llama-3-8B's sizes; the Phi-3 ones are unchanged."""

import sys
from pathlib import Path

import pytest
import torch

from liger_bench.inputs.embedded import MODEL_PRESETS, describe_preset, ensure_embedded, model_config
from liger_bench.inputs.modelio import describe_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import memory_model  # noqa: E402


class _Tokenizer:
    bos_token_id, eos_token_id, pad_token_id = 4, 1, 2

    def __len__(self) -> int:
        return 512


def _meta_model(preset: str):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(model_config(MODEL_PRESETS[preset], _Tokenizer()))


@pytest.mark.parametrize(
    ("preset", "arch"), [("llama3-8b", memory_model.LLAMA3_8B), ("phi3-mini", memory_model.PHI3_MINI)]
)
def test_preset_has_the_sizes_the_memory_model_assumes(preset, arch):
    model = _meta_model(preset)
    assert sum(p.numel() for p in model.parameters()) == arch.params
    assert model.config.tie_word_embeddings is False


def test_llama_preset_is_a_llama_with_grouped_query_attention():
    config = model_config(MODEL_PRESETS["llama3-8b"], _Tokenizer())
    assert config.model_type == "llama"
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (32, 8, 128256)
    assert config.max_position_embeddings >= 2048
    assert config.pad_token_id == 2


def test_phi3_presets_keep_their_config_and_cache_folder(tmp_path):
    config = model_config(MODEL_PRESETS["phi3-mini"], _Tokenizer())
    assert config.model_type == "phi3"
    assert config.num_key_value_heads == config.num_attention_heads == 32
    assert config.original_max_position_embeddings == 4096
    model_dir, _ = ensure_embedded(tmp_path, preset="tiny", n_rows=8)
    assert model_dir.name == "phi3-tiny-v2-seed0"
    assert describe_model(model_dir)["embedded"] == describe_preset("tiny")
    assert describe_preset("tiny").startswith("a tiny random Phi-3 (liger-bench's embedded model, preset 'tiny'")


def test_a_tokenizer_larger_than_the_vocabulary_is_refused():
    small = MODEL_PRESETS["tiny"]

    class Big(_Tokenizer):
        def __len__(self) -> int:
            return small.vocab_size + 1

    with pytest.raises(ValueError, match="more than the model's"):
        model_config(small, Big())
