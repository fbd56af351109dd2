"""Open an HTML report in headless Chromium and check what a reader would see: no JavaScript errors in the
console, every plotly figure rendered, and a screenshot that is not blank.

    python -m workbench.browser_check results/demo/report.html [--screenshot shot.png] [--json]

    from workbench.reporting.browser_check import check_report
    r = check_report("results/demo/report.html")
    r["ok"], r["figures_expected"], r["figures_rendered"], r["console_errors"], r["screenshot"]

The page is driven through the DevTools protocol (``choreographer``, installed with kaleido): uncaught
exceptions, ``console.error`` calls and browser log errors (e.g. a resource that fails to load) are collected
from the moment the page starts loading. A figure counts as rendered when plotly drew it (its div holds a
``main-svg``, with at least one trace drawn when it has data). The screenshot (viewport ``width`` x
``height``) is decoded in the browser itself to count its distinct colours: a blank page has one. Note that
choreographer starts Chromium with ``--disable-web-security`` and ``--allow-file-access-from-files``, so
cross-origin errors a normal browser would raise do not show here (the reports are self-contained).

Needs Chrome or Chromium: ``apt-get install chromium`` (Debian/Ubuntu; listed in .ci/apt-packages.txt, so
``./run setup`` installs it) or point ``BROWSER_PATH`` at a Chrome binary. Runs as root (no sandbox).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path

__all__ = ["BrowserCheckError", "find_chromium", "check_report", "print_browser_check"]

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = (
    "install it with `apt-get install chromium` (Debian/Ubuntu; it is in .ci/apt-packages.txt, so "
    "`./run setup` installs it), or set BROWSER_PATH to a Chrome/Chromium binary"
)
SETTLE_S = 3.0  # after the load event, how long undrawn figures may take before they count as not rendered
MIN_COLOURS = 16  # a rendered report has hundreds (text antialiasing, plots); a blank page 1
_PLOTLY_DIV = re.compile(r'<div\b[^>]*\bclass="[^"]*\bplotly-graph-div\b')
_QUIET = ("choreographer", "logistro", "browser_proc")

_FIGURES_JS = """(() => {
  const divs = [...document.querySelectorAll('.plotly-graph-div')];
  const info = divs.map(d => {
    const traces = d.querySelectorAll('.main-svg g.trace, .main-svg g.hm').length;
    const box = d.getBoundingClientRect();
    return {id: d.id, traces: traces, data: (d.data || []).length,
            rendered: !!(d._fullLayout && d.querySelector('.main-svg')) && (traces > 0 || !(d.data || []).length),
            width: Math.round(box.width), height: Math.round(box.height)};
  });
  return {found: divs.length, rendered: info.filter(i => i.rendered).length, info: info,
          height: document.documentElement.scrollHeight, ready: document.readyState};
})()"""

# what a reader of the report sees besides the figures: headings that are words (not file names), each caption
# once (not also drawn inside its plot), and no sideways scrolling at the viewport width
_PAGE_JS = r"""(() => {
  const el = document.documentElement;
  const heads = [...document.querySelectorAll('h1,h2,h3,h4')].map(h => h.textContent.trim());
  const fileLike = heads.filter(t => /\.(html|csv|png|json|ya?ml)\b/i.test(t) || /^[\w.-]*_[\w.-]*$/.test(t));
  const norm = t => t.replace(/\s+/g, ' ').trim();
  const caps = [...document.querySelectorAll('figcaption')].map(c => norm(c.textContent));
  const dup = [...new Set(caps.filter((c, i) => caps.indexOf(c) !== i))];
  const ann = [...document.querySelectorAll('.plotly-graph-div .annotation-text')].map(a => norm(a.textContent));
  const inPlot = caps.filter(c => ann.some(a => a.length >= 30 && c.startsWith(a.slice(0, 30))));
  return {scroll_width: el.scrollWidth, client_width: el.clientWidth, file_headings: fileLike,
          duplicate_captions: dup, captions_in_plot: inPlot, headings: heads.length, captions: caps.length};
})()"""

_PIXELS_JS = """(async (b64) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + b64;
  await img.decode();
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(img, 0, 0);
  const px = new Uint32Array(ctx.getImageData(0, 0, c.width, c.height).data.buffer);
  const counts = new Map();
  for (const p of px) counts.set(p, (counts.get(p) || 0) + 1);
  let top = 0;
  for (const v of counts.values()) if (v > top) top = v;
  return {width: c.width, height: c.height, colours: counts.size, background_fraction: top / px.length};
})"""


class BrowserCheckError(RuntimeError):
    """No browser to run, a page that does not exist, or a browser that failed."""


def find_chromium() -> str:
    """Path of a Chrome/Chromium binary: ``BROWSER_PATH``, else the first of `BROWSER_NAMES` on PATH, else one
    downloaded by ``choreo_get_chrome``. Raises `BrowserCheckError` naming the fix when there is none."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        if Path(env).is_file() and os.access(env, os.X_OK):
            return env
        raise BrowserCheckError(f"BROWSER_PATH={env} is not an executable file; unset it, or {INSTALL_HINT}")
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    try:
        from choreographer.browsers.chromium import Chromium

        found = Chromium.find_browser(skip_local=False)
        if found:
            return str(found)
    except Exception:  # choreographer missing or its API changed: nothing more to try
        pass
    raise BrowserCheckError(f"no Chrome/Chromium found to open the report: {INSTALL_HINT}")


