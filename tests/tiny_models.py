"""Tiny random-weight models of every architecture liger-kernel patches, with the embedded tokenizer.

A model folder here is what download_model makes of a hub model: ``config.json``, safetensors
weights and a tokenizer. The config is transformers' own for the model type
(``AutoConfig.for_model``) with small sizes; everything else stays the architecture's default.
"""

from __future__ import annotations

from pathlib import Path

# Small sizes under the names configs use; a config ignores a size its architecture lacks.
TINY_SIZES = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,  # DeepSeek's latent attention needs as many as there are heads
    "head_dim": 16,
    "max_position_embeddings": 2048,
    # Mixture-of-experts models.
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
    "num_experts": 4,
    "num_local_experts": 4,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "n_group": 1,
    "topk_group": 1,
    # Falcon-H1's Mamba mixer; Qwen3-Next's (and Qwen3.5's) linear attention.
    "mamba_d_ssm": 64,
    "mamba_n_heads": 4,
    "mamba_d_state": 16,
    "mamba_chunk_size": 16,
    "linear_key_head_dim": 16,
    "linear_value_head_dim": 16,
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,
    # DeepSeek's low-rank attention; Gemma-4's per-layer embeddings.
    "q_lora_rank": 32,
    "kv_lora_rank": 32,
    "o_lora_rank": 32,
    "qk_rope_head_dim": 16,
    "qk_nope_head_dim": 16,
    "v_head_dim": 16,
    "vocab_size_per_layer_input": 512,
    "hidden_size_per_layer_input": 16,
}


def text_lm_refusal(model_type: str) -> str:
    """Why transformers cannot build ``model_type`` as a text-only causal LM; "" when it can."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "transformers has no causal-LM class for this config (a multimodal model or a part of one)"
    sub_configs = sorted(AutoConfig.for_model(model_type).sub_configs)
    if sub_configs:
        return f"multimodal: its config nests {sub_configs}"
    return ""


def write_tiny_model(model_type: str, folder: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """Save a tiny random ``model_type`` causal LM with the tokenizer of ``tokenizer_dir`` into ``folder``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = AutoConfig.for_model(
        model_type,
        **TINY_SIZES,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
