"""Tiny randomly initialised released audio-LLMs (Qwen2-Audio, Voxtral, Audio Flamingo 3, GLM-ASR), built
offline from their transformers config classes and saved as model folders the way users get them: weights by
``model.save_pretrained``, tokenizer + feature extractor + the checkpoint's real chat template (fixtures/
chat_templates) by today's ``processor.save_pretrained`` (Voxtral: the hub layout, its processor needs
mistral-common). 2-layer towers, 3-layer text models."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

N_MEL = 8
FIXTURES = Path(__file__).parent / "fixtures" / "chat_templates"
#: class -> (placeholder token, other special tokens its real template writes)
PLACEHOLDERS = {
    "qwen2_audio": ("<|AUDIO|>", ("<|audio_bos|>", "<|audio_eos|>")),
    "voxtral": ("[AUDIO]", ("[BEGIN_AUDIO]", "[INST]", "[/INST]", "<s>", "</s>")),
    "audioflamingo3": ("<sound>", ()),
    "glmasr": ("<|pad|>", ("<|begin_of_audio|>", "<|end_of_audio|>", "<|user|>", "<|assistant|>", "<|system|>")),
}
#: the token that ends an assistant turn in each class's real template (the tiny model's generation EOS)
END_OF_TURN = {"qwen2_audio": "<|im_end|>", "voxtral": "</s>", "audioflamingo3": "<|im_end|>", "glmasr": "<|user|>"}
#: the transformers processor class that writes each folder (None: the checkpoint's processor needs mistral-common,
#: so the folder is written as the hub has it: preprocessor_config.json + the tokenizer's own template)
PROCESSORS = {
    "qwen2_audio": "Qwen2AudioProcessor",
    "voxtral": None,
    "audioflamingo3": "AudioFlamingo3Processor",
    "glmasr": "GlmAsrProcessor",
}
KINDS = tuple(PLACEHOLDERS)


def real_template(kind: str) -> str:
    """The chat template the released checkpoint ships (tests/model/fixtures/chat_templates/SOURCE.md)."""
    return (FIXTURES / f"{kind}.jinja").read_text()


@functools.cache
def _base_tokenizer():
    from workbench.model.llm import load_tokenizer

    return load_tokenizer("smollm2")


def _tokenizer(kind: str):
    import copy

    tok = copy.deepcopy(_base_tokenizer())
    audio, others = PLACEHOLDERS[kind]
    tok.add_tokens([audio, *others], special_tokens=True)
    if kind == "voxtral":
        tok.bos_token, tok.eos_token = "<s>", "</s>"
    tok.chat_template = real_template(kind)
    return tok


def _config(kind: str, vocab: int, audio_id: int, window_s: float):
    from transformers import (
        AudioFlamingo3Config,
        AudioFlamingo3EncoderConfig,
        GlmAsrConfig,
        GlmAsrEncoderConfig,
        LlamaConfig,
        Qwen2AudioConfig,
        Qwen2AudioEncoderConfig,
        Qwen2Config,
        VoxtralConfig,
        VoxtralEncoderConfig,
    )

    positions = int(window_s * 50)  # 100 mel frames per second, halved by the tower's second convolution
    text = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    whisper = dict(num_mel_bins=N_MEL, max_source_positions=positions)
    if kind == "qwen2_audio":
        audio = Qwen2AudioEncoderConfig(
            d_model=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32, **whisper
        )
        return Qwen2AudioConfig(audio_config=audio, text_config=Qwen2Config(**text), audio_token_index=audio_id)
    if kind == "voxtral":
        audio = VoxtralEncoderConfig(
            hidden_size=16, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, **whisper
        )
        return VoxtralConfig(audio_config=audio, text_config=LlamaConfig(**text).to_dict(), audio_token_id=audio_id)
    if kind == "audioflamingo3":
        audio = AudioFlamingo3EncoderConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, **whisper
        )
        return AudioFlamingo3Config(audio_config=audio, text_config=Qwen2Config(**text), audio_token_id=audio_id)
    audio = GlmAsrEncoderConfig(
        hidden_size=16,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_mel_bins=N_MEL,
        max_position_embeddings=positions,
    )
    return GlmAsrConfig(
        audio_config=audio,
        text_config=LlamaConfig(**text).to_dict(),
        audio_token_id=audio_id,
        tie_word_embeddings=False,
    )


def save_folder_preprocessing(kind: str, folder: Path, tok, fe, layout: str = "processor"):
    """Write tokenizer, feature extractor and chat template as users get them. ``layout``: "processor" (today's
    ``processor.save_pretrained``: ``processor_config.json`` holding the feature extractor, ``chat_template.jinja``),
    "hub" (``preprocessor_config.json``, the template inside ``tokenizer_config.json``) or "json"
    (``preprocessor_config.json`` + ``chat_template.json``)."""
    import json

    import transformers

    cls = PROCESSORS[kind]
    if layout == "processor" and cls is not None:
        getattr(transformers, cls)(
            feature_extractor=fe, tokenizer=tok, chat_template=real_template(kind)
        ).save_pretrained(folder)
        return
    fe.save_pretrained(folder)
    tok.save_pretrained(folder)
    if layout == "json":
        (Path(folder) / "chat_template.jinja").unlink(missing_ok=True)
        cfg = Path(folder) / "tokenizer_config.json"
        meta = json.loads(cfg.read_text())
        meta.pop("chat_template", None)
        cfg.write_text(json.dumps(meta))
        (Path(folder) / "chat_template.json").write_text(json.dumps({"chat_template": real_template(kind)}))
    elif layout == "hub" and (Path(folder) / "chat_template.jinja").exists():
        (Path(folder) / "chat_template.jinja").unlink()
        cfg = Path(folder) / "tokenizer_config.json"
        meta = json.loads(cfg.read_text())
        meta["chat_template"] = real_template(kind)
        cfg.write_text(json.dumps(meta))


def build_released(kind: str, folder: Path, window_s: int = 2, seed: int = 0):
    """Save a tiny random ``kind`` model folder; returns (folder, the transformers model, tokenizer, extractor)."""
    import transformers
    from transformers import WhisperFeatureExtractor

    from workbench.model.released.registry import ARCHITECTURES

    folder = Path(folder)
    tok = _tokenizer(kind)
    audio_id = tok.convert_tokens_to_ids(PLACEHOLDERS[kind][0])
    cfg = _config(kind, len(tok), audio_id, window_s)
    cls_name = next(a.cls for a in ARCHITECTURES.values() if a.key == kind)
    torch.manual_seed(seed)
    hf = getattr(transformers, cls_name)(cfg).eval()
    with torch.no_grad():  # random init leaves biases and norm weights at 0 / 1: perturb every tensor
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.generation_config.eos_token_id = tok.convert_tokens_to_ids(END_OF_TURN[kind])
    hf.save_pretrained(folder)
    fe = WhisperFeatureExtractor(feature_size=N_MEL, chunk_length=int(window_s))
    save_folder_preprocessing(kind, folder, tok, fe)
    return folder, hf, tok, fe


@functools.cache
def shared_released(kind: str, window_s: int = 2):
    """One folder per (kind, window) per test session."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=f"pal-released-{kind}-"))
    return build_released(kind, folder, window_s)


def backends_agree(model, batch, names: list[str]) -> dict:
    """Assert TransformerLens hooks and an nnsight trace read the same logits and the same ``names``; returns the
    TransformerLens cache {name: tensor}."""
    from workbench.analysis.core import collect

    tl_logits, tl = collect(model, batch, names, backend="transformer_lens")
    nn_logits, ns = collect(model, batch, names, backend="nnsight")
    assert torch.allclose(tl_logits, nn_logits)
    for n in names:
        assert torch.allclose(tl[n], ns[n]), n
    return tl