def _text_of_exception(params: dict) -> str:
    d = params.get("exceptionDetails", {})
    exc = d.get("exception") or {}
    msg = exc.get("description") or d.get("text") or "exception"
    where = d.get("url", "")
    loc = f" ({Path(where).name}:{d.get('lineNumber', 0) + 1})" if where else ""
    return f"Uncaught {msg.splitlines()[0]}{loc}"


def _text_of_console(params: dict) -> str:
    parts = []
    for a in params.get("args", []):
        v = a.get("value", a.get("description", a.get("type", "")))
        parts.append(v if isinstance(v, str) else json.dumps(v))
    return f"console.{params.get('type')}: {' '.join(parts)}"


async def _evaluate(tab, expression: str, *, await_promise: bool = False):
    r = await tab.send_command(
        "Runtime.evaluate", params={"expression": expression, "returnByValue": True, "awaitPromise": await_promise}
    )
    if "error" in r:
        raise BrowserCheckError(f"the browser refused to evaluate a script: {r['error']}")
    res = r["result"]
    if "exceptionDetails" in res:
        raise BrowserCheckError(f"script failed in the page: {_text_of_exception(res)}")
    return res["result"].get("value")


async def _open_page(tab, url: str, width: int, height: int, timeout: float) -> None:
    """Enable the Runtime / Log / Page events, set the viewport, open ``url`` and wait for its load event."""
    for domain in ("Runtime", "Log", "Page"):
        await tab.send_command(f"{domain}.enable")
    await tab.send_command(
        "Emulation.setDeviceMetricsOverride",
        params={"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    loaded = tab.subscribe_once("Page.loadEventFired")
    nav = await tab.send_command("Page.navigate", params={"url": url})
    if "error" in nav or nav.get("result", {}).get("errorText"):
        raise BrowserCheckError(f"could not open {url}: {nav.get('error') or nav['result']['errorText']}")
    try:
        await asyncio.wait_for(loaded, timeout)
    except TimeoutError:
        raise BrowserCheckError(f"{url} did not finish loading within {timeout:.0f} s") from None


async def _wait_for_figures(tab, t0: float, timeout: float) -> dict:
    """``{found, rendered}`` plotly figures once all are drawn, or nothing changed for SETTLE_S, or the timeout
    (counted from ``t0``) is up."""
    # plotly draws while the page's scripts run, a little may follow the load event: wait until every
    # figure is drawn, or nothing changed for SETTLE_S (a figure that failed will not be drawn later)
    figs = await _evaluate(tab, _FIGURES_JS)
    changed = time.monotonic()
    while (
        figs["rendered"] < figs["found"] and time.monotonic() - changed < SETTLE_S and time.monotonic() - t0 < timeout
    ):
        await asyncio.sleep(0.2)
        now = await _evaluate(tab, _FIGURES_JS)
        if now["rendered"] != figs["rendered"]:
            changed = time.monotonic()
        figs = now
    return figs


async def _drive(browser_path: str, url: str, width: int, height: int, timeout: float) -> dict:
    import choreographer

    errors: list[str] = []
    warnings_: list[str] = []

    async def on_exception(msg):
        errors.append(_text_of_exception(msg.get("params", {})))

    async def on_console(msg):
        p = msg.get("params", {})
        if p.get("type") in ("error", "assert"):
            errors.append(_text_of_console(p))
        elif p.get("type") == "warning":
            warnings_.append(_text_of_console(p))

    async def on_log(msg):
        e = msg.get("params", {}).get("entry", {})
        text = f"{e.get('source', 'log')}: {e.get('text', '')}" + (f" ({e['url']})" if e.get("url") else "")
        if e.get("level") == "error":
            errors.append(text)
        elif e.get("level") == "warning":
            warnings_.append(text)

    t0 = time.monotonic()
    async with choreographer.Browser(path=browser_path, headless=True) as browser:
        tab = await browser.create_tab("about:blank")
        tab.subscribe("Runtime.exceptionThrown", on_exception)
        tab.subscribe("Runtime.consoleAPICalled", on_console)
        tab.subscribe("Log.entryAdded", on_log)
        await _open_page(tab, url, width, height, timeout)
        figs = await _wait_for_figures(tab, t0, timeout)
        await asyncio.sleep(0.3)  # late console errors (e.g. from requestAnimationFrame callbacks)
        page = await _evaluate(tab, _PAGE_JS)
        shot = await tab.send_command("Page.captureScreenshot", params={"format": "png"})
        if "error" in shot:
            raise BrowserCheckError(f"screenshot failed: {shot['error']}")
        png = base64.b64decode(shot["result"]["data"])
        pixels = await _evaluate(tab, f"{_PIXELS_JS}({json.dumps(shot['result']['data'])})", await_promise=True)
    return {
        "figures": figs,
        "page": page,
        "errors": errors,
        "warnings": warnings_,
        "png": png,
        "pixels": pixels,
        "seconds": time.monotonic() - t0,
    }


def _run(coro):
    """asyncio.run, also from a thread that already runs an event loop (a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    out: dict = {}

    def work():
        try:
            out["value"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            out["error"] = e

    t = threading.Thread(target=work, name="browser-check")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def _browse(exe: str, page: Path, width: int, height: int, timeout: float) -> dict:
    """The raw measurements of ``page`` in the headless browser ``exe`` (noisy loggers quietened first); any
    failure other than a `BrowserCheckError` becomes one naming the browser and the page."""
    for name in _QUIET:
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return _run(_drive(exe, page.as_uri(), width, height, timeout))
    except BrowserCheckError:
        raise
    except Exception as e:
        raise BrowserCheckError(f"headless browser {exe} failed on {page}: {type(e).__name__}: {e}") from e


def _report_summary(page: Path, exe: str, expected: int, shot_path: Path, r: dict) -> dict:
    """The result of :func:`check_report` from the raw measurements ``r``."""
    figs, px = r["figures"], r["pixels"]
    blank = px["colours"] < MIN_COLOURS
    pg = r["page"]
    overflow = pg["scroll_width"] > pg["client_width"]
    readable = not overflow and not pg["file_headings"] and not pg["duplicate_captions"] and not pg["captions_in_plot"]
    return {
        "page": str(page),
        "browser": exe,
        "figures_expected": expected,
        "figures_found": figs["found"],
        "figures_rendered": figs["rendered"],
        "figures": figs["info"],
        "console_errors": r["errors"],
        "console_warnings": r["warnings"],
        "screenshot": str(shot_path),
        "screenshot_size": (px["width"], px["height"]),
        "colours": px["colours"],
        "background_fraction": px["background_fraction"],
        "blank": blank,
        "page_height": figs["height"],
        "seconds": round(r["seconds"], 2),
        "horizontal_overflow": overflow,
        "page_width": pg["scroll_width"],
        "file_headings": pg["file_headings"],
        "duplicate_captions": pg["duplicate_captions"],
        "captions_in_plot": pg["captions_in_plot"],
        "ok": not r["errors"] and figs["rendered"] == expected == figs["found"] and not blank and readable,
    }


def check_report(
    path: str | os.PathLike,
    *,
    screenshot: str | os.PathLike | None = None,
    width: int = 1400,
    height: int = 4000,
    timeout: float = 60.0,
    browser: str | None = None,
) -> dict:
    """Open ``path`` (an HTML file) in headless Chromium; return

    * ``figures_expected``: plotly figure divs in the file; ``figures_rendered``: those plotly drew;
    * ``console_errors``: uncaught exceptions, ``console.error`` / failed asserts and browser log errors;
      ``console_warnings`` likewise;
    * ``screenshot``: path of the PNG of the viewport (``width`` x ``height``; default ``<stem>_screenshot.png``
      beside the page); ``colours`` / ``background_fraction``: its distinct colours and the share of its most
      common colour; ``blank``: fewer than `MIN_COLOURS` colours;
    * ``figures``: per figure div: id, rendered, traces drawn, traces in its data, size in pixels;
      ``page_height``; ``seconds``;
    * ``horizontal_overflow``: the page is wider than the viewport (it would scroll sideways);
      ``file_headings``: headings that read like file names (an extension, or one word with underscores);
      ``duplicate_captions``: figure captions shown more than once; ``captions_in_plot``: captions also drawn
      inside their plot;
    * ``ok``: no console errors, every figure rendered, screenshot not blank, no horizontal overflow, no
      file-name headings, every caption once.

    Raises `BrowserCheckError` when no browser is found (naming the fix) or the page cannot be opened."""
    page = Path(path).resolve()
    if not page.is_file():
        raise BrowserCheckError(f"no such page: {page} (build a report first: python -m workbench.report --run DIR)")
    exe = browser or find_chromium()
    text = page.read_text(errors="replace")
    expected = len(_PLOTLY_DIV.findall(text))
    shot_path = Path(screenshot) if screenshot else page.with_name(f"{page.stem}_screenshot.png")
    r = _browse(exe, page, width, height, timeout)
    shot_path.parent.mkdir(parents=True, exist_ok=True)
    shot_path.write_bytes(r["png"])
    return _report_summary(page, exe, expected, shot_path, r)


def print_browser_check(report: str | os.PathLike, indent: str = "") -> None:
    """Check ``report`` in headless Chromium and print one line (figures rendered, console errors), each line
    prefixed by ``indent``: the last step of the demo and of the study. A missing browser is a note, not a failure
    (the report is already written)."""
    try:
        res = check_report(report)
    except Exception as e:  # a missing browser must not fail the run; the report is already written
        print(f"{indent}note: headless-Chromium check not run ({type(e).__name__}: {e})")
        return
    errs = res.get("console_errors") or []
    print(
        f"{indent}headless Chromium: {res.get('figures_rendered')}/{res.get('figures_expected')} figures rendered, "
        f"{len(errs)} console error(s)" + (f": {errs[:3]}" if errs else "")
    )
