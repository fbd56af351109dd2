"""Tiny randomly initialised LMs of each supported architecture, with their transformers twins."""

from __future__ import annotations

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

from workbench.model.decoder import HookedDecoder


def tiny_hf_configs():
    """Small randomly initialised configs covering each architecture feature we implement."""
    common = dict(
        vocab_size=97, hidden_size=64, intermediate_size=112, num_hidden_layers=3, max_position_embeddings=128
    )
    return {
        "gpt2": GPT2Config(vocab_size=97, n_embd=64, n_layer=3, n_head=4, n_positions=64),
        "llama_gqa_llama3_rope": LlamaConfig(
            **common,
            num_attention_heads=8,
            num_key_value_heads=2,
            tie_word_embeddings=False,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 10000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        ),
        "llama_linear_rope_tied": LlamaConfig(
            **common,
            num_attention_heads=4,
            num_key_value_heads=4,
            tie_word_embeddings=True,
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


D_MEL = 12


def tiny_llama_checkpoint(folder):
    """A 2-layer random Llama (GQA, llama3 RoPE scaling; d_model 64, 8 heads, 2 KV heads, vocab 97) saved as a
    checkpoint folder. Returns (folder, the transformers model)."""
    hf, _ = make_tiny("llama_gqa_llama3_rope")
    hf.model.layers = hf.model.layers[:2]
    hf.config.num_hidden_layers = 2
    hf.config.save_pretrained(folder)
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(folder / "model.safetensors"))
    return folder, hf


def enc_spec(name="mel", dim=D_MEL, n=3, mode="plits", layer=0, connector="mlp", **integ):
    return {
        "name": name,
        "dim": dim,
        "connector": {"type": connector, "n_tokens": n, "hidden": 16, "heads": 2},
        "integration": {"mode": mode, "layer": layer, **integ},
    }


def make_batch(B=2, Lt=9, slot=4, frames=(7, 5), dims=None, seed=0, lengths=None):
    if dims is None:
        dims = {"mel": D_MEL}
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 97, (B, Lt), generator=g)
    mask = torch.ones(B, Lt, dtype=torch.long)
    if lengths is not None:
        for b, n in enumerate(lengths):
            mask[b, n:] = 0
    T = max(frames)
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "audio_slot": torch.full((B,), slot),
        "labels": ids.clone(),
        "audio_tokens": {},
        "audio_token_mask": {},
    }
    for name, dim in dims.items():
        batch["audio_tokens"][name] = torch.randn(B, T, dim, generator=g)
        m = torch.zeros(B, T, dtype=torch.bool)
        for b, f in enumerate(frames):
            m[b, :f] = True
        batch["audio_token_mask"][name] = m
    return batch


def build(tiny_llama_dir, tok, *encoders, insertion="after_system"):
    """A PALModel on the tiny 2-layer LLM with these encoder specs (see enc_spec); random adapters/gates."""
    from workbench.model.pal import PALModel

    d, _ = tiny_llama_dir
    cfg = {"llm": str(d), "insertion": insertion, "encoders": list(encoders)}
    model = PALModel.from_config(cfg, tokenizer=tok, seed=0)
    with torch.no_grad():  # make gates/adapters non-trivial so they are exercised
        for p in list(model.lal_adapters.parameters()) + list(model.lal_gates.parameters()):
            p.normal_(0, 0.3)
    return model
