"""The semantics of the PAL integrations, pinned down by equivalences with independent computations."""

from __future__ import annotations

import math

import pytest
import torch

from tests.model.tiny_models import D_MEL, build, enc_spec, make_batch
from workbench.model.pal import CheckpointMismatchError, PALModel
from workbench.model.pal_config import ConfigError, PALConfig

VARIANTS = {
    "baseline": [enc_spec(mode="plits", layer=0)],
    "delayed": [enc_spec(mode="plits", layer=1)],
    "lal": [enc_spec(mode="lal", layer=1, adapter=True, gate=True)],
    "ensemble_hybrid": [
        enc_spec(mode="plits", layer=0),
        enc_spec(name="whisper", dim=8, mode="lal", layer=0, connector="qformer"),
    ],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_zero_audio_tokens_equals_the_bare_llm(tiny_llama_dir, tok, variant):
    specs = [dict(s, connector=dict(s["connector"], n_tokens=0)) for s in VARIANTS[variant]]
    model = build(tiny_llama_dir, tok, *specs)
    batch = make_batch(dims={s["name"]: s["dim"] for s in specs})
    bare = model.decode(batch["input_ids"])
    assert torch.allclose(model(batch), bare, atol=1e-6)


def test_decode_is_the_one_decoder_entry(tiny_llama_dir, tok):
    """HookedDecoder.__call__ and PALModel's forward both go through ``decode``; a PALModel called on token ids
    says to use it."""
    from workbench.model.decoder import HookedDecoder

    model = build(tiny_llama_dir, tok, *VARIANTS["lal"])
    batch = make_batch()
    calls = []
    real = model.decode
    model.decode = lambda *a, **k: calls.append(k.get("plan") is not None) or real(*a, **k)
    logits = model(batch)
    assert calls == [True]
    with pytest.raises(TypeError, match=r"model\.decode\(input_ids"):
        model(batch["input_ids"])
    plain = HookedDecoder.from_pretrained(tiny_llama_dir[0])
    assert torch.equal(plain(batch["input_ids"]), plain.decode(batch["input_ids"]))
    assert torch.equal(real(batch["input_ids"]), plain.decode(batch["input_ids"]))
    assert logits.shape == (*batch["input_ids"].shape, model.cfg.d_vocab)


def test_plits_at_layer_0_equals_audio_as_input_embeddings_to_transformers(tiny_llama_dir, tok):
    _, hf = tiny_llama_dir
    model = build(tiny_llama_dir, tok, *VARIANTS["baseline"])
    batch = make_batch(B=1, frames=(7,))
    logits, cache = model.run_with_cache(batch)
    audio = cache["connectors.mel.hook_out"]  # [1, 3, M]
    slot = 4
    text = hf.model.embed_tokens(batch["input_ids"])
    embeds = torch.cat([text[:, :slot], audio, text[:, slot:]], 1)
    ref = hf(inputs_embeds=embeds).logits
    ref_text = torch.cat([ref[:, :slot], ref[:, slot + 3 :]], 1)
    assert (logits - ref_text).abs().max() < 1e-4
    assert cache["blocks.0.hook_audio_in"].shape == (1, 3, 64)


def _reference_lal_forward(hf, text_ids, audio, slot, first_layer, adapters, gates, n_heads=8, n_kv=2):
    """Independent LAL: a 2-layer Llama written out by hand with transformers' weights.

    Text positions reserve the audio slot (ids after the slot shift by N); from ``first_layer`` on each layer
    reads audio as extra keys/values: RMSNorm (the layer's input norm) -> adapter -> W_K (RoPE at the slot
    positions), W_V; text queries at or after the slot may attend to them, with the gate added to their logits.
    """
    m = hf.model
    L, N = text_ids.shape[1], audio.shape[1]
    d_head = hf.config.head_dim
    pos = torch.arange(L)
    pos = torch.where(pos >= slot, pos + N, pos)[None]
    apos = (slot + torch.arange(N))[None]
    x = m.embed_tokens(text_ids)
    cos, sin = m.rotary_emb(x, pos)
    acos, asin = m.rotary_emb(x, apos)

    def rot(t, c, s):  # t [1, L, h, d]
        c, s = c[:, :, None], s[:, :, None]
        half = t.shape[-1] // 2
        return t * c + torch.cat([-t[..., half:], t[..., :half]], -1) * s

    for i, layer in enumerate(m.layers):
        h = layer.input_layernorm(x)
        at = layer.self_attn
        q = rot(at.q_proj(h).view(1, L, n_heads, d_head), cos, sin)
        k = rot(at.k_proj(h).view(1, L, n_kv, d_head), cos, sin)
        v = at.v_proj(h).view(1, L, n_kv, d_head)
        causal = torch.ones(L, L, dtype=torch.bool).tril()
        bias = torch.zeros(n_heads, 1, L)
        if i >= first_layer:
            a = layer.input_layernorm(adapters[i](audio))
            ak = rot(at.k_proj(a).view(1, N, n_kv, d_head), acos, asin)
            av = at.v_proj(a).view(1, N, n_kv, d_head)
            k, v = torch.cat([ak, k], 1), torch.cat([av, v], 1)
            sees_audio = (pos[0] >= slot + N)[:, None].expand(L, N)  # text after the slot
            causal = torch.cat([sees_audio, causal], 1)
            bias = torch.cat([gates[i].view(-1, 1, 1).expand(n_heads, 1, N), bias], -1)
        k = k.repeat_interleave(n_heads // n_kv, 2)
        v = v.repeat_interleave(n_heads // n_kv, 2)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d_head) + bias[None]
        scores = scores.masked_fill(~causal[None, None], float("-inf"))
        z = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(1, L, -1)
        x = x + at.o_proj(z)
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return hf.lm_head(m.norm(x))


def test_lal_equals_hand_written_reference_attention(tiny_llama_dir, tok):
    _, hf = tiny_llama_dir
    model = build(tiny_llama_dir, tok, *VARIANTS["lal"])
    batch = make_batch(B=1, frames=(7,))
    logits, cache = model.run_with_cache(batch)
    audio = cache["connectors.mel.hook_out"]
    adapters = {1: model.lal_adapters["mel_L1"]}
    gates = {1: model.lal_gates["mel_L1"]}
    ref = _reference_lal_forward(hf, batch["input_ids"], audio, 4, 1, adapters, gates)
    assert (logits - ref).abs().max() < 1e-4
    # and audio did matter
    assert (logits - model.decode(batch["input_ids"])).abs().max() > 1e-3


def test_lal_audio_never_forms_queries_nor_passes_an_ffn(tiny_llama_dir, tok):
    model = build(tiny_llama_dir, tok, *VARIANTS["lal"])
    batch = make_batch(B=2)
    _, cache = model.run_with_cache(batch)
    B, Lt = batch["input_ids"].shape
    for layer in range(2):
        assert cache[f"blocks.{layer}.attn.hook_q"].shape[:2] == (B, Lt)  # queries: text only
        assert cache[f"blocks.{layer}.mlp.hook_pre"].shape[:2] == (B, Lt)  # FFN: text only
        assert cache[f"blocks.{layer}.hook_resid_post"].shape[:2] == (B, Lt)
    assert "blocks.0.attn.hook_audio_k" not in cache
    assert cache["blocks.1.attn.hook_audio_k"].shape == (B, 3, 2, 8)
    assert cache["blocks.1.attn.hook_pattern"].shape == (B, 8, Lt, 3 + Lt)
    layout = model.token_layout(batch)
    idx = layout.audio_key_index(1, "mel")
    mass = cache["blocks.1.attn.hook_pattern"].gather(-1, idx[:, None, None, :].expand(-1, 8, Lt, -1)).sum(-1)
    assert mass[:, :, :4].abs().max() == 0  # text before the slot cannot see audio
    assert mass[:, :, 4:].min() > 0


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_padded_batch_equals_items_alone(tiny_llama_dir, tok, variant):
    specs = VARIANTS[variant]
    model = build(tiny_llama_dir, tok, *specs)
    dims = {s["name"]: s["dim"] for s in specs}
    batch = make_batch(B=2, Lt=9, frames=(7, 4), lengths=(9, 6), dims=dims)
    logits = model(batch)
    for b, (n_text, n_frames) in enumerate([(9, 7), (6, 4)]):
        alone = {
            "input_ids": batch["input_ids"][b : b + 1, :n_text],
            "attention_mask": batch["attention_mask"][b : b + 1, :n_text],
            "audio_slot": batch["audio_slot"][b : b + 1],
            "audio_tokens": {k: v[b : b + 1, :n_frames] for k, v in batch["audio_tokens"].items()},
            "audio_token_mask": {k: v[b : b + 1, :n_frames] for k, v in batch["audio_token_mask"].items()},
        }
        assert (model(alone)[0] - logits[b, :n_text]).abs().max() < 1e-4, (variant, b)


def test_delayed_plits_slots_are_dead_before_their_layer(tiny_llama_dir, tok):
    model = build(tiny_llama_dir, tok, *VARIANTS["delayed"])
    batch = make_batch(B=2)
    _, cache = model.run_with_cache(batch)
    idx = model.token_layout(batch).audio_residual_index("mel")
    r0 = cache["blocks.0.hook_resid_post"].gather(1, idx[..., None].expand(-1, -1, 64))
    assert r0.abs().max() == 0  # nothing there before layer 1
    assert torch.equal(cache["blocks.1.hook_audio_in"], cache["connectors.mel.hook_out"])
    # text at layer 0 is exactly the bare LLM's (text runs alone through layers < L), same position ids
    layout = model.token_layout(batch)
    text_pos = layout.position_ids.gather(1, layout.text_index)
    bare = model.decode(batch["input_ids"], position_ids=text_pos, stop_at_layer=1)
    text0 = cache["blocks.0.hook_resid_post"].gather(1, layout.text_index[..., None].expand(-1, -1, 64))
    assert torch.allclose(text0, bare, atol=1e-5)


def test_generation_with_audio_cache_equals_recomputing(tiny_llama_dir, tok):
    model = build(tiny_llama_dir, tok, *VARIANTS["ensemble_hybrid"])
    batch = make_batch(B=1, frames=(6,), dims={"mel": D_MEL, "whisper": 8})
    new = model.generate_ids(batch, max_new_tokens=5)
    # recompute: append each generated token to the text and rerun the full forward
    ids = batch["input_ids"]
    for i in range(new.shape[1]):
        step = dict(batch, input_ids=ids, attention_mask=torch.ones_like(ids))
        nxt = model(step)[:, -1].argmax(-1)
        assert int(nxt) == int(new[0, i])
        ids = torch.cat([ids, nxt[:, None]], 1)


def test_trainable_parts_and_checkpoint_roundtrip(tiny_llama_dir, tok, tmp_path):
    model = build(tiny_llama_dir, tok, *VARIANTS["lal"])
    model.enable_lora(rank=2, alpha=4, targets=["q_proj", "v_proj"])
    names = model.set_trainable(["connectors"])
    assert names and all(n.startswith("connectors.") for n in names)
    batch = make_batch()
    model.loss(batch).backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n in names)
    assert all(p.grad is None for n, p in model.named_parameters() if n not in names)
    names = model.set_trainable(["adapters", "lora"])
    assert any("lora_A" in n for n in names) and any(n.startswith("lal_gates.") for n in names)
    with torch.no_grad():
        for p in model.trainable_state_dict().values():
            p.add_(0.01)
    expected = model(batch)
    model.save_pretrained(tmp_path / "ckpt")
    again = PALModel.from_pretrained(tmp_path / "ckpt", tokenizer=tok)
    assert torch.equal(again(batch), expected)
    with pytest.raises(ValueError, match="unknown trainable part"):
        model.set_trainable(["ffn"])


def test_checkpoint_with_old_encoder_names_loads_under_model_names(tiny_llama_dir, tok, tmp_path):
    """A checkpoint written when YAMNet was called ``general`` (config and weight keys) loads as ``yamnet``:
    same outputs, hook names and batch keys under the new name."""
    import json

    from safetensors.torch import load_file, save_file

    spec = enc_spec(name="yamnet", dim=16, mode="lal", layer=0, adapter=True, gate=True)
    model = build(tiny_llama_dir, tok, spec)
    with torch.no_grad():
        for p in model.trainable_state_dict().values():
            p.add_(0.01)
    batch = make_batch(dims={"yamnet": 16})
    expected = model(batch)
    model.save_pretrained(tmp_path / "ckpt")
    cfg_file, weights = tmp_path / "ckpt" / "config.json", tmp_path / "ckpt" / "model.safetensors"
    meta = json.loads(cfg_file.read_text())
    meta["pal"]["encoders"][0]["name"] = "general"
    cfg_file.write_text(json.dumps(meta))
    old = {k.replace("yamnet", "general"): v for k, v in load_file(str(weights)).items()}
    assert any(".general_L0." in k for k in old) and any(k.startswith("connectors.general.") for k in old)
    save_file(old, str(weights))
    again = PALModel.from_pretrained(tmp_path / "ckpt", tokenizer=tok)
    assert again.encoder_names == ["yamnet"]
    logits, cache = again.run_with_cache(
        batch, names_filter=["connectors.yamnet.hook_out", "encoders.yamnet.hook_mask"]
    )
    assert torch.equal(logits, expected)
    assert cache["encoders.yamnet.hook_mask"].dtype == torch.bool


def test_bad_configs_and_checkpoints(tiny_llama_dir, tok, tmp_path):
    d, _ = tiny_llama_dir
    with pytest.raises(ConfigError, match="unknown encoder 'beats'"):
        PALConfig.from_dict({"encoders": [{"name": "beats"}]})
    with pytest.raises(ConfigError, match="unknown integration mode 'cross'"):
        PALConfig.from_dict({"encoders": [enc_spec(mode="cross")]})
    with pytest.raises(ConfigError, match="injection layer 2 is out of range for an LLM with 2 layers"):
        PALModel.from_config({"llm": str(d), "encoders": [enc_spec(layer=2)]}, tokenizer=tok)
    with pytest.raises(ConfigError, match="unknown key"):
        PALConfig.from_dict({"encoders": [enc_spec()], "encoder": []})
    a = build(tiny_llama_dir, tok, *VARIANTS["lal"])
    a.save_pretrained(tmp_path / "lal")
    b = build(tiny_llama_dir, tok, *VARIANTS["baseline"])
    from safetensors.torch import load_file

    with pytest.raises(CheckpointMismatchError, match="does not fit this model"):
        b.load_trainable_state_dict(load_file(str(tmp_path / "lal" / "model.safetensors")), source="lal")
    with pytest.raises(FileNotFoundError, match="is not a PAL checkpoint"):
        PALModel.from_pretrained(tmp_path / "nothing")


def test_loss_is_next_token_cross_entropy_on_answer_tokens(tiny_llama_dir, tok):
    model = build(tiny_llama_dir, tok, *VARIANTS["ensemble_hybrid"])
    batch = make_batch(B=2, dims={"mel": D_MEL, "whisper": 8})
    labels = torch.full_like(batch["input_ids"], -100)
    labels[0, 6:8] = batch["input_ids"][0, 6:8]
    labels[1, 8] = batch["input_ids"][1, 8]
    batch["labels"] = labels
    logp = model(batch).log_softmax(-1)
    expected = -(logp[0, 5, labels[0, 6]] + logp[0, 6, labels[0, 7]] + logp[1, 7, labels[1, 8]]) / 3
    assert torch.allclose(model.loss(batch), expected, atol=1e-5)


def test_prefix_insertion_puts_the_audio_first_and_plits_and_lal_differ_only_in_reading_it(tiny_llama_dir, tok):
    """``insertion: prefix``: the audio slot opens before the first real token (before the system prompt). PLITS
    and LAL then give the same positions to text and audio; cutting the audio out of the text's view leaves the
    bare LLM at those positions in both, so the two differ only in how the audio is read."""
    from workbench.analysis.core import block_audio_interventions, run_with_interventions
    from workbench.data.dataset import collate

    n = 3
    plits = build(tiny_llama_dir, tok, enc_spec(mode="plits", layer=0, n=n), insertion="prefix")
    lal = build(tiny_llama_dir, tok, enc_spec(mode="lal", layer=0, n=n), insertion="prefix")
    batch = make_batch(B=2, slot=0, lengths=(9, 6))
    lp, ll = plits.token_layout(batch), lal.token_layout(batch)
    text_pos = torch.arange(9)[None] + n
    for layout in (lp, ll):
        assert torch.equal(layout.audio["mel"].positions, torch.arange(n)[None].expand(2, -1))
        assert torch.equal(layout.position_ids.gather(1, layout.text_index)[:, :6], text_pos.expand(2, -1)[:, :6])
    assert torch.equal(lp.audio_residual_index("mel"), torch.arange(n)[None].expand(2, -1))  # residual 0..n-1
    assert torch.equal(lp.text_index, torch.arange(9)[None].expand(2, -1) + n) and lp.seq_len == 9 + n
    assert torch.equal(ll.text_index, torch.arange(9)[None].expand(2, -1)) and ll.seq_len == 9
    bare = plits.decode(
        batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=lp.position_ids.gather(1, lp.text_index),
    )
    real = batch["attention_mask"].bool()
    for model in (plits, lal):
        cut = run_with_interventions(model, batch, block_audio_interventions(model, batch))
        assert (cut - bare)[real].abs().max() < 1e-5
        assert (model(batch) - bare)[real].abs().max() > 1e-3  # the audio is read
    # left-padded generation batches keep the slot at the first real token
    items = [
        {
            "input_ids": batch["input_ids"][b, :k],
            "labels": batch["labels"][b, :k],
            "audio_slot": 0,
            "prompt_len": k,
            "row": {},
            "audio_tokens": {"mel": batch["audio_tokens"]["mel"][b]},
        }
        for b, k in ((0, 9), (1, 6))
    ]
    left = collate(items, padding_side="left")
    assert left["audio_slot"].tolist() == [0, 3]
    assert plits.generate_ids(left, max_new_tokens=2).shape == (2, 2)
    # a batch laid out for the other insertion is refused, naming the fix
    with pytest.raises(ValueError, match=r"insertion is 'prefix'.*slot='prefix'"):
        plits(make_batch(B=2, slot=4))
    with pytest.raises(ValueError, match=r"insertion is 'after_system'.*slot='after_system'"):
        build(tiny_llama_dir, tok, enc_spec(mode="plits", layer=0, n=n))(batch)
