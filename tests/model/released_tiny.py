"""Tiny randomly initialised released audio-LLMs (Qwen2-Audio, Voxtral, Audio Flamingo 3, GLM-ASR), built
offline from their transformers config classes and saved as model folders (config, safetensors, tokenizer
with an audio chat template, feature extractor): 2-layer towers, 3-layer text models."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

N_MEL = 8
TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' %}Audio 1: AUDIO_SPAN\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
#: class -> (placeholder token, tokens around it)
PLACEHOLDERS = {
    "qwen2_audio": ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"),
    "voxtral": ("[AUDIO]", "[BEGIN_AUDIO]", ""),
    "audioflamingo3": ("<sound>", "", ""),
    "glmasr": ("<|pad|>", "<|begin_of_audio|>", "<|end_of_audio|>"),
}
KINDS = tuple(PLACEHOLDERS)


@functools.lru_cache(maxsize=None)
def _base_tokenizer():
    from workbench.model.llm import load_tokenizer

    return load_tokenizer("smollm2")


def _tokenizer(kind: str):
    import copy

    tok = copy.deepcopy(_base_tokenizer())
    audio, bos, eos = PLACEHOLDERS[kind]
    tok.add_tokens([t for t in (audio, bos, eos) if t], special_tokens=True)
    tok.chat_template = TEMPLATE.replace("AUDIO_SPAN", bos + audio + eos)
    return tok


def _config(kind: str, vocab: int, audio_id: int, window_s: float):
    from transformers import (AudioFlamingo3Config, AudioFlamingo3EncoderConfig, GlmAsrConfig, GlmAsrEncoderConfig,
                              LlamaConfig, Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2Config, VoxtralConfig,
                              VoxtralEncoderConfig)

    positions = int(window_s * 50)  # 100 mel frames per second, halved by the tower's second convolution
    text = dict(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False)
    whisper = dict(num_mel_bins=N_MEL, max_source_positions=positions)
    if kind == "qwen2_audio":
        audio = Qwen2AudioEncoderConfig(d_model=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32, **whisper)
        return Qwen2AudioConfig(audio_config=audio, text_config=Qwen2Config(**text), audio_token_index=audio_id)
    if kind == "voxtral":
        audio = VoxtralEncoderConfig(hidden_size=16, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, **whisper)
        return VoxtralConfig(audio_config=audio, text_config=LlamaConfig(**text).to_dict(), audio_token_id=audio_id)
    if kind == "audioflamingo3":
        audio = AudioFlamingo3EncoderConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, **whisper)
        return AudioFlamingo3Config(audio_config=audio, text_config=Qwen2Config(**text), audio_token_id=audio_id)
    audio = GlmAsrEncoderConfig(hidden_size=16, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, num_mel_bins=N_MEL, max_position_embeddings=positions)
    return GlmAsrConfig(audio_config=audio, text_config=LlamaConfig(**text).to_dict(), audio_token_id=audio_id,
                        tie_word_embeddings=False)


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
    hf.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    hf.save_pretrained(folder)
    tok.save_pretrained(folder)
    fe = WhisperFeatureExtractor(feature_size=N_MEL, chunk_length=int(window_s))
    fe.save_pretrained(folder)
    return folder, hf, tok, fe


@functools.lru_cache(maxsize=None)
def shared_released(kind: str, window_s: int = 2):
    """One folder per (kind, window) per test session."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=f"pal-released-{kind}-"))
    return build_released(kind, folder, window_s)
