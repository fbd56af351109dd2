"""Qwen2.5-Omni's thinker loaded as a hooked PAL model: parity with transformers' own processor + thinker on a tiny
random folder (the real chat template as shipped), the chunked tower's hooks against transformers' tower, and the
hub's full-model layout (``thinker.*`` keys, ``Qwen2_5OmniModel`` config)."""

from __future__ import annotations

import copy
import functools
import json
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.model.released_tiny import backends_agree
from workbench.model.pal import PALModel
from workbench.model.released.prompts import released_example

TEMPLATE = json.loads((Path(__file__).parent / "chat_templates" / "qwen2_5_omni.json").read_text())["chat_template"]
SPECIAL = {
    "audio_token": "<|AUDIO|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
    "image_token": "<|IMAGE|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
}
N_MEL, N_WINDOW = 8, 25  # chunks of 50 mel frames (0.5 s) -> 25 tower frames: pooled pairs cross chunk edges
KEY = "qwen2_5_omni"
QUESTION = "What is the pitch of the tone?"


def _tokenizer(folder: Path):
    """SmolLM2's tokenizer with Qwen2.5-Omni's special tokens, named as its tokenizer_config.json names them."""
    from transformers import AutoTokenizer

    from workbench.model.llm import load_tokenizer

    tok = copy.deepcopy(load_tokenizer("smollm2"))
    tok.add_tokens(list(SPECIAL.values()), special_tokens=True)
    tok.chat_template = None  # SmolLM2's own; the folder's template is Qwen2.5-Omni's, in chat_template.json
    tok.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder, extra_special_tokens=SPECIAL)


def _config(tok):
    from transformers import (
        Qwen2_5OmniAudioEncoderConfig,
        Qwen2_5OmniTextConfig,
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniVisionEncoderConfig,
    )

    audio = Qwen2_5OmniAudioEncoderConfig(
        num_mel_bins=N_MEL,
        d_model=16,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        max_source_positions=64,
        n_window=N_WINDOW,
        output_dim=32,
    )
    vision = Qwen2_5OmniVisionEncoderConfig(
        depth=1, hidden_size=16, num_heads=2, intermediate_size=32, out_hidden_size=32, fullatt_block_indexes=[0]
    )
    text = Qwen2_5OmniTextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
        tie_word_embeddings=False,
    )
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in SPECIAL.items()}
    return Qwen2_5OmniThinkerConfig(
        audio_config=audio,
        vision_config=vision,
        text_config=text,
        audio_token_index=ids["audio_token"],
        image_token_index=ids["image_token"],
        video_token_index=ids["video_token"],
        audio_start_token_id=ids["audio_bos_token"],
        audio_end_token_id=ids["audio_eos_token"],
        # transformers' get_rope_index reads it (the thinker config class lacks it)
        vision_start_token_id=ids["vision_bos_token"],
        vision_end_token_id=ids["vision_eos_token"],
    )


