"""CLI: logit lens of the answer token per layer, with and without audio (workbench.analysis.logit_lens).

    python -m workbench.logit_lens [--checkpoint results/checkpoints/pal/final] [--data data/synth-tiny/val]
        [--n 32] [--backend transformer_lens|nnsight] [--out-dir results/pal]

Writes ``logit_lens.csv`` (one row per example x layer x condition), ``logit_lens_summary.csv`` (per layer x
condition) and ``logit_lens.html``.
"""

from __future__ import annotations

import argparse

from workbench.analysis.cli import run_cli


def build_parser() -> argparse.ArgumentParser:
    from workbench.analysis.core import cli_common

    p = argparse.ArgumentParser(prog="python -m workbench.logit_lens", description=__doc__.split("\n\n")[0])
    cli_common(p)
    return p


def main(argv: list[str] | None = None) -> int:
    from workbench.analysis.logit_lens import run_logit_lens_command

    a = build_parser().parse_args(argv)
    return run_cli(lambda: run_logit_lens_command(a))


if __name__ == "__main__":
    raise SystemExit(main())
