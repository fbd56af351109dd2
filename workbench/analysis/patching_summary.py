"""The results of activation patching: the fraction of the logit difference restored per site, layer and head
(:func:`summarize_patching`) and its figure (:func:`patching_figure`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from workbench.analysis.figures import add_caption

SUMMARY_COLUMNS = [
    "site",
    "layer",
    "head",
    "encoder",
    "restored",
    "restored_se",
    "clean_ld",
    "corrupted_ld",
    "patched_ld",
    "n_pairs",
]


def summarize_patching(items: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Fraction of the logit difference restored per (site, layer, head, encoder [, by...]), ratio of means;
    ``restored_se`` is a bootstrap-free delta-method-free simple SE: the standard error over pairs of
    (LD_patched - LD_corr) divided by the mean (LD_clean - LD_corr)."""
    keys = ["site", "layer", "head", "encoder", *by]
    rows = []
    for k, g in items.groupby(keys, sort=False):
        den = float((g["clean_ld"] - g["corrupted_ld"]).mean())
        num = (g["patched_ld"] - g["corrupted_ld"]).to_numpy(float)
        restored = float(num.mean() / den) if den != 0 else np.nan
        se = float(num.std(ddof=1) / np.sqrt(len(num)) / abs(den)) if len(num) > 1 and den != 0 else np.nan
        rows.append(
            {
                **dict(zip(keys, k)),
                "restored": restored,
                "restored_se": se,
                "clean_ld": float(g["clean_ld"].mean()),
                "corrupted_ld": float(g["corrupted_ld"].mean()),
                "patched_ld": float(g["patched_ld"].mean()),
                "n_pairs": len(g),
            }
        )
    return pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS[:4], *by, *SUMMARY_COLUMNS[4:]])


def patching_figure(summary: pd.DataFrame, title: str | None = None):
    """Top: fraction restored per layer for the layer sites (lines); bottom: layer x head heatmap (head_out)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    lines = summary[summary["site"].isin(["audio_kv", "resid_audio"]) & (summary["layer"] >= 0)]
    heads = summary[summary["site"] == "head_out"]
    n_rows = 1 + int(len(heads) > 0)
    fig = make_subplots(
        rows=n_rows,
        cols=1,
        vertical_spacing=0.15,
        subplot_titles=("audio sites per layer", "attention heads (hook_z at text positions)")[:n_rows],
    )
    for (site, enc), g in lines.groupby(["site", "encoder"], sort=True):
        g = g.sort_values("layer")
        fig.add_trace(
            go.Scatter(
                x=g["layer"],
                y=g["restored"],
                mode="lines+markers",
                name=f"{site} / {enc}",
                error_y=dict(type="data", array=g["restored_se"].fillna(0)),
            ),
            row=1,
            col=1,
        )
    for r in summary[summary["site"] == "connector"].itertuples():
        fig.add_hline(y=r.restored, line_dash="dot", annotation_text=f"connector {r.encoder}", row=1, col=1)
    fig.update_xaxes(title_text="layer (index)", row=1, col=1)
    fig.update_yaxes(title_text="logit difference restored (fraction; 1 = all)", row=1, col=1)
    if len(heads):
        piv = heads.pivot_table(index="head", columns="layer", values="restored")
        fig.add_trace(
            go.Heatmap(
                z=piv.to_numpy(),
                x=piv.columns,
                y=piv.index,
                colorscale="RdBu",
                zmid=0,
                colorbar=dict(title=dict(text="restored (fraction)", side="right"), len=0.4, y=0.2),
            ),
            row=2,
            col=1,
        )
        fig.update_xaxes(title_text="layer (index)", row=2, col=1)
        fig.update_yaxes(title_text="head (index)", row=2, col=1)
    n = int(summary["n_pairs"].max()) if len(summary) else 0
    fig.update_layout(
        title=title or "Activation patching: clean audio into corrupted runs",
        template="plotly_white",
        height=420 * n_rows + 60,
    )
    return add_caption(
        fig,
        f"Fraction restored = (LD_patched − LD_corrupted) / (LD_clean − LD_corrupted), LD = logit(clean answer "
        f"token) − logit(corrupted answer token) at the answer position; ratio of means over {n} pairs, error "
        "bars ±1 SE. 1 = the site carries all of the audio's effect, 0 = none; dotted lines: whole connector "
        "output patched.",
    )
