"""Ask a trained model about one recording, and explain its answer.

    answer = ask(model, "clip.wav", "What is the pitch class?")         # or model.ask(...)
    ex = explain(model, "clip.wav", "What is the pitch class?")         # or model.explain(...)
    ex.answer, ex.attention_layers, ex.lens, ex.time_attention
    ex.write_html("clip.html")                                          # spectrogram + attention over time

Audio: a file path (any format libsndfile reads, any rate, any channel count) or a waveform (``[S]`` or
``[C, S]`` with ``sample_rate=``). Each encoder gets the clip mixed down to mono and resampled to its own
rate, and the model reads the encoder tokens as it does from the token cache in training.

The explanation re-runs the prompt followed by the generated answer tokens and reads, through the shared
analyses (`workbench.analysis.attention`, `workbench.analysis.logit_lens`):

* ``attention``: `attention_to_audio` with the ``answer`` query set (the positions that predict the answer
  tokens), one row per (layer, head, encoder); ``attention_layers`` its mean over heads per (layer, encoder);
* ``lens``: `logit_lens` of the first answer token per layer, with and without audio;
* ``token_attention``: per (layer, encoder, audio token) the attention weight of the answer queries on that
  token (mean over heads and queries), with the token's span of the clip (``start_s``, ``end_s``, ``center_s``);
* ``time_attention``: per (encoder, frame) that attention mapped back onto the encoder's frames (through
  each token's frame weights: its pooling segment for an MLP connector, its cross-attention over frames for
  a Q-Former latent; `connector.frame_weights`), summed over the encoder's tokens and averaged over the
  layers where they are visible: ``start_s``, ``end_s`` (the frame's time span), ``weight``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.analysis.attention import attention_to_audio, query_mask
from workbench.analysis.core import collect
from workbench.analysis.logit_lens import logit_lens
from workbench.common.audio_io import AudioError, load_audio, resample, to_mono
from workbench.data.dataset import DEFAULT_SYSTEM_PROMPT, build_prompt, collate

__all__ = ["Explanation", "load_clip", "ask", "explain", "audio_token_attention"]

AudioInput = str | os.PathLike | np.ndarray | torch.Tensor


def load_clip(audio: AudioInput, sample_rate: int | None = None) -> tuple[np.ndarray, int, str]:
    """(mono float32 wave [S] at its own rate, that rate, a label for it) from a path or a waveform.

    A waveform is ``[S]`` or ``[C, S]`` (channels first, as `workbench.common.audio_io` uses) and needs ``sample_rate``."""
    if isinstance(audio, (str, os.PathLike)):
        wave, sr = load_audio(audio, target_sr=None, mono=True)
        return wave, sr, str(audio)
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().float().numpy()
    if not isinstance(audio, np.ndarray):
        raise AudioError(f"audio must be a file path or a waveform array, got {type(audio).__name__}")
    if sample_rate is None:
        raise AudioError("a waveform needs its rate: pass sample_rate=... (Hz), or pass the file path instead")
    if audio.ndim == 2 and audio.shape[0] > audio.shape[1]:
        raise AudioError(f"waveform of shape {audio.shape} looks like [S, C]; pass it channels first ([C, S], "
                         "e.g. wave.T) or mixed down to [S]")
    wave = to_mono(audio)
    if wave.shape[0] == 0 or not np.isfinite(wave).all():
        raise AudioError("the waveform is empty or holds NaN/inf samples; pass a clip with real samples")
    return wave, int(sample_rate), f"waveform ({wave.shape[0] / sample_rate:.2f} s at {sample_rate} Hz)"


@torch.no_grad()
def _encode(model, wave: np.ndarray, sr: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{encoder: (frames [1, T, D], mask [1, T])}, each encoder fed the clip at its own rate."""
    out = {}
    for spec in model.encoder_specs:
        enc = model.encoders[spec.key].encoder()
        w = torch.from_numpy(resample(wave, sr, enc.sample_rate))[None]
        out[spec.name] = enc(w)
    return out


def _item(model, prompt_ids: list[int], slot: int, frames: dict, answer_ids: list[int] = ()) -> dict:
    ids = list(prompt_ids) + list(answer_ids)
    return {"input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor([-100] * len(prompt_ids) + list(answer_ids), dtype=torch.long),
            "audio_slot": slot, "prompt_len": len(prompt_ids), "row": {},
            "audio_tokens": {n: f[0].cpu() for n, (f, _) in frames.items()}}


def _pad_id(tok) -> int:
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return int(pad if pad is not None else 0)


def _generate(model, wave, sr, question, system_prompt, max_new_tokens):
    """(prompt ids, slot, encoder frames, answer token ids up to and including the end-of-turn token)."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("the question is empty: pass the question to ask about the clip as a string")
    tok = model.tokenizer
    prompt, slot = build_prompt(tok, question, system_prompt, slot=model.insertion)
    frames = _encode(model, wave, sr)
    batch = collate([_item(model, prompt, slot, frames)], pad_id=_pad_id(tok), padding_side="left")
    new = model.generate_ids(batch, max_new_tokens)[0].tolist()
    eos = tok.eos_token_id
    if eos in new:
        new = new[: new.index(eos) + 1]
    return prompt, slot, frames, new


def ask(model, audio: AudioInput, question: str, *, sample_rate: int | None = None, max_new_tokens: int = 32,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> str:
    """The model's greedy answer (decoded, stripped) to ``question`` about ``audio`` (see the module docstring)."""
    wave, sr, _ = load_clip(audio, sample_rate)
    *_, new = _generate(model, wave, sr, question, system_prompt, max_new_tokens)
    return model.tokenizer.decode(new, skip_special_tokens=True).strip()


