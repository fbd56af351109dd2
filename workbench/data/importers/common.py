"""Shared pieces of the corpus importers: strict CSV reading and the audiofolder writer.

Every importer turns a corpus (laid out as its distribution ships) into the audiofolder format of
:mod:`workbench.data.audiofolder`: audio copied (or symlinked) under ``out/audio/``, ``metadata.jsonl``,
``tasks.jsonl``, ``answer_options.json``, ``dataset_info.json`` and, with ``skip_bad``, ``bad_rows.jsonl``.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

from workbench.common.audio_io import AudioError
from workbench.data.audiofolder import (
    ANSWER_OPTIONS_FILE,
    BAD_ROWS,
    METADATA,
    TASKS,
    BadRows,
    DataError,
    write_json,
    write_jsonl,
)
from workbench.data.validate import AUDIO_EXTENSIONS, check_audio_file

__all__ = ["read_csv", "index_audio", "ImportWriter"]


def read_csv(path: str | os.PathLike, bad: BadRows, required: tuple[str, ...] = ()) -> list[tuple[int, dict]]:
    """Read a CSV with a header strictly: ``[(line_number, row_dict), ...]`` (1-based physical lines).

    A line that is not UTF-8 (a BOM is accepted) goes to ``bad`` (raise, or skip with skip_bad); so does a
    row with fewer fields than the header. Missing ``required`` columns in the header raise DataError.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    good: list[tuple[int, str]] = []
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            if i == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                good.append((i, raw.decode("utf-8")))
            except UnicodeDecodeError as e:
                bad.add(path, i, None, f"not valid UTF-8 ({e}); re-encode the file as UTF-8")
    if not good:
        raise DataError(f"{path}: empty CSV (no header)")
    reader = csv.reader((t for _, t in good))
    header = next(reader)
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path} line {good[0][0]}: header lacks column(s) {missing} (has {header})")
    out = []
    for fields in reader:
        line = good[reader.line_num - 1][0]
        if not any(x.strip() for x in fields):
            continue
        if len(fields) < len(header):
            bad.add(path, line, None, f"expected {len(header)} fields, got {len(fields)}")
            continue
        out.append((line, dict(zip(header, fields))))
    return out


def index_audio(root: str | os.PathLike) -> dict[str, list[Path]]:
    """Every audio file under ``root`` (recursive), by file name and by stem: ``{name_or_stem: [paths]}``."""
    idx: dict[str, list[Path]] = {}
    for dirpath, _, files in os.walk(root):
        for fn in sorted(files):
            p = Path(dirpath) / fn
            if p.suffix.lower() in AUDIO_EXTENSIONS:
                idx.setdefault(fn, []).append(p)
                if p.stem != fn:
                    idx.setdefault(p.stem, []).append(p)
    return idx


class ImportWriter:
    """Collects clips and task rows, validates and copies audio, writes the audiofolder.

    ``add_clip`` returns False (row recorded as bad) when the source audio is missing or unusable and
    ``skip_bad`` is set; it raises :class:`DataError` naming ``where`` otherwise.
    """

    def __init__(
        self, out: str | os.PathLike, source: str, skip_bad: bool = False, link: bool = False, check_audio: bool = True
    ):
        self.out = Path(out)
        self.source, self.link, self.check_audio = source, link, check_audio
        self.bad = BadRows(skip_bad=skip_bad)
        self.clips: dict[str, dict] = {}
        self.tasks: list[dict] = []
        (self.out / "audio").mkdir(parents=True, exist_ok=True)

    def add_clip(self, src: Path | None, file_name: str, attrs: dict, where: tuple[str | Path, int | None]) -> bool:
        """Register clip ``file_name`` (relative to out) from ``src`` with attribute columns ``attrs``."""
        if file_name in self.clips:
            return True
        if src is None:
            self.bad.add(where[0], where[1], file_name, "audio file not found under the source folder")
            return False
        try:
            check_audio_file(src, decode=self.check_audio)
        except AudioError as e:
            self.bad.add(where[0], where[1], file_name, str(e))
            return False
        dst = self.out / file_name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if self.link:
            dst.symlink_to(Path(src).resolve())
        else:
            shutil.copyfile(src, dst)
        self.clips[file_name] = {"file_name": file_name, "source": self.source, **attrs}
        return True

    def add_task(self, file_name: str, task: str, attribute: str, question: str, answer: str, closed: bool) -> None:
        """Add a task row (``row_id`` assigned at write time)."""
        self.tasks.append(
            {
                "file_name": file_name,
                "task": task,
                "attribute": attribute,
                "question": question,
                "answer": str(answer),
                "closed": bool(closed),
            }
        )

    def finish(self, answer_options: dict[str, list[str]], info: dict) -> Path:
        """Write metadata.jsonl, tasks.jsonl (row_id = index), answer_options.json, dataset_info.json and,
        with skip_bad, bad_rows.jsonl. Returns the output folder."""
        tasks = [{"row_id": f"{self.source}-{i}", **t} for i, t in enumerate(self.tasks)]
        write_jsonl(self.out / METADATA, self.clips.values())
        write_jsonl(self.out / TASKS, tasks)
        write_json(self.out / ANSWER_OPTIONS_FILE, answer_options)
        write_json(
            self.out / "dataset_info.json",
            {
                "importer": f"workbench.data.importers.{self.source}",
                "n_clips": len(self.clips),
                "n_tasks": len(tasks),
                "n_bad_rows": len(self.bad.rows),
                **info,
            },
        )
        if self.bad.skip_bad:
            self.bad.write(self.out / BAD_ROWS)
        return self.out
