"""Seed-aware statistics of the claims' contrasts, over training seeds and both test splits.

    python -m workbench.seed_stats [--checkpoints results/checkpoints] [--sweeps results/sweeps/injection-layer]
                                   [--out results] [--markdown results/seeds.md]

What it reads and writes, and the interval: :mod:`workbench.claims.seeds`.
"""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workbench.seed_stats", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="results/checkpoints", help="root of the seed runs")
    p.add_argument("--sweeps", default=None, help="injection-layer sweep root (e.g. results/sweeps/injection-layer)")
    p.add_argument("--out", default="results", help="folder for seed_accuracy.csv / seed_contrasts.csv")
    p.add_argument("--markdown", default=None, help="also write the README tables to this file ('-': print)")
    p.add_argument("--resamples", type=int, default=2000)
    return p


def main(argv: list[str] | None = None) -> int:
    from workbench.claims.seeds import run_seed_stats_command

    return run_seed_stats_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
