"""The bullet lines under each claim of the report (:mod:`workbench.reporting.report`), computed from the CSVs of a
run folder. Tables are routed by their registered names, never by their columns: the claims registry
(:mod:`workbench.claims.registry`) says which file holds what and which claim it bears on.

Per claim, in this order:

* each of the claim's own contrasts (``Claim.contrasts``, the pairs the verdict decides on): the two variants'
  scores from ``compare.csv`` (:data:`~workbench.claims.registry.COMPARE_STEM`) and their paired difference from
  ``contrasts.csv`` (:data:`~workbench.claims.registry.CONTRASTS_STEM`);
* each registered analysis of the claim whose table is there, summarised by its ``kind``: ``layer_curve``
  (the injection-layer curve's shape sentence, :func:`workbench.claims.layer_curve.shape_sentence`, whatever its
  number of modes and seeds), ``attention``, ``logit_lens`` and ``probe``; ablation
  tables are summarised by the verdict's "inside the model" line instead.

A claim with none of these says "no data". Nothing is hard-coded: every number comes from the CSVs.
"""

from __future__ import annotations

import math
from fnmatch import fnmatch

import numpy as np
import pandas as pd

__all__ = ["NO_DATA", "claim_summaries", "registered_stems"]

NO_DATA = "no data: no CSV in this run folder bears on this claim"


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.3g}" if isinstance(x, (float, np.floating)) else str(x)


def _ci(row) -> str:
    lo, hi = row.get("ci_low"), row.get("ci_high")
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return _fmt(row.get("value", row.get("diff")))
    return f"{_fmt(row.get('value', row.get('diff')))} [95% CI {_fmt(lo)}, {_fmt(hi)}]"


