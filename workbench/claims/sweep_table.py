"""The injection-layer sweep's table and figure: closed-task accuracy against the layer, bootstrap 95% CIs.

:func:`sweep_table` reads the evaluations of :func:`workbench.pipeline.sweep.injection_layer_sweep` through
:mod:`workbench.claims.compare`; :func:`sweep_figure` draws it. (They read evaluations and draw: they belong with the
reporting stage, and sit here, in their own module, until that stage exists.)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["sweep_table", "sweep_figure"]


def sweep_table(answers: dict[int, Path], resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Bootstrap table (workbench.compare) over the evaluated layers, with a ``layer`` column."""
    from workbench.claims.compare import _chances, bootstrap_table, item_scores, load_run
    from workbench.evaluation.evaluator import load_answer_options

    items, chances = {}, None
    for layer, csv in sorted(answers.items()):
        _, df, path = load_run(f"L{layer}={csv}")
        items[str(layer)] = item_scores(df, caption_metrics=())
        if chances is None:
            info = path.parent / "run.json"
            opts = {}
            if info.is_file():
                import json

                data = json.loads(info.read_text()).get("data")
                opts = load_answer_options(data) if data and Path(data).is_dir() else {}
            chances = _chances(df, opts)
    table, _ = bootstrap_table(items, resamples=resamples, seed=seed, chances=chances)
    table.insert(0, "layer", table.pop("variant").astype(int))
    return table.sort_values(["metric", "task", "attribute", "layer"]).reset_index(drop=True)


def sweep_figure(table: pd.DataFrame, title: str | None = None):
    """Closed-task accuracy (overall and per task) against the injection layer, with 95% CIs."""
    import plotly.graph_objects as go

    from workbench.analysis.figures import add_caption

    fig = go.Figure()
    t = table[(table["metric"] == "accuracy") & (table["attribute"] == "all")]
    for task, g in t.groupby("task", sort=True):
        g = g.sort_values("layer")
        fig.add_trace(
            go.Scatter(
                x=g["layer"],
                y=g["value"] * 100,
                mode="lines+markers",
                name=f"{task}",
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=(g["ci_high"] - g["value"]) * 100,
                    arrayminus=(g["value"] - g["ci_low"]) * 100,
                ),
            )
        )
        ch = g["chance"].dropna() if "chance" in g else g["value"].iloc[:0]
        if task == "all" and len(ch):
            fig.add_hline(y=float(ch.iloc[0]) * 100, line_dash="dot", annotation_text="chance (all)")
    fig.update_layout(
        title=title or "Injection-layer sweep (claim 1: delayed integration)",
        template="plotly_white",
        xaxis_title="injection layer (first LLM layer that sees audio; layer index)",
        yaxis_title="closed-task accuracy (%)",
        height=520,
    )
    all_n = t.loc[t["task"] == "all", "n"] if "n" in t else t["value"].iloc[:0]
    n = f"{int(all_n.max())} closed task rows" if len(all_n) else "the closed task rows"
    return add_caption(
        fig,
        f"One model trained per injection layer with the same data and schedule; greedy answers on "
        f"the evaluation set ({n} per layer; one line per task, 'all' = every task). Error bars: "
        "percentile bootstrap 95% CI over task rows; dotted line: chance.",
    )
