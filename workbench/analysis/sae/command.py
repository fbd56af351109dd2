"""The body of ``python -m workbench.sae``: each subcommand (collect, train, score, pages, causal, study) run with
its parsed arguments, its tables written and printed. The command-line interface (flags, usage) is `workbench.sae`.

    run_sae_command(workbench.sae.build_parser().parse_args(["score", "--sae", DIR]))   # its exit code
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from workbench.analysis.cli import run_cli

__all__ = ["DEFAULT_EVAL_DATA", "DEFAULT_TRAIN_DATA", "run_sae_command"]

DEFAULT_TRAIN_DATA = "data/synth-tiny/sae-train"
DEFAULT_EVAL_DATA = "data/synth-tiny/test"


def run_sae_command(args) -> int:
    """``python -m workbench.sae CMD`` with parsed arguments ``args``, logging to the terminal; bad input -> its
    message and exit code 2 (`workbench.analysis.cli.run_cli`). Returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(lambda: _run(args))


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


def _score(sae, store, out: Path) -> None:
    import pandas as pd

    from workbench.analysis.sae.metrics import reconstruction_metrics
    from workbench.analysis.sae.study import clip_features, score_attributes

    X, meta = store.matrix(), store.meta
    _clips, F, Xc, first = clip_features(sae, X, meta)
    rows = [meta.iloc[i].to_dict() for i in first]
    res = score_attributes(sae.model_name or "sae", F, Xc, rows)
    assert res.scores is not None  # score_attributes always sets it
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
