"""Explain a model's answer about one recording: where it listened, layer by layer and over the clip's time.

    ex = explain(model, "clip.wav", "What is the pitch class?")         # a PAL checkpoint or a released model
    ex.answer, ex.attention_layers, ex.lens, ex.time_attention
    ex.write_html("clip.html")                                          # spectrogram + attention over time

The answer comes from `workbench.model.inference.answer_clip` (the model's own prompt format and its own
waveform -> encoder path; ``ask`` lives there too). The explanation re-runs the prompt followed by the generated
answer tokens and reads, through the shared analyses (`workbench.analysis.attention`,
`workbench.analysis.logit_lens`):

* ``attention``: `attention_to_audio` with the ``answer`` query set (the positions that predict the answer
  tokens), one row per (layer, head, encoder); ``attention_layers`` its mean over heads per (layer, encoder);
* ``lens``: `logit_lens` of the first answer token per layer, with and without audio;
* ``token_attention``: per (layer, encoder, audio token) the attention weight of the answer queries on that
  token (mean over heads and queries), with the token's span of the clip (``start_s``, ``end_s``, ``center_s``);
* ``time_attention``: per (encoder, frame) that attention mapped back onto the encoder's frames (the frames at
  ``encoders.{name}.hook_out``, read from the same run; each token's frame weights: its pooling segment for an
  MLP connector, its cross-attention over frames for a Q-Former latent, the frames it stacks for a released
  projector; `connector.frame_weights`), summed over the encoder's tokens and averaged over the layers where
  they are visible: ``start_s``, ``end_s`` (the frame's time span), ``weight``.

:func:`run_ask_command` is ``python -m workbench.ask``: the answer, or with ``--explain`` the answer and the
tables above (printed, and as CSV / HTML where asked).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.analysis.attention import attention_to_audio, query_mask
from workbench.analysis.core import collect
from workbench.analysis.logit_lens import logit_lens
from workbench.common.audio_io import load_audio
from workbench.common.paths import atomic_write_bytes
from workbench.model.inference import MODEL_DEFAULT, AudioInput, answer_clip, ask, frames_per_second, load_clip
from workbench.model.pal import PALModel

__all__ = ["Explanation", "load_clip", "ask", "explain", "audio_token_attention", "run_ask_command"]


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


@torch.no_grad()
def encoder_frames(model, batch: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{encoder: (frames [1, T, D], mask [1, T])} at ``encoders.{name}.hook_out`` / ``hook_mask``: what the model's
    own audio path gave its connector for this batch."""
    names = [f"encoders.{s.key}.{h}" for s in model.encoder_specs for h in ("hook_out", "hook_mask")]
    _, acts = collect(model, batch, names)
    return {
        s.name: (acts[f"encoders.{s.key}.hook_out"], acts[f"encoders.{s.key}.hook_mask"]) for s in model.encoder_specs
    }


