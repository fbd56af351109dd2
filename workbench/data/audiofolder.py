"""The on-disk dataset format (Hugging Face "audiofolder" convention) and strict JSONL I/O.

A dataset folder holds::

    metadata.jsonl        one JSON object per clip: "file_name" (path relative to the folder) + attributes
    tasks.jsonl           one JSON object per task row: row_id, file_name, task, attribute, question, answer, closed
    answer_options.json   attribute -> list of valid closed-ended answers (chance = 1 / len)
    dataset_info.json     how it was made (generator/importer, seed, preset, split, counts)
    holdout.json          (synthetic) held-out attribute combinations of the compositional split
    bad_rows.jsonl        (only with skip_bad) every skipped row: {"file", "line", "file_name", "error"}
    audio/...             the audio files

Reading is strict: a non-UTF-8 line, invalid JSON, a missing/duplicate ``file_name`` raises
:class:`DataError` naming the file and line, unless ``skip_bad`` collects it instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DataError",
    "BadRow",
    "BadRows",
    "METADATA",
    "TASKS",
    "require_tasks",
    "ANSWER_OPTIONS_FILE",
    "BAD_ROWS",
    "write_jsonl",
    "read_jsonl",
    "write_json",
]

METADATA = "metadata.jsonl"
TASKS = "tasks.jsonl"
ANSWER_OPTIONS_FILE = "answer_options.json"
BAD_ROWS = "bad_rows.jsonl"


def require_tasks(root: str | os.PathLike) -> Path:
    """``root/tasks.jsonl``, or a :class:`DataError` naming it: a task dataset (what the model is asked about each
    clip) needs one; ``metadata.jsonl`` alone describes the clips, not the questions."""
    path = Path(root) / TASKS
    if not path.is_file():
        raise DataError(
            f"{path}: file not found. A task dataset needs {TASKS} next to {METADATA} (one JSON object "
            "per question: file_name, task, question, answer, ...; see docs/guide.md, 'Your own data'); "
            "import a dataset with python -m workbench.data.importers or make synthetic rows with "
            "python -m workbench.data.synth"
        )
    return path


class DataError(ValueError):
    """A dataset row or file that cannot be used; the message names the file and line."""


@dataclass
class BadRow:
    """One skipped row: ``file`` (which jsonl/csv), 1-based ``line``, ``file_name`` (audio, if known), ``error``."""

    file: str
    line: int | None
    file_name: str | None
    error: str

    def as_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "file_name": self.file_name, "error": self.error}


@dataclass
class BadRows:
    """Collects bad rows. ``skip_bad=False``: :meth:`add` raises :class:`DataError` at once."""

    skip_bad: bool = False
    rows: list[BadRow] = field(default_factory=list)

    def add(self, file: str | os.PathLike, line: int | None, file_name: str | None, error: str) -> None:
        where = f"{file}" + (f" line {line}" if line is not None else "")
        what = f" (file_name {file_name!r})" if file_name else ""
        if not self.skip_bad:
            raise DataError(
                f"{where}{what}: {error.rstrip('. ')}. Fix or remove the row, or pass skip_bad=True / --skip-bad "
                f"to skip it and list it in {BAD_ROWS}."
            )
        self.rows.append(BadRow(str(file), line, file_name, error))

    def write(self, path: str | os.PathLike) -> Path:
        """Write the report (one JSON object per skipped row; an empty file when none)."""
        return write_jsonl(path, [r.as_dict() for r in self.rows])


def write_jsonl(path: str | os.PathLike, rows) -> Path:
    """Write dicts as UTF-8 JSON lines (keys in insertion order, non-ASCII kept); atomic replace."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write pretty JSON (UTF-8, sorted by insertion order) with a trailing newline."""
    path = Path(path)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_jsonl(
    path: str | os.PathLike, bad: BadRows | None = None, required: tuple[str, ...] = ()
) -> list[tuple[int, dict]]:
    """Read a JSONL file strictly; returns ``[(line_number, obj), ...]`` (1-based; blank lines ignored).

    Each line must be UTF-8, a JSON object, and hold the ``required`` keys; otherwise ``bad.add`` raises
    (or records, with ``skip_bad``). The file itself missing raises :class:`DataError`.
    """
    path = Path(path)
    bad = bad if bad is not None else BadRows()
    if not path.exists():
        raise DataError(f"{path}: file not found")
    out = []
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                bad.add(path, i, None, f"not valid UTF-8 ({e}); re-encode the file as UTF-8")
                continue
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                bad.add(path, i, None, f"invalid JSON ({e})")
                continue
            if not isinstance(obj, dict):
                bad.add(path, i, None, f"expected a JSON object, got {type(obj).__name__}")
                continue
            missing = [k for k in required if k not in obj or obj[k] in (None, "")]
            if missing:
                bad.add(path, i, obj.get("file_name"), f"missing required field(s) {missing}")
                continue
            out.append((i, obj))
    return out
