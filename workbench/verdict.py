"""Three-line verdicts on the paper's claims, computed from the CSVs of a demo run folder.

    python -m workbench.verdict results/demo             # prints the verdicts, writes results/demo/verdict.csv
    python -m workbench.verdict results/demo --markdown  # the verdict table for results/README.md

How each verdict is made: :mod:`workbench.claims.verdict`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.claims.verdict import format_verdicts, markdown_verdicts, write_verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workbench.verdict", description=__doc__.split("\n\n")[0])
    ap.add_argument("run", nargs="?", default="results/demo", help="demo run folder (default results/demo)")
    ap.add_argument(
        "--markdown", action="store_true", help="print the verdicts as a markdown table (results/README.md)"
    )
    a = ap.parse_args(argv)
    if not Path(a.run).is_dir():
        print(f"error: {a.run} is not a folder; run the demo first: ./run demo", file=sys.stderr)
        return 2
    df, path = write_verdicts(a.run)
    print(markdown_verdicts(df) if a.markdown else format_verdicts(df))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
