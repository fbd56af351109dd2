"""Greedy generation with the KV cache equals transformers' generate and our own uncached decoding."""

from __future__ import annotations

import torch

from workbench.model.generate import greedy_generate
from workbench.model.kv_cache import KVCache


def test_smollm2_greedy_20_tokens_matches_transformers(smollm2, hf_smollm2):
    model, tok = smollm2
    texts = [
        tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False)
        for t in ("What is the capital of France?", "Name three colours.")
    ]
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True)
    ref = hf_smollm2.generate(**enc, max_new_tokens=20, do_sample=False)
    cached = greedy_generate(model, enc.input_ids, enc.attention_mask, max_new_tokens=20, eos_token_id=tok.eos_token_id)
    assert cached.shape[1] > enc.input_ids.shape[1]
    assert torch.equal(cached, ref)
    # uncached decoding of the first prompt alone (no padding); it stops at EOS, where ref pads on
    n_pad = int((enc.attention_mask[0] == 0).sum())
    alone = enc.input_ids[:1, n_pad:]
    uncached = greedy_generate(model, alone, max_new_tokens=20, eos_token_id=tok.eos_token_id, use_cache=False)
    assert uncached.shape[1] > alone.shape[1]
    assert torch.equal(uncached[0], ref[0, n_pad : n_pad + uncached.shape[1]])


def test_tiny_models_cache_equals_no_cache_and_transformers(tiny_pair):
    name, hf, model = tiny_pair
    torch.manual_seed(2)
    ids = torch.randint(0, 97, (2, 9))
    a = greedy_generate(model, ids, max_new_tokens=12)
    b = greedy_generate(model, ids, max_new_tokens=12, use_cache=False)
    ref = hf.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0
    )
    assert torch.equal(a, b), name
    assert torch.equal(a, ref), name


def test_cache_step_logits_equal_full_forward(tiny_pair):
    name, _, model = tiny_pair
    ids = torch.randint(0, 97, (2, 12))
    full = model(ids)
    cache = KVCache(model.cfg.n_layers)
    first = model(ids[:, :7], past=cache)
    rest = model(ids[:, 7:], past=cache)
    assert cache.length == 12
    assert torch.allclose(torch.cat([first, rest], 1), full, atol=1e-5), name
