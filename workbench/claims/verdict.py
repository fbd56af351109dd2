"""Three-line verdicts on the paper's claims, computed from the CSVs of a demo run folder.

    python -m workbench.verdict results/demo             # prints the verdicts, writes results/demo/verdict.csv
    python -m workbench.verdict results/demo --markdown  # the verdict table for results/README.md

The claims, their contrasts and their inside-the-model analyses come from the registry :mod:`workbench.claims.registry`.
Each claim gets: (1) the verdict (agree / disagree / inconclusive with the paper's direction) and the primary
measurement: a paired difference of closed-task accuracy between two variants that differ only in the property
the claim is about; (2) what the inside of a model shows (ablations, probes); (3) what the verdict does and does
not cover. Nothing is hard-coded: every number comes from the CSVs (files it needs and does not find are named).

When the folder has ``seed_contrasts.csv`` (:mod:`workbench.claims.seeds`: training seeds x test clips, both test
splits pooled), the verdict uses it with the rule fixed in advance (:data:`workbench.stats.bootstrap.VERDICT_RULE`): agree
only when every contrast's seed-aware 95% interval lies above 0 and the contrast is positive for every seed;
disagree when one lies below 0; inconclusive otherwise; ``verdict_one_seed`` is the same rule on seed 0 alone.
Without it, the older ``contrasts.csv`` (row bootstrap of one run per variant) is used with the same rule
(:func:`workbench.stats.bootstrap.decide_contrast` per contrast, no per-seed condition, and
:func:`~workbench.stats.bootstrap.decide_claim`): the one verdict rule of the workbench.

Files read (written by :mod:`workbench.pipeline.demo`):

* ``seed_contrasts.csv`` (preferred) or ``contrasts.csv`` (``variant, baseline, metric, task, attribute, diff,
  ci_low, ci_high``); ``compare.csv`` / ``seed_accuracy.csv``: per-variant accuracy;
* each claim's registered ablation tables (``kind="ablation"``, :func:`workbench.analysis.ablation.summarize_items`)
  and probe tables (``probe_*.csv``, :func:`workbench.analysis.probes.fit_probes`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workbench.claims.registry import CLAIMS, COMPARE_STEM, CONTRASTS_STEM, SEED_CONTRASTS_STEM
from workbench.common.paths import atomic_write_bytes

__all__ = ["claim_verdicts", "format_verdicts", "markdown_verdicts", "write_verdicts", "run_verdict_command"]

VERDICT_COLUMNS = ["claim", "title", "verdict", "verdict_one_seed", "evidence", "inside", "scope"]


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
    diffs, table = _read(run, f"{CONTRASTS_STEM}.csv"), _read(run, f"{COMPARE_STEM}.csv")
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
    return (
        f"{variant} - {ref}: {vals}difference {r['diff']:+.3f} [95% CI {r['ci_low']:+.3f}, {r['ci_high']:+.3f}]{n}",
        (float(r["ci_low"]), float(r["ci_high"])),
    )


def _seed_contrast(table: pd.DataFrame, variant: str, ref: str) -> tuple[str, dict | None, dict | None]:
    """(sentence, all-seeds row, one-seed row) of one contrast from ``seed_contrasts.csv`` (pooled splits)."""
    sub = table[(table["variant"] == variant) & (table["reference"] == ref) & (table["split"] == "pooled")]
    rows = {r["scope"]: r for r in sub.to_dict("records")}
    if "all seeds" not in rows:
        return f"{variant} vs {ref}: not in seed_contrasts.csv", None, None
    r, one = rows["all seeds"], rows.get("one seed")
    per = str(r["per_seed"]).replace(";", ", ")
    text = (
        f"{variant} - {ref}: difference {r['diff']:+.3f} [95% CI {r['ci_low']:+.3f}, {r['ci_high']:+.3f}] over "
        f"{int(r['n_seeds'])} training seed(s) ({per}) and {int(r['n_clips'])} test clips ({r['note'] if isinstance(r['note'], str) and r['note'] else 'one test split'})"
    )
    if one is not None and int(r["n_seeds"]) > 1:
        text += f"; seed 0 alone: {one['diff']:+.3f} [{one['ci_low']:+.3f}, {one['ci_high']:+.3f}]"
    by_split = table[
        (table["variant"] == variant)
        & (table["reference"] == ref)
        & (table["scope"] == "all seeds")
        & (table["split"] != "pooled")
    ]
    if by_split["verdict"].nunique() > 1:
        text += "; the test splits differ: " + ", ".join(
            f"{x['split']} {x['diff']:+.3f} [{x['ci_low']:+.3f}, {x['ci_high']:+.3f}] {x['verdict']}"
            for x in by_split.to_dict("records")
        )
    return text, r, one


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
    text = "; ".join(
        f"{att} ({metric}): " + ", ".join(f"{e} {v:.2f}" for e, v in per.items()) for att, metric, per in found
    )
    how = (
        f"different encoders win different attributes ({', '.join(sorted(winners))})"
        if len(winners) > 1
        else f"one encoder ({next(iter(winners))}) wins every probed attribute"
    )
    return f"linear probes on each encoder's output: {text}: {how}"


def _inside(run: Path, claim) -> str:
    lines = []
    for an in claim.analyses:
        if an.kind == "ablation":
            line = _ablation_line(_read(run, f"{an.stem}.csv"), _condition, an.what)
            if line or not an.optional:
                lines.append(line or f"{an.stem}.csv missing")
        elif an.kind == "probe":
            probes = _probe_winners(run)
            if probes:
                lines.append(probes)
    return " | ".join(lines)


def claim_verdicts(run: str | Path) -> pd.DataFrame:
    """One row per claim of the registry: ``claim, title, verdict, verdict_one_seed, evidence, inside, scope``
    (see the module docstring)."""
    from workbench.stats.bootstrap import decide_claim, decide_contrast

    run = Path(run)
    seeds = _read(run, f"{SEED_CONTRASTS_STEM}.csv")
    rows = []
    for claim in CLAIMS.values():
        sentences, many, one_v, all_v = [], [], [], []
        for variant, ref in claim.contrasts:
            if seeds is not None:
                s, r, one = _seed_contrast(seeds, variant, ref)
                sentences.append(s)
                all_v.append(decide_contrast(r["ci_low"], r["ci_high"], _per_seed(r)) if r else "no data")
                one_v.append(decide_contrast(one["ci_low"], one["ci_high"]) if one else "no data")
                many.append(int(r["n_seeds"]) if r else 0)
            else:
                s, ci = _contrast(run, variant, ref)
                sentences.append(s)
                all_v.append(decide_contrast(*ci) if ci is not None else "no data")
        if seeds is not None:
            verdict, one_seed = decide_claim(all_v), decide_claim(one_v)
            n = max(many, default=0)
            seed_scope = (
                f"{n} training seeds per variant, seed-aware intervals (seeds and test clips resampled)"
                if n > 1
                else "one training run per variant; the CI covers test clips, not training seeds"
            )
        else:
            verdict = one_seed = decide_claim(all_v)
            seed_scope = "one training run per variant; the CI covers test rows, not training seeds"
        rows.append(
            {
                "claim": claim.id,
                "title": claim.title,
                "verdict": verdict,
                "verdict_one_seed": one_seed,
                "evidence": " | ".join(sentences),
                "inside": _inside(run, claim),
                "scope": f"scope: {seed_scope}; {claim.scope}",
            }
        )
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def _per_seed(r: dict) -> list[float]:
    return [float(x.split(":")[1]) for x in str(r.get("per_seed", "")).split(";") if ":" in x]


def format_verdicts(df: pd.DataFrame) -> str:
    """Three lines per claim, for the terminal."""
    out = []
    for r in df.to_dict("records"):
        one = r.get("verdict_one_seed")
        side = f" (seed 0 alone: {str(one).upper()})" if isinstance(one, str) and one != r["verdict"] else ""
        out.append(f"{r['title']}: {r['verdict'].upper()} with the paper's direction{side}. {r['evidence']}")
        out.append(f"    inside: {r['inside']}")
        out.append(f"    {r['scope']}")
    return "\n".join(out)


def markdown_verdicts(df: pd.DataFrame) -> str:
    """The verdicts as a markdown table (claim, verdict on seed 0 alone, verdict over every seed, evidence)."""
    lines = ["| claim | seed 0 alone | all seeds | primary contrasts | inside the model |", "|---|---|---|---|---|"]
    for r in df.to_dict("records"):
        cells = [
            r["title"],
            str(r.get("verdict_one_seed", "")),
            f"**{r['verdict']}**",
            str(r["evidence"]).replace(" | ", "<br>"),
            str(r["inside"]).replace(" | ", "<br>"),
        ]
        lines.append("| " + " | ".join(c.replace("|", "/") if i < 3 else c for i, c in enumerate(cells)) + " |")
    return "\n".join(lines) + "\n"


def write_verdicts(run: str | Path) -> tuple[pd.DataFrame, Path]:
    """Compute the verdicts of ``run`` and write ``run/verdict.csv`` atomically."""
    df = claim_verdicts(run)
    path = atomic_write_bytes(Path(run) / "verdict.csv", df.to_csv(index=False).encode())
    return df, path


def run_verdict_command(a) -> int:
    """``python -m workbench.verdict`` with parsed arguments ``a``: ``RUN/verdict.csv`` written, the verdicts printed
    (as markdown with ``--markdown``); exit code 0, or 2 when the run folder is missing."""
    import sys

    if not Path(a.run).is_dir():
        print(f"error: {a.run} is not a folder; run the demo first: ./run demo", file=sys.stderr)
        return 2
    df, path = write_verdicts(a.run)
    print(markdown_verdicts(df) if a.markdown else format_verdicts(df))
    print(f"wrote {path}")
    return 0
