"""Audio-minus-silence steering: alpha chosen on the validation split, gain measured on the test split.

```
python -m workbench.steer [--checkpoint DIR ...] [--alphas -4,-2,-1,-0.5,0.5,1,2,4] [--modes resid,heads] [--k 5]
       [--data data/synth-tiny/val] [--test-data data/synth-tiny/test] [--n 48] [--n-test 120]
       [--silence encoder|zeros] [--backend transformer_lens|nnsight] [--out-dir results/analyses] [--seed 0]
```
The protocol is :mod:`workbench.analysis.steering`; mode ``heads`` steers the top-k listening heads (scored on
the validation rows). Writes ``OUT_DIR/steering.csv`` (every variant, mode, split and alpha; ``split == gain``:
the test gain of the chosen alpha over alpha = 0, 95% paired interval) and ``steering.html`` (+ .png).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from workbench.analysis.cli import analysis_parser

TEST_DATA = Path("data/synth-tiny/test")


def build_parser() -> argparse.ArgumentParser:
    from workbench.analysis.steering import DEFAULT_ALPHAS

    p = analysis_parser("python -m workbench.steer", __doc__)
    p.add_argument("--test-data", default=str(TEST_DATA), help=f"test audiofolder (default {TEST_DATA})")
    p.add_argument("--n-test", type=int, default=120, help="test rows (seeded subset; default 120)")
    p.add_argument(
        "--alphas",
        default=",".join(f"{a:g}" for a in DEFAULT_ALPHAS if a),
        help="comma-separated scales tried on validation (0 is always added)",
    )
    p.add_argument("--modes", default="resid,heads", help="resid (final residual) and/or heads (top listening heads)")
    p.add_argument("--k", type=int, default=5, help="listening heads steered in mode heads (default 5)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.analysis.steering_command import run_steer_command

    return run_steer_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
