"""The page of an `Explanation` (`workbench.analysis.explain`): look rather than read.

``write_html(ex, "clip.html")`` writes one self-contained page (plotly inlined once, the clip as a base64
WAV in an ``<audio>`` element) with:

1. `fig_audio_attention`: the clip's spectrogram, and under it, on the same time axis, the answer's attention
   to each encoder's audio mapped back onto the clip (``ex.time_attention``);
2. `workbench.analysis.attention.fig_layers` of ``ex.attention``: attention to audio per layer;
3. `workbench.analysis.logit_lens.fig_logit_lens` of ``ex.lens``: when the first answer token appears.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.analysis.figures import add_caption
from workbench.common.paths import atomic_write_bytes

__all__ = ["spectrogram", "fig_audio_attention", "page_html", "write_html"]

MAX_COLUMNS = 800  # spectrogram time columns shown (longer clips get a longer hop)
MAX_FFT = 512  # at most 257 frequency rows (the page stays small at 44.1/48 kHz)


def spectrogram(wave: np.ndarray, sr: int, n_fft: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(power in dB [F, T] (relative to the clip's maximum, floored at -80), frequencies [F] Hz, frame
    centres [T] s) of a mono wave [S]: Hann window of ~25 ms (at most MAX_FFT samples), hop of 10 ms or longer
    (at most MAX_COLUMNS columns)."""
    import torch

    n_fft = n_fft or min(MAX_FFT, int(2 ** np.ceil(np.log2(0.025 * sr))))
    hop = max(int(0.010 * sr), int(np.ceil(len(wave) / MAX_COLUMNS)))
    x = torch.from_numpy(np.asarray(wave, dtype=np.float32))
    spec = (
        torch.stft(x, n_fft, hop_length=hop, window=torch.hann_window(n_fft), center=True, return_complex=True)
        .abs()
        .pow(2)
        .numpy()
    )  # [F, T]
    db = 10 * np.log10(np.maximum(spec, 1e-10))
    db = np.maximum(db - db.max(), -80.0)
    return db, np.fft.rfftfreq(n_fft, 1 / sr), np.arange(spec.shape[1]) * hop / sr


def _add_spectrogram(fig, wave: np.ndarray, sr: int) -> None:
    """The clip's power spectrogram (dB re its loudest bin) in row 1."""
    import plotly.graph_objects as go

    db, freqs, times = spectrogram(wave, sr)
    fig.add_trace(
        go.Heatmap(
            z=np.round(db, 1),
            x=np.round(times, 4),
            y=np.round(freqs, 1),
            colorscale="Magma",
            colorbar={"title": {"text": "power (dB re max)", "side": "right"}, "len": 0.45, "y": 1, "yanchor": "top"},
            hovertemplate="%{x:.2f} s, %{y:.0f} Hz: %{z:.1f} dB<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.update_yaxes(title_text="frequency (Hz)", row=1, col=1)


def _add_encoder_attention(fig, ta: pd.DataFrame, e: str, row: int) -> None:
    """Encoder ``e``'s attention weight per frame of ``ta``, a step over each frame's span, in ``row``."""
    import plotly.graph_objects as go

    sub = ta[ta.encoder == e].sort_values("frame")
    x = np.r_[sub.start_s.to_numpy(), sub.end_s.to_numpy()[-1:]] if len(sub) else []
    y = np.r_[sub.weight.to_numpy(), sub.weight.to_numpy()[-1:]] if len(sub) else []
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="lines",
            line={"shape": "hv"},
            fill="tozeroy",
            name=e,
            hovertemplate="%{x:.2f} s: %{y:.4f}<extra>" + e + "</extra>",
        ),
        row=row,
        col=1,
    )
    fig.update_yaxes(title_text="attention (fraction)", row=row, col=1)


