"""Figures of the audio ablations (`workbench.analysis.ablation`): one ablation's deltas per evaluation cell,
a layer sweep's curves, and several conditions side by side. Each takes the tidy table of
:func:`workbench.analysis.ablation.summarize_items` (columns ``TABLE_COLUMNS``)."""

from __future__ import annotations

import pandas as pd

from workbench.analysis.figures import add_caption

_CAPTION = (
    "Change of the teacher-forced answer log-probability (nats, summed over answer tokens) and of "
    "closed-task accuracy (percentage points, greedy answers) when the model's access to audio is cut, "
    "ablated minus unablated on the same rows (0 = no effect); error bars: ±1 standard error over rows "
    "(paired)."
)


def _n_rows(table: pd.DataFrame) -> str:
    """'n = 32 rows (log-prob), 24 closed rows (accuracy)' for the overall (all/all) cell."""
    t = table[(table["task"] == "all") & (table["attribute"] == "all")] if len(table) else table
    parts = []
    for metric, what in (("answer_logprob", "rows (log-prob)"), ("accuracy", "closed rows (accuracy)")):
        n = sorted({int(v) for v in t.loc[t["metric"] == metric, "n"]}) if len(t) else []
        if n:
            parts.append(f"{'/'.join(map(str, n))} {what}")
    return "n = " + (", ".join(parts) if parts else "0 rows")


def ablation_figure(table: pd.DataFrame, title: str | None = None):
    """Bars of the delta per (task, attribute) cell for each metric (one ablation)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("answer log-probability", "closed-task accuracy"))
    for col, metric, scale in ((1, "answer_logprob", 1.0), (2, "accuracy", 100.0)):
        t = table[table["metric"] == metric]
        if not len(t):
            continue
        labels = [f"{r.task}/{r.attribute}" for r in t.itertuples()]
        fig.add_trace(
            go.Bar(
                x=labels,
                y=t["delta"] * scale,
                name=metric,
                showlegend=False,
                error_y=dict(type="data", array=(t["delta_se"].fillna(0) * scale)),
            ),
            row=1,
            col=col,
        )
    fig.update_yaxes(title_text="Δ log p(answer) (nats)", row=1, col=1)
    fig.update_yaxes(title_text="Δ accuracy (percentage points)", row=1, col=2)
    fig.update_xaxes(title_text="task / attribute (evaluation cell)", row=1, col=1)
    fig.update_xaxes(title_text="task / attribute (evaluation cell)", row=1, col=2)
    if title is None and len(table):
        r = table.iloc[0]
        title = f"Audio ablation: mode {r['mode']}, encoder {r['encoder']}, layers {r['layer_start']}..{r['layer_end']}"
    fig.update_layout(title=title, template="plotly_white", height=520)
    return add_caption(fig, _CAPTION + f" Overall cell: {_n_rows(table)}.")


def sweep_figure(table: pd.DataFrame, title: str | None = None):
    """Delta (all/all) against the first ablated layer, one line per mode/encoder, for both metrics."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    t = table[(table["task"] == "all") & (table["attribute"] == "all")]
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("answer log-probability", "closed-task accuracy"),
    )
    for r, metric, scale in ((1, "answer_logprob", 1.0), (2, "accuracy", 100.0)):
        tm = t[t["metric"] == metric]
        for (mode, enc), g in tm.groupby(["mode", "encoder"], sort=True):
            g = g.sort_values("layer_start")
            fig.add_trace(
                go.Scatter(
                    x=g["layer_start"],
                    y=g["delta"] * scale,
                    mode="lines+markers",
                    name=f"{mode} / {enc}",
                    legendgroup=f"{mode}/{enc}",
                    showlegend=r == 1,
                    error_y=dict(type="data", array=g["delta_se"].fillna(0) * scale),
                ),
                row=r,
                col=1,
            )
    span = table["span"].iloc[0] if "span" in table and len(table) else "from"
    xlab = "first ablated layer l (layers l..last)" if span == "from" else "ablated layer l (that layer only)"
    fig.update_xaxes(title_text=f"{xlab} (layer index)", row=2, col=1)
    fig.update_yaxes(title_text="Δ log p(answer) (nats)", row=1, col=1)
    fig.update_yaxes(title_text="Δ accuracy (percentage points)", row=2, col=1)
    fig.update_layout(title=title or "Audio ablation sweep over layers", template="plotly_white", height=640)
    return add_caption(
        fig,
        _CAPTION + f" Overall (all/all) cell: {_n_rows(table)}. Layers before an "
        "encoder's integration layer are no-ops for it.",
    )


def conditions_figure(table: pd.DataFrame, title: str | None = None):
    """Overall (all/all) delta of each metric per ablation condition (the ``condition`` column; default: mode,
    encoder and layer range), side by side: several ablations of one model on the same rows."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    t = table[(table["task"] == "all") & (table["attribute"] == "all")].copy()
    if "condition" not in t.columns:
        t["condition"] = [f"{r.mode} / {r.encoder} / layers {r.layer_start}..{r.layer_end}" for r in t.itertuples()]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("answer log-probability", "closed-task accuracy"))
    for col, metric, scale in ((1, "answer_logprob", 1.0), (2, "accuracy", 100.0)):
        tm = t[t["metric"] == metric]
        if not len(tm):
            continue
        fig.add_trace(
            go.Bar(
                x=tm["condition"],
                y=tm["delta"] * scale,
                name=metric,
                showlegend=False,
                error_y=dict(type="data", array=tm["delta_se"].fillna(0) * scale),
            ),
            row=1,
            col=col,
        )
    fig.update_yaxes(title_text="Δ log p(answer) (nats)", row=1, col=1)
    fig.update_yaxes(title_text="Δ accuracy (percentage points)", row=1, col=2)
    fig.update_xaxes(title_text="ablation (condition)", row=1, col=1)
    fig.update_xaxes(title_text="ablation (condition)", row=1, col=2)
    fig.update_layout(title=title or "Audio ablations compared", template="plotly_white", height=520)
    return add_caption(fig, _CAPTION + f" Every condition is measured on the same rows: {_n_rows(table)}.")
