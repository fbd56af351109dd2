"""Released audio-LLMs (Qwen2-Audio, Voxtral, Audio Flamingo 3, GLM-ASR) loaded as hooked PAL models: parity
with transformers' own classes on tiny random folders, retrofitted integrations against the independent
PLITS/LAL references, and the errors for bad input."""

from __future__ import annotations

import json
import math
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tests.model.released_tiny import (
    KINDS,
    PROCESSORS,
    backends_agree,
    real_template,
    save_folder_preprocessing,
    shared_released,
)
from tests.model.test_pal import _reference_lal_forward
from workbench.model.pal import PALModel
from workbench.model.pal_config import ConfigError
from workbench.model.released import SUPPORTED_ARCHITECTURES, ReleasedModelError, UnsupportedReleasedArchitecture
from workbench.model.released.model import AudioTooLongError
from workbench.model.released.prompts import released_example
from workbench.model.weights import MissingWeightsError

QUESTION = "What is the pitch of the tone?"


def _batch(model, seconds=(1.3,), seed=0):
    """One prompt, one random clip per item (same prompt, so no text padding)."""
    enc = released_example(model, QUESTION)
    B = len(seconds)
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([int(s * model.sample_rate) for s in seconds])
    waves = torch.randn(B, int(lengths.max()), generator=g) * 0.1
    ids = torch.tensor([enc["input_ids"]] * B)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "audio_slot": torch.full((B,), enc["audio_slot"]),
        "waves": waves,
        "wave_lengths": lengths,
    }


def _hf_inputs(model, batch, kind):
    """transformers' inputs for the same item built from our ids (the placeholder repeated once per audio token,
    same features): for Voxtral, whose processor needs mistral-common (not installed)."""
    assert batch["input_ids"].shape[0] == 1
    n = int(model.n_audio_tokens(batch)[0])
    ids, s = batch["input_ids"][0].tolist(), int(batch["audio_slot"][0])
    hf_ids = torch.tensor([ids[:s] + [model.audio_token_id] * n + ids[s:]])
    feats, fmask = model.audio_inputs(batch)
    extra = {"qwen2_audio": {"feature_attention_mask": fmask}, "voxtral": {}}.get(kind, {"input_features_mask": fmask})
    return dict(input_ids=hf_ids, input_features=feats, attention_mask=torch.ones_like(hf_ids), **extra)


def _processor_inputs(folder, wave: np.ndarray, question: str):
    """The oracle's inputs: transformers' own processor, loaded from the folder, renders the chat (the audio part
    as its docs show it for an array) and encodes the raw waveform."""
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(folder)
    msgs = [{"role": "user", "content": [{"type": "audio", "audio": wave}, {"type": "text", "text": question}]}]
    text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return proc(text=text, audio=wave, sampling_rate=proc.feature_extractor.sampling_rate, return_tensors="pt")


@pytest.fixture(scope="module", params=KINDS)
def released(request):
    folder, hf, tok, fe = shared_released(request.param)
    return request.param, folder, hf, PALModel.from_pretrained(folder)


def test_logits_and_greedy_generation_equal_transformers_processor_and_model(released):
    """The real template + a folder saved by today's processor.save_pretrained: our prompt is the processor's
    prompt without its expanded placeholder run; logits (<= 1e-4) and 20 greedy tokens equal transformers'
    processor + model fed the same raw waveform."""
    kind, folder, hf, model = released
    batch = _batch(model)
    wave = batch["waves"][0].numpy()
    logits = model(batch)
    if PROCESSORS[kind] is None:  # Voxtral: no processor here (mistral-common); our ids, the same features
        inputs = _hf_inputs(model, batch, kind)
    else:
        inputs = _processor_inputs(folder, wave, QUESTION)
    hf_ids = inputs["input_ids"][0]
    is_audio = hf_ids == model.audio_token_id
    where = torch.nonzero(is_audio)[:, 0]
    s, n = int(batch["audio_slot"][0]), int(is_audio.sum())
    assert hf_ids[~is_audio].tolist() == batch["input_ids"][0].tolist()  # the same prompt, token for token
    assert where.tolist() == list(range(s, s + n)) and n == int(model.n_audio_tokens(batch)[0]) > 0
    with torch.no_grad():
        ref = hf(**inputs).logits
    assert (logits - ref[:, ~is_audio]).abs().max() < 1e-4
    new = model.generate_ids(batch, max_new_tokens=20)
    with torch.no_grad():
        hf_new = hf.generate(**inputs, max_new_tokens=20, do_sample=False)[:, hf_ids.shape[0] :]
    assert new.shape[1] == hf_new.shape[1] > 0 and new.tolist() == hf_new.tolist()
    # the layout says where every audio token sits: the residual positions right after the text before the slot
    layout = model.token_layout(batch)
    a = layout.audio[kind]
    assert a.mode == "plits" and a.layer == 0 and int(a.mask.sum()) == n
    assert a.residual_index[0, 0] == s and layout.text_index[0, s] == s + model.n_audio_slots


