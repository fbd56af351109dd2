"""The figure of a run comparison (:func:`comparison_figure`): per cell (task, attribute, metric) the variants'
scores with bootstrap 95% CI bars and chance marks, and a lower panel with the paired differences to the baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _cell_label(task: str, attribute: str, metric: str) -> str:
    lab = f"{task}/{attribute}"
    return lab if metric == "accuracy" else f"{lab} [{metric}]"


def _score_panel(fig, tp: pd.DataFrame, variants: list, color: dict, p: int, c: int, nrow: int) -> None:
    """Row 1, column ``c`` (panel ``p``: 0 accuracy-type, 1 caption metrics): bars per variant with CIs, chance."""
    import plotly.graph_objects as go

    for v in variants:
        g = tp[tp["variant"] == v]
        fig.add_trace(
            go.Bar(
                x=g["cell"],
                y=g["value"],
                name=str(v),
                legendgroup=str(v),
                showlegend=c == 1,
                marker_color=color[v],
                error_y=dict(
                    type="data", symmetric=False, array=g["ci_high"] - g["value"], arrayminus=g["value"] - g["ci_low"]
                ),
                hovertemplate="%{x}<br>" + str(v) + ": %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=c,
        )
    ch = tp.dropna(subset=["chance"]).drop_duplicates("cell")
    if len(ch):
        fig.add_trace(
            go.Scatter(
                x=ch["cell"],
                y=ch["chance"],
                mode="markers",
                name="chance",
                showlegend=c == 1,
                marker=dict(symbol="line-ew-open", size=28, color="black", line=dict(width=2)),
            ),
            row=1,
            col=c,
        )
    fig.update_yaxes(
        title_text="accuracy / exact match (fraction, 0-1)" if p == 0 else "score (CIDEr-D 0-10, ROUGE-L 0-1)",
        row=1,
        col=c,
    )
    fig.update_xaxes(title_text="task / attribute [metric] (evaluation cell)", row=nrow, col=c)


def _diff_panel(fig, diffs: pd.DataFrame, variants: list, color: dict, p: int, c: int) -> None:
    """Row 2, column ``c``: each variant's paired difference vs the baseline (95% CI) in panel ``p``'s cells."""
    import plotly.graph_objects as go

    d = diffs.copy()
    d["cell"] = [_cell_label(a, b, m) for a, b, m in zip(d["task"], d["attribute"], d["metric"])]
    d = d[np.where(d["metric"].isin(["accuracy", "exact_match"]), 0, 1) == p]
    for v in variants:
        g = d[d["variant"] == v]
        if not len(g):
            continue
        fig.add_trace(
            go.Bar(
                x=g["cell"],
                y=g["diff"],
                name=f"{v} - baseline",
                legendgroup=str(v),
                showlegend=False,
                marker_color=color[v],
                opacity=0.8,
                error_y=dict(
                    type="data", symmetric=False, array=g["ci_high"] - g["diff"], arrayminus=g["diff"] - g["ci_low"]
                ),
                hovertemplate="%{x}<br>" + str(v) + " - baseline: %{y:.3f}<extra></extra>",
            ),
            row=2,
            col=c,
        )
    fig.add_hline(y=0, line=dict(color="gray", width=1), row=2, col=c)
    fig.update_yaxes(
        title_text="difference (fraction, 0-1 scale)" if p == 0 else "difference (metric units)", row=2, col=c
    )


def comparison_figure(table: pd.DataFrame, diffs: pd.DataFrame | None = None, title: str | None = None):
    """Plotly figure: grouped bars (value, 95% CI error bars, chance marks) per cell and variant; a second row
    with the paired differences vs the baseline (if given). Accuracy-type cells (0-1) and caption metrics
    (CIDEr-D is 0-10) get separate columns so their scales do not mix. Caption under the plot (and in
    ``layout.meta["caption"]``)."""
    from plotly.subplots import make_subplots

    from workbench.analysis.figures import add_caption

    has_diff = diffs is not None and len(diffs) > 0
    t = table.copy()
    t["cell"] = [_cell_label(a, b, m) for a, b, m in zip(t["task"], t["attribute"], t["metric"])]
    t["panel"] = np.where(t["metric"].isin(["accuracy", "exact_match"]), 0, 1)
    panels = sorted(t["panel"].unique())
    ncol, nrow = len(panels), 2 if has_diff else 1
    widths = [max(1, t.loc[t["panel"] == p, "cell"].nunique()) for p in panels]
    names = {0: "accuracy (closed) / exact match", 1: "caption metrics"}
    sub = [f"{names[p]}: score (95% bootstrap CI)" for p in panels]
    if has_diff:
        sub += [f"{names[p]}: difference vs {diffs['baseline'].iloc[0]} (paired 95% CI)" for p in panels]
    fig = make_subplots(
        rows=nrow,
        cols=ncol,
        shared_xaxes=True,
        vertical_spacing=0.1,
        horizontal_spacing=0.06,
        column_widths=[w / sum(widths) for w in widths],
        row_heights=[0.6, 0.4] if has_diff else None,
        subplot_titles=sub,
    )
    variants = list(dict.fromkeys(t["variant"]))
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    color = {v: colors[i % len(colors)] for i, v in enumerate(variants)}
    for c, p in enumerate(panels, start=1):
        _score_panel(fig, t[t["panel"] == p], variants, color, p, c, nrow)
        if has_diff:
            _diff_panel(fig, diffs, variants, color, p, c)
    how = "bootstrap over task rows (closed) or clips (captions), fixed seed"
    fig.update_layout(
        barmode="group",
        height=700 if has_diff else 460,
        width=max(900, 60 * sum(widths) * len(variants)),
        legend_title_text="variant",
        title=title or "Variant comparison",
    )
    ns = sorted({int(v) for v in t["n"].dropna()}) if "n" in t else []
    n = (f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}") if ns else "?"
    return add_caption(
        fig,
        f"Bars: mean score per variant and cell (n = {n} items per cell); error bars: 95% percentile "
        f"CI ({how}); black marks: chance (1/#options)."
        + (
            f" Lower row: variant minus {diffs['baseline'].iloc[0]} on the same items (paired 95% "
            "CI; 0 = no difference)."
            if has_diff
            else ""
        ),
    )
