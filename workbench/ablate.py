"""Cut the model's access to audio at inference, at some layers, and measure what the answers lose.

```
python -m workbench.ablate --layer 8 [--to 12] [--mode block|zero|mean|ffn] [--encoder NAME]
       [--sweep [--span from|single]] [--no-accuracy] [--max-new-tokens 8]
       [--checkpoint DIR] [--data DIR] [--n 32] [--backend transformer_lens|nnsight] [--out-dir DIR] [--seed 0]
```
Modes (see :mod:`workbench.analysis.ablation`): ``block`` audio keys blocked in attention, ``zero`` /
``mean`` audio K/V (LAL) or audio residual (PLITS) replaced, ``ffn`` FFN skipped at the audio positions
(PLITS only: claim 2 on a baseline-trained model). ``--layer L`` alone ablates L..last ("from L on");
``--to M`` ends at M (``--to L``: that layer only). ``--sweep`` runs every layer from ``--layer`` (default 0)
with span ``from`` (l..last, default) or ``single`` (l only) and plots the curve.
Writes ``OUT_DIR/ablation_{mode}_{layers}.csv/.html/.png`` (default OUT_DIR: results/<variant>).
The nnsight backend reports the answer log-probability only (accuracy needs generation, done with
TransformerLens hooks).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from workbench.analysis.cli import run_cli
from workbench.analysis.core import cli_common


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workbench.ablate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--layer", type=int, default=None, help="first ablated layer (required unless --sweep)")
    p.add_argument("--to", type=int, default=None, help="last ablated layer (default: the model's last layer)")
    p.add_argument("--mode", default="block", help="block | zero | mean | ffn (default block)")
    p.add_argument("--encoder", default=None, help="ablate only this encoder (default: all)")
    p.add_argument("--sweep", action="store_true", help="ablate at every layer from --layer (default 0) on")
    p.add_argument("--span", default="from", help="sweep span: 'from' (layers l..last, default) or 'single' (l only)")
    p.add_argument("--no-accuracy", action="store_true", help="skip greedy generation (log-probability only)")
    p.add_argument("--max-new-tokens", type=int, default=8)
    cli_common(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.analysis.ablation import run_ablate_command

    return run_cli(lambda: run_ablate_command(build_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
