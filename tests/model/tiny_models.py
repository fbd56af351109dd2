"""Tiny randomly initialised LMs of each supported architecture, with their transformers twins."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

from workbench.model.decoder import HookedDecoder


def tiny_hf_configs():
    """Small randomly initialised configs covering each architecture feature we implement."""
    common = dict(vocab_size=97, hidden_size=64, intermediate_size=112, num_hidden_layers=3, max_position_embeddings=128)
    return {
        "gpt2": GPT2Config(vocab_size=97, n_embd=64, n_layer=3, n_head=4, n_positions=64),
        "llama_gqa_llama3_rope": LlamaConfig(
            **common, num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=False,
            rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
        ),
        "llama_linear_rope_tied": LlamaConfig(
            **common, num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True,
            rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
        ),
        "qwen2_bias": Qwen2Config(**common, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False),
    }


def make_tiny(name: str, seed: int = 0):
    """(hf_model, HookedDecoder) with the same random weights."""
    torch.manual_seed(seed)
    cfg = tiny_hf_configs()[name]
    cfg._attn_implementation = "eager"
    hf = AutoModelForCausalLM.from_config(cfg).eval()
    # random init leaves biases and norm weights at 0 / 1: perturb every tensor so each one matters
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return hf, HookedDecoder.from_hf_model(hf)
