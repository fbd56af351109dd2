"""Three-line verdicts on the paper's claims, computed from the CSVs of a demo run folder.

    python -m workbench.verdict results/demo             # prints the verdicts, writes results/demo/verdict.csv
    python -m workbench.verdict results/demo --markdown  # the verdict table for results/README.md

How each verdict is made: :mod:`workbench.claims.verdict`.
"""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m workbench.verdict", description=__doc__.split("\n\n")[0])
    ap.add_argument("run", nargs="?", default="results/demo", help="demo run folder (default results/demo)")
    ap.add_argument(
        "--markdown", action="store_true", help="print the verdicts as a markdown table (results/README.md)"
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    from workbench.claims.verdict import run_verdict_command

    return run_verdict_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
