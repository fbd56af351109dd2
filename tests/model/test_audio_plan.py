"""The audio plan (workbench.model.audio): LAL's K/V of every layer from one batched matmul must equal, bit for bit,
what each layer's own modules make (adapter module -> the layer's input norm -> its k_proj / v_proj, LoRA
included -> RoPE); the audio hooks still fire per layer and still act; frozen-weight stacks follow edits."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tests.model.tiny_models import D_MEL, build, enc_spec, make_batch, make_tiny
from workbench.model.audio import lal
from workbench.model.layers import apply_rotary


@pytest.fixture(scope="module")
def tiny_qwen_dir(tmp_path_factory):
    """A 3-layer random Qwen2 checkpoint (q/k/v biases: the batched projection must add them as F.linear does)."""
    folder = tmp_path_factory.mktemp("tiny_qwen")
    hf, _ = make_tiny("qwen2_bias")
    hf.config.save_pretrained(folder)
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(folder / "model.safetensors"))
    return folder, hf


def _per_layer_kv(model, x, positions, layer, name="mel", rope=True):
    """Layer ``layer``'s audio K, V [B, N, G, D] from its own modules, called one by one (the reference)."""
    block, key = model.blocks[layer], lal.adapter_key(name, layer)
    if key in model.lal_adapters:
        x = model.lal_adapters[key](x)
    normed = block.ln1.normalize(x)
    B, N, _ = x.shape
    k = block.attn.k_proj(normed).view(B, N, model.cfg.n_kv_heads, model.cfg.d_head)
    v = block.attn.v_proj(normed).view(B, N, model.cfg.n_kv_heads, model.cfg.d_head)
    if rope:
        k = apply_rotary(k, *model.rope(positions))
    return k, v


def _plan_and_reference(model, batch, rope=True):
    audio = model.encode_audio(batch)
    layout = model.token_layout(batch, audio)
    plan = model.audio_plan(batch)
    x, a = audio["mel"][0], layout.audio["mel"]
    return plan, {l: _per_layer_kv(model, x, a.positions, l, rope=rope) for l in range(a.layer, model.cfg.n_layers)}


@pytest.mark.parametrize(
    "adapter,lora,audio_rope",
    [(False, False, "slot"), (True, False, "slot"), (True, True, "slot"), (False, True, "none")],
)
def test_batched_lal_kv_equal_each_layers_own_modules(tiny_llama_dir, tok, adapter, lora, audio_rope):
    torch.set_num_threads(1)
    model = build(tiny_llama_dir, tok, enc_spec(mode="lal", layer=0, adapter=adapter, gate=True, audio_rope=audio_rope))
    if lora:
        model.enable_lora(rank=2, alpha=3, targets=["k_proj", "v_proj"])
        with torch.no_grad():  # lora_B starts at zero: make the LoRA path matter
            for n, p in model.blocks.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.3)
    batch = make_batch(B=2, frames=(7, 5))
    with torch.no_grad():
        plan, ref = _plan_and_reference(model, batch, rope=audio_rope == "slot")
    assert sorted(plan.lal) == [0, 1]
    for layer, (k, v) in ref.items():
        assert torch.equal(plan.lal[layer].k, k) and torch.equal(plan.lal[layer].v, v), layer
        assert torch.equal(plan.lal[layer].logit_bias[0, :, 0, 0], model.lal_gates[f"mel_L{layer}"])


def test_batched_projection_adds_qkv_biases_as_the_linear_does(tiny_qwen_dir, tok):
    torch.set_num_threads(1)
    model = build(tiny_qwen_dir, tok, enc_spec(mode="lal", layer=1, adapter=True))
    assert model.blocks[1].attn.k_proj.bias is not None
    with torch.no_grad():
        plan, ref = _plan_and_reference(model, make_batch(B=2))
    assert sorted(plan.lal) == [1, 2]
    for layer, (k, v) in ref.items():
        assert torch.equal(plan.lal[layer].k, k) and torch.equal(plan.lal[layer].v, v), layer


def test_gradients_reach_connector_and_adapters_as_per_layer(tiny_llama_dir, tok):
    """Training through the batched path: same gradients as the per-layer modules (up to summation order)."""
    model = build(tiny_llama_dir, tok, enc_spec(mode="lal", layer=0, adapter=True, gate=True))
    model.set_trainable(["connectors", "adapters"])
    batch = make_batch(B=2)
    plan, ref = _plan_and_reference(model, batch)
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("lal_gates.")]
    got = torch.autograd.grad(sum(plan.lal[l].k.square().sum() + plan.lal[l].v.sum() for l in ref), params)
    want = torch.autograd.grad(sum(k.square().sum() + v.sum() for k, v in ref.values()), params)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-5, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in got)


def test_audio_hooks_fire_per_layer_and_edits_act(tiny_llama_dir, tok):
    model = build(tiny_llama_dir, tok, enc_spec(mode="lal", layer=0, adapter=True, gate=True))
    batch = make_batch(B=2)
    with torch.no_grad():
        logits, cache = model.run_with_cache(batch)
        plan = model.audio_plan(batch)
        for layer in (0, 1):
            assert torch.equal(cache[f"blocks.{layer}.attn.hook_audio_k"], plan.lal[layer].k)
            assert torch.equal(cache[f"blocks.{layer}.attn.hook_audio_v"], plan.lal[layer].v)
        same = model.run_with_hooks(batch, fwd_hooks=[("blocks.1.attn.hook_audio_v", lambda t, hook: t.clone())])
        edited = model.run_with_hooks(batch, fwd_hooks=[("blocks.1.attn.hook_audio_v", lambda t, hook: t * 0)])
    assert torch.equal(same, logits)
    assert (edited - logits).abs().max() > 1e-4


def test_stacked_weights_follow_in_place_edits(tiny_llama_dir, tok):
    model = build(tiny_llama_dir, tok, enc_spec(mode="lal", layer=0))
    batch = make_batch(B=1, frames=(6,))
    with torch.no_grad():
        before = model.audio_plan(batch).lal[1].v
        model.blocks[1].attn.v_proj.weight.mul_(2.0)  # an in-place edit (as tests/analysis/planted.py does)
        plan, ref = _plan_and_reference(model, batch)
    assert torch.equal(plan.lal[1].v, ref[1][1]) and not torch.equal(plan.lal[1].v, before)


def test_plits_and_lal_layers_of_a_hybrid_plan(tiny_llama_dir, tok):
    model = build(
        tiny_llama_dir,
        tok,
        enc_spec(mode="plits", layer=1),
        enc_spec(name="whisper", dim=8, mode="lal", layer=1, connector="qformer"),
    )
    batch = make_batch(B=2, dims={"mel": D_MEL, "whisper": 8})
    plan = model.audio_plan(batch)
    layout = model.token_layout(batch)
    assert list(plan.plits) == [1] and sorted(plan.lal) == [1]
    index, tokens = plan.plits[1]
    assert torch.equal(index, layout.audio_residual_index("mel")) and tokens.shape == (2, 3, 64)
    assert plan.seq_len == batch["input_ids"].shape[1] + 3
    tail = plan.after_prefix(2)
    assert torch.equal(tail.plits[1][0], index - 2) and torch.equal(tail.text_index, plan.text_index[:, 2:] - 2)
    with pytest.raises(ValueError, match="either plan"):
        model.decode(batch["input_ids"], plan=plan, attention_mask=batch["attention_mask"])
