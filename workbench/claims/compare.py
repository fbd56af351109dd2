"""Compare evaluated runs: variants x tasks x attributes with bootstrap 95% CIs and paired differences.

```
python -m workbench.compare RUN_DIR... --out results/compare.csv [--html results/compare.html]
       [--baseline baseline] [--resamples 1000] [--seed 0] [--metrics accuracy,cider_d,rouge_l]
```
A RUN_DIR is a folder with ``answers.csv`` (as written by :mod:`workbench.evaluation.evaluator`), a checkpoint folder
with ``eval/answers.csv``, or the answers CSV itself; ``NAME=PATH`` names the variant (default: the
``variant`` in ``run.json`` beside the CSV, else the folder name; a folder called ``eval`` is named after
its parent). Every run must be evaluated on the same rows (same ``row_id`` set): differences are paired.

Cells and items: ``accuracy`` over closed rows (item = row, score = correct) for (all, all),
(task, all) and (task, attribute); caption metrics ``cider_d`` and ``rouge_l`` (default) over open rows
(item = clip, score = the item's pycocoevalcap score; CIDEr-D's document frequencies come from the
references only, so they are the same for every variant) for (task, attribute). A cell's value is the
mean item score (for these metrics the same as the corpus score). ``--metrics bleu_4`` etc. also work but
bootstrap the mean *sentence* BLEU, which is not the corpus BLEU of ``scores.csv``.

Bootstrap: percentile 95% CI from ``resamples`` resamples of the cell's items (numpy, fixed ``seed``;
the one bootstrap of :mod:`workbench.stats.bootstrap`, which also gives the seed-aware contrasts of :mod:`workbench.claims.seeds`).
Paired difference vs ``--baseline``: the same resampled item indices for both variants, CI of the mean
difference; ``p_value`` = two-sided bootstrap p (2 x the smaller tail of the resampled differences
around 0, floored at 1 / resamples).

Outputs: ``--out`` CSV (the table: ``variant, metric, task, attribute, value, ci_low, ci_high, n,
chance``), ``*_diff.csv`` beside it (``variant, baseline, metric, task, attribute, diff, ci_low,
ci_high, p_value, n``), and ``--html``: a self-contained plotly figure (bars with CI error bars per
cell and variant, chance marks; a lower panel with the paired differences).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.claims.compare_figures import comparison_figure as comparison_figure
from workbench.evaluation.answers import AnswersError, read_answers
from workbench.evaluation.metrics import caption_item_scores, caption_items, normalize_answer
from workbench.stats.bootstrap import percentile_ci, resample_indices, stable_seed

__all__ = [
    "load_run",
    "load_runs",
    "item_scores",
    "bootstrap_table",
    "paired_differences",
    "comparison_figure",
    "compare",
    "CompareError",
]

REQUIRED = ["row_id", "file_name", "task", "attribute", "answer", "prediction", "correct"]
TABLE_COLUMNS = ["variant", "metric", "task", "attribute", "value", "ci_low", "ci_high", "n", "chance"]
DIFF_COLUMNS = ["variant", "baseline", "metric", "task", "attribute", "diff", "ci_low", "ci_high", "p_value", "n"]


class CompareError(ValueError):
    """Bad input to the comparison (message names the file and the fix)."""


def _find_answers(path: Path) -> Path:
    if path.is_file():
        return path
    for cand in (path / "answers.csv", path / "eval" / "answers.csv"):
        if cand.is_file():
            return cand
    found = sorted(path.glob("*/answers.csv")) if path.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not path.exists():
        raise CompareError(
            f"{path}: not found; pass a folder written by `python -m workbench.evaluate` "
            "(answers.csv + scores.csv) or the answers CSV itself"
        )
    raise CompareError(
        f"{path}: no answers.csv here or in {path / 'eval'}"
        + (f" (several candidates: {', '.join(map(str, found))}; pass one)" if found else "")
        + "; run `python -m workbench.evaluate --checkpoint ... --data ... --out DIR/answers.csv` first"
    )


def load_run(spec: str | os.PathLike) -> tuple[str, pd.DataFrame, Path]:
    """``(variant, answers, csv_path)`` for a run spec ``[NAME=]PATH`` (see the module docstring)."""
    spec = str(spec)
    name = None
    if "=" in spec and not Path(spec).exists():
        name, spec = spec.split("=", 1)
    csv = _find_answers(Path(spec))
    try:
        df = read_answers(csv, required=tuple(REQUIRED))  # correct: nullable bool; closed: bool
    except AnswersError as e:
        raise CompareError(str(e)) from e
    if df["row_id"].duplicated().any():
        dup = df.loc[df["row_id"].duplicated(), "row_id"].iloc[0]
        raise CompareError(f"{csv}: duplicate row_id {dup!r}; each task row must appear once")
    if name is None:
        info = csv.parent / "run.json"
        if info.is_file():
            try:
                name = json.loads(info.read_text()).get("variant")
            except json.JSONDecodeError:
                name = None
        if not name:
            d = csv.parent
            name = d.parent.name if d.name == "eval" else d.name
    return str(name), df, csv


def load_runs(specs: Sequence[str | os.PathLike]) -> dict[str, pd.DataFrame]:
    """Load several runs; checks unique variant names and identical ``row_id`` sets (same data)."""
    if not specs:
        raise CompareError("no runs given; pass one or more evaluated run folders")
    runs: dict[str, pd.DataFrame] = {}
    paths: dict[str, Path] = {}
    for s in specs:
        name, df, csv = load_run(s)
        if name in runs:
            raise CompareError(
                f"{csv}: variant name {name!r} is also used by {paths[name]}; name them explicitly as NAME=PATH"
            )
        runs[name], paths[name] = df, csv
    ref_name = next(iter(runs))
    ref = set(runs[ref_name]["row_id"])
    for name, df in runs.items():
        ids = set(df["row_id"])
        if ids != ref:
            only_a, only_b = sorted(ids - ref), sorted(ref - ids)
            raise CompareError(
                f"{paths[name]} and {paths[ref_name]} were evaluated on different rows ({len(only_a)} row_ids only in "
                f"the first, e.g. {only_a[:3]}, {len(only_b)} only in the second, e.g. {only_b[:3]}); paired "
                "comparison needs the same data: re-run workbench.evaluate on the same --data with the same "
                "--tasks/--max-rows for every variant"
            )
    return runs


def item_scores(answers: pd.DataFrame, caption_metrics: Sequence[str] = ("cider_d", "rouge_l")) -> pd.DataFrame:
    """Per-item scores of one run: columns ``metric, task, attribute, item, score`` (plus ``chance`` if known).

    Closed rows -> ``accuracy`` items for the (task, attribute) cells, the (task, all) cells and
    (all, all); open rows -> one item per clip for each caption metric and ``exact_match``, per
    (task, attribute).
    """
    out = []
    closed = answers[answers["closed"]]
    if len(closed):
        if closed["correct"].isna().any():
            raise CompareError("closed rows without a `correct` value; re-run workbench.evaluate")
        base = pd.DataFrame(
            {
                "metric": "accuracy",
                "item": closed["row_id"].to_numpy(),
                "score": closed["correct"].astype(float).to_numpy(),
                "task": closed["task"].to_numpy(),
                "attribute": closed["attribute"].astype(str).to_numpy(),
            }
        )
        out += [base, base.assign(attribute="all"), base.assign(task="all", attribute="all")]
    open_ = answers[~answers["closed"]]
    for (task, att), g in open_.groupby(["task", "attribute"], sort=True):
        refs, preds = caption_items(g)
        em = pd.DataFrame(
            {
                "metric": "exact_match",
                "task": task,
                "attribute": str(att),
                "item": list(refs),
                "score": [float(any(normalize_answer(preds[k]) == normalize_answer(r) for r in refs[k])) for k in refs],
            }
        )
        out.append(em)
        want = [m for m in caption_metrics if m != "exact_match"]
        if want:
            _, items = caption_item_scores(refs, preds, meteor="meteor" in want)
            for m in want:
                if m not in items:
                    raise CompareError(f"unknown caption metric {m!r}; choose from {list(items.columns)}")
                out.append(
                    pd.DataFrame(
                        {
                            "metric": m,
                            "task": task,
                            "attribute": str(att),
                            "item": items.index,
                            "score": items[m].to_numpy(float),
                        }
                    )
                )
    if not out:
        return pd.DataFrame(columns=["metric", "task", "attribute", "item", "score"])
    return pd.concat(out, ignore_index=True)


def _chances(answers: pd.DataFrame, answer_options: dict | None) -> dict[tuple[str, str], float]:
    if not answer_options:
        return {}
    closed = answers[answers["closed"]]
    ch = closed["attribute"].map(lambda a: 1.0 / len(answer_options[a]) if answer_options.get(a) else np.nan)
    res = {("all", "all"): float(ch.mean())}
    for task, g in ch.groupby(closed["task"]):
        res[(task, "all")] = float(g.mean())
    for (task, att), g in ch.groupby([closed["task"], closed["attribute"]]):
        res[(task, att)] = float(g.mean())
    return res


def _boot_indices(n: int, resamples: int, seed: int, key: tuple) -> np.ndarray:
    # a cell's resamples depend only on (seed, cell) (a stable hash, not the per-process salted hash()), so adding
    # a variant or a cell never changes another cell's CI
    return next(resample_indices(np.random.default_rng([seed, stable_seed(*key)]), n, resamples))


def _aligned(items: dict[str, pd.DataFrame], key: tuple) -> tuple[list[str], np.ndarray] | None:
    cols = {}
    for v, df in items.items():
        g = df[(df["metric"] == key[0]) & (df["task"] == key[1]) & (df["attribute"] == key[2])]
        cols[v] = g.set_index("item")["score"]
    mat = pd.DataFrame(cols)
    if mat.empty:
        return None
    return list(mat.index), mat.to_numpy(float)


def bootstrap_table(
    items: dict[str, pd.DataFrame],
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    chances: dict[tuple[str, str], float] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Cell means with percentile bootstrap CIs; returns ``(table, resampled)`` where ``resampled`` maps
    ``(metric, task, attribute) -> (variants, [resamples, n_variants] array of resampled means)`` for
    :func:`paired_differences`."""
    keys = sorted(
        {tuple(k) for df in items.values() for k in df[["metric", "task", "attribute"]].itertuples(index=False)}
    )
    rows, resampled = [], {}
    variants = list(items)
    for key in keys:
        al = _aligned(items, key)
        if al is None:
            continue
        _, mat = al  # [n_items, n_variants]; NaN where a variant lacks the item (cannot happen after load_runs)
        n = mat.shape[0]
        idx = _boot_indices(n, resamples, seed, key)
        means = np.stack([mat[idx, j].mean(axis=1) for j in range(mat.shape[1])], axis=1)  # [R, V]
        resampled[key] = (variants, means, mat, idx)
        for j, v in enumerate(variants):
            lo, hi = percentile_ci(means[:, j], level)
            rows.append(
                {
                    "variant": v,
                    "metric": key[0],
                    "task": key[1],
                    "attribute": key[2],
                    "value": float(np.nanmean(mat[:, j])),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": n,
                    "chance": (chances or {}).get((key[1], key[2]), np.nan) if key[0] == "accuracy" else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS), resampled


def paired_differences(resampled: dict, baseline: str, level: float = 0.95) -> pd.DataFrame:
    """Variant minus baseline per cell, paired bootstrap CI (same resampled items for both)."""
    rows = []
    for key, (variants, means, mat, _idx) in resampled.items():
        if baseline not in variants:
            raise CompareError(
                f"baseline variant {baseline!r} not among the runs ({', '.join(variants)}); "
                "pass --baseline with one of them (or name a run BASELINE=PATH)"
            )
        b = variants.index(baseline)
        for j, v in enumerate(variants):
            if j == b:
                continue
            d = means[:, j] - means[:, b]
            lo, hi = percentile_ci(d, level)
            R = len(d)
            p = min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))
            rows.append(
                {
                    "variant": v,
                    "baseline": baseline,
                    "metric": key[0],
                    "task": key[1],
                    "attribute": key[2],
                    "diff": float(np.mean(mat[:, j] - mat[:, b])),
                    "ci_low": lo,
                    "ci_high": hi,
                    "p_value": max(p, 1.0 / R),
                    "n": mat.shape[0],
                }
            )
    return pd.DataFrame(rows, columns=DIFF_COLUMNS)


def compare(
    specs: Sequence[str | os.PathLike],
    baseline: str | None = None,
    resamples: int = 1000,
    seed: int = 0,
    caption_metrics: Sequence[str] = ("cider_d", "rouge_l"),
    answer_options: dict | None = None,
    level: float = 0.95,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load runs, bootstrap every cell, paired differences vs ``baseline`` -> ``(table, diffs)``."""
    runs = load_runs(specs)
    if baseline is not None and baseline not in runs:
        raise CompareError(
            f"baseline variant {baseline!r} not among the runs ({', '.join(runs)}); pass --baseline "
            "with one of them (or name a run BASELINE=PATH)"
        )
    items = {v: item_scores(df, caption_metrics) for v, df in runs.items()}
    chances = _chances(next(iter(runs.values())), answer_options)
    table, resampled = bootstrap_table(items, resamples=resamples, seed=seed, level=level, chances=chances)
    diffs = (
        paired_differences(resampled, baseline, level) if baseline is not None else pd.DataFrame(columns=DIFF_COLUMNS)
    )
    return table, diffs