@dataclass
class Explanation:
    """What `explain` returns (frames: see the module docstring); ``wave`` [S] mono at ``sample_rate``."""

    question: str
    answer: str
    source: str
    wave: np.ndarray
    sample_rate: int
    attention: pd.DataFrame
    attention_layers: pd.DataFrame
    lens: pd.DataFrame
    token_attention: pd.DataFrame
    time_attention: pd.DataFrame

    def write_html(self, path: str | os.PathLike) -> Path:
        """One self-contained page: the playable clip, its spectrogram with the attention over time, the
        attention per layer and the logit lens (`workbench.analysis.explain_view`)."""
        from workbench.analysis.explain_view import write_html

        return write_html(self, path)


@torch.no_grad()
def audio_token_attention(model, batch: dict, query_set: str = "answer") -> pd.DataFrame:
    """Attention weight of the ``query_set`` text queries on each audio token: one row per (layer, encoder,
    token) where the encoder's tokens are keys: ``weight`` = the attention pattern on that key, averaged over
    heads and over the selected queries of example 0 (a one-clip batch)."""
    layers = list(range(model.cfg.n_layers))
    names = [f"blocks.{l}.attn.hook_pattern" for l in layers]
    _, acts = collect(model, batch, names)
    layout = model.token_layout(batch)
    q_res = layout.text_index[0][query_mask(batch, query_set)[0].to(layout.text_index.device)]  # residual rows
    if q_res.numel() == 0:
        raise ValueError(f"no text queries in query set {query_set!r} for this batch")
    rows = []
    for l in layers:
        pattern = acts[f"blocks.{l}.attn.hook_pattern"][0].float()  # [H, S, K]
        for e in model.encoder_names:
            idx = layout.audio_key_index(l, e)
            if idx is None or idx.shape[1] == 0:
                continue
            w = pattern[:, q_res][:, :, idx[0]].mean((0, 1))  # [N]
            rows += [{"layer": l, "encoder": e, "token": j, "weight": float(w[j])} for j in range(w.shape[0])]
    return pd.DataFrame(rows, columns=["layer", "encoder", "token", "weight"])


def _frame_maps(model, frames: dict, duration: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{encoder: (token -> frame weights [N, T], frame start times [T] in s)} over the clip's real frames."""
    out = {}
    dev = model.embed.weight.device
    for spec in model.encoder_specs:
        f, m = frames[spec.name]
        conn = model.connectors[spec.key]
        w = conn.frame_weights(f.to(dev, model.dtype), m.to(dev))[0].float().cpu().numpy()  # [N, T]
        n_real = int(m[0].sum())
        fps = model.encoders[spec.key].encoder().frames_per_second
        starts = np.arange(n_real) / fps
        out[spec.name] = (w[:, :n_real], np.minimum(starts, duration))
    return out


def _time_tables(model, tokens: pd.DataFrame, maps: dict, duration: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """token_attention with spans, and time_attention (per encoder and frame, mean over visible layers)."""
    spans, frames = [], []
    for e, (w, starts) in maps.items():
        fps = model.encoders[e].encoder().frames_per_second
        ends = np.minimum(starts + 1 / fps, duration)
        sub = tokens[tokens.encoder == e]
        for j in range(w.shape[0]):
            row = w[j] / max(w[j].sum(), 1e-12)
            on = np.nonzero(row > 1e-3)[0]
            mid = (starts + ends) / 2
            spans.append({"encoder": e, "token": j, "start_s": float(starts[on[0]]) if len(on) else np.nan,
                          "end_s": float(ends[on[-1]]) if len(on) else np.nan, "center_s": float((row * mid).sum())})
        if len(sub):
            per_layer = sub.pivot_table(index="layer", columns="token", values="weight").to_numpy()  # [Lvis, N]
            mass = (per_layer @ w).mean(0)  # [T]
        else:
            mass = np.zeros(w.shape[1])
        frames += [{"encoder": e, "frame": t, "start_s": float(starts[t]), "end_s": float(ends[t]),
                    "weight": float(mass[t])} for t in range(w.shape[1])]
    token_attention = tokens.merge(pd.DataFrame(spans), on=["encoder", "token"], how="left")
    return token_attention, pd.DataFrame(frames, columns=["encoder", "frame", "start_s", "end_s", "weight"])


@torch.no_grad()
def explain(model, audio: AudioInput, question: str, *, sample_rate: int | None = None, max_new_tokens: int = 32,
            system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> Explanation:
    """Answer ``question`` about ``audio`` and explain the answer (see the module docstring)."""
    wave, sr, source = load_clip(audio, sample_rate)
    prompt, slot, frames, new = _generate(model, wave, sr, question, system_prompt, max_new_tokens)
    if not new:
        raise ValueError("the model generated no answer token (max_new_tokens=0?): nothing to explain")
    batch = collate([_item(model, prompt, slot, frames, new)], pad_id=_pad_id(model.tokenizer))
    att = attention_to_audio(model, batch, query_set="answer")
    layers = (att.groupby(["layer", "encoder"], sort=True)
              .agg(mass=("mass", "mean"), mass_min=("mass", "min"), mass_max=("mass", "max"),
                   uniform_mass=("uniform_mass", "mean")).reset_index())
    layers["ratio"] = layers["mass"] / layers["uniform_mass"].where(layers["uniform_mass"] > 0)
    duration = wave.shape[0] / sr
    tokens, time = _time_tables(model, audio_token_attention(model, batch), _frame_maps(model, frames, duration), duration)
    return Explanation(question=question, answer=model.tokenizer.decode(new, skip_special_tokens=True).strip(),
                       source=source, wave=wave, sample_rate=sr, attention=att, attention_layers=layers,
                       lens=logit_lens(model, batch), token_attention=tokens, time_attention=time)