def _headline(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the overall cell: metric accuracy (else the first metric), task/attribute 'all' where present."""
    metric = "accuracy" if "accuracy" in set(df["metric"]) else df["metric"].iloc[0]
    sub = df[df["metric"] == metric]
    for col in ("task", "attribute"):
        if col in sub.columns and (sub[col] == "all").any():
            sub = sub[sub[col] == "all"]
    return sub


def _variant_lines(df: pd.DataFrame, left: tuple, right: tuple) -> list[str]:
    sub = _headline(df)
    metric = sub["metric"].iloc[0] if len(sub) else "metric"
    have = {str(v): r for v, r in zip(sub["variant"], sub.to_dict("records"))}
    lines = []
    for group in (left, right):
        for v in group:
            if v in have:
                lines.append(f"{v}: {metric} {_ci(have[v])} (n={_fmt(have[v].get('n'))})")
    return lines if any(v in have for v in left) and any(v in have for v in right) else []


def _diff_lines(df: pd.DataFrame, variants: tuple, baselines: tuple) -> list[str]:
    sub = df[df["variant"].isin(variants) & df["baseline"].isin(baselines)]
    if "metric" in sub.columns and len(sub):
        sub = _headline(sub.rename(columns={"diff": "value"})).rename(columns={"value": "diff"})
    lines = []
    for r in sub.to_dict("records"):
        p = f", p={_fmt(r['p_value'])}" if "p_value" in r and not pd.isna(r["p_value"]) else ""
        lines.append(f"{r['variant']} - {r['baseline']}: {r.get('metric', 'diff')} difference {_ci(r)}{p}")
    return lines


def _attention_lines(df: pd.DataFrame, stem: str) -> list[str]:
    lines = []
    qs = df["query_set"].iloc[0] if "query_set" in df.columns else None
    sub = df[df["query_set"] == qs] if qs is not None else df
    for enc, g in sub.groupby("encoder", sort=False):
        per = g.groupby("layer")[["mass", "uniform_mass"]].mean()
        per = per[per["uniform_mass"] > 0]
        if not len(per):
            lines.append(f"{stem}: encoder {enc}: no audio keys visible at any layer")
            continue
        ratio = per["mass"] / per["uniform_mass"]
        top = (
            g.dropna(subset=["ratio"]).sort_values("ratio", ascending=False).iloc[0]
            if g["ratio"].notna().any()
            else None
        )
        lines.append(
            f"{stem}: encoder {enc} (queries {qs}): audio visible from layer {int(per.index.min())}; mean mass "
            f"{_fmt(float(per['mass'].mean()))} vs uniform {_fmt(float(per['uniform_mass'].mean()))}; layer with the "
            f"largest mass/uniform ratio: {int(ratio.idxmax())} ({_fmt(float(ratio.max()))}x)"
            + (
                f"; top head L{int(top['layer'])}H{int(top['head'])} ({_fmt(float(top['ratio']))}x)"
                if top is not None
                else ""
            )
        )
    return lines


def _logit_lens_lines(df: pd.DataFrame) -> list[str]:
    if "n" not in df.columns:  # per-example rows: summarise
        df = df.groupby(["layer", "condition"]).agg(prob=("prob", "mean"), n=("prob", "size")).reset_index()
    piv = df.pivot_table(index="layer", columns="condition", values="prob")
    if not {"audio", "no_audio"} <= set(piv.columns):
        return []
    gap = piv["audio"] - piv["no_audio"]
    last = piv.index.max()
    return [
        f"logit lens: answer probability at the last layer {_fmt(float(piv.loc[last, 'audio']))} with audio vs "
        f"{_fmt(float(piv.loc[last, 'no_audio']))} with audio cut; the audio gap is largest at layer "
        f"{int(gap.idxmax())} ({_fmt(float(gap.max()))}) and first exceeds half its final value at layer "
        f"{int(gap.index[(gap >= 0.5 * gap.loc[last]).to_numpy()].min()) if gap.loc[last] > 0 else 'n/a'}"
    ]


def _probe_lines(df: pd.DataFrame, stem: str) -> list[str]:
    metric = next((c for c in ("accuracy", "r2", "metric_value", "value", "score") if c in df.columns), None)
    if metric is None or not len(df):
        return [f"{stem}: {len(df)} rows (no recognised metric column)"]
    site = next((c for c in ("site", "hook", "name") if c in df.columns), None)
    best = df.loc[df[metric].astype(float).idxmax()]
    line = f"{stem}: best {metric} {_fmt(float(best[metric]))}" + (f" at {best[site]}" if site else "")
    if "encoder" in df.columns:
        per = df.groupby("encoder")[metric].max()
        line += "; best per encoder: " + ", ".join(f"{e} {_fmt(float(v))}" for e, v in per.items())
    return [line]


def _layer_curve_lines(df: pd.DataFrame, stem: str, tables: dict[str, pd.DataFrame]) -> list[str]:
    from workbench.claims.layer_curve import shape_sentence

    return ["injection-layer curve: " + shape_sentence(df, tables.get(f"{stem}_contrasts"))]


def _logit_lens_table_lines(df: pd.DataFrame, stem: str, tables: dict[str, pd.DataFrame]) -> list[str]:
    return _logit_lens_lines(tables.get(f"{stem}_summary", df))  # the command's summary table when it wrote one


_BY_KIND = {
    "layer_curve": _layer_curve_lines,
    "attention": lambda df, stem, tables: _attention_lines(df, stem),
    "logit_lens": _logit_lens_table_lines,
    "probe": lambda df, stem, tables: _probe_lines(df, stem),
}


def registered_stems(stem_or_pattern: str, tables) -> list[str]:
    """The stems in ``tables`` that a registered analysis's ``stem`` names (itself, or those its glob matches)."""
    if "*" in stem_or_pattern:
        return [s for s in tables if fnmatch(s, stem_or_pattern)]
    return [stem_or_pattern] if stem_or_pattern in tables else []


def _contrast_lines(claim, tables: dict[str, pd.DataFrame]) -> list[str]:
    """The claim's own contrasts: both variants' scores and their paired difference (see the module docstring)."""
    from workbench.claims.registry import COMPARE_STEM, CONTRASTS_STEM

    lines: list[str] = []
    for variant, reference in claim.contrasts:
        for stem, summarise in ((COMPARE_STEM, _variant_lines), (CONTRASTS_STEM, _diff_lines)):
            df = tables.get(stem)
            if df is None or not len(df):
                continue
            try:
                lines += summarise(df, (variant,), (reference,))
            except (KeyError, ValueError, TypeError, IndexError) as e:
                lines.append(f"{stem}: could not summarise ({e})")
    return lines


def claim_summaries(tables: dict[str, pd.DataFrame]) -> dict[str, list[str]]:
    """{claim id: bullet lines} for every claim of the registry, computed from ``tables`` ({stem: DataFrame});
    ``[NO_DATA]`` where none of the claim's registered tables is there."""
    from workbench.claims.registry import CLAIMS

    out: dict[str, list[str]] = {}
    for key, claim in CLAIMS.items():
        lines = _contrast_lines(claim, tables)
        for an in claim.analyses:
            summarise = _BY_KIND.get(an.kind)
            for stem in registered_stems(an.stem, tables) if summarise else []:
                if not len(tables[stem]):
                    continue
                try:
                    lines += summarise(tables[stem], stem, tables)
                except (KeyError, ValueError, TypeError, IndexError) as e:
                    lines.append(f"{stem}: could not summarise ({e})")
        out[key] = list(dict.fromkeys(lines)) or [NO_DATA]  # a variant shared by two contrasts: its line once
    return out
