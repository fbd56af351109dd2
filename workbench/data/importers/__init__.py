"""Importers from real corpora (as their distributions ship) to the audiofolder format.

CLI::

    python -m workbench.data.importers esc50     --src DIR --out DIR [--skip-bad] [--link] [--no-audio-check]
    python -m workbench.data.importers audiocaps --src DIR --out DIR [...]
    python -m workbench.data.importers clotho    --src DIR --out DIR [...]
    python -m workbench.data.importers openaqa   --src FILE_OR_DIR --out DIR [--audio-root DIR] [...]
"""

from workbench.data.importers.captions import import_audiocaps, import_clotho
from workbench.data.importers.esc50 import import_esc50
from workbench.data.importers.openaqa import import_openaqa

__all__ = ["import_esc50", "import_audiocaps", "import_clotho", "import_openaqa", "IMPORTERS", "main"]

IMPORTERS = {"esc50": import_esc50, "audiocaps": import_audiocaps, "clotho": import_clotho, "openaqa": import_openaqa}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from workbench.data.audiofolder import DataError

    p = argparse.ArgumentParser(
        prog="python -m workbench.data.importers", description="Import a corpus as an audiofolder."
    )
    p.add_argument("corpus", choices=list(IMPORTERS))
    p.add_argument("--src", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--audio-root", default=None, help="openaqa: where audio_id paths are resolved")
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows, listing them in OUT/bad_rows.jsonl")
    p.add_argument("--link", action="store_true", help="symlink audio instead of copying")
    p.add_argument("--no-audio-check", action="store_true", help="do not decode audio (header checks only)")
    a = p.parse_args(argv)
    kw = {"skip_bad": a.skip_bad, "link": a.link, "check_audio": not a.no_audio_check}
    if a.corpus == "openaqa":
        kw["audio_root"] = a.audio_root
    try:
        out = IMPORTERS[a.corpus](a.src, a.out, **kw)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0
