"""Three-line verdicts on the paper's three claims, computed from the CSVs of a demo run folder.

    python -m workbench.verdict results/demo        # prints the verdicts, writes results/demo/verdict.csv

Each claim gets: (1) the verdict (agree / disagree / inconclusive with the paper's direction) and the primary
measurement: a paired difference of closed-task accuracy between two variants that differ only in the
property the claim is about, with its bootstrap 95% CI; (2) what the inside of a model shows (ablations,
probes); (3) what the verdict does and does not cover. The rule is fixed in advance: **agree** when every
primary CI lies above 0, **disagree** when any lies below 0, **inconclusive** otherwise. Nothing is
hard-coded: every number comes from the CSVs (files it needs and does not find are named in the lines).

Files read (written by :mod:`workbench.demo`):

* ``contrasts.csv``: paired differences (``variant, baseline, metric, task, attribute, diff, ci_low, ci_high``);
* ``compare.csv``: per-variant accuracy (``variant, metric, task, attribute, value, ci_low, ci_high, n``);
* ``ablation_baseline_early_late.csv``, ``ablation_delayed_ffn.csv``, ``ablation_pal_encoders.csv``
  (:func:`workbench.analysis.ablation.summarize_items` tables);
* ``probe_*.csv`` (:func:`workbench.analysis.probes.fit_probes` tables).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from workbench.paths import atomic_write_bytes

__all__ = ["CLAIM_CONTRASTS", "decide", "claim_verdicts", "format_verdicts", "main"]

# claim -> [(variant, reference)]: pairs that differ only in what the claim is about
CLAIM_CONTRASTS = {
    "claim1": [("delayed", "baseline")],  # PLITS@8 vs PLITS@0, same encoder
    "claim2": [("lal", "delayed")],  # LAL@8 vs PLITS@8, same encoder and layer
    "claim3": [("pal", "lal"), ("ensemble", "baseline")],  # 3 encoders vs whisper alone, under LAL@8 and PLITS@0
}
TITLES = {
    "claim1": "Claim 1, delayed integration",
    "claim2": "Claim 2, attention-only reading (LAL)",
    "claim3": "Claim 3, encoder ensemble",
}
VERDICT_COLUMNS = ["claim", "title", "verdict", "evidence", "inside", "scope"]
# claim -> (ablation table the demo writes, what it ablates, what the verdict covers)
INSIDE = {
    "claim1": ("ablation_baseline_early_late.csv", "baseline (PLITS@0) with audio keys blocked for text queries",
               "scope: one training run per variant (tiny preset, 300 steps); the CI covers test rows, not training "
               "seeds; injection layers compared: 0 vs 8 (python -m workbench.sweep injection-layer trains more)"),
    "claim2": ("ablation_delayed_ffn.csv", "delayed (PLITS@8) model",
               "scope: one training run per variant; LAL and PLITS both enter at layer 8 with the same encoder and "
               "connector; the FFN ablation tests whether a PLITS-trained model needs the FFN on audio"),
    "claim3": ("ablation_pal_encoders.csv", "pal (LAL ensemble) with one encoder's keys blocked",
               "scope: one training run per variant; encoders: Whisper-base, YAMNet and log-mel (the paper's "
               "SSLAM/CLAP have no offline weights); the ensemble also has more audio tokens than one encoder"),
}


def decide(intervals: list[tuple[float, float]]) -> str:
    """agree (every CI above 0) / disagree (any CI below 0) / inconclusive; 'no data' without intervals."""
    if not intervals:
        return "no data"
    if any(hi < 0 for _, hi in intervals):
        return "disagree"
    if all(lo > 0 for lo, _ in intervals):
        return "agree"
    return "inconclusive"


def _read(run: Path, name: str) -> pd.DataFrame | None:
    p = run / name
    if not p.is_file():
        return None
    try:
        return pd.read_csv(p)
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        return None


def _overall(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    sub = df[df["metric"] == metric]
    for col in ("task", "attribute"):
        if col in sub.columns:
            sub = sub[sub[col].astype(str) == "all"]
    return sub


def _contrast(run: Path, variant: str, ref: str) -> tuple[str, tuple[float, float] | None]:
    """(sentence, (ci_low, ci_high)) for one primary contrast, or (what is missing, None)."""
    diffs, table = _read(run, "contrasts.csv"), _read(run, "compare.csv")
    if diffs is None:
        return f"{variant} vs {ref}: contrasts.csv missing", None
    d = _overall(diffs)
    d = d[(d["variant"] == variant) & (d["baseline"] == ref)]
    if not len(d):
        return f"{variant} vs {ref}: no accuracy contrast in contrasts.csv", None
    r = d.iloc[0]
    vals = ""
    if table is not None:
        t = _overall(table).set_index("variant")
        if variant in t.index and ref in t.index:
            vals = f"accuracy {t.loc[variant, 'value']:.3f} vs {t.loc[ref, 'value']:.3f}, "
    n = f", n={int(r['n'])} paired test rows" if "n" in r and pd.notna(r["n"]) else ""
    return (f"{variant} - {ref}: {vals}difference {r['diff']:+.3f} [95% CI {r['ci_low']:+.3f}, {r['ci_high']:+.3f}]{n}",
            (float(r["ci_low"]), float(r["ci_high"])))


def _ablation_line(df: pd.DataFrame | None, label_of, name: str) -> str | None:
    if df is None:
        return None
    parts = []
    for metric, unit in (("accuracy", ""), ("answer_logprob", " nats")):
        sub = _overall(df, metric)
        if not len(sub):
            continue
        items = []
        for r in sub.to_dict("records"):
            se = f" ± {r['delta_se']:.2f}" if pd.notna(r.get("delta_se")) else ""
            items.append(f"{label_of(r)} {r['delta']:+.3f}{se}{unit}")
        parts.append(f"Δ {'accuracy' if metric == 'accuracy' else 'log p(answer)'}: " + ", ".join(items))
    if not parts:
        return None
    n = int(_overall(df, "answer_logprob")["n"].iloc[0]) if len(_overall(df, "answer_logprob")) else None
    return f"{name} ({'n=' + str(n) + ' rows; ' if n else ''}± 1 s.e.): " + "; ".join(parts)


def _condition(r: dict) -> str:
    """The label of one ablation row: its ``condition`` (the demo's), else mode / encoder / layer range."""
    c = r.get("condition")
    if isinstance(c, str) and c:
        return c
    return f"{r['mode']} / {r['encoder']} / layers {int(r['layer_start'])}-{int(r['layer_end'])}"


def _probe_winners(run: Path) -> str | None:
    """Which encoder's output probes best, per attribute (encoder-output sites only)."""
    found = []
    for p in sorted(run.glob("probe_*.csv")):
        df = _read(run, p.name)
        if df is None or not {"kind", "encoder", "value", "attribute", "metric"} <= set(df.columns):
            continue
        enc = df[df["kind"] == "encoder"]
        if enc["encoder"].nunique() < 2:
            continue
        per = enc.groupby("encoder")["value"].max().sort_values(ascending=False)
        found.append((str(df["attribute"].iloc[0]), str(df["metric"].iloc[0]), per))
    if not found:
        return None
    winners = {per.index[0] for _, _, per in found}
    text = "; ".join(f"{att} ({metric}): " + ", ".join(f"{e} {v:.2f}" for e, v in per.items()) for att, metric, per in found)
    how = (f"different encoders win different attributes ({', '.join(sorted(winners))})" if len(winners) > 1
           else f"one encoder ({next(iter(winners))}) wins every probed attribute")
    return f"linear probes on each encoder's output: {text}: {how}"


def claim_verdicts(run: str | Path) -> pd.DataFrame:
    """One row per claim: ``claim, title, verdict, evidence, inside, scope`` (see the module docstring)."""
    run = Path(run)
    rows = []
    for claim, pairs in CLAIM_CONTRASTS.items():
        sentences, cis = [], []
        for variant, ref in pairs:
            s, ci = _contrast(run, variant, ref)
            sentences.append(s)
            if ci is not None:
                cis.append(ci)
        verdict = decide(cis) if len(cis) == len(pairs) else "no data"
        csv, what, scope = INSIDE[claim]
        inside = [_ablation_line(_read(run, csv), _condition, what) or f"{csv} missing"]
        if claim == "claim3":
            probes = _probe_winners(run)
            if probes:
                inside.append(probes)
        rows.append({"claim": claim, "title": TITLES[claim], "verdict": verdict, "evidence": " | ".join(sentences),
                     "inside": " | ".join(inside), "scope": scope})
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def format_verdicts(df: pd.DataFrame) -> str:
    """Three lines per claim, for the terminal."""
    out = []
    for r in df.to_dict("records"):
        out.append(f"{r['title']}: {r['verdict'].upper()} with the paper's direction. {r['evidence']}")
        out.append(f"    inside: {r['inside']}")
        out.append(f"    {r['scope']}")
    return "\n".join(out)


def write_verdicts(run: str | Path) -> tuple[pd.DataFrame, Path]:
    """Compute the verdicts of ``run`` and write ``run/verdict.csv`` atomically."""
    df = claim_verdicts(run)
    path = atomic_write_bytes(Path(run) / "verdict.csv", df.to_csv(index=False).encode())
    return df, path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workbench.verdict", description=__doc__.split("\n\n")[0])
    ap.add_argument("run", nargs="?", default="results/demo", help="demo run folder (default results/demo)")
    a = ap.parse_args(argv)
    if not Path(a.run).is_dir():
        print(f"error: {a.run} is not a folder; run the demo first: ./run demo", file=sys.stderr)
        return 2
    df, path = write_verdicts(a.run)
    print(format_verdicts(df))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
