"""Linear probes of a trained PAL model (see :mod:`workbench.analysis.probes` and ``probes/*.yaml``).

    python -m workbench.probe probes/pitch.yaml [--checkpoint DIR] [--data DIR] [--n N] [--backend nnsight]
                              [--out-dir DIR] [--seed S] [--batch-size B] [--keep-activations DIR]

Writes ``probe_<suite>.csv`` (one row per site: accuracy or R^2 with a 95% CI, majority baseline, control
task, selectivity), ``probe_<suite>.html`` (+ ``.png`` where an image exporter works) into --out-dir
(default results/<variant>). --n counts clips (one row per clip; default: every clip of the dataset).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workbench.analysis.cli import run_cli
from workbench.analysis.core import cli_common
from workbench.common.constants import TOKEN_CACHE


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m workbench.probe", description=__doc__.split("\n")[0])
    ap.add_argument("suites", nargs="+", help="probe suite YAML file(s), e.g. probes/pitch.yaml")
    cli_common(ap)
    ap.set_defaults(n=None, seed=None, batch_size=None)
    ap.add_argument(
        "--keep-activations",
        default=None,
        metavar="DIR",
        help="keep the pooled activations (one raw file per site + manifest.json) under DIR/<suite>",
    )
    ap.add_argument("--cache-dir", default=str(TOKEN_CACHE), help=f"encoder token cache (default {TOKEN_CACHE})")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.analysis.probes import run_probe_command

    args = build_parser().parse_args(argv)
    return run_cli(lambda: run_probe_command(args))


if __name__ == "__main__":
    sys.exit(main())
