"""Ground-truth scores of SAE features: the corpus knows every clip's attributes exactly, so a feature's meaning
is measured, not guessed.

Input: per-clip feature activations ``F`` [n_clips, d_sae] (e.g. the max over a clip's audio tokens, see
`workbench.analysis.sae.activations.pool_by_clip`) and per-clip attribute values.

- :func:`best_feature_scores`: per attribute value (one vs rest), the single best feature by AUROC, chosen on the
  training folds and scored on the held-out fold (cross-validated, so best-of-4096 is not scored on the clips it
  was picked on); F1 at the threshold best on the training folds; the in-sample best feature too (for pages).
- :func:`sparse_probe`: k-sparse probing (Gurnee et al. 2023): the k features with the largest ANOVA F on the
  training folds, then the same standardised logistic regression as the dense probe, out of fold; per-clip
  correctness kept for paired intervals. :func:`dense_probe` runs `workbench.analysis.probes.fit_probes` on the
  same clips (pooled raw activations), with the same folds.
- :func:`splitting_absorption`: per value, how many precise features share it (splitting) and the share of its
  clips that the main feature misses while another precise feature fires (absorption, after Chanin et al. 2024).
- :func:`macro_auroc_ci`: bootstrap over clips (`workbench.stats.bootstrap`) of the attribute's macro AUROC.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_ATTRIBUTES",
    "attribute_labels",
    "auroc_columns",
    "best_feature_scores",
    "dense_probe",
    "fold_splits",
    "macro_auroc",
    "macro_auroc_ci",
    "sparse_probe",
    "splitting_absorption",
]

DEFAULT_ATTRIBUTES = (
    "category",
    "pitch_class",
    "noise_color",
    "loudness_class",
    "duration_class",
    "count",
    "direction",
    "modulation",
    "word",
    "gender",
    "text_kind",
)


def attribute_labels(rows: list[dict], attribute: str, min_count: int = 3) -> np.ndarray:
    """Per-clip value of ``attribute`` as str, None where missing or where the value has < ``min_count`` clips."""
    vals = [
        None if r.get(attribute) is None or isinstance(r.get(attribute), (list, dict)) else str(r.get(attribute))
        for r in rows
    ]
    counts = Counter(v for v in vals if v is not None)
    return np.asarray([v if v is not None and counts[v] >= min_count else None for v in vals], dtype=object)


def auroc_columns(F: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUROC of every column of ``F`` [n, m] for the boolean ``positive`` [n] (Mann-Whitney, ties averaged)."""
    from scipy.stats import rankdata

    pos = np.asarray(positive, bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return np.full(F.shape[1], np.nan)
    ranks = rankdata(F, axis=0)
    return (ranks[pos].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def fold_splits(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The dense probe's folds (`workbench.analysis.probes.fit`): StratifiedKFold(min(folds, smallest class),
    shuffle, random_state=seed)."""
    from sklearn.model_selection import StratifiedKFold

    k = min(folds, min(Counter(labels).values()))
    if k < 2:
        raise ValueError("every value needs at least 2 clips for cross-validation")
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels))


def _best_f1_threshold(scores: np.ndarray, pos: np.ndarray) -> float:
    cand = np.unique(scores)
    best, thr = -1.0, cand[0]
    for t in cand:
        pred = scores >= t
        tp = float((pred & pos).sum())
        f1 = 2 * tp / max(1.0, pred.sum() + pos.sum())
        if f1 > best:
            best, thr = f1, t
    return float(thr)


def best_feature_scores(
    F: np.ndarray, labels: np.ndarray, *, attribute: str = "", folds: int = 5, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """Per value of ``labels`` (rows with None dropped): the best single feature, cross-validated.

    Returns (frame with one row per value: attribute, value, n_pos, feature (in-sample best), auroc_in,
    auroc_cv, f1_cv, fold_features (the features picked per fold), and ``oof`` [n_kept, n_values]: each kept clip's
    held-out score (its activation of the feature picked without it), for bootstrap intervals)."""
    keep = np.array([v is not None for v in labels])
    X, y = F[keep], labels[keep]
    values = sorted(set(y))
    splits = fold_splits(y, folds, seed)
    oof = np.zeros((len(y), len(values)))
    rows = []
    for j, v in enumerate(values):
        pos = y == v
        au_in = auroc_columns(X, pos)
        pred = np.zeros(len(y), bool)
        picked = []
        for tr, te in splits:
            a = auroc_columns(X[tr], pos[tr])
            f = int(np.nanargmax(a))
            picked.append(f)
            oof[te, j] = X[te, f]
            pred[te] = X[te, f] >= _best_f1_threshold(X[tr, f], pos[tr])
        tp = float((pred & pos).sum())
        rows.append(
            {
                "attribute": attribute,
                "value": v,
                "n_pos": int(pos.sum()),
                "n": len(y),
                "feature": int(np.nanargmax(au_in)),
                "auroc_in": float(np.nanmax(au_in)),
                "auroc_cv": float(auroc_columns(oof[:, j : j + 1], pos)[0]),
                "f1_cv": 2 * tp / max(1.0, pred.sum() + pos.sum()),
                "fold_features": picked,
            }
        )
    return pd.DataFrame(rows), oof


def macro_auroc(oof: np.ndarray, y: np.ndarray, values: list, idx: np.ndarray | None = None) -> float:
    """Mean over values of the AUROC of each value's held-out scores (rows ``idx`` when given)."""
    if idx is not None:
        oof, y = oof[idx], y[idx]
    return float(np.nanmean([auroc_columns(oof[:, j : j + 1], y == v)[0] for j, v in enumerate(values)]))


def macro_auroc_ci(oof: np.ndarray, y: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(macro AUROC, 95% percentile interval) with clips resampled (`workbench.stats.bootstrap`)."""
    from workbench.stats.bootstrap import percentile_ci, resample_indices

    values = sorted(set(y))
    est = macro_auroc(oof, y, values)
    if resamples <= 0:
        return est, float("nan"), float("nan")
    reps = [
        macro_auroc(oof, y, values, i)
        for chunk in resample_indices(np.random.default_rng([seed, 4242]), len(y), resamples, 256)
        for i in chunk
    ]
    lo, hi = percentile_ci(np.asarray(reps), nan_ok=True)
    return est, lo, hi


def _safe_f(X, y):
    from sklearn.feature_selection import f_classif

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        f, p = f_classif(X, y)
    return np.nan_to_num(f, nan=0.0, posinf=0.0), np.nan_to_num(p, nan=1.0)


def sparse_probe(F: np.ndarray, labels: np.ndarray, k: int, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold correctness [n_kept] (1.0 / 0.0 per clip with a value) of a k-sparse probe on ``F``."""
    from sklearn.feature_selection import SelectKBest
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep = np.array([v is not None for v in labels])
    X, y = F[keep], labels[keep].astype(str)
    correct = np.zeros(len(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tr, te in fold_splits(y, folds, seed):
            if len(set(y[tr])) < 2:
                correct[te] = y[te] == y[tr][0]
                continue
            est = make_pipeline(
                SelectKBest(_safe_f, k=min(k, X.shape[1])), StandardScaler(), LogisticRegression(max_iter=2000)
            )
            est.fit(X[tr], y[tr])
            correct[te] = est.predict(X[te]) == y[te]
    return correct


def dense_probe(
    X: np.ndarray,
    labels: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    bootstrap: int = 500,
    attribute: str = "",
    work_dir=None,
) -> dict:
    """`workbench.analysis.probes.fit_probes` on the pooled raw activations ``X`` [n, d] of the same clips (rows
    with a value): accuracy, its bootstrap interval, the control task and selectivity."""
    import tempfile
    from pathlib import Path

    from workbench.analysis.probes import ActivationStore, Site, fit_probes

    keep = np.array([v is not None for v in labels])
    site = Site(name="sae_input", kind="connector", hook="sae_input")
    with tempfile.TemporaryDirectory(dir=work_dir) as d:
        store = ActivationStore(Path(d), [site], "float32")
        store.append({site.name: np.asarray(X[keep], np.float32)})
        store.close({"attribute": attribute, "task": "classification"})
        df = fit_probes(
            ActivationStore(Path(d)),
            labels[keep].astype(str),
            task="classification",
            folds=folds,
            seed=seed,
            bootstrap=bootstrap,
            attribute=attribute,
        )
    r = df.iloc[0]
    return {
        "accuracy": float(r["value"]),
        "ci_low": float(r["ci_low"]),
        "ci_high": float(r["ci_high"]),
        "control": float(r["control"]),
        "selectivity": float(r["selectivity"]),
        "majority": float(r["majority"]),
    }


def splitting_absorption(
    F: np.ndarray, labels: np.ndarray, *, attribute: str = "", precision: float = 0.9, min_recall: float = 0.05
) -> pd.DataFrame:
    """Per value: ``main`` (the feature with the best F1 when "fires" means > 0), its precision and recall,
    ``n_precise`` (features with precision >= ``precision`` and recall >= ``min_recall``: several = the value is
    split), ``absorption`` (share of the value's clips where the main feature is silent but another precise feature
    fires), ``leak_to`` (the other value the main feature fires on most)."""
    keep = np.array([v is not None for v in labels])
    X, y = F[keep] > 0, labels[keep]
    rows = []
    for v in sorted(set(y)):
        pos = y == v
        tp = X[pos].sum(0).astype(float)
        fired = X.sum(0).astype(float)
        prec = np.divide(tp, fired, out=np.zeros_like(tp), where=fired > 0)
        rec = tp / pos.sum()
        f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
        main = int(np.argmax(f1))
        precise = np.flatnonzero((prec >= precision) & (rec >= min_recall))
        others = [f for f in precise if f != main]
        missed = pos & ~X[:, main]
        absorbed = missed & (X[:, others].any(1) if others else np.zeros(len(y), bool))
        other_vals = Counter(y[X[:, main] & ~pos])
        rows.append(
            {
                "attribute": attribute,
                "value": v,
                "n_pos": int(pos.sum()),
                "main": main,
                "main_precision": float(prec[main]),
                "main_recall": float(rec[main]),
                "n_precise": len(precise),
                "absorption": float(absorbed.sum() / pos.sum()),
                "leak_to": other_vals.most_common(1)[0][0] if other_vals else None,
            }
        )
    return pd.DataFrame(rows)