def fig_audio_attention(ex, title: str | None = None):
    """Spectrogram of the clip (top) and, per encoder, the answer's attention to that encoder's audio mapped
    onto the clip's time axis (``ex.time_attention``: weight per frame, drawn as a step over each frame's span)."""
    from plotly.subplots import make_subplots

    ta: pd.DataFrame = ex.time_attention
    encs = list(dict.fromkeys(ta["encoder"]))
    rows = 1 + len(encs)
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        row_heights=[0.45] + [0.55 / max(1, len(encs))] * len(encs),
        subplot_titles=["spectrogram"] + [f"attention of the answer to encoder {e}" for e in encs],
    )
    _add_spectrogram(fig, ex.wave, ex.sample_rate)
    for i, e in enumerate(encs):
        _add_encoder_attention(fig, ta, e, i + 2)
    fig.update_xaxes(title_text="time (s)", row=rows, col=1)
    fig.update_layout(
        height=260 + 150 * len(encs), showlegend=False, title=title or f"Where the answer {ex.answer!r} listened"
    )
    return add_caption(
        fig,
        "Top: the clip's power spectrogram (dB relative to its loudest bin). Below, one row per "
        "encoder: the attention of the answer's text positions on that encoder's audio tokens "
        "(mean over heads and answer positions, then over the layers that see the audio), spread "
        "back onto the encoder's frames through each token's frame weights (an MLP token's "
        "pooling segment, a Q-Former latent's cross-attention over frames, a released "
        "projector token's stacked tower frames). A row's values sum to the mean attention "
        "mass on that encoder; one clip (n = 1).",
    )


def _wav_base64(wave: np.ndarray, sr: int) -> str:
    import soundfile as sf

    buf = io.BytesIO()
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    sf.write(buf, wave / peak if peak > 1 else wave, sr, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _summary_table(ex) -> str:
    lay = ex.attention_layers
    top = lay.dropna(subset=["ratio"]).sort_values("ratio", ascending=False).head(6)
    rows = "".join(
        f"<tr><td>{int(r.layer)}</td><td>{html.escape(str(r.encoder))}</td><td>{r.mass:.4f}</td>"
        f"<td>{r.uniform_mass:.4f}</td><td>{r.ratio:.2f}</td></tr>"
        for r in top.itertuples()
    )
    return (
        "<table><caption>Layers and encoders where the answer attends most to the audio, relative to uniform "
        "attention (mean over heads)</caption><tr><th>layer</th><th>encoder</th><th>mass</th><th>uniform</th>"
        f"<th>ratio</th></tr>{rows}</table>"
    )


def page_html(ex) -> str:
    """The whole page as a string (see the module docstring)."""
    from workbench.analysis.attention import fig_layers
    from workbench.analysis.logit_lens import fig_logit_lens

    figs = [
        fig_audio_attention(ex),
        fig_layers(ex.attention, title="Attention of the answer to each encoder's audio, per layer"),
        fig_logit_lens(ex.lens, title="Logit lens: the first answer token, per layer, with and without audio"),
    ]
    parts = [f.to_html(full_html=False, include_plotlyjs=(i == 0), default_width="100%") for i, f in enumerate(figs)]
    esc = html.escape
    dur = ex.wave.shape[0] / ex.sample_rate
    name = "a waveform" if ex.source.startswith("waveform") else Path(ex.source).name
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(ex.question)}: {esc(ex.answer)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
caption{{text-align:left;color:#444}}.qa{{font-size:1.2em}}</style></head><body>
<h1>Asking the model about {esc(name)}</h1>
<p class="qa"><b>Question:</b> {esc(ex.question)}<br><b>Answer:</b> {esc(ex.answer)}</p>
<p>{esc(ex.source)}: {dur:.2f} s, read at {ex.sample_rate} Hz, mixed to mono.</p>
<audio controls src="data:audio/wav;base64,{_wav_base64(ex.wave, ex.sample_rate)}"></audio>
{parts[0]}
{_summary_table(ex)}
{parts[1]}
{parts[2]}
</body></html>
"""


def write_html(ex, path: str | os.PathLike) -> Path:
    """Write `page_html` atomically to ``path``; returns the path."""
    return atomic_write_bytes(Path(path), page_html(ex).encode())
