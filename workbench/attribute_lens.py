"""Attribute lens: at which layer does each variant know the attribute, with audio, with silence, audio blocked?

```
python -m workbench.attribute_lens [--checkpoint DIR ...] [--attribute NAME] [--n 48] [--silence encoder|zeros]
       [--data data/synth-tiny/val] [--backend transformer_lens|nnsight] [--out-dir results/analyses] [--seed 0]
```
Default: every committed checkpoint ``results/checkpoints/*/final`` (one figure across variants); ``--checkpoint``
also takes a released model folder or hub id. The critical
layer is defined in :mod:`workbench.analysis.attribute_lens`. Writes ``OUT_DIR/attribute_lens.csv`` (per
variant, condition, position, split, layer: accuracy, mean probability, critical layer), ``.html``/``.png``
(the figure) and ``attribute_lens_items.csv`` (per row and layer).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workbench.analysis.cli import analysis_parser


def build_parser() -> argparse.ArgumentParser:
    p = analysis_parser("python -m workbench.attribute_lens", __doc__)
    p.add_argument(
        "--attribute",
        default=None,
        help="only rows asking about this attribute (default: every one with an option list)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.analysis.attribute_lens import run_attribute_lens_command

    return run_attribute_lens_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
