"""Hook points: names, shapes, interventions, extra (audio) keys/values, and the nnsight view of them."""

from __future__ import annotations

import pytest
import torch

from tests.model.tiny_models import make_tiny
from workbench.model.generate import greedy_generate
from workbench.model.layers import ExtraKV


def block_hook_shapes(cfg, B, L):
    H, G, D, M, F = cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_model, cfg.d_mlp
    shapes = {
        "hook_resid_pre": (B, L, M),
        "hook_resid_mid": (B, L, M),
        "hook_resid_post": (B, L, M),
        "ln1.hook_normalized": (B, L, M),
        "ln2.hook_normalized": (B, L, M),
        "attn.hook_q": (B, L, H, D),
        "attn.hook_k": (B, L, G, D),
        "attn.hook_v": (B, L, G, D),
        "attn.hook_attn_scores": (B, H, L, L),
        "attn.hook_pattern": (B, H, L, L),
        "attn.hook_z": (B, L, H, D),
        "hook_attn_out": (B, L, M),
        "mlp.hook_pre": (B, L, F),
        "mlp.hook_post": (B, L, F),
        "hook_mlp_out": (B, L, M),
    }
    if cfg.arch == "llama":
        shapes.update(
            {"attn.hook_rot_q": (B, L, H, D), "attn.hook_rot_k": (B, L, G, D), "mlp.hook_pre_linear": (B, L, F)}
        )
    return shapes


def test_smollm2_run_with_cache_has_every_hook_with_documented_shape(smollm2):
    model, tok = smollm2
    ids = tok(["The quick brown fox jumps"], return_tensors="pt").input_ids
    B, L = ids.shape
    logits, cache = model.run_with_cache(ids)
    cfg = model.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads) == (30, 576, 9, 3)
    assert cache["hook_embed"].shape == (B, L, 576)
    assert cache["ln_final.hook_normalized"].shape == (B, L, 576)
    for layer in range(cfg.n_layers):
        for name, shape in block_hook_shapes(cfg, B, L).items():
            assert tuple(cache[f"blocks.{layer}.{name}"].shape) == shape, name
    pattern = cache["blocks.7.attn.hook_pattern"]
    assert torch.allclose(pattern.sum(-1), torch.ones(B, 9, L), atol=1e-5)
    assert pattern.triu(1).abs().max() == 0  # causal
    # the residual stream bookkeeping adds up
    r = cache["blocks.4.hook_resid_pre"] + cache["blocks.4.hook_attn_out"]
    assert torch.allclose(r, cache["blocks.4.hook_resid_mid"])
    assert torch.equal(cache["blocks.4.hook_resid_post"], cache["blocks.5.hook_resid_pre"])


def test_gpt2_has_pos_embed_hook():
    _, model = make_tiny("gpt2")
    _, cache = model.run_with_cache(torch.randint(0, 97, (2, 6)))
    assert cache["hook_pos_embed"].shape == (2, 6, 64)
    assert cache["blocks.0.attn.hook_k"].shape == (2, 6, 4, 16)


