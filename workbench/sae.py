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
``study`` compares variants (sae_contrasts.csv, bootstrap over clips). Library: `workbench.analysis.sae` (this
command's body: `workbench.analysis.sae.command`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workbench.analysis.sae.command import DEFAULT_EVAL_DATA, DEFAULT_TRAIN_DATA, run_sae_command


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


def build_parser() -> argparse.ArgumentParser:
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
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    return run_sae_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
