"""Feature pages: per SAE feature, its top-activating clips (playable audio, spectrogram with the active token's
time span marked, the clip's exact attributes), the histogram of its activations, and the top logit effects of its
decoder direction; an index page sorted by ground-truth score (best held-in AUROC for any attribute value).

    index = write_pages(model, sae, store, "data/synth-tiny/test", "results/sae/pages", n_features=12)

Pages are plain HTML with plotly figures; ``plotly.min.js`` is written once beside them (no network needed), so
`workbench.reporting.browser_check.check_report` can open every page in headless Chromium.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.analysis.sae.activations import pool_by_clip
from workbench.analysis.sae.scores import DEFAULT_ATTRIBUTES, attribute_labels, auroc_columns

__all__ = ["feature_ground_truth", "logit_effects", "write_pages"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
    ".clip{border:1px solid #ddd;border-radius:6px;padding:0.6em;margin:0.8em 0}audio{width:100%;max-width:420px}"
)


def feature_ground_truth(F: np.ndarray, clip_rows: list[dict], attributes=DEFAULT_ATTRIBUTES) -> pd.DataFrame:
    """Per feature: the attribute value it detects best (held-in AUROC, one vs rest) and that AUROC."""
    best = np.full(F.shape[1], 0.5)
    label = np.full(F.shape[1], "", dtype=object)
    for att in attributes:
        y = attribute_labels(clip_rows, att)
        keep = np.array([v is not None for v in y])
        if len(set(y[keep])) < 2:
            continue
        for v in sorted(set(y[keep])):
            a = auroc_columns(F[keep], y[keep] == v)
            better = a > best
            best[better], label[better] = a[better], f"{att}={v}"
    return pd.DataFrame(
        {"feature": np.arange(F.shape[1]), "best_label": label, "auroc": best, "fires_on_clips": (F > 0).mean(0)}
    )


@torch.no_grad()
def logit_effects(model, direction: torch.Tensor, top: int = 10) -> pd.DataFrame:
    """Tokens whose logits a unit step along ``direction`` [d_model] raises / lowers most (through the final norm's
    scale and the unembedding, as the logit lens reads a residual direction)."""
    w = model.unembed.weight  # [V, d_model]
    scale = getattr(model.ln_final, "w", None)
    if scale is None:
        scale = getattr(model.ln_final, "weight", None)
    d = direction.to(w.dtype) * (scale if scale is not None else 1.0)
    eff = w @ d
    tok = model.tokenizer if hasattr(model, "tokenizer") else None
    rows = []
    for sign, idx in (("up", eff.topk(top).indices), ("down", (-eff).topk(top).indices)):
        for i in idx.tolist():
            rows.append(
                {"direction": sign, "token": tok.decode([i]) if tok is not None else str(i), "effect": float(eff[i])}
            )
    return pd.DataFrame(rows)


def _wav_b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _spectrogram_fig(path: Path, spans: list[tuple[float, float]], title: str):
    import plotly.graph_objects as go
    from scipy.io import wavfile
    from scipy.signal import spectrogram

    sr, wave = wavfile.read(path)
    wave = wave.astype(np.float32) / (32768.0 if wave.dtype == np.int16 else 1.0)
    if wave.ndim > 1:
        wave = wave.mean(1)
    f, t, s = spectrogram(wave, sr, nperseg=400, noverlap=240)
    fig = go.Figure(go.Heatmap(x=t, y=f, z=10 * np.log10(s + 1e-10), colorscale="Viridis", colorbar={"title": "dB"}))
    for t0, t1 in spans:
        fig.add_vrect(x0=t0, x1=t1, line_width=2, line_color="red", fillcolor="red", opacity=0.15)
    fig.update_layout(
        title=title,
        height=260,
        margin={"l": 50, "r": 20, "t": 40, "b": 40},
        xaxis_title="time (s)",
        yaxis_title="frequency (Hz)",
    )
    return fig


def _hist_fig(values: np.ndarray, feature: int):
    import plotly.graph_objects as go

    fig = go.Figure(go.Histogram(x=values[values > 0], nbinsx=40))
    fig.update_layout(
        title=f"feature {feature}: activations where it fires ({int((values > 0).sum())} of {len(values)} rows)",
        height=260,
        margin={"l": 50, "r": 20, "t": 40, "b": 40},
        xaxis_title="activation",
        yaxis_title="rows (count)",
    )
    return fig


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _page(feature, gt_row, feats_rows, meta, clip_ids, Fclip, data_dir: Path, effects: pd.DataFrame, top_clips: int):
    col = feats_rows[:, feature]
    parts = [
        f"<h1>Feature {feature}</h1>",
        (
            f"<p>Best ground-truth match: <b>{html.escape(str(gt_row['best_label']) or 'none')}</b> "
            f"(AUROC {gt_row['auroc']:.3f} over clips, held in); fires on {gt_row['fires_on_clips']:.1%} of clips.</p>"
        ),
        '<p><a href="index.html">all features</a></p>',
    ]
    figs = [_hist_fig(col, feature)]
    order = np.argsort(-Fclip[:, feature])[:top_clips]
    clip_html = []
    for rank, c in enumerate(order):
        if Fclip[c, feature] <= 0:
            break
        rows = np.flatnonzero((meta["file_name"].to_numpy() == clip_ids[c]) & (col > 0))
        spans = [
            (float(meta["t0"].iloc[r]), float(meta["t1"].iloc[r])) for r in rows if np.isfinite(meta["t0"].iloc[r])
        ]
        path = data_dir / str(clip_ids[c])
        attr_values = {k: meta.iloc[rows[0] if len(rows) else 0].get(k) for k in DEFAULT_ATTRIBUTES}
        attrs = ", ".join(
            f"{k}={v}" for k, v in attr_values.items() if v is not None and not (isinstance(v, float) and np.isnan(v))
        )
        figs.append(
            _spectrogram_fig(
                path,
                spans,
                f"clip {rank + 1}: {clip_ids[c]} (max activation {Fclip[c, feature]:.2f}; red: tokens where it fires)",
            )
        )
        clip_html.append(
            f'<div class="clip"><p>{html.escape(attrs)}</p>'
            f'<audio controls src="data:audio/wav;base64,{_wav_b64(path)}"></audio>__FIG{len(figs) - 1}__'
            "</div>"
        )
    body = "\n".join(parts) + "\n<h2>Activation histogram</h2>__FIG0__\n<h2>Top-activating clips</h2>\n"
    body += "\n".join(clip_html) or "<p>This feature never fires on these clips.</p>"
    up = effects[effects.direction == "up"][["token", "effect"]]
    down = effects[effects.direction == "down"][["token", "effect"]]
    body += (
        "\n<h2>Top logit effects of the decoder direction</h2><table><tr><th>raised</th><th>effect</th>"
        "<th>lowered</th><th>effect</th></tr>"
        + "".join(
            f"<tr><td>{html.escape(repr(a))}</td><td>{x:.3f}</td><td>{html.escape(repr(b))}</td><td>{y:.3f}</td></tr>"
            for (a, x), (b, y) in zip(up.itertuples(index=False), down.itertuples(index=False))
        )
        + "</table>"
    )
    for i, fig in enumerate(figs):
        body = body.replace(
            f"__FIG{i}__", fig.to_html(full_html=False, include_plotlyjs="directory" if i == 0 else False)
        )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>SAE feature {feature}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


@torch.no_grad()
def write_pages(model, sae, store, data_dir, out_dir, *, n_features: int = 12, top_clips: int = 4) -> Path:
    """Pages for the ``n_features`` features with the best ground-truth score, and ``index.html``. Returns the
    index path."""
    from plotly.offline import get_plotlyjs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    X, meta = store.matrix(), store.meta
    feats = torch.cat([sae.encode(torch.as_tensor(X[i : i + 4096])) for i in range(0, len(X), 4096)]).numpy()
    clip_ids, Fclip, first = pool_by_clip(feats, meta, "max")
    gt = feature_ground_truth(Fclip, [meta.iloc[i].to_dict() for i in first])
    gt = gt[gt["fires_on_clips"] > 0].sort_values("auroc", ascending=False)
    _atomic_text(out / "plotly.min.js", get_plotlyjs())
    chosen = gt.head(n_features)
    d_model = model.cfg.d_model
    for _, row in chosen.iterrows():
        f = int(row["feature"])
        direction = sae.decoder_directions()[f]
        effects = (
            logit_effects(model, direction)
            if direction.shape[0] == d_model
            else pd.DataFrame(columns=["direction", "token", "effect"])
        )
        _atomic_text(
            out / f"feature_{f}.html", _page(f, row, feats, meta, clip_ids, Fclip, Path(data_dir), effects, top_clips)
        )
    rows = "".join(
        f"<tr><td><a href='feature_{int(r.feature)}.html'>{int(r.feature)}</a></td>"
        f"<td>{html.escape(str(r.best_label))}</td><td>{r.auroc:.3f}</td><td>{r.fires_on_clips:.1%}</td></tr>"
        for r in gt.itertuples()
        if int(r.feature) in set(chosen["feature"].astype(int))
    )
    rest = len(gt) - len(chosen)
    index = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>SAE features</title><style>{_STYLE}</style>"
        f"</head><body><h1>SAE features by ground-truth score</h1><p>SAE at <code>{html.escape(sae.hook_name)}"
        f"</code> ({sae.d_sae} features, k={sae.k}) of {html.escape(sae.model_name)}; scored on "
        f"{len(clip_ids)} clips of {html.escape(str(data_dir))}. AUROC: one attribute value against the rest, "
        f"the clip's max activation as the score (held in). {rest} more features fire but have no page.</p>"
        "<table><tr><th>feature</th><th>best match</th><th>AUROC</th><th>fires on clips</th></tr>"
        f"{rows}</table></body></html>"
    )
    _atomic_text(out / "index.html", index)
    return out / "index.html"
