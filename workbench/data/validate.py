"""Validate an audiofolder (metadata.jsonl + tasks.jsonl + audio files) and load its good rows.

CLI::

    python -m workbench.data.validate DIR [--skip-bad] [--no-audio] [--report PATH]

Checks, each reported as an error naming the file and line (or, with ``--skip-bad``, listed in
``bad_rows.jsonl`` and skipped; the tasks of a skipped clip are skipped and listed too):

- a line that is not UTF-8, not JSON, or lacks ``file_name``; a duplicate ``file_name``;
- a ``file_name`` that is absolute/escapes the folder, is missing, has an unsupported extension;
- audio that does not decode, is zero-length/NaN (:func:`workbench.common.audio_io.load_audio`), or a WAV/AIFF whose
  header declares more frames than the file holds (truncated: :func:`workbench.common.audio_io.check_complete`, the
  reason names both frame counts);
- a task row without file_name/task/question/answer, or naming a clip that is not in the metadata.

Exit status: 0 when every row is good (or all bad rows were skipped with --skip-bad), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from workbench.common.audio_io import AudioError, check_complete, load_audio
from workbench.data.audiofolder import BAD_ROWS, METADATA, TASKS, BadRow, BadRows, DataError, read_jsonl

__all__ = ["AUDIO_EXTENSIONS", "ValidationReport", "check_audio_file", "load_audiofolder", "main"]

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".opus"}
TASK_REQUIRED = ("file_name", "task", "question", "answer")


@dataclass
class ValidationReport:
    """Result of :func:`load_audiofolder`.

    ``clips``: good metadata rows (dicts, in file order, each with ``_line``); ``tasks``: good task rows;
    ``bad``: skipped rows; ``report_path``: where ``bad`` was written (with skip_bad).
    """

    root: Path
    clips: list[dict] = field(default_factory=list)
    tasks: list[dict] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    report_path: Path | None = None

    def summary(self) -> str:
        return f"{self.root}: {len(self.clips)} clips, {len(self.tasks)} task rows OK; {len(self.bad)} bad rows" + (
            f" (listed in {self.report_path})" if self.report_path else ""
        )


def check_audio_file(path: str | os.PathLike, decode: bool = True) -> None:
    """Raise :class:`AudioError` when ``path`` is missing, has an unsupported extension, is a truncated
    WAV/AIFF, or (``decode=True``) does not decode to finite, non-empty audio."""
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"{p}: audio file not found")
    if p.suffix.lower() not in AUDIO_EXTENSIONS:
        raise AudioError(f"{p}: unsupported audio format {p.suffix!r}; supported: {sorted(AUDIO_EXTENSIONS)}")
    check_complete(p)
    if decode:
        load_audio(p)


def load_audiofolder(
    root: str | os.PathLike,
    skip_bad: bool = False,
    check_audio: bool = True,
    report_path: str | os.PathLike | None = None,
) -> ValidationReport:
    """Read and validate ``root/metadata.jsonl`` (+ ``tasks.jsonl`` if present) and the audio files.

    Returns a :class:`ValidationReport`. ``skip_bad=False``: the first bad row raises :class:`DataError`
    (message: file, line, file_name, reason). ``skip_bad=True``: bad rows are skipped and written to
    ``report_path`` (default ``root/bad_rows.jsonl``; written even when empty).
    """
    root = Path(root)
    if not (root / METADATA).exists():
        raise DataError(f"{root}: no {METADATA}; not an audiofolder (expected {METADATA} + audio files)")
    bad = BadRows(skip_bad=skip_bad)
    meta_path = root / METADATA
    rep = ValidationReport(root=root)
    seen: dict[str, int] = {}
    for line, row in read_jsonl(meta_path, bad, required=("file_name",)):
        fn = row["file_name"]
        if not isinstance(fn, str):
            bad.add(meta_path, line, None, f"file_name must be a string, got {type(fn).__name__}")
            continue
        if fn in seen:
            bad.add(meta_path, line, fn, f"duplicate file_name (first on line {seen[fn]})")
            continue
        seen[fn] = line
        p = Path(fn)
        if p.is_absolute() or ".." in p.parts:
            bad.add(meta_path, line, fn, "file_name must be a relative path inside the dataset folder")
            continue
        try:
            check_audio_file(root / p, decode=check_audio)
        except AudioError as e:
            bad.add(meta_path, line, fn, str(e))
            continue
        rep.clips.append({**row, "_line": line})
    good = {c["file_name"] for c in rep.clips}
    tasks_path = root / TASKS
    if tasks_path.exists():
        for line, row in read_jsonl(tasks_path, bad, required=TASK_REQUIRED):
            fn = row["file_name"]
            if fn not in good:
                why = "names a clip that was skipped as bad" if fn in seen else f"names a clip not in {METADATA}"
                bad.add(tasks_path, line, fn, why)
                continue
            rep.tasks.append({**row, "_line": line})
    rep.bad = bad.rows
    if skip_bad:
        rep.report_path = bad.write(report_path or root / BAD_ROWS)
    return rep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m workbench.data.validate", description="Validate an audiofolder dataset."
    )
    p.add_argument("root")
    p.add_argument("--skip-bad", action="store_true", help=f"skip bad rows and list them in {BAD_ROWS}")
    p.add_argument("--no-audio", action="store_true", help="do not decode audio (existence/header checks only)")
    p.add_argument("--report", default=None, help=f"where to write the bad-row report (default ROOT/{BAD_ROWS})")
    a = p.parse_args(argv)
    try:
        rep = load_audiofolder(a.root, skip_bad=a.skip_bad, check_audio=not a.no_audio, report_path=a.report)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(rep.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
