"""The injection-layer curve behind claim 1 (accuracy against the layer where audio enters, PLITS and LAL).

    python -m workbench.layer_curve [--sweeps results/sweeps/injection-layer] [--out results]

What it reads, its intervals and its paired layer contrasts: :mod:`workbench.claims.layer_curve`.
"""

from __future__ import annotations

import argparse
import sys

from workbench.claims.layer_curve import write_layer_curve
from workbench.training.runs import SWEEP_ROOT


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workbench.layer_curve", description=__doc__.split("\n\n")[0])
    p.add_argument("--sweeps", default=str(SWEEP_ROOT), help=f"sweep root (default {SWEEP_ROOT})")
    p.add_argument("--out", default="results", help="output folder (default results)")
    p.add_argument("--resamples", type=int, default=2000)
    a = p.parse_args(argv)
    sentence = write_layer_curve(a.sweeps, a.out, a.resamples)
    if sentence is None:
        print(
            f"error: no evaluated sweep point under {a.sweeps} (expected MODE/LNN/seed-S/eval/answers.csv); run "
            "python -m workbench.sweep injection-layer first",
            file=sys.stderr,
        )
        return 2
    print(sentence)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
