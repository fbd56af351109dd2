"""The figures of the listening heads: the layer x head map of listening scores with the top heads named
(:func:`listening_figure`) and the causal check, top-k vs random heads mean-ablated (:func:`listening_ablation_figure`)."""

from __future__ import annotations

import pandas as pd

from workbench.analysis.figures import add_caption


def _add_score_traces(fig, scores: pd.DataFrame, top: int) -> None:
    """The heatmap of scores per layer x head (left) and score against audio attention mass (right)."""
    import plotly.graph_objects as go

    piv = scores.pivot_table(index="head", columns="layer", values="score")
    fig.add_trace(
        go.Heatmap(
            z=piv.to_numpy(),
            x=piv.columns,
            y=piv.index,
            colorscale="Viridis",
            colorbar=dict(title=dict(text="score (ratio)", side="right"), x=0.42),
        ),
        row=1,
        col=1,
    )
    best = scores.sort_values("rank").head(top)
    rest = scores.sort_values("rank").iloc[top:]
    fig.add_trace(
        go.Scatter(
            x=rest["audio_mass"], y=rest["score"], mode="markers", name="other heads", marker=dict(color="#bbb", size=5)
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=best["audio_mass"],
            y=best["score"],
            mode="markers+text",
            name=f"top {top}",
            text=[f"L{r.layer}H{r.head}" for r in best.itertuples()],
            textposition="top center",
            marker=dict(color="#d62728", size=8),
        ),
        row=1,
        col=2,
    )


def listening_figure(scores: pd.DataFrame, title: str | None = None, top: int = 10):
    """Left: listening score per layer x head (heatmap); right: score against attention mass on audio keys,
    the top heads labelled."""
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.16,
        subplot_titles=("listening score per head", "score vs attention to audio"),
    )
    _add_score_traces(fig, scores, top)
    fig.update_xaxes(title_text="layer (index)", row=1, col=1)
    fig.update_yaxes(title_text="head (index)", row=1, col=1)
    fig.update_xaxes(title_text="attention on audio keys (fraction of softmax)", row=1, col=2)
    fig.update_yaxes(title_text="listening score (ratio)", row=1, col=2)
    n = int(scores["n"].max()) if len(scores) else 0
    fig.update_layout(
        title=title or "Listening heads: how much each head's output changes when the audio is replaced by silence",
        template="plotly_white",
        height=520,
        width=1000,
    )
    return add_caption(
        fig,
        f"Listening score = mean over {n} rows of ||head output with audio − with silence of the "
        "same length|| at the last prompt position, divided by the RMS of the head's output "
        "with audio (0 = the head ignores the audio). Right: the same score against the head's "
        "attention weight on all audio keys at that position.",
    )


def listening_ablation_figure(table: pd.DataFrame, title: str | None = None):
    """Bars: change of answer log-probability and option accuracy when the top-k heads vs k random heads are
    mean-ablated, 95% bootstrap intervals."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("answer log-probability", "option accuracy"))
    for col, metric, scale in ((1, "answer_logprob", 1.0), (2, "option_accuracy", 100.0)):
        t = table[table["metric"] == metric]
        if not len(t):
            continue
        fig.add_trace(
            go.Bar(
                x=t["condition"],
                y=t["delta"] * scale,
                showlegend=False,
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=(t["ci_high"] - t["delta"]).fillna(0) * scale,
                    arrayminus=(t["delta"] - t["ci_low"]).fillna(0) * scale,
                ),
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="heads ablated (condition)", row=1, col=col)
    fig.update_yaxes(title_text="Δ log p(answer) (nats)", row=1, col=1)
    fig.update_yaxes(title_text="Δ option accuracy (percentage points)", row=1, col=2)
    k = int(table["k"].max()) if len(table) else 0
    n = int(table["n"].max()) if len(table) else 0
    draws = int(table["draws"].max()) if len(table) else 0
    fig.update_layout(
        title=title or f"Mean-ablating the top {k} listening heads vs {k} random heads",
        template="plotly_white",
        height=480,
    )
    return add_caption(
        fig,
        f"Ablated minus unablated on the same {n} rows (heads' z replaced by their mean over text "
        f"positions); random: mean over {draws} draws of {k} heads; top_minus_random: paired "
        "difference. Error bars: 95% bootstrap intervals over rows.",
    )
