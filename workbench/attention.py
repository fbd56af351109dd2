"""CLI: attention of text queries to each encoder's audio keys, per layer x head (workbench.analysis.attention).

    python -m workbench.attention [--checkpoint results/checkpoints/pal/final] [--data data/synth-tiny/val]
        [--n 32] [--query-set after_slot|answer|last_prompt|all] [--backend transformer_lens|nnsight]
        [--out-dir results/pal]

Writes ``attention_to_audio.csv`` (one row per layer/head/encoder/query set), ``attention_to_audio.html``
(ratio to uniform, layer x head per encoder), ``attention_layers.html`` (mass per layer vs uniform) and
``attention_tokens.html`` (one example's pattern at the layer/head with the largest audio ratio).
"""

from __future__ import annotations

import argparse

from workbench.analysis.cli import run_cli


def build_parser() -> argparse.ArgumentParser:
    from workbench.analysis.attention import QUERY_SETS
    from workbench.analysis.core import cli_common

    p = argparse.ArgumentParser(prog="python -m workbench.attention", description=__doc__.split("\n\n")[0])
    cli_common(p)
    p.add_argument("--query-set", choices=[*QUERY_SETS, "all"], default="all")
    return p


def main(argv: list[str] | None = None) -> int:
    from workbench.analysis.attention import run_attention_command

    a = build_parser().parse_args(argv)
    return run_cli(lambda: run_attention_command(a))


if __name__ == "__main__":
    raise SystemExit(main())
