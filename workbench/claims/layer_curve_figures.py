"""The injection-layer curve's figure: accuracy per layer and integration mode with intervals (overall and per
attribute family), optionally the seeds' points and the paired gain over the first layer (:func:`curve_figure`)."""

from __future__ import annotations

import pandas as pd

from workbench.claims.layer_curve_data import ALL, CONTRASTS_STEM, FAMILIES


def _accuracy_traces(
    fig, g: pd.DataFrame, per_seed: pd.DataFrame | None, mode: str, fam: str, c: str, r: int, col: int
) -> None:
    """One mode's accuracy line (seed-aware 95% bars) for family ``fam`` at (r, col), and each seed's points."""
    import plotly.graph_objects as go

    d = g[g["family"] == fam].sort_values("layer")
    if not len(d):
        return
    fig.add_trace(
        go.Scatter(
            x=d["layer"],
            y=d["accuracy"] * 100,
            mode="lines+markers",
            name=mode.upper(),
            legendgroup=mode,
            showlegend=fam == ALL,
            line=dict(color=c),
            error_y=dict(
                type="data",
                symmetric=False,
                array=(d["ci_high"] - d["accuracy"]) * 100,
                arrayminus=(d["accuracy"] - d["ci_low"]) * 100,
            ),
            hovertemplate=f"{mode} " + "layer %{x}: %{y:.1f}%<extra></extra>",
        ),
        row=r,
        col=col,
    )
    if per_seed is not None:
        p = per_seed[(per_seed["mode"] == mode) & (per_seed["family"] == fam)].sort_values(["layer", "seed"])
        if len(p):
            fig.add_trace(
                go.Scatter(
                    x=p["layer"],
                    y=p["accuracy"] * 100,
                    mode="markers",
                    name=f"{mode.upper()}, each seed",
                    legendgroup=f"{mode}-seeds",
                    showlegend=fam == ALL,
                    customdata=p["seed"],
                    marker=dict(color=c, symbol="circle-open", size=6, opacity=0.7),
                    hovertemplate=f"{mode} " + "layer %{x}, seed %{customdata}: %{y:.1f}%<extra></extra>",
                ),
                row=r,
                col=col,
            )


def _gain_trace(fig, gain: pd.DataFrame, mode: str, c: str) -> None:
    """Middle panel: the mode's gain over its first layer (paired by seed and clip, 95% interval)."""
    import plotly.graph_objects as go

    d = gain[gain["mode"] == mode].sort_values("layer")
    if len(d):
        first = int(d["reference_layer"].iloc[0])
        fig.add_trace(
            go.Scatter(
                x=[first] + list(d["layer"]),
                y=[0.0] + list(d["difference"] * 100),
                mode="lines+markers",
                name=f"{mode.upper()}, gain over layer {first}",
                legendgroup=mode,
                showlegend=False,
                line=dict(color=c, dash="dot"),
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=[0.0] + list((d["ci_high"] - d["difference"]) * 100),
                    arrayminus=[0.0] + list((d["difference"] - d["ci_low"]) * 100),
                ),
                hovertemplate=f"{mode} " + "layer %{x}: %{y:+.1f} points<extra></extra>",
            ),
            row=2,
            col=1,
        )


