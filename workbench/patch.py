"""Activation patching: clean audio into corrupted runs (pairs differing in one attribute, same question).

```
python -m workbench.patch [--method exact|atp] [--attribute pitch_class] [--sites audio_kv,resid_audio,head_out,connector]
       [--encoder NAME] [--layers 0,4,8] [--max-pairs 16] [--group 1] [--no-exact]
       [--checkpoint DIR] [--data DIR] [--n 32] [--backend transformer_lens|nnsight] [--out-dir DIR] [--seed 0]
```
Reports the fraction of the answer logit difference restored per site/layer/head (see
:mod:`workbench.analysis.patching`). Sites that need another integration than the model's are skipped
(audio_kv: LAL, resid_audio: PLITS). Writes ``OUT_DIR/patching[_ATTRIBUTE].csv/.html/.png`` (summary),
``..._items.csv`` (per pair) and ``..._pairs.csv``.

``--method atp``: attribution patching with the QK fix (:mod:`workbench.analysis.atp`) for every site, validated
against exact patching on the same pairs (skip with ``--no-exact``). Writes ``OUT_DIR/atp[_ATTRIBUTE].csv`` (per
site: AtP, AtP with QK fix, exact effect), ``..._agreement.csv`` (Spearman over sites, top-10 overlap, times),
``..._items.csv`` and the figure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workbench.analysis.core import cli_common


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workbench.patch",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--attribute", default=None, help="only pairs asking about this attribute (default: every closed one)"
    )
    p.add_argument(
        "--sites",
        default=None,
        help="comma-separated: audio_kv,resid_audio,head_out,connector (default audio_kv,resid_audio,head_out)",
    )
    p.add_argument("--encoder", default=None, help="patch only this encoder's audio (default: all)")
    p.add_argument("--layers", default=None, help="comma-separated layers (default: all)")
    p.add_argument("--max-pairs", type=int, default=16)
    p.add_argument(
        "--method",
        choices=("exact", "atp"),
        default="exact",
        help="exact patching (one patched run per site) or attribution patching (AtP + QK fix)",
    )
    p.add_argument(
        "--group",
        type=int,
        default=1,
        help="exact patching: patched runs per forward (default 1; more helps on a GPU, not on a small CPU)",
    )
    p.add_argument("--no-exact", action="store_true", help="--method atp: skip the validation by exact patching")
    cli_common(p)
    p.set_defaults(n=128)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.analysis.patching_command import run_patch_command

    return run_patch_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
