"""One self-contained HTML page for a run folder: every figure and table in it, one section per claim.

    python -m workbench.report --run results/pal [--out results/pal/report.html] [--title ...]

How the page is built: :mod:`workbench.reporting.report`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.common.paths import atomic_write_bytes
from workbench.reporting.report import REPORT_NAME, build_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workbench.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run folder with the analyses' *.csv / *.html (e.g. results/pal)")
    p.add_argument("--out", default=None, help=f"output file (default RUN/{REPORT_NAME})")
    p.add_argument("--title", default=None)
    a = p.parse_args(argv)
    try:
        page = build_report(a.run, a.title)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out) if a.out else Path(a.run) / REPORT_NAME
    atomic_write_bytes(out, page.encode())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
