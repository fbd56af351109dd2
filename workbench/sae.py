"""Sparse autoencoders on the audio path, scored against the corpus's exact attributes (issue 23).

    python -m workbench.sae collect --checkpoint results/checkpoints/delayed/final --site connectors.whisper.hook_out \
        --positions audio --data data/synth-tiny/sae-train --out runs/sae/delayed/acts
    python -m workbench.sae train --checkpoint results/checkpoints/delayed/final --site connectors.whisper.hook_out \
        --positions audio --width 4096 --k 32 [--data DIR] [--acts DIR] [--out DIR]
    python -m workbench.sae score --sae DIR --checkpoint DIR --data data/synth-tiny/test [--out DIR]
    python -m workbench.sae pages --sae DIR --checkpoint DIR --data data/synth-tiny/test [--out DIR]
    python -m workbench.sae causal --sae DIR --checkpoint DIR --data data/synth-tiny/test --attribute category
    python -m workbench.sae study --checkpoints results/checkpoints/{baseline,delayed,lal,pal}/final \
        --site connectors.whisper.hook_out --positions audio --out results/sae

``--positions``: audio | text | answer (token roles from ``model.token_layout``). Every step is resumable (row
stores and training continue where they stopped; finished ones are reused); SAEs are saved in SAELens's format
(cfg.json + sae_weights.safetensors). ``score`` writes sae_scores.csv (per attribute: cross-validated best-feature
AUROC / F1, k-sparse probes beside the dense probe, splitting / absorption) and the reconstruction metrics;
``study`` compares variants (sae_contrasts.csv, bootstrap over clips). Library: `workbench.analysis.sae`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from workbench.analysis.cli import run_cli

DEFAULT_TRAIN_DATA = "data/synth-tiny/sae-train"
DEFAULT_EVAL_DATA = "data/synth-tiny/test"


def _common(ap, site=True):
    ap.add_argument("--checkpoint", default="results/checkpoints/pal/final", help="PAL checkpoint folder")
    if site:
        ap.add_argument("--site", default="connectors.whisper.hook_out", help="hook name")
        ap.add_argument("--positions", default="audio", choices=["audio", "text", "answer"])
    ap.add_argument(
        "--rows",
        default="clips",
        choices=["clips", "tasks"],
        help="clips: one fixed question per clip; tasks: the dataset's task rows",
    )
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--no-progress", action="store_true")


def _train_args(ap):
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--architecture", default="topk", choices=["topk", "batchtopk"])
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (default: --epochs over the rows)")
    ap.add_argument("--epochs", type=float, default=10.0)
    ap.add_argument("--sae-batch-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--seed", type=int, default=0)


def _cfg(args):
    from workbench.analysis.sae.train import TrainConfig

    return TrainConfig(
        width=args.width,
        k=args.k,
        architecture=args.architecture,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.sae_batch_size,
        lr=args.lr,
        seed=args.seed,
    )


def _model_data(args, data):
    from workbench.analysis.core import load_for_analysis

    return load_for_analysis(args.checkpoint, data, preset="tiny", progress=not args.no_progress)


def _collect(args, data, out):
    from workbench.analysis.sae.activations import collect_rows

    model, ds = _model_data(args, data)
    store = collect_rows(
        model,
        ds,
        args.site,
        args.positions,
        out,
        rows=args.rows,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    print(f"{len(store)} rows of {args.site} [{args.positions}] -> {store.root}")
    return model, store


def _train(args, out: Path, variant: str) -> None:
    """``train``: an SAE on the stored (or freshly collected) rows -> ``out/sae``."""
    from workbench.analysis.sae.activations import RowStore
    from workbench.analysis.sae.train import train_sae

    store = RowStore(args.acts) if args.acts else _collect(args, args.data or DEFAULT_TRAIN_DATA, out / "acts")[1]
    sae, log = train_sae(
        store.matrix(),
        _cfg(args),
        out / "sae",
        hook_name=args.site,
        model_name=variant,
        progress=not args.no_progress,
        extra={"checkpoint": args.checkpoint, "positions": args.positions},
    )
    print(f"SAE -> {out / 'sae'} (cfg.json + sae_weights.safetensors); last: {log.iloc[-1].to_dict()}")


def _study(args) -> None:
    """``study``: :func:`run_study` over the checkpoints; prints its summary and contrasts."""
    from workbench.analysis.sae.study import run_study

    res = run_study(
        args.checkpoints,
        args.site,
        args.positions,
        train_data=args.train_data,
        eval_data=args.eval_data,
        out=args.out or "results/sae",
        cfg=_cfg(args),
        seeds=tuple(args.seeds),
        n_train_clips=args.n_train_clips,
        n_eval_clips=args.n_eval_clips,
        loss_rows=args.loss_rows,
        progress=not args.no_progress,
    )
    print(res["summary"].to_string(index=False, float_format="%.3f"))
    print(res["contrasts"].to_string(index=False, float_format="%.3f"))


def _run(args) -> int:
    from workbench.common.paths import variant_of

    variant = variant_of(Path(args.checkpoint)) if getattr(args, "checkpoint", None) else "x"
    tag = f"{getattr(args, 'site', 'x')}-{getattr(args, 'positions', 'x')}"
    out = Path(args.out) if getattr(args, "out", None) else Path("runs/sae") / variant / tag
    if args.cmd == "collect":
        _collect(args, args.data or DEFAULT_TRAIN_DATA, out)
    elif args.cmd == "train":
        _train(args, out, variant)
    elif args.cmd in ("score", "pages"):
        from workbench.analysis.sae.saelens_format import load_sae

        sae = load_sae(args.sae)
        extra = getattr(sae, "extra", {})
        args.site, args.positions = sae.hook_name, extra.get("positions", "audio")
        model, store = _collect(args, args.data or DEFAULT_EVAL_DATA, out / "eval_acts")
        if args.cmd == "score":
            _score(sae, store, out)
        else:
            from workbench.analysis.sae.pages import write_pages

            index = write_pages(
                model, sae, store, args.data or DEFAULT_EVAL_DATA, out / "pages", n_features=args.n_features
            )
            print(f"feature pages -> {index}")
    elif args.cmd == "causal":
        _causal(args, out)
    elif args.cmd == "study":
        _study(args)
    return 0


def _steer_best_feature(args, model, sae, ds, F, labels, site, role, options):
    """Steer with the feature that best detects ``args.attribute`` (highest in-sample AUROC) on the rows that ask
    about it -> the steering table."""
    from workbench.analysis.inputs import sample_rows
    from workbench.analysis.sae.causal import steer_feature
    from workbench.analysis.sae.scores import best_feature_scores

    best, _ = best_feature_scores(F, labels, attribute=args.attribute, folds=3)
    target = best.sort_values("auroc_in", ascending=False).iloc[0]
    asked = sample_rows(ds, len(ds), 0)
    asked.rows = [r for r in ds.rows if r.get("closed") and r.get("attribute") == args.attribute][: args.n_rows]
    f = int(target["feature"])
    scale = float(F[:, f].max()) * float(sae.W_dec[f].norm())  # alpha 1 = the feature's strongest firing
    steering = steer_feature(
        model,
        sae,
        asked,
        site,
        role,
        options,
        f,
        args.attribute,
        str(target["value"]),
        args.alphas,
        scale=scale,
        batch_size=args.batch_size,
    )
    return steering


def _causal(args, out: Path) -> None:
    from workbench.analysis.inputs import sample_rows
    from workbench.analysis.sae.activations import collect_rows
    from workbench.analysis.sae.causal import ablation_curve, attribute_features, features_to_erase
    from workbench.analysis.sae.saelens_format import load_sae
    from workbench.analysis.sae.scores import attribute_labels
    from workbench.analysis.sae.study import clip_features
    from workbench.evaluation.evaluator import load_answer_options

    sae = load_sae(args.sae)
    site, role = sae.hook_name, getattr(sae, "extra", {}).get("positions", "audio")
    model, ds = _model_data(args, args.data or DEFAULT_EVAL_DATA)
    store = collect_rows(
        model, ds, site, role, out / "eval_acts", batch_size=args.batch_size, progress=not args.no_progress
    )
    _clips, F, _, first = clip_features(sae, store.matrix(), store.meta)
    labels = attribute_labels([store.meta.iloc[i].to_dict() for i in first], args.attribute)
    ranked = attribute_features(F, labels, max(args.counts))
    options = load_answer_options(ds.root)
    closed = sample_rows(ds, len(ds), 0)
    closed.rows = [r for r in ds.rows if r.get("closed") and r.get("attribute") in options][: args.n_rows]
    curve = ablation_curve(
        model,
        sae,
        closed,
        site,
        role,
        options,
        args.attribute,
        ranked,
        args.counts,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    steering = _steer_best_feature(args, model, sae, ds, F, labels, site, role, options)
    out.mkdir(parents=True, exist_ok=True)
    curve.drop(columns=[]).to_csv(out / "sae_causal_ablation.csv", index=False)
    steering.to_csv(out / "sae_causal_steering.csv", index=False)
    print(curve.pivot_table(index="attribute", columns="n_features", values="delta").round(3).to_string())
    print(f"features to bring {args.attribute} to chance: {features_to_erase(curve, options)}")
    print(steering.round(3).to_string(index=False))
    print(f"-> {out / 'sae_causal_ablation.csv'}, {out / 'sae_causal_steering.csv'}")


def _score(sae, store, out: Path) -> None:
    import pandas as pd

    from workbench.analysis.sae.metrics import reconstruction_metrics
    from workbench.analysis.sae.study import clip_features, score_attributes

    X, meta = store.matrix(), store.meta
    _clips, F, Xc, first = clip_features(sae, X, meta)
    rows = [meta.iloc[i].to_dict() for i in first]
    res = score_attributes(sae.model_name or "sae", F, Xc, rows)
    out.mkdir(parents=True, exist_ok=True)
    res.scores.to_csv(out / "sae_scores.csv", index=False)
    rec = reconstruction_metrics(sae, X)
    (out / "sae_metrics.json").write_text(json.dumps(rec, indent=1))
    print(pd.Series(rec).to_string(float_format="%.3f"))
    print(
        res.scores[["attribute", "macro_auroc", "mean_f1", "sparse_k1", "sparse_k16", "dense_accuracy"]].to_string(
            index=False, float_format="%.3f"
        )
    )
    print(f"-> {out / 'sae_scores.csv'}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workbench.sae", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("collect", help="store a hook's rows at the role's positions (sharded, resumable)")
    _common(p), p.add_argument("--data", default=None), p.add_argument("--out", default=None)
    p = sub.add_parser("train", help="collect (unless --acts) and train one SAE")
    _common(p), _train_args(p)
    (
        p.add_argument("--data", default=None),
        p.add_argument("--acts", default=None),
        p.add_argument("--out", default=None),
    )
    for name in ("score", "pages"):
        p = sub.add_parser(name, help="score features against ground truth" if name == "score" else "feature pages")
        _common(p, site=False)
        p.add_argument("--sae", required=True), p.add_argument("--data", default=None)
        p.add_argument("--out", default=None), p.add_argument("--n-features", type=int, default=12)
    p = sub.add_parser("causal", help="ablate an attribute's top features; steer with its best feature")
    _common(p, site=False)
    (
        p.add_argument("--sae", required=True),
        p.add_argument("--data", default=None),
        p.add_argument("--out", default=None),
    )
    p.add_argument("--attribute", default="category")
    p.add_argument("--counts", type=int, nargs="+", default=[1, 4, 16, 64, 128])
    p.add_argument(
        "--alphas",
        type=float,
        nargs="+",
        default=[0, 1, 2, 4],
        help="steering steps in units of the feature's largest activation on the scored clips",
    )
    p.add_argument("--n-rows", type=int, default=96, help="closed task rows used (first N)")
    p = sub.add_parser("study", help="SAEs at one site of several checkpoints, scored and compared")
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--site", default="connectors.whisper.hook_out")
    p.add_argument("--positions", default="audio", choices=["audio", "text", "answer"])
    p.add_argument("--train-data", default=DEFAULT_TRAIN_DATA)
    p.add_argument("--eval-data", nargs="+", default=[DEFAULT_EVAL_DATA])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--n-train-clips", type=int, default=None), p.add_argument("--n-eval-clips", type=int, default=None)
    p.add_argument("--loss-rows", type=int, default=64), p.add_argument("--out", default=None)
    p.add_argument("--no-progress", action="store_true")
    _train_args(p)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
