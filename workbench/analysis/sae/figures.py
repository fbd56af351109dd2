"""Figures of the SAE study: ground-truth scores as attribute x site x variant (plotly)."""

from __future__ import annotations

import pandas as pd

__all__ = ["scores_figure"]


def scores_figure(scores: pd.DataFrame, title: str | None = None):
    """One panel per metric (cross-validated best-feature macro AUROC; 1-sparse and 16-sparse probe accuracy beside
    the dense probe): attribute on the x axis, one bar group per variant (site in the legend when several)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = [
        ("macro_auroc", "best single feature, macro AUROC (held out)"),
        ("sparse_k1", "1-sparse probe accuracy"),
        ("sparse_k16", "16-sparse probe accuracy"),
        ("dense_accuracy", "dense probe accuracy (SAE input)"),
    ]
    panels = [p for p in panels if p[0] in scores]
    fig = make_subplots(
        rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.06, subplot_titles=[t for _, t in panels]
    )
    site_col = "site" if "site" in scores and scores["site"].nunique() > 1 else None
    groups = scores.groupby(["variant"] + ([site_col] if site_col else []), sort=False)
    palette = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]
    for gi, (key, g) in enumerate(groups):
        label = " · ".join(key) if isinstance(key, tuple) else str(key)
        for r, (col, _) in enumerate(panels, start=1):
            fig.add_trace(
                go.Bar(
                    x=g["attribute"],
                    y=g[col],
                    name=label,
                    legendgroup=label,
                    showlegend=r == 1,
                    marker_color=palette[gi % len(palette)],
                ),
                row=r,
                col=1,
            )
    for r, (col, _) in enumerate(panels, start=1):
        fig.update_yaxes(title_text="AUROC" if col == "macro_auroc" else "accuracy", range=[0, 1], row=r, col=1)
    fig.update_xaxes(title_text="attribute", row=len(panels), col=1)
    fig.update_layout(
        barmode="group",
        height=260 * len(panels) + 120,
        title=title or "SAE features scored against ground truth",
        legend_title_text="variant",
        margin={"l": 60, "r": 20, "t": 80, "b": 60},
    )
    return fig
