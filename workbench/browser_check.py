"""Open an HTML report in headless Chromium and check what a reader would see (console errors, figures, pixels).

    python -m workbench.browser_check results/demo/report.html [--screenshot shot.png] [--json]

The check itself: :func:`workbench.reporting.browser_check.check_report`.
"""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workbench.browser_check", description=__doc__.split("\n\n")[0])
    p.add_argument("page", help="HTML file, e.g. results/demo/report.html")
    p.add_argument("--screenshot", default=None, help="PNG to write (default: <page stem>_screenshot.png beside it)")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=4000)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for the page to load and draw (default 60)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    from workbench.reporting.browser_check_command import run_browser_check_command

    return run_browser_check_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