def _frame_maps(model, frames: dict, duration: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{encoder: (token -> frame weights [N, T], frame start times [T] in s)} over the clip's real frames."""
    out = {}
    dev = model.embed.weight.device
    for spec in model.encoder_specs:
        f, m = frames[spec.name]
        conn = model.connectors[spec.key]
        w = conn.frame_weights(f.to(dev, model.dtype), m.to(dev))[0].float().cpu().numpy()  # [N, T]
        fps = frames_per_second(model, spec.key)
        n_real = int(m[0].sum())
        if getattr(model, "is_released", False):  # Voxtral reads the whole window: keep the frames of the clip
            n_real = min(n_real, int(np.ceil(duration * fps)))
        starts = np.arange(n_real) / fps
        out[spec.name] = (w[:, :n_real], np.minimum(starts, duration))
    return out


def _time_tables(model, tokens: pd.DataFrame, maps: dict, duration: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """token_attention with spans, and time_attention (per encoder and frame, mean over visible layers)."""
    spans, frames = [], []
    for e, (w, starts) in maps.items():
        ends = np.minimum(starts + 1 / frames_per_second(model, e), duration)
        sub = tokens[tokens.encoder == e]
        for j in range(w.shape[0]):
            row = w[j] / max(w[j].sum(), 1e-12)
            on = np.nonzero(row > 1e-3)[0]
            mid = (starts + ends) / 2
            spans.append(
                {
                    "encoder": e,
                    "token": j,
                    "start_s": float(starts[on[0]]) if len(on) else np.nan,
                    "end_s": float(ends[on[-1]]) if len(on) else np.nan,
                    "center_s": float((row * mid).sum()),
                }
            )
        if len(sub):
            per_layer = sub.pivot_table(index="layer", columns="token", values="weight").to_numpy()  # [Lvis, N]
            mass = (per_layer @ w).mean(0)  # [T]
        else:
            mass = np.zeros(w.shape[1])
        frames += [
            {"encoder": e, "frame": t, "start_s": float(starts[t]), "end_s": float(ends[t]), "weight": float(mass[t])}
            for t in range(w.shape[1])
        ]
    token_attention = tokens.merge(pd.DataFrame(spans), on=["encoder", "token"], how="left")
    return token_attention, pd.DataFrame(frames, columns=["encoder", "frame", "start_s", "end_s", "weight"])


@torch.no_grad()
def explain(
    model,
    audio: AudioInput,
    question: str,
    *,
    sample_rate: int | None = None,
    max_new_tokens: int = 32,
    system_prompt: str | None = MODEL_DEFAULT,
) -> Explanation:
    """Answer ``question`` about ``audio`` and explain the answer (see the module docstring)."""
    clip = answer_clip(
        model, audio, question, sample_rate=sample_rate, max_new_tokens=max_new_tokens, system_prompt=system_prompt
    )
    if not clip.answer_ids:
        raise ValueError("the model generated no answer token (max_new_tokens=0?): nothing to explain")
    batch = clip.batch
    att = attention_to_audio(model, batch, query_set="answer")
    layers = (
        att.groupby(["layer", "encoder"], sort=True)
        .agg(
            mass=("mass", "mean"),
            mass_min=("mass", "min"),
            mass_max=("mass", "max"),
            uniform_mass=("uniform_mass", "mean"),
        )
        .reset_index()
    )
    layers["ratio"] = layers["mass"] / layers["uniform_mass"].where(layers["uniform_mass"] > 0)
    duration = clip.wave.shape[0] / clip.sample_rate
    maps = _frame_maps(model, encoder_frames(model, batch), duration)
    tokens, time = _time_tables(model, audio_token_attention(model, batch), maps, duration)
    return Explanation(
        question=question,
        answer=clip.answer,
        source=clip.source,
        wave=clip.wave,
        sample_rate=clip.sample_rate,
        attention=att,
        attention_layers=layers,
        lens=logit_lens(model, batch),
        token_attention=tokens,
        time_attention=time,
    )


def _attention_table(ex: Explanation) -> pd.DataFrame:
    """Mass and ratio of the answer's attention per (layer, encoder), where audio is visible."""
    lay = ex.attention_layers[ex.attention_layers.uniform_mass > 0]
    return lay.pivot_table(index="layer", columns="encoder", values=["mass", "ratio"]).round(4)


def _lens_table(ex: Explanation) -> pd.DataFrame:
    """Logit lens of the first answer token per layer: ``prob_<condition>``, ``rank_<condition>`` columns."""
    lens = ex.lens.pivot_table(index="layer", columns="condition", values=["prob", "rank"])
    lens.columns = [f"{v}_{c}" for v, c in lens.columns]
    return lens.round(4).astype({c: int for c in lens.columns if c.startswith("rank")})


def _print_explanation(ex: Explanation) -> None:
    """The answer, its attention per layer and encoder, and its logit lens, as text tables."""
    print(ex.answer)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print("\nattention of the answer to each encoder's audio (mean over heads; ratio = mass / uniform attention):")
        print(_attention_table(ex).to_string())
        print(
            f"\nlogit lens of the first answer token {ex.lens.answer_token.iloc[0]!r} (prob, rank; audio vs audio cut):"
        )
        print(_lens_table(ex).to_string())


def run_ask_command(a: argparse.Namespace) -> int:
    """``python -m workbench.ask`` with parsed arguments ``a``: prints the answer (with ``--explain``, ``--html`` or
    ``--csv-dir`` also the explanation, written where asked); its exit code."""
    torch.set_num_threads(min(torch.get_num_threads(), 4))
    load_audio(a.clip, mono=False)  # fail on a bad clip before loading the model
    model = PALModel.from_pretrained(a.checkpoint)
    if not (a.explain or a.html or a.csv_dir):
        print(model.ask(a.clip, a.question, max_new_tokens=a.max_new_tokens))
        return 0
    ex = explain(model, a.clip, a.question, max_new_tokens=a.max_new_tokens)
    _print_explanation(ex)
    if a.csv_dir:
        for name in ("attention", "attention_layers", "lens", "token_attention", "time_attention"):
            atomic_write_bytes(Path(a.csv_dir) / f"ask_{name}.csv", getattr(ex, name).to_csv(index=False).encode())
        print(f"\nwrote {a.csv_dir}/ask_*.csv")
    if a.html:
        print(f"\nwrote {ex.write_html(a.html)}")
    return 0
