"""The report's first figure: every claim's contrasts with their 95% intervals and verdicts (a forest plot), seed 0
alone beside all training seeds where both are known.

``forest_rows(run)`` reads ``seed_contrasts.csv`` (pooled test splits; :mod:`workbench.claims.seeds`) or, without it,
``contrasts.csv`` (overall accuracy, one run per variant) into ``claim, contrast, scope, diff, ci_low, ci_high,
verdict``; ``forest_figure(rows)`` draws them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["forest_rows", "forest_figure"]

COLOURS = {"agree": "#1a7f37", "disagree": "#cf222e", "inconclusive": "#9a6700", "no data": "#57606a"}
SYMBOLS = ["circle-open", "diamond"]


def forest_rows(run: str | Path) -> pd.DataFrame:
    """One row per (contrast, scope) of the claims in :mod:`workbench.claims.registry`, in registry order."""
    from workbench.claims.registry import CLAIMS
    from workbench.stats.bootstrap import decide_contrast

    run = Path(run)
    cols = ["claim", "contrast", "scope", "diff", "ci_low", "ci_high", "verdict"]
    rows = []
    seeds = run / "seed_contrasts.csv"
    old = run / "contrasts.csv"
    if seeds.is_file():
        t = pd.read_csv(seeds)
        t = t[t["split"] == "pooled"]
        for c in CLAIMS.values():
            for a, b in c.contrasts:
                sub = t[(t["variant"] == a) & (t["reference"] == b)]
                one_seed_only = len(sub) and int(sub["n_seeds"].max()) == 1
                for r in sub.to_dict("records"):
                    if one_seed_only and r["scope"] == "all seeds":
                        continue  # the same numbers as seed 0 alone
                    scope = (
                        f"seed {r['seeds']} alone" if r["scope"] == "one seed" else f"all seeds ({int(r['n_seeds'])})"
                    )
                    rows.append(
                        {
                            "claim": c.title,
                            "contrast": f"{a} − {b}",
                            "scope": scope,
                            "diff": r["diff"],
                            "ci_low": r["ci_low"],
                            "ci_high": r["ci_high"],
                            "verdict": r["verdict"],
                        }
                    )
    elif old.is_file():
        t = pd.read_csv(old)
        t = t[(t["metric"] == "accuracy") & (t["task"].astype(str) == "all") & (t["attribute"].astype(str) == "all")]
        for c in CLAIMS.values():
            for a, b in c.contrasts:
                for r in t[(t["variant"] == a) & (t["baseline"] == b)].to_dict("records"):
                    rows.append(
                        {
                            "claim": c.title,
                            "contrast": f"{a} − {b}",
                            "scope": "one run (test rows resampled)",
                            "diff": r["diff"],
                            "ci_low": r["ci_low"],
                            "ci_high": r["ci_high"],
                            "verdict": decide_contrast(r["ci_low"], r["ci_high"]),
                        }
                    )
    return pd.DataFrame(rows, columns=cols)


def forest_figure(rows: pd.DataFrame, title: str | None = None):
    """Horizontal intervals, one line per contrast and scope (marker shape = scope, colour = that contrast's
    verdict); the vertical line at 0 is 'no difference'."""
    import plotly.graph_objects as go

    from workbench.analysis.figures import add_caption

    fig = go.Figure()
    labels = [f"{r['claim']}: {r['contrast']}, {r['scope']}" for r in rows.to_dict("records")]
    order = list(dict.fromkeys(labels))
    for i, (scope, g) in enumerate(rows.assign(label=labels).groupby("scope", sort=False)):
        for verdict, h in g.groupby("verdict", sort=False):
            fig.add_trace(
                go.Scatter(
                    x=h["diff"] * 100,
                    y=h["label"],
                    mode="markers",
                    name=f"{scope}: {verdict}",
                    marker=dict(
                        symbol=SYMBOLS[i % 2],
                        size=11,
                        color=COLOURS.get(verdict, "#555"),
                        line=dict(width=2, color=COLOURS.get(verdict, "#555")),
                    ),
                    error_x=dict(
                        type="data",
                        symmetric=False,
                        array=(h["ci_high"] - h["diff"]) * 100,
                        arrayminus=(h["diff"] - h["ci_low"]) * 100,
                        color=COLOURS.get(verdict, "#555"),
                    ),
                    hovertemplate="%{y}: %{x:+.1f} points<extra></extra>",
                )
            )
    fig.add_vline(x=0, line=dict(color="gray", width=1, dash="dash"))
    fig.update_yaxes(
        autorange="reversed",
        title_text="contrast (claim: variant − reference, scope)",
        categoryorder="array",
        categoryarray=order,
    )
    fig.update_xaxes(title_text="difference in closed-task accuracy (percentage points; 95% interval)")
    fig.update_layout(
        title=title or "Every claim's contrasts and verdicts",
        template="plotly_white",
        height=160 + 46 * max(len(rows), 1),
        legend_title_text="scope: verdict",
        margin=dict(l=320),
    )
    return add_caption(
        fig,
        "Each line: a paired difference of closed-task accuracy between two variants that differ "
        "only in what the claim is about, with its 95% interval; colour: the contrast's verdict "
        "under the rule fixed in advance (agree: interval above 0 and positive for every "
        "training seed; disagree: interval below 0; else inconclusive). 'all seeds': intervals "
        "over training seeds and test clips; 'seed 0 alone': test clips only.",
    )
