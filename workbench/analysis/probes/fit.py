"""Fitting the probes: scikit-learn pipelines, out-of-fold predictions, control tasks, bootstrap CIs (see
`workbench.analysis.probes`)."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from workbench.analysis.probes.store import ActivationStore
from workbench.analysis.probes.suite import _DTYPES, ProbeError, Site


def control_labels(
    labels: np.ndarray, identities: np.ndarray, kind: str = "random_identity", seed: int = 0
) -> np.ndarray:
    """Hewitt & Liang control task: every distinct identity (e.g. clip) gets a random label with the real
    label distribution (``random_identity``: the identities' labels permuted among them), or the row labels
    are permuted (``shuffle``). With one row per identity both are a label permutation."""
    rng = np.random.default_rng([seed, 7919])
    labels = np.asarray(labels)
    if kind == "shuffle":
        return labels[rng.permutation(len(labels))]
    # one label per identity (its first row's), permuted across identities: the identity-level label
    # distribution is kept exactly, and rows of one identity share their control label
    _, first, inverse = np.unique(np.asarray(identities).astype(str), return_index=True, return_inverse=True)
    per_identity = labels[first]
    return per_identity[rng.permutation(len(per_identity))][inverse]


class NearConstantFilter(TransformerMixin, BaseEstimator):
    """Zero every feature whose spread across the training clips is at the level of floating-point noise
    (std <= rtol * rms). Identical inputs give activations that differ only by batch-dependent rounding
    (1e-7 relative); StandardScaler would blow that noise up to unit variance, and with clips batched in file
    order it can correlate with labels by chance (a text position that cannot see the audio scored 0.41 vs a
    0.32 majority without this filter). Genuine signals that small are not usable anyway."""

    def __init__(self, rtol: float = 1e-5):
        self.rtol = rtol

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        self.keep_ = X.std(0) > self.rtol * np.sqrt((X**2).mean(0)) + 1e-30
        return self

    def transform(self, X):
        return np.asarray(X) * self.keep_.astype(np.asarray(X).dtype)


def _noise_rtol(storage_dtype: str) -> float:
    """Relative spread below which a feature counts as constant: 1e-5 (float32 store) or 4 ulp (float16)."""
    return max(1e-5, 4 * float(np.finfo(_DTYPES[storage_dtype]).eps))


def _estimator(task: str, cfg: dict, rtol: float = 1e-5):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cfg = dict(cfg or {})
    kind = cfg.pop("type", "logistic" if task == "classification" else "ridge")
    if task == "classification":
        if kind != "logistic":
            raise ProbeError(f"classification estimator type must be 'logistic', got {kind!r}")
        cfg.setdefault("max_iter", 2000)
        return make_pipeline(NearConstantFilter(rtol), StandardScaler(), LogisticRegression(**cfg))
    if kind != "ridge":
        raise ProbeError(f"regression estimator type must be 'ridge', got {kind!r}")
    return make_pipeline(NearConstantFilter(rtol), StandardScaler(), Ridge(**cfg))


def _splits(labels, task: str, folds: int, seed: int):
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(labels)
    if task == "classification":
        k = min(folds, min(Counter(labels).values()))
        if k < 2:
            raise ProbeError("every class needs at least 2 clips for cross-validation")
        return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(n), labels))
    k = min(folds, n)
    if k < 2:
        raise ProbeError(f"regression probe needs at least 2 clips, got {n}")
    return list(KFold(k, shuffle=True, random_state=seed).split(np.zeros(n)))


def _oof(X, y, splits, make) -> np.ndarray:
    """Out-of-fold predictions; ``make()`` gives a fresh estimator (or None: majority / mean baseline)."""
    pred = np.empty(len(y), dtype=y.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on separable data: the fit is still usable
        for train, test in splits:
            est = make()
            if est is None:
                if y.dtype.kind == "f":
                    pred[test] = y[train].mean()
                else:
                    counts = Counter(y[train])  # ties -> first in sorted order, as scikit-learn's classes_
                    top = max(counts.values())
                    pred[test] = min(c for c, k in counts.items() if k == top)
                continue
            ytr = y[train]
            if y.dtype.kind != "f" and len(set(ytr)) < 2:  # a fold with one class: predict it
                pred[test] = ytr[0]
                continue
            est.fit(X[train], ytr)
            pred[test] = est.predict(X[test])
    return pred


def _score(y, pred, task: str) -> np.ndarray:
    """Per-example score: correct (classification) or the squared error (regression)."""
    return (y == pred).astype(np.float64) if task == "classification" else (y - pred) ** 2


def _metric(y, pred, task: str) -> float:
    if task == "classification":
        return float(np.mean(y == pred))
    sst = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / sst if sst > 0 else float("nan")


def _bootstrap_ci(y, pred, task: str, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    if n_boot <= 0 or len(y) < 2:
        return float("nan"), float("nan")
    from workbench.stats.bootstrap import percentile_ci, resample_indices

    rng = np.random.default_rng([seed, 31337])
    n = len(y)
    parts = []
    for idx in resample_indices(rng, n, n_boot, chunk=256):  # chunks keep the index matrix small for large n
        if task == "classification":
            parts.append((y == pred)[idx].mean(1))
        else:
            yy, pp = y[idx], pred[idx]
            sst = ((yy - yy.mean(1, keepdims=True)) ** 2).sum(1)
            with np.errstate(divide="ignore", invalid="ignore"):
                parts.append(1 - ((yy - pp) ** 2).sum(1) / sst)
    return percentile_ci(np.concatenate(parts), level, nan_ok=True)


def _site_scores(X, y, yc, splits, make, task: str, bootstrap: int, seed: int, threads: int | None) -> dict:
    """Out-of-fold scores of one site's activations ``X`` [n, dim]: on the labels (value, CI, fold spread) and
    on the control labels, and their difference."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):  # small BLAS problems: threads only add contention (10x slower here)
        pred, cpred = _oof(X, y, splits, make), _oof(X, yc, splits, make)
    value = _metric(y, pred, task)
    lo, hi = _bootstrap_ci(y, pred, task, bootstrap, seed)
    fold_vals = [_metric(y[te], pred[te], task) for _, te in splits]
    cval = _metric(yc, cpred, task)
    clo, chi = _bootstrap_ci(yc, cpred, task, bootstrap, seed)
    return {
        "value": value,
        "ci_low": lo,
        "ci_high": hi,
        "fold_std": float(np.std(fold_vals)),
        "control": cval,
        "control_ci_low": clo,
        "control_ci_high": chi,
        "selectivity": value - cval,
    }


def _labels_and_control(store: ActivationStore, labels, identities, task, control, seed: int):
    """(labels [n] as float or str, task, control config, control labels [n]); the row count checked."""
    y = np.asarray(labels)
    if len(y) != store.n:
        raise ProbeError(f"{len(y)} labels for {store.n} stored rows in {store.root}")
    task = task or store.info.get("task") or ("regression" if y.dtype.kind == "f" else "classification")
    y = y.astype(np.float64) if task == "regression" else y.astype(str).astype(object)
    ids = np.asarray(identities if identities is not None else np.arange(len(y)).astype(str))
    ctl = {"type": "random_identity", **(control or {})}
    yc = control_labels(y, ids, ctl["type"], seed)
    return y, task, ctl, yc


def _site_fields(site: Site) -> dict:
    """The identifying columns of a site's row."""
    return {
        "site": site.name,
        "kind": site.kind,
        "layer": site.layer,
        "position": site.position,
        "encoder": site.encoder,
        "hook": site.hook,
    }


def fit_probes(
    store: ActivationStore,
    labels,
    identities=None,
    *,
    task: str | None = None,
    folds: int = 5,
    seed: int = 0,
    estimator: dict | None = None,
    control: dict | None = None,
    bootstrap: int = 1000,
    attribute: str | None = None,
    sites: list[Site] | None = None,
    progress: bool = False,
    threads: int | None = 1,
) -> pd.DataFrame:
    """One probe per site (loaded one at a time from ``store``) -> tidy DataFrame, one row per site:
    site, kind, layer, position, encoder, hook, attribute, task, metric, value, ci_low, ci_high, fold_std,
    majority, control, control_ci_low, control_ci_high, selectivity, n, n_classes, folds, dim.
    ``threads``: BLAS/OpenMP threads while fitting (None: library default)."""
    y, task, ctl, yc = _labels_and_control(store, labels, identities, task, control, seed)
    splits = _splits(y, task, folds, seed)
    est_cfg = (estimator or {}).get(task, {})
    rtol = _noise_rtol(store.dtype)
    make = lambda: _estimator(task, est_cfg, rtol)  # noqa: E731
    maj_pred = _oof(np.zeros((len(y), 1)), y, splits, lambda: None)
    majority = _metric(y, maj_pred, task)
    metric = "accuracy" if task == "classification" else "r2"
    rows = []
    todo = sites if sites is not None else store.sites
    it = todo
    if progress:
        from tqdm import tqdm

        it = tqdm(todo, desc="probes", unit="site")
    for site in it:
        X = store.load(site)
        s = _site_scores(X, y, yc, splits, make, task, bootstrap, seed, threads)
        rows.append(
            {
                **_site_fields(site),
                "attribute": attribute or store.info.get("attribute"),
                "task": task,
                "metric": metric,
                **{k: s[k] for k in ("value", "ci_low", "ci_high", "fold_std")},
                "majority": majority,
                **{k: s[k] for k in ("control", "control_ci_low", "control_ci_high", "selectivity")},
                "n": len(y),
                "n_classes": len(set(y)) if task == "classification" else None,
                "folds": len(splits),
                "dim": X.shape[1],
                "control_type": ctl["type"],
            }
        )
        del X
    return pd.DataFrame(rows)
