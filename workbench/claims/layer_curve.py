"""The injection-layer curve behind claim 1: held-out closed-task accuracy against the layer where audio enters,
one line per integration mode (PLITS, LAL), with seed-aware intervals, overall and per attribute family.

    python -m workbench.layer_curve [--sweeps results/sweeps/injection-layer] [--out results]

Reads ``SWEEPS/MODE/LNN/seed-S/{eval,eval-test-seed1}/answers.csv`` (:func:`workbench.training.runs.sweep_run_dir`; points
still training or not evaluated are skipped), closed rows only. Every point is scored on the same test splits: those
that every run of the curve was evaluated on (`workbench.sweep` evaluates on ``test`` by default; with both splits
everywhere they are pooled, their clips side by side), so no layer gains from a split the others lack. The interval
of a point is :func:`workbench.stats.bootstrap.two_level_interval` over the point's seeds and clips (one seed: clip bootstrap),
kept within [0, 1]. Layers are compared with each other paired by training seed and clip (:func:`layer_contrasts`):
a seed moves every layer of a mode alike, so only paired differences resolve the curve's shape with two seeds.
Attribute families (the ``attribute`` of each task row): :data:`FAMILIES`.

Writes ``OUT/injection_layer_curve.csv`` (``mode, layer, family, accuracy, ci_low, ci_high, n_seeds, seeds,
n_clips, n_rows, splits, method``), ``OUT/injection_layer_curve_seeds.csv`` (``mode, layer, seed, split, family,
accuracy, n_rows``), ``OUT/injection_layer_curve_contrasts.csv`` (:func:`layer_contrasts`) and the figure
``OUT/injection_layer_curve.html`` (+ ``.png``); prints :func:`shape_sentence`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from workbench.claims.registry import LAYER_CURVE_STEM
from workbench.training.runs import EVAL_DIRS, SWEEP_ROOT

__all__ = [
    "FAMILIES",
    "CONTRASTS_STEM",
    "load_sweep_clips",
    "common_splits",
    "seed_points",
    "curve_seeds",
    "curve_summary",
    "layer_contrasts",
    "shape_sentence",
    "curve_figure",
    "write_layer_curve",
]

#: attribute family shown in the figure -> the data's attribute names (answer_options.json keys)
FAMILIES: dict[str, tuple[str, ...]] = {
    "spoken word": ("word",),
    "pitch": ("pitch_class",),
    "category": ("category",),
    "count": ("count",),
}
ALL = "all attributes"
#: stem of the table of paired layer contrasts (:func:`layer_contrasts`) next to the curve
CONTRASTS_STEM = f"{LAYER_CURVE_STEM}_contrasts"
_POINT = re.compile(r"^L(\d+)$")
_SEED = re.compile(r"^seed-(\d+)$")


def _family_of(attribute: str) -> str | None:
    return next((f for f, names in FAMILIES.items() if attribute in names), None)


def load_sweep_clips(root: str | Path = SWEEP_ROOT) -> pd.DataFrame:
    """Per-clip closed-row sums of every evaluated sweep point: ``mode, layer, seed, split, family, clip, n,
    correct`` (family ``all attributes`` and each of :data:`FAMILIES`)."""
    from workbench.evaluation.answers import clip_scores, read_answers

    out = []
    for csv in sorted(Path(root).glob("*/L*/seed-*/*/answers.csv")):
        seed_dir, point, mode = csv.parent.parent, csv.parent.parent.parent, csv.parent.parent.parent.parent
        split = next((s for s, d in EVAL_DIRS.items() if d == csv.parent.name), None)
        if split is None or not _POINT.match(point.name) or not _SEED.match(seed_dir.name):
            continue
        df = read_answers(csv, required=("file_name", "attribute", "correct"))
        key = dict(
            mode=mode.name,
            layer=int(_POINT.match(point.name).group(1)),
            seed=int(_SEED.match(seed_dir.name).group(1)),
            split=split,
        )
        out.append(clip_scores(df).assign(family=ALL, **key))
        fam = df["attribute"].map(_family_of)
        for f, g in df[fam.notna()].groupby(fam[fam.notna()]):
            out.append(clip_scores(g).assign(family=f, **key))
    cols = ["mode", "layer", "seed", "split", "family", "clip", "n", "correct"]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def seed_points(clips: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per ``mode, layer, seed, family`` on the splits every run shares (:func:`common_splits`, pooled):
    the per-seed points behind each curve point (what the figure draws next to the mean)."""
    clips = clips[clips["split"].isin(common_splits(clips))]
    g = clips.groupby(["mode", "layer", "seed", "family"], sort=True)[["n", "correct"]].sum().reset_index()
    return g.assign(accuracy=g["correct"] / g["n"])[["mode", "layer", "seed", "family", "accuracy"]]


