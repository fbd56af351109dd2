"""The probe figure: metric per site and layer with CI bands, control and majority references (see
`workbench.analysis.probes`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

_KIND_X = {"encoder": -2.0, "connector": -1.0}


def _layered_traces(fig, df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One line + CI band + control line per layered series (residual position, audio K / V / in); -> those rows."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    palette = qualitative.Plotly
    layered = df[df["layer"].notna() & df["kind"].isin(["resid", "audio_k", "audio_v", "audio_in"])].copy()
    layered["series"] = np.where(
        layered["kind"] == "resid",
        layered["hook"].str.replace(r"^blocks\.\d+\.", "", regex=True) + " @ " + layered["position"].astype(str),
        layered["kind"],
    )
    for i, (series, g) in enumerate(layered.groupby("series", sort=False)):
        g = g.sort_values("layer")
        color = palette[i % len(palette)]
        x = g["layer"].astype(int).tolist()
        fig.add_trace(
            go.Scatter(
                x=x + x[::-1],
                y=g["ci_high"].tolist() + g["ci_low"].tolist()[::-1],
                fill="toself",
                fillcolor=color,
                opacity=0.18,
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                legendgroup=series,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=g["value"],
                mode="lines+markers",
                name=series,
                legendgroup=series,
                line={"color": color},
                customdata=g[["ci_low", "ci_high", "control", "selectivity"]],
                hovertemplate="layer %{x}<br>" + metric + " %{y:.3f} [%{customdata[0]:.3f}, "
                "%{customdata[1]:.3f}]<br>control %{customdata[2]:.3f}<br>selectivity "
                "%{customdata[3]:.3f}<extra>" + series + "</extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=g["control"],
                mode="lines",
                name=f"control ({series})",
                legendgroup=series,
                line={"color": color, "dash": "dot", "width": 1},
            )
        )
    return layered


def _point_traces(fig, df: pd.DataFrame) -> pd.DataFrame:
    """Encoder / connector outputs as markers (with their controls) left of layer 0; -> those rows."""
    import plotly.graph_objects as go

    point = df[df["kind"].isin(list(_KIND_X))]
    for _i, (kind, g) in enumerate(point.groupby("kind", sort=False)):
        offs = np.linspace(-0.25, 0.25, len(g)) if len(g) > 1 else [0.0]
        xs = [_KIND_X[kind] + o for o in offs]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=g["value"],
                mode="markers+text",
                text=g["encoder"],
                textposition="top center",
                marker={"size": 10, "symbol": "diamond" if kind == "encoder" else "square"},
                name=f"{kind} output",
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (g["ci_high"] - g["value"]).tolist(),
                    "arrayminus": (g["value"] - g["ci_low"]).tolist(),
                },
            )
        )
        fig.add_trace(
            go.Scatter(
                x=xs, y=g["control"], mode="markers", marker={"symbol": "x", "color": "grey"}, name=f"control ({kind})"
            )
        )
    return point


def probe_figure(df: pd.DataFrame, title: str | None = None):
    """Metric per layer (one line + 95% CI band per residual position / audio K / V), encoder and connector
    sites as markers left of layer 0, the majority baseline and each series' control task as reference
    lines."""
    import plotly.graph_objects as go

    from workbench.analysis.figures import add_caption

    fig = go.Figure()
    if df.empty:
        fig.update_layout(
            title=title or "Linear probes: no results",
            xaxis_title="site (layer index)",
            yaxis_title="probe metric (out-of-fold)",
        )
        return add_caption(fig, "No probe results (empty table): nothing to plot.")
    metric = df["metric"].iloc[0]
    attr = df["attribute"].iloc[0]
    layered = _layered_traces(fig, df, metric)
    point = _point_traces(fig, df)
    fig.add_hline(
        y=float(df["majority"].iloc[0]),
        line_dash="dash",
        line_color="black",
        annotation_text="majority class" if metric == "accuracy" else "mean predictor",
        annotation_position="bottom right",
    )
    max_layer = int(layered["layer"].max()) if len(layered) else 0
    step = max(1, math.ceil((max_layer + 1) / 15))
    ticks = ([-2, -1] if len(point) else []) + list(range(0, max_layer + 1, step))
    text = (["encoders", "connectors"] if len(point) else []) + [str(t) for t in ticks[(2 if len(point) else 0) :]]
    n, folds = int(df["n"].iloc[0]), int(df["folds"].iloc[0])
    ylab = (
        "accuracy (fraction of clips correct, out-of-fold)"
        if metric == "accuracy"
        else "R² (coefficient of determination, out-of-fold; 1 = perfect)"
    )
    fig.update_layout(
        title=title or f"Linear probes for {attr}: {metric} per site ({n} clips, {folds}-fold CV)",
        xaxis={
            "title": "site: encoder / connector output, then LLM layer (block index, 0-based)",
            "tickmode": "array",
            "tickvals": ticks,
            "ticktext": text,
        },
        yaxis={"title": ylab},
        template="plotly_white",
        legend={"groupclick": "togglegroup"},
    )
    ctl = df["control_type"].iloc[0] if "control_type" in df else "random_identity"
    return add_caption(
        fig,
        f"Standardised linear probe ({'logistic regression' if metric == 'accuracy' else 'ridge'}) on {n} clips, "
        f"{folds}-fold out-of-fold {metric}; bands/bars: 95% bootstrap CI over clips. Dotted: control task "
        f"({ctl.replace('_', ' ')} labels, same distribution); selectivity = {metric} - control. Dashed: "
        f"{'majority-class' if metric == 'accuracy' else 'mean-predictor'} baseline. Same question for every "
        "clip, so only the audio carries the label.",
    )