def test_zero_ablating_one_head_changes_output_as_computed_by_hand(smollm2):
    model, tok = smollm2
    ids = tok(["Paris is the capital of"], return_tensors="pt").input_ids
    layer, head = 12, 4
    logits, cache = model.run_with_cache(
        ids, names_filter=[f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_resid_post"]
    )

    def zero_head(z, hook):
        z[:, :, head] = 0
        return z

    ablated, abl_cache = (model.run_with_hooks(ids, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_head)]), None)
    # by hand: the head's contribution to the residual is z_h @ W_O[:, h*D:(h+1)*D]^T; removing it and
    # running the rest of the network from layer+1 must give the hooked run's logits.
    D = model.cfg.d_head
    W_O = model.blocks[layer].attn.o_proj.weight[:, head * D : (head + 1) * D]
    contribution = cache[f"blocks.{layer}.attn.hook_z"][:, :, head] @ W_O.T
    assert contribution.abs().max() > 1e-3  # the head does something
    resid = cache[f"blocks.{layer}.hook_resid_post"] - contribution
    # ... but the FFN of this layer saw the un-ablated residual: recompute layer from resid_mid instead
    _, c2 = model.run_with_cache(ids, names_filter=[f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.hook_attn_out"])
    blk = model.blocks[layer]
    mid = c2[f"blocks.{layer}.hook_resid_pre"] + c2[f"blocks.{layer}.hook_attn_out"] - contribution
    post = mid + blk.mlp(blk.ln2(mid))
    x = post
    L = ids.shape[1]
    allowed = torch.ones(L, L, dtype=torch.bool).tril()[None]
    rope = model.rope(torch.arange(L)[None])
    for blk2 in model.blocks[layer + 1 :]:
        x, _ = blk2(x, allowed, rope)
    by_hand = model.unembed(model.ln_final(x))
    assert (by_hand - ablated).abs().max() < 1e-4
    assert (ablated - logits).abs().max() > 1e-3
    del resid, abl_cache


def test_unknown_hook_and_layer_give_clear_errors(smollm2):
    model, tok = smollm2
    ids = tok(["hi"], return_tensors="pt").input_ids
    with pytest.raises(KeyError, match="unknown hook name 'blocks.3.attn.hook_patern'"):
        model.run_with_hooks(ids, fwd_hooks=[("blocks.3.attn.hook_patern", lambda t, hook: t)])
    with pytest.raises(IndexError, match="valid indices are 0..29"):
        model.run_with_cache(ids, names_filter=["blocks.30.hook_resid_post"])
    with pytest.raises(IndexError, match="out of range"):
        model(ids, extra_kv={31: None})


def _random_extra(model, B, N, seed=0, positions=None):
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    k = torch.randn(B, N, cfg.n_kv_heads, cfg.d_head, generator=g)
    v = torch.randn(B, N, cfg.n_kv_heads, cfg.d_head, generator=g)
    return ExtraKV(k, v, torch.ones(B, N, dtype=torch.bool), positions)


def test_extra_kv_are_read_but_never_queries():
    _, model = make_tiny("llama_gqa_llama3_rope")
    ids = torch.randint(0, 97, (2, 7))
    extra = _random_extra(model, 2, 5)
    plain, plain_cache = model.run_with_cache(ids)
    out, cache = model.run_with_cache(ids, extra_kv={1: extra})
    # layer 0 is untouched, layer 1 reads the extra entries
    assert torch.equal(cache["blocks.0.hook_resid_post"], plain_cache["blocks.0.hook_resid_post"])
    assert not torch.allclose(cache["blocks.1.hook_attn_out"], plain_cache["blocks.1.hook_attn_out"])
    # no query is computed for them; the key axis is [extra ; text]
    assert cache["blocks.1.attn.hook_q"].shape == (2, 7, 8, 8)
    assert cache["blocks.1.attn.hook_audio_k"].shape == (2, 5, 2, 8)
    assert cache["blocks.1.attn.hook_pattern"].shape == (2, 8, 7, 12)
    assert "blocks.0.attn.hook_audio_k" not in cache
    # masked-out extra entries are a no-op: they add exact zeros, but the key axis is longer (12 vs 7), so the
    # attention reductions sum in another order (per CPU kernel): fp32 noise, 2.4e-7 to 4.8e-7 measured on
    # logits of size ~1.5 (AVX-512 and AVX2; the old bound 1e-6 was 2x away). Attending to them moves these
    # logits by ~1.
    extra.key_mask[:] = False
    assert torch.allclose(model(ids, extra_kv={1: extra}), plain, atol=1e-5)


def test_extra_kv_visibility_follows_positions():
    _, model = make_tiny("qwen2_bias")
    ids = torch.randint(0, 97, (1, 8))
    pos = torch.arange(8)[None]
    extra = _random_extra(model, 1, 3, positions=torch.full((1, 3), 4))
    _, cache = model.run_with_cache(ids, position_ids=pos, extra_kv={0: extra})
    pattern = cache["blocks.0.attn.hook_pattern"][0]  # [H, 8, 3 + 8]
    assert pattern[:, :4, :3].abs().max() == 0  # queries at positions < 4 cannot see the audio
    assert pattern[:, 4:, :3].min() > 0


def test_generation_keeps_extra_kv_in_cache():
    _, model = make_tiny("llama_linear_rope_tied")
    ids = torch.randint(0, 97, (2, 6))
    extra = {0: _random_extra(model, 2, 4, seed=1), 2: _random_extra(model, 2, 4, seed=2)}
    a = greedy_generate(model, ids, max_new_tokens=8, extra_kv=extra)
    b = greedy_generate(model, ids, max_new_tokens=8, extra_kv=extra, use_cache=False)
    c = greedy_generate(model, ids, max_new_tokens=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_mlp_position_mask_skips_ffn_there():
    _, model = make_tiny("llama_gqa_llama3_rope")
    ids = torch.randint(0, 97, (1, 5))
    mask = torch.tensor([[True, False, True, True, True]])
    _, cache = model.run_with_cache(ids, mlp_position_mask=mask)
    assert cache["blocks.2.hook_mlp_out"][0, 1].abs().max() == 0
    assert cache["blocks.2.hook_mlp_out"][0, 2].abs().max() > 0
