"""Seed-aware statistics of the claims' contrasts, over training seeds and both test splits.

    python -m workbench.seed_stats [--checkpoints results/checkpoints] [--sweeps results/sweeps/injection-layer]
                                   [--out results] [--markdown results/seeds.md]

Reads every run of :func:`workbench.training.runs.find_seed_runs` (``VARIANT/`` = seed 0, ``VARIANT/seed-S/``) and its
evaluations on each test split of :data:`workbench.training.runs.EVAL_DIRS` (``eval/`` and ``eval-test-seed1/``), closed
rows only, and writes:

* ``seed_accuracy.csv``: per variant, test split and seed: accuracy, rows, clips (``seed`` = ``all`` rows hold
  the mean over seeds, the sample SD ``sd`` and ``min``/``max``; ``seeds`` lists the seeds a variant has);
* ``seed_contrasts.csv``: for each claim's contrast (:mod:`workbench.claims.registry`), test split (``test``,
  ``test-seed1`` and ``pooled`` = both splits' clips together) and ``scope`` (``one seed`` = seed 0 alone,
  ``all seeds``): the paired difference, its interval (:func:`workbench.stats.bootstrap.two_level_interval`: over seeds
  and clips; one seed: clip bootstrap), the per-seed differences, and the contrast's verdict under the
  rule fixed in advance (:data:`workbench.stats.bootstrap.VERDICT_RULE`). Variants are paired by seed and clip; only the
  seeds both variants have are used (``note`` names the others);
* with ``--sweeps``: the injection-layer curve (:mod:`workbench.claims.layer_curve`) ``injection_layer_curve.csv/.html``;
* with ``--markdown``: the tables for ``results/README.md`` (per-seed accuracy, one-seed vs all-seed verdicts,
  where the two test splits differ, the curve's shape).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from workbench.evaluation.answers import AnswersError, clip_scores, read_answers
from workbench.training.runs import EVAL_DIRS, find_seed_runs

__all__ = [
    "answers_fingerprint",
    "load_clip_scores",
    "seed_accuracy",
    "seed_contrasts",
    "claim_seed_verdicts",
    "markdown_tables",
    "write_seed_stats",
    "run_seed_stats_command",
    "SeedStatsError",
]

CLIP_COLUMNS = ["variant", "seed", "split", "clip", "n", "correct"]
CONTRAST_COLUMNS = [
    "claim",
    "variant",
    "reference",
    "split",
    "scope",
    "seeds",
    "n_seeds",
    "n_clips",
    "n_rows",
    "diff",
    "ci_low",
    "ci_high",
    "per_seed",
    "min_seed_diff",
    "method",
    "verdict",
    "note",
]
POOLED = "pooled"


class SeedStatsError(ValueError):
    """Inconsistent runs (message names the files and the fix)."""


def answers_fingerprint(*roots: str | Path) -> list[list]:
    """``[[path, size, mtime_ns], ...]`` of every answers CSV under ``roots`` (a resumable step's parameter: new
    or re-evaluated runs make it run again)."""
    out = []
    for root in roots:
        for p in sorted(Path(root).rglob("answers.csv")) if Path(root).is_dir() else []:
            st = p.stat()
            out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def load_clip_scores(
    root: str | Path, variants: list[str] | None = None, overrides: dict[tuple[str, int, str], str | Path] | None = None
) -> pd.DataFrame:
    """Every evaluated (variant, seed, split) under ``root`` as per-clip sums (:data:`CLIP_COLUMNS`);
    ``overrides`` maps ``(variant, seed, split)`` to another answers CSV to use for that run (the demo's)."""
    out = []
    for run in find_seed_runs(root, variants):
        for split in EVAL_DIRS:
            csv = Path((overrides or {}).get((run.variant, run.seed, split), run.answers(split)))
            if csv.is_file():
                try:
                    df = read_answers(csv)
                except AnswersError as e:
                    raise SeedStatsError(str(e)) from e
                out.append(clip_scores(df).assign(variant=run.variant, seed=run.seed, split=split))
    if not out:
        return pd.DataFrame(columns=CLIP_COLUMNS)
    return pd.concat(out, ignore_index=True)[CLIP_COLUMNS]


def seed_accuracy(clips: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, split, seed) accuracy, plus one ``seed == "all"`` row per (variant, split) with the mean over
    seeds, its SD and range (see the module docstring)."""
    rows = []
    for (v, split), g in clips.groupby(["variant", "split"], sort=False):
        per = g.groupby("seed").agg(n=("n", "sum"), correct=("correct", "sum"), clips=("clip", "size"))
        acc = per["correct"] / per["n"]
        for s, r in per.iterrows():
            rows.append(
                {
                    "variant": v,
                    "split": split,
                    "seed": str(s),
                    "accuracy": float(acc[s]),
                    "n_rows": int(r["n"]),
                    "n_clips": int(r["clips"]),
                }
            )
        rows.append(
            {
                "variant": v,
                "split": split,
                "seed": "all",
                "accuracy": float(acc.mean()),
                "sd": float(acc.std(ddof=1)) if len(acc) > 1 else np.nan,
                "min": float(acc.min()),
                "max": float(acc.max()),
                "n_seeds": len(acc),
                "seeds": ",".join(map(str, per.index)),
                "n_rows": int(per["n"].iloc[0]),
                "n_clips": int(per["clips"].iloc[0]),
            }
        )
    cols = ["variant", "split", "seed", "accuracy", "sd", "min", "max", "n_seeds", "seeds", "n_rows", "n_clips"]
    return pd.DataFrame(rows).reindex(columns=cols)


def _matrix(clips: pd.DataFrame, a: str, b: str, splits: list[str], seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``diff[S, C]`` (a minus b, summed per clip) and ``n[C]`` over the clips of ``splits`` for ``seeds``."""
    sub = clips[clips["split"].isin(splits) & clips["seed"].isin(seeds) & clips["variant"].isin([a, b])]
    key = sub["split"] + "/" + sub["clip"]
    piv_c = sub.assign(key=key).pivot_table(index=["variant", "seed"], columns="key", values="correct", aggfunc="sum")
    piv_n = sub.assign(key=key).pivot_table(index=["variant", "seed"], columns="key", values="n", aggfunc="sum")
    if piv_c.isna().any().any() or (piv_n.nunique(axis=0) > 1).any():
        bad = piv_n.columns[(piv_n.nunique(axis=0) > 1) | piv_c.isna().any(axis=0)][:3]
        raise SeedStatsError(
            f"{a} and {b} were not evaluated on the same closed rows for seeds {seeds} on "
            f"{splits} (e.g. clips {list(bad)}); re-run workbench.evaluate on the same test split "
            "for every run"
        )
    diff = piv_c.loc[a].loc[seeds].to_numpy(float) - piv_c.loc[b].loc[seeds].to_numpy(float)
    return diff, piv_n.iloc[0].to_numpy(float)


def _seeds(clips: pd.DataFrame, v: str, split: str) -> set[int]:
    return set(clips.loc[(clips["variant"] == v) & (clips["split"] == split), "seed"].astype(int))


def seed_contrasts(
    clips: pd.DataFrame, pairs: list[tuple[str, str, str]] | None = None, resamples: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """One row per (claim contrast, split, scope); see the module docstring. ``pairs``: ``[(claim, variant,
    reference)]`` (default: every contrast of :mod:`workbench.claims.registry`)."""
    from workbench.claims.registry import contrast_pairs
    from workbench.stats.bootstrap import decide_contrast, two_level_interval

    pairs = contrast_pairs() if pairs is None else pairs
    splits = [s for s in EVAL_DIRS if s in set(clips["split"])]
    rows = []
    for claim, a, b in pairs:
        per_split = {s: sorted(_seeds(clips, a, s) & _seeds(clips, b, s)) for s in splits}
        usable = [s for s in splits if per_split[s]]
        pooled_seeds = sorted(set.intersection(*(set(per_split[s]) for s in usable))) if usable else []
        targets = [(s, [s], per_split[s]) for s in usable]
        if len(usable) > 1 and pooled_seeds:
            targets.append((POOLED, usable, pooled_seeds))
        elif usable:  # one split only: the pooled verdict is that split's
            targets.append((POOLED, usable, per_split[usable[0]]))
        notes = []
        for s in splits:
            only = sorted(_seeds(clips, a, s) ^ _seeds(clips, b, s))
            if only:
                notes.append(f"{s}: seeds {only} only in one of {a}/{b}, left out")
        for split, used_splits, seeds in targets:
            for scope, ss in (("one seed", [min(seeds)]), ("all seeds", seeds)):
                diff, n = _matrix(clips, a, b, used_splits, ss)
                r = two_level_interval(diff, n, resamples=resamples, seed=seed, key=(a, b, *used_splits))
                rows.append(
                    {
                        "claim": claim,
                        "variant": a,
                        "reference": b,
                        "split": split,
                        "scope": scope,
                        "seeds": ",".join(map(str, ss)),
                        "n_seeds": r.n_seeds,
                        "n_clips": r.n_clips,
                        "n_rows": r.n_rows,
                        "diff": r.estimate,
                        "ci_low": r.ci_low,
                        "ci_high": r.ci_high,
                        "per_seed": ";".join(f"{s}:{d:+.4f}" for s, d in zip(ss, r.per_seed)),
                        "min_seed_diff": min(r.per_seed),
                        "method": r.method,
                        "verdict": decide_contrast(r.ci_low, r.ci_high, r.per_seed),
                        "note": "; ".join(
                            notes
                            + (
                                [f"pooled over {'+'.join(used_splits)}"]
                                if split == POOLED and len(used_splits) > 1
                                else []
                            )
                        ),
                    }
                )
    return pd.DataFrame(rows, columns=CONTRAST_COLUMNS)


def claim_seed_verdicts(contrasts: pd.DataFrame, split: str = POOLED) -> pd.DataFrame:
    """Per claim and scope: the claim's verdict from its contrasts on ``split`` (:func:`workbench.stats.bootstrap.decide_claim`)
    -> ``claim, scope, verdict``."""
    from workbench.claims.registry import CLAIMS
    from workbench.stats.bootstrap import decide_claim

    rows = []
    for cid, claim in CLAIMS.items():
        for scope in ("one seed", "all seeds"):
            sub = contrasts[(contrasts["claim"] == cid) & (contrasts["split"] == split) & (contrasts["scope"] == scope)]
            got = {(r["variant"], r["reference"]): r["verdict"] for r in sub.to_dict("records")}
            rows.append(
                {
                    "claim": cid,
                    "scope": scope,
                    "verdict": decide_claim([got.get(p, "no data") for p in claim.contrasts]),
                }
            )
    return pd.DataFrame(rows, columns=["claim", "scope", "verdict"])


def _fmt_ci(r) -> str:
    return f"{r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"


def markdown_tables(acc: pd.DataFrame, contrasts: pd.DataFrame, curve_sentence: str | None = None) -> str:
    """The per-seed table, the one-seed vs all-seed verdicts and the split differences, as markdown."""
    from workbench.claims.registry import CLAIMS
    from workbench.stats.bootstrap import VERDICT_RULE

    out = [
        "### Closed-task accuracy per training seed",
        "",
        "| variant | test split | "
        + " | ".join(f"seed {s}" for s in sorted({int(x) for x in acc.loc[acc["seed"] != "all", "seed"]}))
        + " | mean ± SD (seeds) |",
        "",
    ]
    seeds = sorted({int(x) for x in acc.loc[acc["seed"] != "all", "seed"]})
    out[-1] = "|---|---|" + "---|" * len(seeds) + "---|"
    for (v, split), g in acc.groupby(["variant", "split"], sort=False):
        per = {str(r["seed"]): r for r in g.to_dict("records")}
        cells = [f"{per[str(s)]['accuracy']:.3f}" if str(s) in per else "–" for s in seeds]
        m = per["all"]
        sd = f" ± {m['sd']:.3f}" if pd.notna(m["sd"]) else ""
        out.append(f"| {v} | {split} | " + " | ".join(cells) + f" | {m['accuracy']:.3f}{sd} ({int(m['n_seeds'])}) |")
    out += [
        "",
        "### Seed-aware verdicts (one seed vs all seeds, both test splits pooled)",
        "",
        f"Rule, fixed in advance: {VERDICT_RULE}.",
        "",
        "| claim | contrast | seed 0: difference [95% CI] | verdict | all seeds: difference [95% CI] | per seed | "
        "verdict | changed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    pooled = contrasts[contrasts["split"] == POOLED]
    for (cid, a, b), g in pooled.groupby(["claim", "variant", "reference"], sort=False):
        one = g[g["scope"] == "one seed"].iloc[0]
        alls = g[g["scope"] == "all seeds"].iloc[0]
        changed = "**yes**" if one["verdict"] != alls["verdict"] else "no"
        out.append(
            f"| {CLAIMS[cid].title if cid in CLAIMS else cid} | {a} − {b} | {_fmt_ci(one)} | {one['verdict']} | "
            f"{_fmt_ci(alls)} ({int(alls['n_seeds'])} seed{'s' if alls['n_seeds'] > 1 else ''}, {int(alls['n_clips'])} clips) | "
            f"{alls['per_seed'].replace(';', ', ')} | **{alls['verdict']}** | {changed} |"
        )
    out += ["", "### Where the two test splits differ (all seeds)", ""]
    per_split = contrasts[(contrasts["scope"] == "all seeds") & (contrasts["split"] != POOLED)]
    diffs = []
    for (_claim, a, b), g in per_split.groupby(["claim", "variant", "reference"], sort=False):
        if g["verdict"].nunique() > 1:
            diffs.append(
                f"- {a} − {b}: "
                + "; ".join(f"{r['split']} {_fmt_ci(r)} ({r['verdict']})" for r in g.to_dict("records"))
            )
    out += diffs or [
        "- no contrast changes its verdict between the test splits"
        + ("" if per_split["split"].nunique() > 1 else " (only one split evaluated)")
    ]
    if curve_sentence:
        out += ["", "### Injection-layer curve", "", curve_sentence]
    return "\n".join(out) + "\n"


def write_seed_stats(
    checkpoints: str | Path,
    out: str | Path,
    variants: list[str] | None = None,
    overrides: dict | None = None,
    resamples: int = 2000,
    sweeps: str | Path | None = None,
) -> dict:
    """Write ``seed_accuracy.csv``, ``seed_contrasts.csv`` (and the injection-layer curve when ``sweeps`` has runs)
    into ``out`` (the demo's seed-aware step); returns a short summary (seeds per variant, verdicts)."""
    from workbench.analysis.core import write_outputs
    from workbench.claims.layer_curve import write_layer_curve

    clips = load_clip_scores(checkpoints, variants, overrides)
    acc, con = seed_accuracy(clips), seed_contrasts(clips, resamples=resamples)
    write_outputs(acc, None, out, "seed_accuracy")
    write_outputs(con, None, out, "seed_contrasts")
    curve = write_layer_curve(sweeps, out, resamples=resamples) if sweeps is not None else None
    seeds = acc[acc["seed"] == "all"].set_index(["variant", "split"])["seeds"].to_dict()
    print("      seeds per variant and test split: " + "; ".join(f"{v}/{s}: {x}" for (v, s), x in seeds.items()))
    verdicts = claim_seed_verdicts(con)
    return {
        "seeds": {f"{k[0]}/{k[1]}": x for k, x in seeds.items()},
        "layer_curve": curve,
        "verdicts": {f"{r['claim']} ({r['scope']})": r["verdict"] for r in verdicts.to_dict("records")},
    }


def run_seed_stats_command(a) -> int:
    """``python -m workbench.seed_stats`` with parsed arguments ``a``: the two CSVs (and the curve with ``--sweeps``,
    the README tables with ``--markdown``) written, the verdicts printed; exit code 0, or 2 on bad input."""
    import sys

    from workbench.common.paths import atomic_write_bytes

    try:
        clips = load_clip_scores(a.checkpoints)
        if clips.empty:
            raise SeedStatsError(
                f"no evaluated runs under {a.checkpoints} (expected VARIANT/eval/answers.csv or "
                "VARIANT/seed-S/eval/answers.csv)"
            )
        acc, con = seed_accuracy(clips), seed_contrasts(clips, resamples=a.resamples)
    except SeedStatsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    for name, df in (("seed_accuracy", acc), ("seed_contrasts", con)):
        print(f"wrote {atomic_write_bytes(out / f'{name}.csv', df.to_csv(index=False).encode())}")
    sentence = None
    if a.sweeps:
        from workbench.claims.layer_curve import write_layer_curve

        sentence = write_layer_curve(a.sweeps, out)
    md = markdown_tables(acc, con, sentence)
    if a.markdown == "-":
        print(md)
    elif a.markdown:
        print(f"wrote {atomic_write_bytes(Path(a.markdown), md.encode())}")
    print(claim_seed_verdicts(con).pivot(index="claim", columns="scope", values="verdict").to_string())
    return 0
