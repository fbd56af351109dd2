"""The one reader of answers CSVs (``answers.csv`` written by :mod:`workbench.evaluation.evaluator`) and the one
rule that reads true/false from them; per-clip scores of an answers table.

An answers table has one row per task row: ``row_id, file_name, task, attribute, question, answer, prediction,
correct, closed`` (:data:`workbench.evaluation.metrics.ANSWER_COLUMNS`). ``closed`` says whether the row has one
right answer (classification, short QA); ``correct`` is true/false on closed rows and empty on open ones. The
evaluator writes ``True``/``False``/empty; other tools (spreadsheets, older versions, hand edits) write ``1``/``0``,
``1.0``/``0.0`` or ``yes``/``no``: every spelling in :data:`TRUE_SPELLINGS` and :data:`FALSE_SPELLINGS` is read the
same way, in any case and with surrounding spaces; empty (or NaN) is missing; anything else is an error that names
the file, the column and the values. Used by :mod:`workbench.claims.compare`, :mod:`workbench.claims.seeds`,
:mod:`workbench.claims.layer_curve` and :func:`workbench.evaluation.metrics.mark_correct`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

__all__ = [
    "TRUE_SPELLINGS",
    "FALSE_SPELLINGS",
    "AnswersError",
    "parse_bool",
    "closed_rows",
    "read_answers",
    "clip_scores",
]

#: how a true / false value may be written in an answers CSV (compared lower-cased and stripped)
TRUE_SPELLINGS = ("true", "1", "1.0", "yes")
FALSE_SPELLINGS = ("false", "0", "0.0", "no")
#: columns read as text, whatever they look like (a row id of digits, a prediction "1", an answer "NA")
TEXT_COLUMNS = ("row_id", "file_name", "task", "attribute", "question", "answer", "prediction")
CLIP_SCORE_COLUMNS = ["clip", "n", "correct"]


class AnswersError(ValueError):
    """An answers CSV that cannot be read (message names the file and the fix)."""


def _spelling(v) -> bool | None:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    s = str(v).strip().lower()
    if s == "":
        return None
    if s in TRUE_SPELLINGS:
        return True
    if s in FALSE_SPELLINGS:
        return False
    raise KeyError(s)


def parse_bool(values: pd.Series, column: str = "", source: str | os.PathLike = "") -> pd.Series:
    """``values`` (strings, bools or numbers) as a nullable boolean Series (same index): the spellings of
    :data:`TRUE_SPELLINGS` / :data:`FALSE_SPELLINGS`, empty or NaN as ``<NA>``; any other value raises
    :class:`AnswersError` naming ``source`` and ``column``."""
    if values.dtype == bool:
        return values.astype("boolean")
    try:
        return values.map(_spelling).astype("boolean")
    except KeyError:
        bad = sorted(
            {
                str(v)
                for v in values
                if not pd.isna(v) and str(v).strip().lower() not in ("", *TRUE_SPELLINGS, *FALSE_SPELLINGS)
            }
        )
        raise AnswersError(
            f"{source or 'answers table'}: column {column or values.name!r} has value(s) {bad[:5]} that "
            f"are neither true ({', '.join(TRUE_SPELLINGS)}) nor false ({', '.join(FALSE_SPELLINGS)}) "
            "nor empty; re-run `python -m workbench.evaluate` to rewrite it"
        ) from None


def closed_rows(answers: pd.DataFrame, source: str | os.PathLike = "") -> pd.Series:
    """Bool Series: which rows are closed (``closed`` read with :func:`parse_bool`, missing as not closed; without a
    ``closed`` column: the rows whose ``correct`` is set)."""
    if "closed" in answers:
        return parse_bool(answers["closed"], "closed", source).fillna(False).astype(bool)
    return parse_bool(answers["correct"], "correct", source).notna()


def read_answers(path: str | os.PathLike, required: tuple[str, ...] = ("file_name", "correct")) -> pd.DataFrame:
    """An answers CSV with :data:`TEXT_COLUMNS` as text (empty cells kept as ``""``), ``correct`` as nullable
    booleans and ``closed`` as bools (:func:`closed_rows`). Raises :class:`AnswersError` for an unreadable file or a
    missing ``required`` column."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise AnswersError(f"{path}: not a readable CSV ({e}); re-run workbench.evaluate to rewrite it") from e
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise AnswersError(
            f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(df.columns)}); an answers "
            f"CSV needs {', '.join(required)}: re-run `python -m workbench.evaluate` to rewrite it"
        )
    if "correct" in df:
        df["correct"] = parse_bool(df["correct"], "correct", path)
    if "closed" in df or "correct" in df:
        df["closed"] = closed_rows(df, path)
    return df


def clip_scores(answers: pd.DataFrame) -> pd.DataFrame:
    """Closed rows of one answers table (as :func:`read_answers` returns it) summed per clip: ``clip, n, correct``
    (clip = ``file_name``, in sorted order; ``correct`` counts the rows answered right)."""
    closed = closed_rows(answers)
    a = answers[closed]
    correct = parse_bool(a["correct"], "correct").fillna(False).astype(int)
    g = correct.groupby(a["file_name"].astype(str))
    return pd.DataFrame({"clip": g.size().index, "n": g.size().to_numpy(), "correct": g.sum().to_numpy()})
