"""Granite Speech loaded as a hooked PAL model: parity with transformers' own GraniteSpeechForConditionalGeneration on
a tiny random folder (Conformer tower hooks, windowed Q-Former connector, Granite's multipliers, the PEFT adapter
merged). Granite's feature extractor needs torchaudio, which this environment cannot install for torch 2.13, so the
oracle gets the same ``input_features`` as our model instead of a raw waveform (see the guide, §5)."""

from __future__ import annotations

import copy
import functools
import json
import tempfile
from pathlib import Path

import pytest
import torch

from tests.model.released_tiny import backends_agree
from workbench.model.pal import PALModel
from workbench.model.released.granite_speech import frames_for, tokens_for
from workbench.model.released.prompts import _take_placeholder

KEY = "granite_speech"
N_IN = 16  # stacked log-mel pairs (160 in the released models)
QUESTION = "What is the pitch of the tone?"


def granite_prompt(model, question: str) -> tuple[list[int], int]:
    """(ids without the placeholder, slot) in the message shape Granite's model card documents: string content with
    ``<|audio|>`` inline (`released_example` renders ``[{"type": "audio"}, {"type": "text"}]`` content, which
    Granite's template concatenates to a string and so cannot render)."""
    msgs = [{"role": "user", "content": "<|audio|>" + question}]
    text = model.tokenizer.apply_chat_template(
        msgs, chat_template=model.chat_template, tokenize=False, add_generation_prompt=True
    )
    return _take_placeholder(model, list(model.tokenizer(text, add_special_tokens=False)["input_ids"]))


TEMPLATE = json.loads((Path(__file__).parent / "chat_templates" / "granite_speech.json").read_text())["chat_template"]


def _tokenizer(folder: Path):
    """SmolLM2's vocabulary with Granite's role and audio tokens and Granite 3.3's chat template (in
    tokenizer_config.json, where the Granite folders keep it)."""
    from workbench.model.llm import load_tokenizer

    tok = copy.deepcopy(load_tokenizer("smollm2"))
    tok.add_tokens(["<|audio|>", "<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>"], special_tokens=True)
    tok.chat_template = TEMPLATE
    tok.save_pretrained(folder)
    return tok


def _config(tok, lora: bool):
    from transformers import Blip2QFormerConfig, GraniteConfig, GraniteSpeechConfig, GraniteSpeechEncoderConfig

    enc = GraniteSpeechEncoderConfig(
        input_dim=N_IN,
        num_layers=2,
        hidden_dim=16,
        feedforward_mult=2,
        num_heads=2,
        dim_head=8,
        output_dim=6,
        context_size=20,
        max_pos_emb=32,
        dropout=0.0,
        conv_kernel_size=5,
        conv_expansion_factor=2,
    )
    proj = Blip2QFormerConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        encoder_hidden_size=16,
        cross_attention_frequency=1,
    )
    text = GraniteConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        embedding_multiplier=12.0,
        residual_multiplier=0.22,
        attention_multiplier=0.0625,
        logits_scaling=8.0,
        tie_word_embeddings=True,
    )
    return GraniteSpeechConfig(
        encoder_config=enc,
        projector_config=proj,
        text_config=text,
        audio_token_index=tok.convert_tokens_to_ids("<|audio|>"),
        has_lora_adapter=lora,
        window_size=15,
        downsample_rate=5,
    )


def build_granite(folder: Path, lora: bool = False, seed: int = 0):
    """A tiny random Granite Speech folder saved with transformers' save_pretrained (model, tokenizer with the
    chat template as shipped; with ``lora`` also a PEFT adapter on q/v as the released folders have).
    Returns (folder, transformers model with the adapter active when there is one)."""
    from transformers import GraniteSpeechForConditionalGeneration

    folder = Path(folder)
    tok = _tokenizer(folder)
    torch.manual_seed(seed)
    hf = GraniteSpeechForConditionalGeneration(_config(tok, lora)).eval()
    with torch.no_grad():  # random init leaves biases, norms and BatchNorm statistics at 0 / 1: perturb every tensor
        for p in list(hf.parameters()) + [b for n, b in hf.named_buffers() if "running" in n]:
            p.add_(torch.randn_like(p).abs() * 0.05 if "running_var" in str(p) else torch.randn_like(p) * 0.05)
    hf.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|end_of_text|>")
    hf.save_pretrained(folder)
    # the feature extractor's config as the hub has it (GraniteSpeechFeatureExtractor itself needs torchaudio to build)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "feature_extractor_type": "GraniteSpeechFeatureExtractor",
                "processor_class": "GraniteSpeechProcessor",
                "sampling_rate": 16000,
                "n_fft": 512,
                "win_length": 400,
                "hop_length": 160,
                "n_mels": 80,
                "projector_window_size": 15,
                "projector_downsample_rate": 5,
            }
        )
    )
    if lora:
        from peft import LoraConfig, get_peft_model

        peft = get_peft_model(
            hf.model.language_model,
            LoraConfig(
                r=2, lora_alpha=32, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, init_lora_weights=False
            ),
        )
        peft.save_pretrained(folder)
        hf.model.language_model = peft.merge_and_unload()  # the adapter's effect, as transformers enables it with audio
    return folder, hf.eval(), tok


