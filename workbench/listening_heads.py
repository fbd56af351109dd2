"""Listening heads: per-head listening score (audio vs silence of the same length) and its causal check.

```
python -m workbench.listening_heads [--checkpoint DIR ...] [--k 5] [--draws 5] [--n 48] [--silence encoder|zeros]
       [--data data/synth-tiny/val] [--backend transformer_lens|nnsight] [--out-dir results/analyses] [--seed 0]
```
Score and ablation are defined in :mod:`workbench.analysis.listening`. Writes ``OUT_DIR/listening_heads.csv``
(every head of every variant, ranked), ``listening_ablation.csv`` (top-k vs random heads mean-ablated, 95%
intervals) and per variant ``listening_heads_VARIANT.html`` / ``listening_ablation_VARIANT.html`` (+ .png).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workbench.analysis.cli import analysis_parser


def build_parser() -> argparse.ArgumentParser:
    p = analysis_parser("python -m workbench.listening_heads", __doc__)
    p.add_argument("--k", type=int, default=5, help="top heads to ablate (default 5)")
    p.add_argument("--draws", type=int, default=5, help="random head sets (default 5)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.analysis.listening import run_listening_heads_command

    return run_listening_heads_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
