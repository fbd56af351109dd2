"""The SAE study of one checkpoint at one site, and the comparison of variants (issue 23's finding).

    res = study_variant("results/checkpoints/delayed/final", "connectors.whisper.hook_out", "audio",
                        train_data="data/synth-tiny/sae-train", eval_data=["data/synth-tiny/test"], out="results/sae/delayed")
    table = compare_variants({"baseline": res_a, "delayed": res_b}, reference="baseline")

Per variant: activation rows of the SAE-training clips (held apart from the scored clips), an SAE per seed, its
reconstruction metrics on the scored clips, per-clip features (max over the clip's tokens), ground-truth scores
per attribute (cross-validated best-feature AUROC / F1, k-sparse probes beside the dense probe on the clip-pooled
input, splitting / absorption), stability across SAE seeds, and the loss recovered through the hook. The variant
comparison resamples the scored clips (the same clips for every variant, `workbench.stats.bootstrap`) and reads each
contrast with `workbench.stats.bootstrap.decide_contrast`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.analysis.sae.activations import collect_rows, pool_by_clip
from workbench.analysis.sae.metrics import loss_recovered, reconstruction_metrics
from workbench.analysis.sae.scores import (
    DEFAULT_ATTRIBUTES,
    attribute_labels,
    best_feature_scores,
    dense_probe,
    macro_auroc,
    sparse_probe,
    splitting_absorption,
)
from workbench.analysis.sae.stability import stability
from workbench.analysis.sae.train import TrainConfig, train_sae
from workbench.analysis.sae.variant_result import VariantResult, load_variant_result, save_variant_result

log = logging.getLogger(__name__)

__all__ = ["K_SPARSE", "VariantResult", "clip_features", "compare_variants", "score_attributes", "study_variant"]

K_SPARSE = (1, 2, 5, 16)


def clip_features(sae, X: np.ndarray, meta: pd.DataFrame, how: str = "max"):
    """(clip ids, per-clip features [n_clips, d_sae], per-clip pooled input [n_clips, d_in] (mean), first row of
    each clip in ``meta``)."""
    with torch.no_grad():
        feats = torch.cat([sae.encode(torch.as_tensor(X[i : i + 4096])) for i in range(0, len(X), 4096)]).numpy()
    clips, F, first = pool_by_clip(feats, meta, how)
    _, Xc, _ = pool_by_clip(X, meta, "mean")
    return clips, F, Xc, first


def score_attributes(
    name: str,
    F: np.ndarray,
    Xc: np.ndarray,
    clip_rows: list[dict],
    *,
    attributes=DEFAULT_ATTRIBUTES,
    folds: int = 5,
    seed: int = 0,
    bootstrap: int = 500,
    ks=K_SPARSE,
) -> VariantResult:
    """Ground-truth scores of per-clip features ``F`` (and the dense probe on ``Xc``) for every attribute with at
    least two values of >= 3 clips."""
    res = VariantResult(name, np.asarray([r["file_name"] for r in clip_rows]))
    rows = []
    for att in attributes:
        y = attribute_labels(clip_rows, att)
        if len({v for v in y if v is not None}) < 2:
            continue
        best, oof = best_feature_scores(F, y, attribute=att, folds=folds, seed=seed)
        kept = y[y != None]  # noqa: E711 - elementwise on an object array
        res.labels[att], res.oof[att] = kept, oof
        dense = dense_probe(Xc, y, folds=folds, seed=seed, bootstrap=bootstrap, attribute=att)
        sa = splitting_absorption(F, y, attribute=att)
        row = {
            "variant": name,
            "attribute": att,
            "n_clips": len(kept),
            "n_values": len(set(kept)),
            "macro_auroc": macro_auroc(oof, kept, sorted(set(kept))),
            "mean_f1": float(best["f1_cv"].mean()),
            "dense_accuracy": dense["accuracy"],
            "dense_ci_low": dense["ci_low"],
            "dense_ci_high": dense["ci_high"],
            "dense_selectivity": dense["selectivity"],
            "majority": dense["majority"],
            "mean_precise_features": float(sa["n_precise"].mean()),
            "mean_absorption": float(sa["absorption"].mean()),
            "best_features": ";".join(f"{v}:{f}" for v, f in zip(best["value"], best["feature"])),
        }
        for k in ks:
            corr = sparse_probe(F, y, k, folds=folds, seed=seed)
            res.sparse[(att, k)] = corr
            row[f"sparse_k{k}"] = float(corr.mean())
        rows.append(row)
    res.scores = pd.DataFrame(rows)
    return res


def _eval_rows(model, data_dirs, hook, role, out: Path, n_clips: int | None, progress: bool):
    from workbench.analysis.core import load_for_analysis

    Xs, metas, rows = [], [], []
    for d in data_dirs:
        _, ds = load_for_analysis(model=model, data_dir=d, preset=None)
        _keep_first_clips(ds, n_clips)
        store = collect_rows(model, ds, hook, role, out / f"eval_{Path(d).name}", progress=progress)
        meta = store.meta
        meta["file_name"] = Path(d).name + "/" + meta["file_name"].astype(str)
        Xs.append(store.matrix())
        metas.append(meta)
        first: dict[str, dict] = {}
        for r in ds.rows:
            first.setdefault(r["file_name"], {**r, "file_name": Path(d).name + "/" + r["file_name"]})
        rows += list(first.values())
    return np.concatenate(Xs), pd.concat(metas, ignore_index=True), {r["file_name"]: r for r in rows}


def _keep_first_clips(ds, n_clips: int | None) -> None:
    """Keep only the task rows of the first ``n_clips`` clips of ``ds`` (all when None)."""
    if n_clips is not None:
        keep = set(list(dict.fromkeys(r["file_name"] for r in ds.rows))[:n_clips])
        ds.rows = [r for r in ds.rows if r["file_name"] in keep]


def study_variant(
    checkpoint,
    hook: str,
    role: str,
    *,
    train_data,
    eval_data,
    out,
    cfg: TrainConfig,
    seeds=(0, 1),
    n_train_clips: int | None = None,
    n_eval_clips: int | None = None,
    loss_rows: int = 64,
    bootstrap: int = 500,
    progress: bool = True,
    name: str | None = None,
):
    """Collect, train (one SAE per seed), measure and score one variant; writes into ``out``: ``acts_train``,
    ``eval_*`` row stores, ``sae_seed{s}`` (SAELens format), ``scores.csv``, ``summary.json``. Returns a
    `VariantResult` (seed ``seeds[0]``'s SAE scored)."""
    from workbench.analysis.core import load_for_analysis
    from workbench.common.paths import variant_of

    out = Path(out)
    name = name or variant_of(Path(checkpoint))
    model, train_ds = load_for_analysis(checkpoint, train_data, preset=None)
    _keep_first_clips(train_ds, n_train_clips)
    X_train = collect_rows(model, train_ds, hook, role, out / "acts_train", progress=progress).matrix()
    extra = {"checkpoint": str(checkpoint), "positions": role, "train_data": str(train_data)}
    saes = _train_saes(X_train, cfg, seeds, out, hook, name, extra, progress)
    X, meta, by_clip = _eval_rows(model, [Path(d) for d in eval_data], hook, role, out, n_eval_clips, progress)
    sae = saes[seeds[0]]
    clips, F, Xc, _ = clip_features(sae, X, meta)
    res = score_attributes(name, F, Xc, [by_clip[c] for c in clips], bootstrap=bootstrap)
    res.summary = {
        "variant": name,
        "checkpoint": str(checkpoint),
        "hook": hook,
        "positions": role,
        "n_train_rows": len(X_train),
        "n_eval_rows": len(X),
        "n_eval_clips": len(clips),
        **reconstruction_metrics(sae, X),
        "train_config": asdict(cfg),
    }
    if len(seeds) > 1:
        alive = torch.as_tensor((F > 0).any(0))
        st = stability(saes[seeds[0]], saes[seeds[1]], alive_a=alive)
        res.summary.update({f"stability_{k}": v for k, v in st.items()})
    if loss_rows:
        from workbench.analysis.inputs import sample_rows

        _, ds_loss = load_for_analysis(model=model, data_dir=eval_data[0], preset=None)
        res.summary.update(loss_recovered(model, sae, sample_rows(ds_loss, loss_rows, 0), hook, role))
    save_variant_result(res, out)
    return res


def _train_saes(X_train: np.ndarray, cfg: TrainConfig, seeds, out: Path, hook: str, name: str, extra: dict, progress):
    """{seed: SAE} trained on X_train [n, d] with ``cfg`` and each seed, saved in ``out/sae_seed{s}``."""
    saes = {}
    for s in seeds:
        c = TrainConfig(**{**asdict(cfg), "seed": s})
        saes[s], _ = train_sae(
            X_train, c, out / f"sae_seed{s}", hook_name=hook, model_name=name, progress=progress, extra=extra
        )
    return saes


def _macro_auroc_on(att: str, y: np.ndarray, vals: list, res: VariantResult, idx: np.ndarray) -> float:
    """``res``'s macro AUROC for ``att`` on clips ``idx`` (labels ``y``, values ``vals``)."""
    return macro_auroc(res.oof[att], y, vals, idx)


def _sparse_accuracy_on(att: str, k: int, res: VariantResult, idx: np.ndarray) -> float:
    """``res``'s k-sparse probe accuracy for ``att`` on clips ``idx``."""
    return float(res.sparse[(att, k)][idx].mean())


def compare_variants(
    results: dict[str, VariantResult], reference: str, *, resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Per (variant != reference, attribute, metric): the variant's value, the reference's, the difference with a
    95% percentile interval over clips resampled jointly (the same clips for both) and the verdict of
    `workbench.stats.bootstrap.decide_contrast`. Metrics: ``macro_auroc`` (cross-validated best single feature) and
    ``sparse_k{k}`` accuracy."""
    from workbench.stats.bootstrap import decide_contrast, percentile_ci, resample_indices

    ref = results[reference]
    rows = []
    for name, res in results.items():
        if name == reference:
            continue
        if list(res.clips) != list(ref.clips):
            raise ValueError(f"variants {name} and {reference} were scored on different clips")
        for att in sorted(set(res.oof) & set(ref.oof)):
            y = ref.labels[att]
            vals = sorted(set(y))
            n = len(y)
            rng = np.random.default_rng([seed, len(att)])
            idx = np.concatenate(list(resample_indices(rng, n, resamples, 256)))
            metrics: dict[str, Callable[[VariantResult, np.ndarray], float]] = {
                "macro_auroc": partial(_macro_auroc_on, att, y, vals)
            }
            for k in sorted({k for a, k in ref.sparse if a == att}):
                metrics[f"sparse_k{k}"] = partial(_sparse_accuracy_on, att, k)
            for metric, fn in metrics.items():
                a_all, b_all = fn(res, np.arange(n)), fn(ref, np.arange(n))
                diffs = np.array([fn(res, i) - fn(ref, i) for i in idx])
                lo, hi = percentile_ci(diffs, nan_ok=True)
                rows.append(
                    {
                        "variant": name,
                        "reference": reference,
                        "attribute": att,
                        "metric": metric,
                        "value": a_all,
                        "reference_value": b_all,
                        "difference": a_all - b_all,
                        "ci_low": lo,
                        "ci_high": hi,
                        "n_clips": n,
                        "verdict": decide_contrast(lo, hi),
                        "method": "clip bootstrap, 1 training seed per variant",
                    }
                )
    return pd.DataFrame(rows)


_SUMMARY_KEYS = (
    "variant",
    "hook",
    "positions",
    "n_train_rows",
    "n_eval_clips",
    "explained_variance",
    "l0",
    "dead",
    "dense",
    "loss_clean",
    "loss_sae",
    "loss_zero",
    "loss_recovered",
    "stability_share_matched",
    "stability_share_matched_alive",
    "stability_mean_max_cosine",
)


def _variant_results(checkpoints: list, hook: str, role: str, out: Path, cfg: TrainConfig, **study_kw) -> dict:
    """{variant: result} of :func:`study_variant` per checkpoint in ``out/<variant>``; a folder already finished
    with the same training config is loaded instead."""
    from workbench.common.paths import variant_of

    results = {}
    for ck in checkpoints:
        name = variant_of(Path(ck))
        folder = out / name
        done = (folder / "summary.json").is_file() and (folder / "oof.npz").is_file()
        if done and json.loads((folder / "summary.json").read_text()).get("train_config") == asdict(cfg):
            results[name] = load_variant_result(folder, name)
            continue
        results[name] = study_variant(ck, hook, role, out=folder, cfg=cfg, name=name, **study_kw)
    return results


def run_study(
    checkpoints: list,
    hook: str,
    role: str,
    *,
    train_data,
    eval_data,
    out,
    cfg: TrainConfig,
    reference: str | None = None,
    seeds=(0, 1),
    n_train_clips: int | None = None,
    n_eval_clips: int | None = None,
    loss_rows: int = 64,
    bootstrap: int = 500,
    resamples: int = 1000,
    progress: bool = True,
    png: bool = True,
) -> dict:
    """:func:`study_variant` for every checkpoint (each in ``out/<variant>``, reused when finished), then
    :func:`compare_variants` against ``reference`` (default: the first). Writes ``out/sae_scores.csv``,
    ``sae_summary.csv``, ``sae_contrasts.csv`` and the figure ``sae_scores.html`` (+ .png). Returns the frames."""
    from workbench.analysis.core import write_outputs
    from workbench.analysis.sae.figures import scores_figure

    out = Path(out)
    results = _variant_results(
        checkpoints,
        hook,
        role,
        out,
        cfg,
        train_data=train_data,
        eval_data=eval_data,
        seeds=seeds,
        n_train_clips=n_train_clips,
        n_eval_clips=n_eval_clips,
        loss_rows=loss_rows,
        bootstrap=bootstrap,
        progress=progress,
    )
    scores = pd.concat([r.scores for r in results.values()], ignore_index=True).assign(site=hook, positions=role)
    summary = pd.DataFrame([{k: r.summary.get(k) for k in _SUMMARY_KEYS} for r in results.values()])
    contrasts = compare_variants(results, reference or next(iter(results)), resamples=resamples)
    fig = scores_figure(
        scores,
        title=f"SAE features scored against ground truth<br><sup>{hook}, {role} positions; "
        f"{len(scores['variant'].unique())} variants, held-out clips</sup>",
    )
    write_outputs(scores, fig, out, "sae_scores", png=png)
    write_outputs(summary, None, out, "sae_summary")
    write_outputs(contrasts, None, out, "sae_contrasts")
    return {"scores": scores, "summary": summary, "contrasts": contrasts, "figure": fig, "results": results}
