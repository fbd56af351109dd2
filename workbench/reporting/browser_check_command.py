"""The body of ``python -m workbench.browser_check`` (:func:`run_browser_check_command`, given the parsed arguments):
the check of :func:`workbench.reporting.browser_check.check_report`, printed as JSON or as one line per finding."""

from __future__ import annotations

import argparse
import json
import sys

from workbench.reporting.browser_check import BrowserCheckError, check_report

__all__ = ["run_browser_check_command"]


def _print_findings(r: dict) -> None:
    """One summary line, then one line per thing a reader would see wrong, then ``ok`` or ``FAILED``."""
    print(
        f"{r['page']}: {r['figures_rendered']}/{r['figures_expected']} figures rendered, "
        f"{len(r['console_errors'])} console errors, screenshot {r['screenshot']} "
        f"({r['colours']} colours{', BLANK' if r['blank'] else ''}) in {r['seconds']} s"
    )
    for line in r["console_errors"]:
        print(f"  console error: {line}")
    if r["horizontal_overflow"]:
        print(f"  page scrolls sideways: {r['page_width']} px wide at a {r['screenshot_size'][0]} px viewport")
    for h in r["file_headings"]:
        print(f"  heading reads like a file name: {h!r}")
    for c in r["duplicate_captions"] + r["captions_in_plot"]:
        print(f"  caption shown twice: {c[:80]!r}")
    for f in r["figures"]:
        if not f["rendered"]:
            print(f"  not rendered: figure div {f['id']}")
    print("ok" if r["ok"] else "FAILED")


def run_browser_check_command(a: argparse.Namespace) -> int:
    """``python -m workbench.browser_check`` with parsed arguments ``a``; exit code 0 when the page passes, 1 when
    it does not, 2 when it cannot be checked (no page, no browser)."""
    try:
        r = check_report(a.page, screenshot=a.screenshot, width=a.width, height=a.height, timeout=a.timeout)
    except BrowserCheckError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(r, indent=1))
    else:
        _print_findings(r)
    return 0 if r["ok"] else 1
