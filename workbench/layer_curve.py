"""The injection-layer curve behind claim 1 (accuracy against the layer where audio enters, PLITS and LAL).

    python -m workbench.layer_curve [--sweeps results/sweeps/injection-layer] [--out results]

What it reads, its intervals and its paired layer contrasts: :mod:`workbench.claims.layer_curve`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from workbench.training.runs import SWEEP_ROOT


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workbench.layer_curve", description=__doc__.split("\n\n")[0])
    p.add_argument("--sweeps", default=str(SWEEP_ROOT), help=f"sweep root (default {SWEEP_ROOT})")
    p.add_argument("--out", default="results", help="output folder (default results)")
    p.add_argument("--resamples", type=int, default=2000)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.claims.layer_curve import run_layer_curve_command

    return run_layer_curve_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