@pytest.mark.parametrize("kind", KINDS)
def test_the_real_template_places_the_audio_of_our_prompts(kind):
    """Each checkpoint's template as shipped (fixtures/chat_templates) renders our prompt with one audio
    placeholder run (the slot), with and without an answer."""
    folder, _, tok, _ = shared_released(kind)
    model = PALModel.from_pretrained(folder)
    assert model.chat_template == real_template(kind)
    enc = released_example(model, QUESTION, "C4")
    ids, s = enc["input_ids"], enc["audio_slot"]
    assert model.audio_token_id not in ids and 0 < s < enc["prompt_len"]
    answer = [t for t, lab in zip(ids, enc["labels"]) if lab != -100]
    assert tok.decode(answer).startswith("C4"), tok.decode(answer)


def test_tower_hooks_equal_the_transformers_tower(released):
    from transformers.masking_utils import create_bidirectional_mask

    kind, _, hf, model = released
    batch = _batch(model)
    _, cache = model.run_with_cache(batch)
    feats, fmask = model.audio_inputs(batch)
    tower = hf.model.audio_tower
    tower.config._attn_implementation = "eager"
    outs = {}
    handles = [
        layer.register_forward_hook(lambda m, i, o, j=j: outs.__setitem__(j, o[0] if isinstance(o, tuple) else o))
        for j, layer in enumerate(tower.layers)
    ]
    kw = {"audioflamingo3": {"input_features_mask": fmask}}.get(kind, {})
    if kind == "qwen2_audio":  # the mask Qwen2AudioModel builds for its tower
        valid = (torch.arange(feats.shape[-1] // 2)[None] < ((fmask.sum(-1) - 1) // 2 + 1)[:, None]).long()
        kw = {
            "attention_mask": create_bidirectional_mask(
                config=tower.config, inputs_embeds=torch.zeros(1, valid.shape[1], 1), attention_mask=valid
            )
        }
    try:
        with torch.no_grad():
            out = tower(feats, output_attentions=True, **kw)
    finally:
        for h in handles:
            h.remove()
    assert len(outs) == len(tower.layers) == 2
    for i in range(2):
        assert torch.allclose(cache[f"encoders.{kind}.blocks.{i}.hook_resid_post"], outs[i], atol=1e-5)
        assert torch.allclose(cache[f"encoders.{kind}.blocks.{i}.attn.hook_pattern"], out.attentions[i], atol=1e-5)
        mlp = cache[f"encoders.{kind}.blocks.{i}.hook_mlp_out"]
        assert torch.allclose(cache[f"encoders.{kind}.blocks.{i}.hook_resid_mid"] + mlp, outs[i], atol=1e-5)
    assert torch.allclose(cache[f"encoders.{kind}.hook_out"], out.last_hidden_state, atol=1e-5)
    tokens = cache[f"connectors.{kind}.hook_out"]
    assert tokens.shape == (1, model.n_audio_slots, model.cfg.d_model)


def test_batch_of_clips_of_different_lengths_equals_each_alone(released):
    kind, _, _, model = released
    both = model(_batch(model, seconds=(1.7, 0.6), seed=3))
    for b, _sec in enumerate((1.7, 0.6)):
        one = _batch(model, seconds=(1.7, 0.6), seed=3)
        one = {k: v[b : b + 1] for k, v in one.items()}
        one["waves"] = one["waves"][:, : int(one["wave_lengths"][0])]
        assert (model(one)[0] - both[b]).abs().max() < 1e-4


def test_hook_edits_in_the_tower_reach_the_logits(released):
    kind, _, _, model = released
    batch = _batch(model)
    base = model(batch)
    zeroed = model.run_with_hooks(batch, fwd_hooks=[(f"encoders.{kind}.blocks.1.hook_mlp_out", lambda t, hook: t * 0)])
    assert (zeroed - base).abs().max() > 1e-4


# ------------------------------------------------------------------------------------------ retrofitting
def _text_lm(hf):
    lm = hf.model.language_model
    cfg = lm.config
    return SimpleNamespace(
        model=lm, lm_head=hf.lm_head, config=SimpleNamespace(head_dim=cfg.hidden_size // cfg.num_attention_heads)
    ), cfg


def _reference_plits_forward(hf, text_ids, audio, slot, first_layer, n_heads, n_kv):
    """Independent PLITS at ``first_layer``, written out with transformers' modules: the text runs alone (its
    positions reserving the slot) until ``first_layer``; there the audio joins the sequence at the slot and
    passes attention and FFN of every later layer. Returns text logits [1, L, V]."""
    m = hf.model
    L, N = text_ids.shape[1], audio.shape[1]
    d_head = hf.config.head_dim
    tpos = torch.arange(L)
    tpos = torch.where(tpos >= slot, tpos + N, tpos)
    x, pos = m.embed_tokens(text_ids), tpos[None]

    def rot(t, c, s):
        c, s = c[:, :, None], s[:, :, None]
        half = t.shape[-1] // 2
        return t * c + torch.cat([-t[..., half:], t[..., :half]], -1) * s

    for i, layer in enumerate(m.layers):
        if i == first_layer:
            x = torch.cat([x[:, :slot], audio, x[:, slot:]], 1)
            pos = torch.arange(L + N)[None]
        S = x.shape[1]
        cos, sin = m.rotary_emb(x, pos)
        h, at = layer.input_layernorm(x), layer.self_attn
        q = rot(at.q_proj(h).view(1, S, n_heads, d_head), cos, sin)
        k = rot(at.k_proj(h).view(1, S, n_kv, d_head), cos, sin).repeat_interleave(n_heads // n_kv, 2)
        v = at.v_proj(h).view(1, S, n_kv, d_head).repeat_interleave(n_heads // n_kv, 2)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d_head)
        scores = scores.masked_fill(~torch.ones(S, S, dtype=torch.bool).tril(), float("-inf"))
        x = x + at.o_proj(torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(1, S, -1))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    if x.shape[1] > L:
        x = torch.cat([x[:, :slot], x[:, slot + N :]], 1)
    return hf.lm_head(m.norm(x))


@pytest.mark.parametrize("kind", ["qwen2_audio", "voxtral"])  # Qwen2 (q/k/v biases) and Llama text models
def test_retrofitted_plits_and_lal_match_the_independent_references(kind):
    folder, hf, _, _ = shared_released(kind)
    lm, cfg = _text_lm(hf)
    models = {
        (m, l): PALModel.from_pretrained(folder, integration={"mode": m, "layer": l})
        for m, l in (("plits", 0), ("plits", 2), ("lal", 0), ("lal", 2))
    }
    as_released = PALModel.from_pretrained(folder)
    batch = _batch(as_released)
    base = as_released(batch)
    _, cache = as_released.run_with_cache(batch, names_filter=f"connectors.{kind}.hook_out")
    n = int(as_released.n_audio_tokens(batch)[0])
    audio = cache[f"connectors.{kind}.hook_out"][:, :n]
    slot, ids = int(batch["audio_slot"][0]), batch["input_ids"]
    heads = dict(n_heads=cfg.num_attention_heads, n_kv=cfg.num_key_value_heads)
    assert torch.equal(models["plits", 0](batch), base)
    with torch.no_grad():
        for layer in (0, 2):
            ref = _reference_plits_forward(lm, ids, audio, slot, layer, **heads)
            assert (models["plits", layer](batch) - ref).abs().max() < 1e-4
            ident = {i: nn.Identity() for i in range(layer, cfg.num_hidden_layers)}
            gates = {i: torch.zeros(cfg.num_attention_heads) for i in ident}
            ref = _reference_lal_forward(lm, ids, audio, slot, layer, ident, gates, **heads)
            assert (models["lal", layer](batch) - ref).abs().max() < 1e-4
    for key in (("plits", 2), ("lal", 0), ("lal", 2)):
        assert (models[key](batch) - base).abs().max() > 1e-3, key
    layout = models["lal", 2].token_layout(batch)
    assert layout.audio[kind].mode == "lal" and layout.audio[kind].residual_index is None
    with pytest.raises(ConfigError, match="out of range"):
        PALModel.from_pretrained(folder, integration={"mode": "plits", "layer": 3})
    with pytest.raises(ConfigError, match="no trained parts"):
        PALModel.from_pretrained(folder, integration={"mode": "lal", "layer": 1, "adapter": True})


# ------------------------------------------------------------------------------------------ loading, bad input
def test_both_checkpoint_key_layouts_load_the_same(tmp_path):
    """save_pretrained writes the hub's layout (``language_model.model.*``, ``audio_tower.*``); the in-memory names
    of transformers 5 (``model.language_model.*``, ``model.audio_tower.*``, ``lm_head.*``) load the same."""
    folder, hf, _, _ = shared_released("qwen2_audio")
    assert any(k.startswith("language_model.model.") for k in load_file(str(folder / "model.safetensors")))
    current = tmp_path / "current"
    shutil.copytree(folder, current)
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}
    assert any(k.startswith("model.language_model.") for k in state)
    save_file(state, str(current / "model.safetensors"))
    model = PALModel.from_pretrained(folder)
    batch = _batch(model)
    assert torch.equal(PALModel.from_pretrained(current)(batch), model(batch))


def test_unsupported_architecture_lists_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper"})
    )
    with pytest.raises(UnsupportedReleasedArchitecture) as e:
        PALModel.from_pretrained(tmp_path)
    assert "WhisperForConditionalGeneration" in str(e.value)
    assert all(name in str(e.value) for name in SUPPORTED_ARCHITECTURES)


def test_hub_id_without_network_says_where_to_put_the_weights(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ReleasedModelError) as e:
        PALModel.from_pretrained("pal-workbench-tests/not-a-downloaded-model")
    msg = str(e.value)
    assert "not on this machine" in msg and "--local-dir" in msg and "--checkpoint DIR" in msg


@pytest.mark.parametrize(
    "part",
    [
        "audio_tower.layers.1.fc2.weight",
        "multi_modal_projector.linear.bias",
        "language_model.model.layers.2.self_attn.q_proj.bias",
    ],
)
def test_missing_tensors_are_named(tmp_path, part):
    folder, *_ = shared_released("qwen2_audio")
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    state = load_file(str(broken / "model.safetensors"))
    del state[part]
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(MissingWeightsError) as e:
        PALModel.from_pretrained(broken)
    assert ".".join(part.split(".")[-2:]) in str(e.value) and "missing" in str(e.value)


def test_audio_longer_than_the_tower_window_is_refused():
    folder, *_ = shared_released("qwen2_audio")
    model = PALModel.from_pretrained(folder)
    batch = _batch(model, seconds=(2.5,))
    with pytest.raises(AudioTooLongError, match="2.50 s is longer than the 2 s"):
        model(batch)
    with pytest.raises(AudioTooLongError):
        model.token_layout(batch)


@pytest.mark.parametrize("layout", ["processor", "hub", "json"])
def test_every_folder_layout_users_get_loads_the_same(tmp_path, layout):
    """processor_config.json + chat_template.jinja (today's processor.save_pretrained), preprocessor_config.json +
    the template in tokenizer_config.json (the hub's Qwen2-Audio), preprocessor_config.json + chat_template.json."""
    from transformers import AutoProcessor, WhisperFeatureExtractor

    from tests.model.released_tiny import N_MEL, _tokenizer

    folder, *_ = shared_released("qwen2_audio")
    model = PALModel.from_pretrained(folder)
    other = tmp_path / layout
    other.mkdir()
    for f in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(folder / f, other / f)
    save_folder_preprocessing(
        "qwen2_audio",
        other,
        _tokenizer("qwen2_audio"),
        WhisperFeatureExtractor(feature_size=N_MEL, chunk_length=2),
        layout,
    )
    names = {p.name for p in other.iterdir()}
    expect = {
        "processor": {"processor_config.json", "chat_template.jinja"},
        "hub": {"preprocessor_config.json"},
        "json": {"preprocessor_config.json", "chat_template.json"},
    }[layout]
    assert expect <= names and ("processor_config.json" in names) == (layout == "processor")
    loaded = PALModel.from_pretrained(other)
    # the template AutoProcessor resolves (Qwen2AudioProcessor falls back on its own default when the folder has
    # no chat_template.jinja/.json, even when tokenizer_config.json holds one)
    assert loaded.chat_template == AutoProcessor.from_pretrained(other).chat_template
    if layout != "hub":
        assert loaded.chat_template == real_template("qwen2_audio")
    batch = _batch(model)
    assert released_example(loaded, QUESTION) == released_example(model, QUESTION)
    assert torch.equal(loaded(batch), model(batch))


def test_a_folder_lacking_a_part_names_the_files_looked_for(tmp_path):
    folder, *_ = shared_released("glmasr")
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare)
    (bare / "processor_config.json").unlink()
    with pytest.raises(ReleasedModelError, match="preprocessor_config.json and processor_config.json"):
        PALModel.from_pretrained(bare)
    shutil.rmtree(bare)
    shutil.copytree(folder, bare)
    (bare / "chat_template.jinja").unlink()
    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ReleasedModelError) as e:
        PALModel.from_pretrained(bare)
    assert all(f in str(e.value) for f in ("chat_template.jinja", "chat_template.json", "tokenizer_config.json"))


def test_prompt_puts_the_slot_where_the_template_puts_the_placeholder():
    folder, hf, tok, _ = shared_released("qwen2_audio")
    model = PALModel.from_pretrained(folder)
    enc = released_example(model, QUESTION, "C4")
    ids, s = enc["input_ids"], enc["audio_slot"]
    assert (
        tok.convert_ids_to_tokens(ids[s - 1]) == "<|audio_bos|>"
        and tok.convert_ids_to_tokens(ids[s]) == "<|audio_eos|>"
    )
    assert model.audio_token_id not in ids
    answer = [t for t, lab in zip(ids, enc["labels"]) if lab != -100]
    assert tok.decode(answer) == "C4<|im_end|>" and enc["prompt_len"] == len(ids) - len(answer)


def test_bf16_from_the_environment_runs_close_to_fp32(monkeypatch):
    folder, *_ = shared_released("audioflamingo3")
    fp32 = PALModel.from_pretrained(folder)
    batch = _batch(fp32)
    monkeypatch.setenv("WORKBENCH_DTYPE", "bfloat16")
    bf16 = PALModel.from_pretrained(folder)
    assert bf16.dtype == torch.bfloat16 and next(bf16.encoders["audioflamingo3"].parameters()).dtype == torch.bfloat16
    logits = bf16(batch)
    assert torch.isfinite(logits).all() and (logits.float() - fp32(batch)).abs().max() < 0.1
    monkeypatch.setenv("WORKBENCH_DTYPE", "float64")
    with pytest.raises(ValueError, match="WORKBENCH_DTYPE"):
        PALModel.from_pretrained(folder)


def test_nnsight_and_transformer_lens_read_the_same_tower_and_decoder_hooks():
    folder, *_ = shared_released("glmasr")
    model = PALModel.from_pretrained(folder)
    batch = _batch(model)
    names = [
        "encoders.glmasr.blocks.0.attn.hook_pattern",
        "encoders.glmasr.hook_out",
        "connectors.glmasr.hook_out",
        "blocks.1.hook_resid_post",
    ]
    backends_agree(model, batch, names)


def test_dataset_names_a_file_longer_than_the_tower_window(tmp_path):
    import numpy as np
    import soundfile as sf

    from workbench.data.audiofolder import DataError

    folder, *_ = shared_released("qwen2_audio")
    model = PALModel.from_pretrained(folder)
    (tmp_path / "audio").mkdir()
    for name, sec in (("short", 1.0), ("long", 2.5)):
        sf.write(tmp_path / "audio" / f"{name}.wav", np.zeros(int(sec * 16000), dtype=np.float32), 16000)
    (tmp_path / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": f"audio/{n}.wav"}) + "\n" for n in ("short", "long"))
    )
    (tmp_path / "tasks.jsonl").write_text(
        "".join(
            json.dumps(
                {"file_name": f"audio/{n}.wav", "task": "cls", "row_id": n, "question": QUESTION, "answer": "C4"}
            )
            + "\n"
            for n in ("short", "long")
        )
    )
    ds = model.task_dataset(tmp_path, check_audio=False)
    assert ds[0]["wave"].shape[0] == 16000
    with pytest.raises(DataError, match="long.wav"):
        ds[1]


def test_left_padded_batched_generation_equals_each_prompt_alone():
    from workbench.data.dataset import collate

    folder, *_ = shared_released("qwen2_audio")
    model = PALModel.from_pretrained(folder)
    g = torch.Generator().manual_seed(5)
    items = []
    for question, sec in (
        ("Is it loud?", 1.6),
        ("How many clicks do you hear in this recording, one, two or three?", 0.7),
    ):
        enc = released_example(model, question)
        items.append(
            {
                "input_ids": torch.tensor(enc["input_ids"]),
                "labels": torch.tensor(enc["labels"]),
                "audio_slot": enc["audio_slot"],
                "prompt_len": enc["prompt_len"],
                "row": {},
                "wave": (torch.randn(int(sec * 16000), generator=g) * 0.1).numpy(),
            }
        )
    pad = model.tokenizer.pad_token_id
    both = model.generate_ids(collate(items, pad_id=pad, padding_side="left"), max_new_tokens=8)
    assert both.shape[0] == 2
    for b, item in enumerate(items):
        alone = model.generate_ids(collate([item], pad_id=pad, padding_side="left"), max_new_tokens=8)
        assert alone[0].tolist() == both[b, : alone.shape[1]].tolist()


@pytest.mark.parametrize("kind", KINDS)
def test_ask_cli_answers_as_the_transformers_processor_and_model_do(kind, tmp_path, capsys):
    """``python -m workbench.ask --checkpoint FOLDER clip.wav QUESTION`` prints the greedy answer transformers'
    processor + model give for the same file (decoded without special tokens)."""
    import soundfile as sf

    from workbench.ask import main

    folder, hf, tok, _ = shared_released(kind)
    clip = tmp_path / "clip.wav"
    sf.write(clip, (np.random.default_rng(1).standard_normal(20800) * 0.1).astype(np.float32), 16000, subtype="FLOAT")
    assert main(["--checkpoint", str(folder), str(clip), QUESTION, "--max-new-tokens", "6"]) == 0
    printed = capsys.readouterr().out.strip()
    wave, _ = sf.read(clip, dtype="float32")
    if PROCESSORS[kind] is None:  # Voxtral: our ids, the same features (see the parity test)
        model = PALModel.from_pretrained(folder)
        batch = _batch(model)
        batch["waves"], batch["wave_lengths"] = torch.from_numpy(wave)[None], torch.tensor([wave.shape[0]])
        inputs = _hf_inputs(model, batch, kind)
    else:
        inputs = _processor_inputs(folder, wave, QUESTION)
    with torch.no_grad():
        new = hf.generate(**inputs, max_new_tokens=6, do_sample=False)[0, inputs["input_ids"].shape[1] :].tolist()
    eos = hf.generation_config.eos_token_id
    new = new[: new.index(eos) + 1] if eos in new else new
    assert printed == tok.decode(new, skip_special_tokens=True).strip() and printed


def test_the_processor_template_wins_over_the_tokenizer_template(tmp_path):
    """audio-flamingo-3-hf ships two templates: the processor's (chat_template.jinja, places <sound>) and the
    tokenizer's (tokenizer_config.json, string contents only, convert_audioflamingo3_to_hf.py). As with
    AutoProcessor, the processor's is used."""
    folder, *_ = shared_released("audioflamingo3")
    af3 = tmp_path / "af3"
    shutil.copytree(folder, af3)
    tokenizer_only = (
        "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant."
        "<|im_end|>\\n' }}{% endif %}{% for message in messages if message['content'] is not none %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    cfg = json.loads((af3 / "tokenizer_config.json").read_text())
    cfg["chat_template"] = tokenizer_only
    (af3 / "tokenizer_config.json").write_text(json.dumps(cfg))
    model = PALModel.from_pretrained(af3)
    assert model.chat_template == real_template("audioflamingo3")
    assert released_example(model, QUESTION) == released_example(PALModel.from_pretrained(folder), QUESTION)