def curve_figure(
    summary: pd.DataFrame,
    title: str | None = None,
    per_seed: pd.DataFrame | None = None,
    contrasts: pd.DataFrame | None = None,
):
    """Accuracy (%) against injection layer: overall on top, one panel per attribute family at the bottom; one line
    per mode, error bars = seed-aware 95% intervals. ``per_seed`` (:func:`seed_points`): each training seed's
    accuracy drawn as small open markers beside the mean. ``contrasts`` (:func:`layer_contrasts`): a middle panel
    with each layer's gain over the mode's first layer, paired by seed and clip, with its 95% interval."""
    from plotly.subplots import make_subplots

    from workbench.analysis.figures import add_caption

    fams = [f for f in FAMILIES if f in set(summary["family"])]
    cols = max(len(fams), 1)
    gain = None
    if contrasts is not None and len(contrasts):
        gain = contrasts[(contrasts["family"] == ALL) & (contrasts["versus"] == "first")]
    wide = [{"colspan": cols}] + [None] * (cols - 1)
    titles = (
        [ALL]
        + (["gain over the first layer, paired by training seed and test clip"] if gain is not None else [])
        + fams
    )
    rows = 3 if gain is not None else 2
    fam_row = rows
    fig = make_subplots(
        rows=rows,
        cols=cols,
        specs=[wide] * (rows - 1) + [[{} for _ in range(cols)]],
        row_heights=[0.42, 0.24, 0.34] if gain is not None else [0.6, 0.4],
        vertical_spacing=0.1 if gain is not None else 0.14,
        subplot_titles=titles,
    )
    colours = {"plits": "#1f77b4", "lal": "#d62728"}
    for i, (mode, g) in enumerate(summary.groupby("mode", sort=True)):
        c = colours.get(mode, ["#2ca02c", "#9467bd", "#8c564b"][i % 3])
        for fam, (r, col) in [(ALL, (1, 1))] + [(f, (fam_row, j + 1)) for j, f in enumerate(fams)]:
            _accuracy_traces(fig, g, per_seed, mode, fam, c, r, col)
        if gain is not None:
            _gain_trace(fig, gain, mode, c)
    fig.update_xaxes(title_text="injection layer (first LLM layer that sees audio)", row=1, col=1)
    fig.update_yaxes(title_text="closed-task accuracy (%)", row=1, col=1)
    if gain is not None:
        fig.add_hline(y=0, line=dict(color="grey", width=1, dash="dash"), row=2, col=1)
        fig.update_xaxes(title_text="injection layer (index)", row=2, col=1)
        fig.update_yaxes(title_text="gain (percentage points)", row=2, col=1)
    for j in range(1, len(fams) + 1):
        fig.update_xaxes(title_text="layer (index)", row=fam_row, col=j)
        fig.update_yaxes(title_text="accuracy (%)", title_standoff=2, row=fam_row, col=j)
    fig.update_layout(
        title=title or "Injection-layer curve (claim 1: delayed integration)",
        template="plotly_white",
        height=980 if gain is not None else 720,
        legend_title_text="integration mode",
    )
    return add_caption(fig, _curve_caption(summary, per_seed is not None, gain is not None))


def _curve_caption(summary: pd.DataFrame, with_seeds: bool, with_gain: bool) -> str:
    """The curve figure's caption: the runs, the splits, what the points, bars and panels show."""
    seeds = sorted({int(s) for x in summary["seeds"] for s in str(x).split(",") if s != ""})
    splits = sorted({s for x in summary["splits"] for s in str(x).split("+") if s})
    on = (
        f"the held-out test split {splits[0]}"
        if len(splits) == 1
        else f"the held-out test splits {' and '.join(splits)} pooled"
    )
    seed_marks = "; open markers: each training seed" if with_seeds else ""
    gain_words = (
        "middle panel: each layer minus the first, paired by seed and clip, 95% interval; all in " if with_gain else ""
    )
    return (
        "One model trained per integration mode, injection layer and training seed (tiny preset, "
        f"same data and schedule; seeds {', '.join(map(str, seeds)) or '?'}); greedy answers on "
        f"{on}, the splits every run was evaluated on. Points: mean accuracy over seeds; error "
        "bars: 95% interval over training seeds and test clips (two-level interval, calibrated t, "
        f"kept within [0, 100]%; one seed: clip bootstrap){seed_marks}. The bars include the "
        "seed's shift of every layer alike; compare layers with the paired differences "
        f"({gain_words}{CONTRASTS_STEM}.csv). Bottom panels: the rows of one attribute family."
    )
