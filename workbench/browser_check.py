"""Open an HTML report in headless Chromium and check what a reader would see (console errors, figures, pixels).

    python -m workbench.browser_check results/demo/report.html [--screenshot shot.png] [--json]

The check itself: :func:`workbench.reporting.browser_check.check_report`.
"""

from __future__ import annotations

import argparse
import json
import sys

from workbench.reporting.browser_check import BrowserCheckError, check_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workbench.browser_check", description=__doc__.split("\n\n")[0])
    p.add_argument("page", help="HTML file, e.g. results/demo/report.html")
    p.add_argument("--screenshot", default=None, help="PNG to write (default: <page stem>_screenshot.png beside it)")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=4000)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for the page to load and draw (default 60)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    a = p.parse_args(argv)
    try:
        r = check_report(a.page, screenshot=a.screenshot, width=a.width, height=a.height, timeout=a.timeout)
    except BrowserCheckError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(r, indent=1))
    else:
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
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
