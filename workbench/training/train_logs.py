"""The run's CSV logs: the columns of ``train_log.csv`` (:data:`LOG_COLUMNS`, one row per optimizer step) and
``val_log.csv`` (:data:`VAL_COLUMNS`), the append-only writer that keeps them exact across a resume (:class:`CsvLog`)
and :func:`read_log`."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from workbench.common.paths import atomic_write_bytes

LOG_COLUMNS = [
    "step",
    "stage",
    "stage_name",
    "stage_step",
    "epoch",
    "loss",
    "lr",
    "grad_norm",
    "tokens",
    "label_tokens",
]
VAL_COLUMNS = ["step", "stage", "stage_name", "val_loss", "val_batches"]


def read_log(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``train_log.csv`` as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fmt(x) -> str:
    return repr(float(x)) if isinstance(x, float) else str(x)


class CsvLog:
    """Append-only CSV, flushed + fsynced per row. On resume, rows after the checkpoint's step are dropped."""

    def __init__(self, path: Path, columns: list[str], resume_step: int | None, inclusive: bool = True):
        self.path, self.columns = path, columns
        if resume_step is not None and path.is_file():
            keep = [
                r
                for r in read_log(path)
                if int(r["step"]) < resume_step or (inclusive and int(r["step"]) == resume_step)
            ]
            buf = io.StringIO()
            w = csv.DictWriter(buf, columns, lineterminator="\n")
            w.writeheader()
            w.writerows(keep)
            atomic_write_bytes(path, buf.getvalue().encode())
        else:
            path.write_text(",".join(columns) + "\n")
        self.f = open(path, "a", newline="")
        self.w = csv.DictWriter(self.f, columns, lineterminator="\n")

    def write(self, row: dict) -> None:
        self.w.writerow({k: _fmt(row[k]) for k in self.columns})
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()
