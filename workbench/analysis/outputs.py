"""What every analysis CLI shares: the common arguments, the output folder, and writing csv / html / png.

write_outputs(df, fig, "results/pal", "attention_to_audio")   # -> .csv, .html and .png (when kaleido works)
"""

from __future__ import annotations

import argparse
import io
import logging
import os
from pathlib import Path

from workbench.analysis.hooks import BACKENDS
from workbench.analysis.inputs import DEFAULT_CHECKPOINT, DEFAULT_DATA
from workbench.common.paths import atomic_write_bytes, variant_of

__all__ = ["cli_common", "default_out_dir", "write_outputs"]


def cli_common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add --checkpoint --data --n --backend --out-dir --seed (plus --batch-size) to an analysis CLI."""
    parser.add_argument(
        "--checkpoint",
        default=None,
        help=f"PAL checkpoint folder (default {DEFAULT_CHECKPOINT}), or a "
        "released audio-LLM's transformers folder / hub id (Qwen2-Audio, Voxtral, AF3, GLM-ASR)",
    )
    parser.add_argument(
        "--data", default=None, help=f"audiofolder to analyse (default {DEFAULT_DATA}; generated if missing)"
    )
    parser.add_argument("--n", type=int, default=32, help="number of task rows (seeded random subset; default 32)")
    parser.add_argument("--backend", choices=BACKENDS, default="transformer_lens")
    parser.add_argument("--out-dir", default=None, help="output folder (default results/<variant of the checkpoint>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    return parser


def default_out_dir(args) -> Path:
    if getattr(args, "out_dir", None):
        return Path(args.out_dir)
    ckpt = Path(args.checkpoint) if getattr(args, "checkpoint", None) else DEFAULT_CHECKPOINT
    return Path("results") / variant_of(ckpt)


_PNG_OK: bool | None = None
PNG_TIMEOUT_S = 120.0  # first image includes starting Chromium; later ones take well under a second
_KALEIDO_LOGGERS = ("kaleido", "choreographer", "logistro", "browser_proc")


def _quiet_kaleido() -> None:
    """kaleido/choreographer log every browser start and stop at INFO ("Cancelling tasks.", "Exiting
    Kaleido/Choreo.", ...) and forward Chromium's stderr: keep them to warnings unless a level was set."""
    for name in _KALEIDO_LOGGERS:
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.WARNING)


def _start_png_server() -> None:
    """Start kaleido's sync server once per process: one headless Chromium kept open, so each image costs
    ~0.3 s instead of a browser start (~3-7 s). Stopped at exit. Raises if no Chrome/Chromium is found."""
    import atexit

    import kaleido

    _quiet_kaleido()
    try:
        from choreographer.browsers.chromium import Chromium

        found: object = Chromium.find_browser(skip_local=False)  # the browser's path, or None
    except Exception:  # an API change in choreographer: let kaleido find (or not find) it
        found = True
    if not found:
        raise RuntimeError(
            "no Chrome/Chromium found for kaleido: install it with `apt-get install chromium` "
            "(or `./run setup`), or set BROWSER_PATH"
        )
    kaleido.start_sync_server(silence_warnings=True)
    atexit.register(kaleido.stop_sync_server, silence_warnings=True)


def _to_png(fig, timeout: float) -> bytes:
    """``fig.to_image(format="png")`` with a time limit (a browser that dies under kaleido's server would
    otherwise block forever)."""
    import threading

    out: dict = {}

    def work():
        import warnings

        try:
            with warnings.catch_warnings():  # the caller's thread only waits meanwhile
                warnings.filterwarnings("ignore", message="The kopts argument is ignored", category=UserWarning)
                out["png"] = fig.to_image(format="png")
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            out["error"] = e

    t = threading.Thread(target=work, name="png-export", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"no image from kaleido after {timeout:.0f} s")
    if "error" in out:
        raise out["error"]
    return out["png"]


def _png_bytes(fig) -> bytes | None:
    """PNG of a plotly figure via kaleido (a persistent headless Chromium, started on the first call), or None
    where it cannot run (once per process, a one-line notice)."""
    global _PNG_OK
    if _PNG_OK is False:
        return None
    try:
        if _PNG_OK is None:
            _start_png_server()
        data = _to_png(fig, PNG_TIMEOUT_S)
        if not data.startswith(b"\x89PNG"):
            raise ValueError(f"kaleido returned {len(data)} bytes that are not a PNG")
        _PNG_OK = True
        return data
    except Exception as e:  # kaleido missing, no Chrome for kaleido >= 1, or the browser failed
        _PNG_OK = False
        msg = str(e).splitlines()[0][:160] if str(e) else ""
        print(f"note: PNG export skipped ({type(e).__name__}: {msg})")
        return None


def write_outputs(df, fig, out_dir: str | os.PathLike, name: str, *, png: bool = True) -> dict[str, Path]:
    """Write ``out_dir/name.csv`` (df), ``name.html`` (self-contained plotly) and ``name.png`` when an image
    exporter works and ``png`` (False skips the export: kaleido starts a browser, seconds per process); every
    write atomic. ``df`` or ``fig`` may be None. Returns {suffix: path}."""
    out = Path(out_dir)
    written = {}
    if df is not None:
        written["csv"] = atomic_write_bytes(out / f"{name}.csv", df.to_csv(index=False).encode())
    if fig is not None:
        buf = io.StringIO()
        fig.write_html(buf, include_plotlyjs=True, full_html=True)
        written["html"] = atomic_write_bytes(out / f"{name}.html", buf.getvalue().encode())
        image = _png_bytes(fig) if png else None
        if image is not None:
            written["png"] = atomic_write_bytes(out / f"{name}.png", image)
    return written