@functools.cache
def shared_granite(lora: bool = False):
    return build_granite(Path(tempfile.mkdtemp(prefix="pal-released-granite-")), lora=lora)


def _batch(model, seconds=(1.3,), seed=0):
    """Prompt ids (placeholder out) + random stacked log-mel features for clips of ``seconds``."""
    ids, slot = granite_prompt(model, QUESTION)
    samples = torch.tensor([int(s * 16000) for s in seconds])
    T = int(frames_for(samples).max())
    feats = torch.randn(len(seconds), T, N_IN, generator=torch.Generator().manual_seed(seed))
    ids = torch.tensor([ids] * len(seconds))
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "audio_slot": torch.full((len(seconds),), slot),
        "input_features": feats,
        "audio_lengths": samples,
    }


def _hf_inputs(model, batch):
    n = int(model.n_audio_tokens(batch)[0])
    ids, s = batch["input_ids"][0].tolist(), int(batch["audio_slot"][0])
    hf_ids = torch.tensor([ids[:s] + [model.audio_token_id] * n + ids[s:]])
    projected = -(-batch["input_features"].shape[1] // 15) * 3  # the projector's tokens for the (padded) features
    return (
        {
            "input_ids": hf_ids,
            "attention_mask": torch.ones_like(hf_ids),
            "input_features": batch["input_features"],
            "input_features_mask": torch.arange(projected)[None] < n,
        },
        s,
        n,
    )


@pytest.mark.parametrize("lora", [False, True])
def test_logits_and_greedy_answers_equal_transformers(lora, monkeypatch):
    folder, hf, _ = shared_granite(lora)
    model = PALModel.from_pretrained(folder)
    batch = _batch(model)
    inputs, s, n = _hf_inputs(model, batch)
    assert n == tokens_for(20800) == 15  # 1.3 s: 65 tower frames -> 5 windows of 15 -> 15 tokens
    with torch.no_grad():
        ref = hf(**inputs).logits
    logits = model(batch)
    assert (logits - torch.cat([ref[:, :s], ref[:, s + n :]], 1)).abs().max() < 1e-4
    new = model.generate_ids(batch, max_new_tokens=12)
    with torch.no_grad():
        hf_new = hf.generate(**inputs, max_new_tokens=12, do_sample=False)[:, inputs["input_ids"].shape[1] :]
    assert new.tolist() == hf_new.tolist()
    if lora:  # the adapter matters: without it the logits move
        monkeypatch.setenv("WORKBENCH_GRANITE_LORA", "0")
        bare = PALModel.from_pretrained(folder)
        assert (bare(batch) - logits).abs().max() > 1e-3


def test_conformer_hooks_equal_the_transformers_encoder():
    folder, hf, _ = shared_granite(False)
    model = PALModel.from_pretrained(folder)
    batch = _batch(model, seconds=(1.3,))
    _, cache = model.run_with_cache(batch)
    enc = hf.model.encoder
    outs = {}
    # clone: transformers adds the CTC self-conditioning in place into the middle block's output
    handles = [
        layer.register_forward_hook(lambda m, i, o, j=j: outs.__setitem__(j, o.clone()))
        for j, layer in enumerate(enc.layers)
    ]
    try:
        with torch.no_grad():
            ref = enc(batch["input_features"]).last_hidden_state
            tokens = hf.model.projector(ref)
    finally:
        for h in handles:
            h.remove()
    assert torch.allclose(cache[f"encoders.{KEY}.blocks.0.hook_resid_post"], outs[0], atol=1e-5)
    assert torch.allclose(cache[f"encoders.{KEY}.hook_out"], ref, atol=1e-5)
    pattern = cache[f"encoders.{KEY}.blocks.1.attn.hook_pattern"]
    assert pattern.shape == (1, 2, 4, 20, 20)  # 65 frames in 4 attention blocks of 20
    assert pattern[0, :, 3, :5, 5:].abs().max() == 0 and torch.allclose(pattern[0, :, 3, :5].sum(-1), torch.ones(2, 5))
    assert cache[f"encoders.{KEY}.hook_ctc_logits"].shape == (1, 65, 6)
    ours = cache[f"connectors.{KEY}.hook_out"]
    assert ours.shape == (1, model.n_audio_slots, model.cfg.d_model) and model.n_audio_slots == tokens_for(30 * 16000)
    emb = hf.config.text_config.embedding_multiplier  # folded into the connector: the tokens as written
    assert torch.allclose(ours[:, :15], tokens * emb, atol=1e-4)
    with model.hooks(fwd_hooks=[(f"encoders.{KEY}.blocks.0.hook_conv_out", lambda t, hook: t * 0)]):
        edited_logits, edited = model.run_with_cache(batch, names_filter=f"connectors.{KEY}.hook_out")
    # a tower edit reaches the tokens and the logits (the tiny random Q-Former damps it: its queries dominate)
    assert (edited[f"connectors.{KEY}.hook_out"] - ours).abs().max() > 1e-3
    assert (edited_logits - model(batch)).abs().max() > 1e-6


def test_waveforms_without_torchaudio_give_an_error_naming_the_fix():
    pytest.importorskip("torch")
    try:
        import torchaudio  # noqa: F401

        pytest.skip("torchaudio is installed here: the feature extractor runs")
    except (ImportError, OSError):
        pass
    from workbench.model.released import ReleasedModelError

    folder, _, _ = shared_granite(False)
    model = PALModel.from_pretrained(folder)
    assert model.feature_extractor is None
    ids, slot = granite_prompt(model, QUESTION)
    batch = {
        "input_ids": torch.tensor([ids]),
        "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
        "audio_slot": torch.tensor([slot]),
        "waves": torch.zeros(1, 16000),
        "wave_lengths": torch.tensor([16000]),
    }
    with pytest.raises(ReleasedModelError, match="torchaudio"):
        model(batch)


def test_audio_token_counts_are_those_of_transformers_processor_tests():
    """transformers' tests/models/granite_speech/test_processing_granite_speech.py (run against the real
    ibm-granite/granite-speech-3.3-8b processor): 269920 samples -> 844 encoder frames and 171 audio tokens,
    142100 samples -> 90 tokens."""
    assert int(frames_for(torch.tensor(269920))) == 844
    assert [int(tokens_for(torch.tensor(n))) for n in (142100, 269920)] == [90, 171]


def test_batch_of_two_clip_lengths_equals_transformers_row_by_row():
    """Clips of 1.3 s and 0.5 s in one batch: the features are padded to the longer clip (as the processor pads a
    batch; the Conformer reads the padding), the short clip keeps its own 6 tokens and the slot masks the rest."""
    folder, hf, _ = shared_granite(False)
    model = PALModel.from_pretrained(folder)
    batch = _batch(model, seconds=(1.3, 0.5), seed=4)
    assert model.n_audio_tokens(batch).tolist() == [15, 6]
    logits = model(batch)
    for b in range(2):
        row = {k: v[b : b + 1] for k, v in batch.items()}
        inputs, s, n = _hf_inputs(model, row)
        with torch.no_grad():
            ref = hf(**inputs).logits
        assert (logits[b : b + 1] - torch.cat([ref[:, :s], ref[:, s + n :]], 1)).abs().max() < 1e-4
    assert model.token_layout(batch).audio[KEY].mask.sum(1).tolist() == [15, 6]


def test_retrofitted_integrations_run_and_move_the_logits():
    folder, _, _ = shared_granite(False)
    model = PALModel.from_pretrained(folder)
    batch = _batch(model)
    base = model(batch)
    for mode in ("plits", "lal"):
        other = PALModel.from_pretrained(folder, integration={"mode": mode, "layer": 1})
        logits = other(batch)
        assert torch.isfinite(logits).all() and (logits - base).abs().max() > 1e-3, mode


def test_nnsight_and_transformer_lens_read_the_same_hooks():
    folder, _, _ = shared_granite(False)
    model = PALModel.from_pretrained(folder)
    batch = _batch(model)
    names = [
        f"encoders.{KEY}.blocks.0.attn.hook_pattern",
        f"encoders.{KEY}.hook_ctc_logits",
        f"encoders.{KEY}.hook_out",
        f"connectors.{KEY}.hook_out",
        "blocks.1.hook_resid_post",
    ]
    tl = backends_agree(model, batch, names)
    assert tl["blocks.1.hook_resid_post"].shape == (
        1,
        batch["input_ids"].shape[1] + model.n_audio_slots,
        model.cfg.d_model,
    )


def test_template_as_shipped_puts_the_slot_at_the_start_of_the_user_turn():
    folder, _, tok = shared_granite(False)
    model = PALModel.from_pretrained(folder)
    assert model.chat_template == TEMPLATE
    ids, s = granite_prompt(model, QUESTION)
    head, tail = tok.decode(ids[:s]), tok.decode(ids[s:])
    assert head.startswith("<|start_of_role|>system<|end_of_role|>Knowledge Cutoff Date: April 2024.\nToday's Date: ")
    assert head.endswith("You are a helpful AI assistant.<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>")
    assert tail == QUESTION + "<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>"
    assert model.audio_token_id not in ids and model.eos_token_ids[0] == tok.convert_tokens_to_ids("<|end_of_text|>")