def curve_seeds(clips: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per ``mode, layer, seed, split, family`` (the tidy per-run table)."""
    g = clips.groupby(["mode", "layer", "seed", "split", "family"], sort=True)[["n", "correct"]].sum().reset_index()
    g["accuracy"] = g["correct"] / g["n"]
    return g.rename(columns={"n": "n_rows"})[["mode", "layer", "seed", "split", "family", "accuracy", "n_rows"]]


def common_splits(clips: pd.DataFrame) -> list[str]:
    """The test splits every run (mode, layer, seed) of the curve was evaluated on, sorted."""
    per_run = clips.groupby(["mode", "layer", "seed"])["split"].agg(lambda s: frozenset(s))
    return sorted(frozenset.intersection(*per_run)) if len(per_run) else []


def _point_matrices(clips: pd.DataFrame):
    """Per ``mode, layer, family`` on the splits every run has: ``(key, splits, correct, n)`` with ``correct`` a
    ``[seeds, clips]`` frame of per-clip correct sums (columns ``split/clip``) and ``n`` the rows per clip."""
    clips = clips[clips["split"].isin(common_splits(clips))]
    for key, g in clips.groupby(["mode", "layer", "family"], sort=True):
        splits = sorted(set(g["split"]))
        seeds = sorted(set.intersection(*(set(g.loc[g["split"] == s, "seed"]) for s in splits)))
        g = g[g["seed"].isin(seeds)].assign(key=lambda d: d["split"] + "/" + d["clip"])
        corr = g.pivot_table(index="seed", columns="key", values="correct", aggfunc="sum").dropna(axis=1)
        n = g.pivot_table(index="seed", columns="key", values="n", aggfunc="sum")[corr.columns].iloc[0]
        yield key, splits, corr, n


def curve_summary(clips: pd.DataFrame, resamples: int = 2000) -> pd.DataFrame:
    """Per ``mode, layer, family``: accuracy over seeds and its seed-aware 95% interval, on the test splits every
    run has (:func:`common_splits`, pooled when several). The interval is intersected with [0, 1], the range of an
    accuracy (with two seeds the t interval has about one degree of freedom and can reach past it); the truth lies
    in [0, 1], so this never lowers the coverage. ``method`` says when a bound was clipped."""
    from workbench.stats.bootstrap import two_level_interval

    rows = []
    for (mode, layer, fam), splits, corr, n in _point_matrices(clips):
        if corr.shape[1] < 2:
            continue
        r = two_level_interval(corr.to_numpy(float), n.to_numpy(float), resamples=resamples, key=(mode, layer, fam))
        lo, hi = max(0.0, r.ci_low), min(1.0, r.ci_high)  # an accuracy lies in [0, 1]: clipping keeps the coverage
        clipped = "; clipped to [0, 1]" if (lo, hi) != (r.ci_low, r.ci_high) else ""
        rows.append(
            {
                "mode": mode,
                "layer": int(layer),
                "family": fam,
                "accuracy": r.estimate,
                "ci_low": lo,
                "ci_high": hi,
                "n_seeds": r.n_seeds,
                "seeds": ",".join(map(str, corr.index)),
                "n_clips": r.n_clips,
                "n_rows": r.n_rows,
                "splits": "+".join(splits),
                "method": r.method + clipped,
            }
        )
    cols = [
        "mode",
        "layer",
        "family",
        "accuracy",
        "ci_low",
        "ci_high",
        "n_seeds",
        "seeds",
        "n_clips",
        "n_rows",
        "splits",
        "method",
    ]
    return pd.DataFrame(rows, columns=cols)


def _reading(r) -> str:
    """'higher' / 'lower' (interval on one side of 0 and every seed's difference with the same sign) or
    'no clear difference': the verdict rule (:func:`workbench.stats.bootstrap.decide_contrast`'s *agree*), both ways."""
    from workbench.stats.bootstrap import decide_contrast

    if decide_contrast(r.ci_low, r.ci_high, r.per_seed) == "agree":
        return "higher"
    if decide_contrast(-r.ci_high, -r.ci_low, [-x for x in r.per_seed]) == "agree":
        return "lower"
    return "no clear difference"


def layer_contrasts(clips: pd.DataFrame, summary: pd.DataFrame, resamples: int = 2000) -> pd.DataFrame:
    """Each layer against two reference layers of its mode and family, paired by training seed and test clip:
    the first layer tested (``versus`` = ``first``: does delaying the audio help?) and the peak (``versus`` =
    ``peak``, the layer of highest mean accuracy in ``summary``: where does the curve fall off?).

    Pairing matters here: a training seed shifts a mode's accuracy at every layer alike (it fixes the init of
    the shared parts and the data order), so the unpaired per-point intervals of two seeds are far wider than the
    differences between layers. Columns: ``mode, family, versus, reference_layer, layer, difference, ci_low,
    ci_high, per_seed, n_seeds, n_clips, reading, method`` (``reading``: :func:`_reading`). The peak is chosen from
    the same data, so its contrasts describe the curve's shape rather than test a hypothesis fixed in advance."""
    from workbench.stats.bootstrap import two_level_interval

    mats = {key: (corr, n) for key, _, corr, n in _point_matrices(clips)}
    rows = []
    for (mode, fam), g in summary.groupby(["mode", "family"], sort=True):
        refs = {"first": int(g["layer"].min()), "peak": int(g.loc[g["accuracy"].idxmax(), "layer"])}
        for versus, ref in refs.items():
            c_ref, n_ref = mats[(mode, ref, fam)]
            for layer in sorted(int(x) for x in g["layer"] if int(x) != ref):
                c, n = mats[(mode, layer, fam)]
                seeds = c.index.intersection(c_ref.index)
                cols = c.columns.intersection(c_ref.columns)
                if len(seeds) < 1 or len(cols) < 2:
                    continue
                if not (n[cols] == n_ref[cols]).all():
                    raise ValueError(
                        f"{mode} layers {layer} and {ref} ({fam}) have different closed rows per test "
                        "clip; were they evaluated on the same test split?"
                    )
                diff = c.loc[seeds, cols].to_numpy(float) - c_ref.loc[seeds, cols].to_numpy(float)
                r = two_level_interval(
                    diff, n[cols].to_numpy(float), resamples=resamples, key=(mode, fam, versus, layer, ref)
                )
                rows.append(
                    {
                        "mode": mode,
                        "family": fam,
                        "versus": versus,
                        "reference_layer": ref,
                        "layer": layer,
                        "difference": r.estimate,
                        "ci_low": r.ci_low,
                        "ci_high": r.ci_high,
                        "per_seed": ";".join(f"{s}:{x:+.4f}" for s, x in zip(seeds, r.per_seed)),
                        "n_seeds": r.n_seeds,
                        "n_clips": r.n_clips,
                        "reading": _reading(r),
                        "method": r.method,
                    }
                )
    cols = [
        "mode",
        "family",
        "versus",
        "reference_layer",
        "layer",
        "difference",
        "ci_low",
        "ci_high",
        "per_seed",
        "n_seeds",
        "n_clips",
        "reading",
        "method",
    ]
    return pd.DataFrame(rows, columns=cols)


def _layers(xs) -> str:
    xs = [str(int(x)) for x in xs]
    return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]


def shape_sentence(summary: pd.DataFrame, contrasts: pd.DataFrame | None = None) -> str:
    """One sentence per mode on the overall curve: where it peaks and whether it falls off after the peak.

    With ``contrasts`` (:func:`layer_contrasts`) the comparisons are paired by seed and clip: the peak against the
    first layer, which layers lie below the peak, and whether any later layer does. Without, a layer "lies below"
    when its accuracy is under the peak's (unpaired) interval."""
    parts = []
    paired = contrasts[contrasts["family"] == ALL] if contrasts is not None and len(contrasts) else None
    for mode, g in summary[summary["family"] == ALL].groupby("mode", sort=True):
        g = g.sort_values("layer")
        if len(g) < 2:
            parts.append(f"{mode.upper()}: one layer only ({int(g['layer'].iloc[0])}), no curve yet.")
            continue
        best = g.loc[g["accuracy"].idxmax()]
        words = _unpaired_shape(mode, g, best) if paired is None else _paired_shape(mode, g, best, paired)
        parts.append(words + ".")
    return " ".join(parts) if parts else "No injection-layer runs evaluated yet."


def _unpaired_shape(mode: str, g: pd.DataFrame, best: pd.Series) -> str:
    """One mode's curve ``g`` (sorted by layer) read through the peak's unpaired interval."""
    after = g[(g["layer"] > best["layer"]) & (g["accuracy"] < best["ci_low"])]
    before = g[(g["layer"] < best["layer"]) & (g["accuracy"] < best["ci_low"])]
    s = (
        f"{mode.upper()} peaks at layer {int(best['layer'])} ({best['accuracy']:.3f} [{best['ci_low']:.3f}, "
        f"{best['ci_high']:.3f}], {int(best['n_seeds'])} seed{'s' if best['n_seeds'] > 1 else ''})"
    )
    if len(after):
        f = after.iloc[0]
        s += f"; it falls below the peak's interval from layer {int(f['layer'])} on ({f['accuracy']:.3f})"
    elif best["layer"] < g["layer"].max():
        s += f"; later layers up to {int(g['layer'].max())} stay within the peak's interval"
    if len(before):
        s += (
            f"; earlier layers {', '.join(str(int(x)) for x in before['layer'])} lie below it "
            f"(layer {int(g['layer'].iloc[0])}: {g['accuracy'].iloc[0]:.3f})"
        )
    return s


def _paired_shape(mode: str, g: pd.DataFrame, best: pd.Series, c: pd.DataFrame) -> str:
    """One mode's curve ``g`` read through the paired contrasts ``c`` (:func:`layer_contrasts`, overall rows)."""
    peak, first, last = int(best["layer"]), int(g["layer"].min()), int(g["layer"].max())
    n_seeds = int(best["n_seeds"])
    s = f"{mode.upper()} peaks at layer {peak} ({best['accuracy']:.3f}, {n_seeds} seed{'s' if n_seeds > 1 else ''})"
    vs_first = c[(c["mode"] == mode) & (c["versus"] == "first") & (c["layer"] == peak)]
    if len(vs_first):
        r = vs_first.iloc[0]
        how = {"higher": "above", "lower": "below"}.get(r["reading"])
        s += (
            f"; paired by training seed and test clip it is {r['difference']:+.3f} [{r['ci_low']:+.3f}, "
            f"{r['ci_high']:+.3f}] "
            + (f"{how} layer {first}" if how else f"against layer {first}, no clear difference")
        )
    vs_peak = c[(c["mode"] == mode) & (c["versus"] == "peak")]
    lower = vs_peak[vs_peak["reading"] == "lower"]
    before, after = lower[lower["layer"] < peak], lower[lower["layer"] > peak]
    unclear = vs_peak[vs_peak["reading"] != "lower"]
    if len(before):
        many = len(before) > 1
        s += f"; layer{'s' if many else ''} {_layers(before['layer'])} lie{'' if many else 's'} below the peak"
    if len(unclear):
        many = len(unclear) > 1
        s += (
            f"; layer{'s' if many else ''} {_layers(unclear['layer'])} {'do' if many else 'does'} not differ "
            "clearly from it"
        )
    if len(after):
        f = after.iloc[0]
        s += f"; it falls off after the peak (layer {int(f['layer'])}: {f['difference']:+.3f})"
    elif peak == last:
        s += f"; the peak is the last layer tested ({last}), so whether it falls off later is untested"
    else:
        s += f"; no later layer up to {last} lies clearly below it"
    return s


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


def write_layer_curve(sweeps: str | Path, out: str | Path, resamples: int = 2000) -> str | None:
    """Write the curve's tables and figure into ``out``; returns the shape sentence (None: no evaluated point)."""
    from workbench.analysis.core import write_outputs

    clips = load_sweep_clips(sweeps)
    if clips.empty:
        return None
    summary = curve_summary(clips, resamples)
    contrasts = layer_contrasts(clips, summary, resamples)
    write_outputs(curve_seeds(clips), None, out, f"{LAYER_CURVE_STEM}_seeds")
    write_outputs(contrasts, None, out, CONTRASTS_STEM)
    fig = curve_figure(summary, per_seed=seed_points(clips), contrasts=contrasts)
    write_outputs(summary, fig, out, LAYER_CURVE_STEM)
    return shape_sentence(summary, contrasts)
