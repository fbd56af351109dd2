"""Linear probes of a trained PAL model (see :mod:`workbench.analysis.probes` and ``probes/*.yaml``).

    python -m workbench.probe probes/pitch.yaml [--checkpoint DIR] [--data DIR] [--n N] [--backend nnsight]
                              [--out-dir DIR] [--seed S] [--batch-size B] [--keep-activations DIR]

Writes ``probe_<suite>.csv`` (one row per site: accuracy or R^2 with a 95% CI, majority baseline, control
task, selectivity), ``probe_<suite>.html`` (+ ``.png`` where an image exporter works) into --out-dir
(default results/<variant>). --n counts clips (one row per clip; default: every clip of the dataset).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from workbench.analysis.cli import run_cli
from workbench.analysis.core import cli_common, default_out_dir, load_for_analysis
from workbench.analysis.probes import ProbeError, load_suite, run_suite
from workbench.common.constants import TOKEN_CACHE


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workbench.probe", description=__doc__.split("\n")[0])
    ap.add_argument("suites", nargs="+", help="probe suite YAML file(s), e.g. probes/pitch.yaml")
    cli_common(ap)
    ap.set_defaults(n=None, seed=None, batch_size=None)
    ap.add_argument(
        "--keep-activations",
        default=None,
        metavar="DIR",
        help="keep the pooled activations (one raw file per site + manifest.json) under DIR/<suite>",
    )
    ap.add_argument("--cache-dir", default=str(TOKEN_CACHE), help=f"encoder token cache (default {TOKEN_CACHE})")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(lambda: _run(args))


def _run(args) -> int:
    suites = [load_suite(p) for p in args.suites]
    model, dataset = load_for_analysis(
        args.checkpoint, args.data, None, seed=args.seed or 0, cache_dir=args.cache_dir, progress=not args.no_progress
    )
    out = default_out_dir(args)
    status = 0
    for suite in suites:
        try:
            keep = f"{args.keep_activations}/{suite.name}" if args.keep_activations else None
            df, _ = run_suite(
                suite,
                model,
                dataset,
                out_dir=out,
                activations_dir=keep,
                n=args.n,
                backend=args.backend,
                batch_size=args.batch_size,
                seed=args.seed,
                progress=not args.no_progress,
            )
        except ProbeError as e:  # a suite that does not fit this model / dataset: report it, run the others
            print(f"error in {suite.source}: {e}", file=sys.stderr)
            status = 2
            continue
        best = df.sort_values("value", ascending=False).head(5)
        print(
            f"\n{suite.name} ({suite.attribute}, {df['metric'].iloc[0]}, n={df['n'].iloc[0]}, "
            f"majority {df['majority'].iloc[0]:.3f}) -> {out}/probe_{suite.name}.csv"
        )
        print(
            best[["site", "value", "ci_low", "ci_high", "control", "selectivity"]].to_string(
                index=False, float_format="%.3f"
            )
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
