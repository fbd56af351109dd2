"""The injection-layer curve behind claim 1: held-out closed-task accuracy against the layer where audio enters,
one line per integration mode (PLITS, LAL), with seed-aware intervals, overall and per attribute family.

    python -m workbench.layer_curve [--sweeps results/sweeps/injection-layer] [--out results]

Reads ``SWEEPS/MODE/LNN/seed-S/{eval,eval-test-seed1,eval-SPLIT}/answers.csv``
(:func:`workbench.training.runs.sweep_run_dir`, :func:`workbench.training.runs.eval_dir`; points still training or
not evaluated are skipped), closed rows only. Every point is scored on the same test splits: those that every run
of the curve was evaluated on (`workbench.sweep` evaluates on ``test`` by default; with both splits everywhere they
are pooled, their clips side by side), so no layer gains from a split the others lack. The interval
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

import sys
from pathlib import Path

import pandas as pd

from workbench.claims.layer_curve_data import ALL as ALL
from workbench.claims.layer_curve_data import CONTRASTS_STEM as CONTRASTS_STEM
from workbench.claims.layer_curve_data import FAMILIES as FAMILIES
from workbench.claims.layer_curve_data import common_splits as common_splits
from workbench.claims.layer_curve_data import curve_seeds as curve_seeds
from workbench.claims.layer_curve_data import load_sweep_clips as load_sweep_clips
from workbench.claims.layer_curve_data import seed_points as seed_points
from workbench.claims.layer_curve_figures import curve_figure as curve_figure
from workbench.claims.registry import LAYER_CURVE_STEM

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


_CONTRAST_COLUMNS = [
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


def _paired_contrast(mats, reference, mode, fam, versus: str, ref: int, layer: int, resamples: int) -> dict | None:
    """One row of :func:`layer_contrasts`: ``layer`` minus ``ref`` (its matrices ``reference``) paired by seed and clip (None: fewer than
    one shared seed or two shared clips); a clear error when the two layers hold different rows per clip."""
    from workbench.stats.bootstrap import two_level_interval

    c_ref, n_ref = reference
    c, n = mats[(mode, layer, fam)]
    seeds = c.index.intersection(c_ref.index)
    cols = c.columns.intersection(c_ref.columns)
    if len(seeds) < 1 or len(cols) < 2:
        return None
    if not (n[cols] == n_ref[cols]).all():
        raise ValueError(
            f"{mode} layers {layer} and {ref} ({fam}) have different closed rows per test "
            "clip; were they evaluated on the same test split?"
        )
    diff = c.loc[seeds, cols].to_numpy(float) - c_ref.loc[seeds, cols].to_numpy(float)
    r = two_level_interval(diff, n[cols].to_numpy(float), resamples=resamples, key=(mode, fam, versus, layer, ref))
    return {
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


def layer_contrasts(clips: pd.DataFrame, summary: pd.DataFrame, resamples: int = 2000) -> pd.DataFrame:
    """Each layer against two reference layers of its mode and family, paired by training seed and test clip:
    the first layer tested (``versus`` = ``first``: does delaying the audio help?) and the peak (``versus`` =
    ``peak``, the layer of highest mean accuracy in ``summary``: where does the curve fall off?).

    Pairing matters here: a training seed shifts a mode's accuracy at every layer alike (it fixes the init of
    the shared parts and the data order), so the unpaired per-point intervals of two seeds are far wider than the
    differences between layers. Columns: ``mode, family, versus, reference_layer, layer, difference, ci_low,
    ci_high, per_seed, n_seeds, n_clips, reading, method`` (``reading``: :func:`_reading`). The peak is chosen from
    the same data, so its contrasts describe the curve's shape rather than test a hypothesis fixed in advance."""
    mats = {key: (corr, n) for key, _, corr, n in _point_matrices(clips)}
    rows = []
    for (mode, fam), g in summary.groupby(["mode", "family"], sort=True):
        refs = {"first": int(g["layer"].min()), "peak": int(g.loc[g["accuracy"].idxmax(), "layer"])}
        for versus, ref in refs.items():
            reference = mats[(mode, ref, fam)]  # (correct [seeds, clips], closed rows [clips]) of the reference
            for layer in sorted(int(x) for x in g["layer"] if int(x) != ref):
                row = _paired_contrast(mats, reference, mode, fam, versus, ref, layer, resamples)
                if row is not None:
                    rows.append(row)
    return pd.DataFrame(rows, columns=_CONTRAST_COLUMNS)


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


def write_layer_curve(sweeps: str | Path, out: str | Path, resamples: int = 2000) -> str | None:
    """Write the curve's tables and figure into ``out``; returns the shape sentence (None: no evaluated point)."""
    from workbench.analysis.core import write_outputs

    clips = load_sweep_clips(sweeps)
    if clips.empty:
        return None
    if not common_splits(clips):
        runs = clips.groupby(["mode", "layer", "seed"])["split"].agg(lambda x: "+".join(sorted(set(x))))
        raise ValueError(
            f"{sweeps}: its runs were evaluated on different splits, none shared by all "
            f"({'; '.join(f'{m}@{l}/seed-{s}: {v}' for (m, l, s), v in runs.items())}); evaluate every point on one "
            "split (workbench.sweep with the same --splits or --eval-data) or use another --out"
        )
    summary = curve_summary(clips, resamples)
    contrasts = layer_contrasts(clips, summary, resamples)
    write_outputs(curve_seeds(clips), None, out, f"{LAYER_CURVE_STEM}_seeds")
    write_outputs(contrasts, None, out, CONTRASTS_STEM)
    fig = curve_figure(summary, per_seed=seed_points(clips), contrasts=contrasts)
    write_outputs(summary, fig, out, LAYER_CURVE_STEM)
    return shape_sentence(summary, contrasts)


def run_layer_curve_command(args) -> int:
    """``python -m workbench.layer_curve``: write the curve from ``args.sweeps`` into ``args.out`` and print its shape
    sentence; 2 (with the fix on stderr) when no sweep point has been evaluated."""
    sentence = write_layer_curve(args.sweeps, args.out, args.resamples)
    if sentence is None:
        print(
            f"error: no evaluated sweep point under {args.sweeps} (expected MODE/LNN/seed-S/eval/answers.csv); run "
            "python -m workbench.sweep injection-layer first",
            file=sys.stderr,
        )
        return 2
    print(sentence)
    return 0