def build_omni(folder: Path, window_s: int = 2, seed: int = 0):
    """A tiny random thinker folder as the hub lays one out (config + safetensors, tokenizer, preprocessor_config.json,
    chat_template.json). Returns (folder, transformers thinker, processor)."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration, WhisperFeatureExtractor

    folder = Path(folder)
    tok = _tokenizer(folder)
    torch.manual_seed(seed)
    hf = Qwen2_5OmniThinkerForConditionalGeneration(_config(tok)).eval()
    with torch.no_grad():  # random init leaves biases and norm weights at 0 / 1: perturb every tensor
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    hf.save_pretrained(folder)
    fe = WhisperFeatureExtractor(feature_size=N_MEL, chunk_length=window_s)
    fe.save_pretrained(folder)
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    return folder, hf, processor(tok, fe)


def processor(tok, fe):
    """transformers' own `Qwen2_5OmniProcessor` for audio + text. Its image and video processors need torchvision,
    which this environment lacks; they are left out (None), which the audio path never reads."""
    from transformers import Qwen2_5OmniProcessor
    from transformers.processing_utils import ProcessorMixin

    check = ProcessorMixin.check_argument_for_proper_class

    def lenient(self, name, arg):
        return None if arg is None and name in ("image_processor", "video_processor") else check(self, name, arg)

    with mock.patch.object(ProcessorMixin, "check_argument_for_proper_class", lenient):
        return Qwen2_5OmniProcessor(feature_extractor=fe, tokenizer=tok, chat_template=TEMPLATE)


@functools.cache
def shared_omni():
    return build_omni(Path(tempfile.mkdtemp(prefix="pal-released-omni-")))


def _wave(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)


def _batch(model, waves):
    enc = released_example(model, QUESTION)
    B = len(waves)
    lengths = torch.tensor([len(w) for w in waves])
    padded = torch.zeros(B, int(lengths.max()))
    for b, w in enumerate(waves):
        padded[b, : len(w)] = torch.from_numpy(w)
    ids = torch.tensor([enc["input_ids"]] * B)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "audio_slot": torch.full((B,), enc["audio_slot"]),
        "waves": padded,
        "wave_lengths": lengths,
    }


def _processor_inputs(proc, wave):
    """transformers' inputs from the raw waveform: the template rendered by the processor, placeholders expanded."""
    msgs = [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": QUESTION}]}]
    text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return proc(text=text, audio=[wave], return_tensors="pt")


@pytest.fixture(scope="module")
def omni():
    folder, hf, proc = shared_omni()
    return folder, hf, proc, PALModel.from_pretrained(folder)


def test_logits_and_greedy_answers_equal_transformers_processor_and_thinker(omni):
    _, hf, proc, model = omni
    wave = _wave(1.3)
    batch = _batch(model, [wave])
    inputs = _processor_inputs(proc, wave)
    ids = inputs["input_ids"][0]
    where = (ids == model.audio_token_id).nonzero()[:, 0]
    s, n = int(where[0]), len(where)
    assert n == int(model.n_audio_tokens(batch)[0]) == ((130 - 1) // 2 + 1 - 2) // 2 + 1  # 1.3 s: 130 mel frames
    # our prompt is the processor's text without the expanded placeholder, the slot where it stood
    assert batch["input_ids"][0].tolist() == ids[:s].tolist() + ids[s + n :].tolist()
    assert int(batch["audio_slot"][0]) == s
    with torch.no_grad():
        ref = hf(**inputs).logits
    logits = model(batch)
    ref_text = torch.cat([ref[:, :s], ref[:, s + n :]], 1)
    assert (logits - ref_text).abs().max() < 1e-4
    new = model.generate_ids(batch, max_new_tokens=12)
    with torch.no_grad():
        hf_new = hf.generate(**inputs, max_new_tokens=12, do_sample=False)[:, ids.shape[0] :]
    assert new.shape == (1, 12) and new.tolist() == hf_new.tolist()
    layout = model.token_layout(batch)
    assert int(layout.audio[KEY].mask.sum()) == n and layout.audio[KEY].residual_index[0, 0] == s


def test_template_as_shipped_puts_the_slot_between_audio_bos_and_eos(omni):
    _, _, _, model = omni
    assert model.chat_template == TEMPLATE
    enc = released_example(model, QUESTION, "C4")
    ids, s = enc["input_ids"], enc["audio_slot"]
    tok = model.tokenizer
    assert (
        tok.convert_ids_to_tokens(ids[s - 1]) == "<|audio_bos|>"
        and tok.convert_ids_to_tokens(ids[s]) == "<|audio_eos|>"
    )
    assert tok.decode(ids[:s]).startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    )
    answer = [t for t, lab in zip(ids, enc["labels"]) if lab != -100]
    assert tok.decode(answer) == "C4<|im_end|>"


def test_chunked_tower_hooks_equal_transformers_tower(omni):
    """Two clips of different lengths in one batch (4 and 3 chunks of 50 mel frames): every layer's output, the
    pooled + normed frames and the projected tokens equal transformers' tower on the processor's features."""
    _, hf, proc, model = omni
    waves = [_wave(1.7, 1), _wave(1.1, 2)]
    batch = _batch(model, waves)
    _, cache = model.run_with_cache(batch)
    feats = proc.feature_extractor(
        waves, sampling_rate=16000, padding="max_length", return_attention_mask=True, return_tensors="pt"
    )
    tower = hf.model.audio_tower
    outs = {}
    handles = [
        layer.register_forward_hook(lambda m, i, o, j=j: outs.__setitem__(j, o[0] if isinstance(o, tuple) else o))
        for j, layer in enumerate(tower.layers)
    ]
    mask = feats["attention_mask"]
    flat = feats["input_features"].permute(0, 2, 1)[mask.bool()].permute(1, 0)
    try:
        with torch.no_grad():
            ref = tower(flat, feature_lens=mask.sum(-1)).last_hidden_state  # [sum of tokens, d_model]
    finally:
        for h in handles:
            h.remove()
    conv = (mask.sum(-1) - 1) // 2 + 1  # tower frames per clip: 85, 55
    assert conv.tolist() == [85, 55]
    for i in range(2):
        ours = cache[f"encoders.{KEY}.blocks.{i}.hook_resid_post"]
        theirs = torch.split(outs[i], conv.tolist())
        for b in range(2):
            assert torch.allclose(ours[b, : conv[b]], theirs[b], atol=1e-5), (i, b)
    pattern = cache[f"encoders.{KEY}.blocks.0.attn.hook_pattern"]
    assert pattern.shape == (2, 2, 100, 100)  # 4 chunks of 25 frames in the 2 s window
    assert pattern[0, :, 30, :25].abs().max() == 0 and pattern[0, :, 30, 50:].abs().max() == 0  # inside its chunk
    assert torch.allclose(pattern[0, :, 30, 25:50].sum(-1), torch.ones(2))
    assert pattern[1, :, 50, 55:].abs().max() == 0  # keys past the clip's 55 frames: none
    tokens = cache[f"connectors.{KEY}.hook_out"]
    assert tokens.shape == (2, model.n_audio_slots, model.cfg.d_model) and model.n_audio_slots == 50
    n = model.n_audio_tokens(batch).tolist()
    assert n == [42, 27]
    assert torch.allclose(torch.cat([tokens[0, : n[0]], tokens[1, : n[1]]]), ref, atol=1e-5)
    assert cache[f"encoders.{KEY}.hook_out"].shape == (2, 50, 16)
    assert cache["blocks.2.hook_resid_post"].shape[:2] == (2, batch["input_ids"].shape[1] + 50)


def test_batch_of_clips_equals_each_alone_and_tower_edits_reach_the_logits(omni):
    _, _, _, model = omni
    waves = [_wave(1.7, 3), _wave(0.6, 4)]
    both = model(_batch(model, waves))
    for b, w in enumerate(waves):
        assert (model(_batch(model, [w]))[0] - both[b]).abs().max() < 1e-4
    batch = _batch(model, waves[:1])
    edited = model.run_with_hooks(batch, fwd_hooks=[(f"encoders.{KEY}.blocks.1.hook_mlp_out", lambda t, hook: t * 0)])
    assert (edited - model(batch)).abs().max() > 1e-4


def test_hub_full_model_layout_and_in_memory_keys_load_the_same(tmp_path):
    """save_pretrained writes the thinker's keys as the hub has them inside ``thinker.`` (``model.layers.*``,
    ``audio_tower.*``, ``visual.*``, ``lm_head.*``). The hub's Qwen2.5-Omni folders hold the whole model
    (``Qwen2_5OmniModel``: thinker + talker + token2wav, keys ``thinker.*``, ``talker.*``, ...), and transformers 5's
    in-memory names are ``model.language_model.*`` / ``model.audio_tower.*``: all three load the same."""
    from transformers import Qwen2_5OmniConfig

    folder, hf, _ = shared_omni()
    saved = load_file(str(folder / "model.safetensors"))
    assert {k.split(".")[0] for k in saved} == {"model", "audio_tower", "visual", "lm_head"}
    full, memory = tmp_path / "full", tmp_path / "memory"
    for where, state in (
        (full, {"thinker." + k: v for k, v in saved.items()} | {"talker.model.norm.weight": torch.ones(4)}),
        (memory, {k: v.contiguous() for k, v in hf.state_dict().items()}),
    ):
        shutil.copytree(folder, where)
        save_file(state, str(where / "model.safetensors"))
    assert any(k.startswith("model.language_model.") for k in load_file(str(memory / "model.safetensors")))
    cfg = Qwen2_5OmniConfig(thinker_config=hf.config.to_dict()).to_dict()
    cfg["architectures"] = ["Qwen2_5OmniModel"]
    (full / "config.json").write_text(json.dumps(cfg))
    # the hub's preprocessor_config.json holds the image processor's fields beside the feature extractor's
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    pre.update(
        processor_class="Qwen2_5OmniProcessor",
        image_processor_type="Qwen2VLImageProcessor",
        min_pixels=3136,
        max_pixels=12845056,
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
    )
    (full / "preprocessor_config.json").write_text(json.dumps(pre))
    model = PALModel.from_pretrained(folder)
    batch = _batch(model, [_wave(0.9, 5)])
    base = model(batch)
    assert torch.equal(PALModel.from_pretrained(full)(batch), base)
    assert torch.equal(PALModel.from_pretrained(memory)(batch), base)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from workbench.data.synth import generate

    root = tmp_path_factory.mktemp("omni-cli")
    data = generate(root / "data", 12, seed=0, split="val", preset="tiny", progress=False)
    suite = root / "loudness.yaml"
    suite.write_text(
        "attribute: loudness_class\nsites:\n  encoders: all\n  connectors: all\n"
        "  resid: {layers: [1], positions: [last_prompt, slot_after]}\n"
        "estimator:\n  classification: {C: 1.0, max_iter: 200}\nfolds: 2\nseed: 0\nbootstrap: 20\n"
    )
    return data, root, suite


CLI_CASES = {
    "attention": (["--n", "4"], "attention_to_audio.csv", lambda df: set(df["encoder"]) == {KEY}),
    "logit_lens": (["--n", "4"], "logit_lens.csv", lambda df: set(df["layer"]) == {0, 1, 2}),
    "patch": (
        ["--n", "60", "--max-pairs", "2", "--layers", "0,2"],
        "patching.csv",
        lambda df: KEY in set(df["encoder"]),
    ),
    "probe": (
        ["SUITE", "--no-progress"],
        "probe_loudness.csv",
        lambda df: {f"encoders.{KEY}.hook_out", f"connectors.{KEY}.hook_out"} <= set(df["site"]),
    ),
}


@pytest.mark.parametrize("cli", list(CLI_CASES))
def test_analysis_clis_run_on_the_omni_folder(omni, synth, cli, monkeypatch, capsys):
    """The hub's layout keeps the template in chat_template.json only: the CLIs (patching's first answer token
    included) read it from there."""
    import importlib

    import pandas as pd

    from workbench.analysis import outputs

    monkeypatch.setattr(outputs, "_PNG_OK", False)
    folder = omni[0]
    data, root, suite = synth
    extra, produced, check = CLI_CASES[cli]
    extra = [str(suite) if a == "SUITE" else a for a in extra]
    out = root / "out" / cli
    rc = importlib.import_module(f"workbench.{cli}").main(
        ["--checkpoint", str(folder), "--data", str(data), "--out-dir", str(out), *extra]
    )
    assert rc == 0, capsys.readouterr().err
    df = pd.read_csv(out / produced)
    assert len(df) > 0 and check(df), df.head()


def test_retrofitted_integrations_run_and_move_the_logits(omni):
    folder, _, _, model = omni
    batch = _batch(model, [_wave(1.1, 6)])
    base = model(batch)
    for mode in ("plits", "lal"):
        other = PALModel.from_pretrained(folder, integration={"mode": mode, "layer": 1})
        logits = other(batch)
        assert torch.isfinite(logits).all() and (logits - base).abs().max() > 1e-3, mode
        assert other.token_layout(batch).audio[KEY].mode == mode


def test_nnsight_and_transformer_lens_read_the_same_hooks(omni):
    _, _, _, model = omni
    batch = _batch(model, [_wave(1.2, 7)])
    names = [
        f"encoders.{KEY}.blocks.0.attn.hook_pattern",
        f"encoders.{KEY}.hook_out",
        f"connectors.{KEY}.hook_out",
        "blocks.1.hook_resid_post",
    ]
    backends_agree(model, batch, names)
