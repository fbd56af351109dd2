"""One self-contained HTML page for a run folder: every figure and table in it, one section per claim.

    python -m workbench.report --run results/pal [--out results/pal/report.html] [--title ...]

How the page is built: :mod:`workbench.reporting.report`.
"""

from __future__ import annotations

import argparse

from workbench.reporting.report import REPORT_NAME


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workbench.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run folder with the analyses' *.csv / *.html (e.g. results/pal)")
    p.add_argument("--out", default=None, help=f"output file (default RUN/{REPORT_NAME})")
    p.add_argument("--title", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    from workbench.reporting.report import run_report_command

    return run_report_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
