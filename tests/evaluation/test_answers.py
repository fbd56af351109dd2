"""workbench.evaluation.answers: the one answers-CSV reader and its true/false rule, fed every spelling found in
the committed answers CSVs and every spelling the three former readers accepted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from workbench.evaluation.answers import AnswersError, clip_scores, closed_rows, parse_bool, read_answers

ROOT = Path(__file__).resolve().parents[2]


def _committed_answers() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*answers.csv"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / p for p in out.stdout.split()]


def _committed_spellings(column: str) -> set[str]:
    """The distinct raw cells of ``column`` over every committed answers CSV (read as text, nothing converted)."""
    cells: set[str] = set()
    for p in _committed_answers():
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
        if column in df:
            cells |= set(df[column])
    return cells


@pytest.mark.parametrize("column", ["correct", "closed"])
def test_every_committed_spelling_is_read(column):
    """Every spelling in the committed CSVs maps to True / False / missing, by the words, not by our own code:
    the oracle is Python's notion of the word."""
    cells = _committed_spellings(column)
    assert cells, "no committed answers CSV has this column"
    want = {"true": True, "false": False, "": None}
    assert {c.strip().lower() for c in cells} <= set(want), f"new spelling in a committed CSV: {sorted(cells)}"
    got = parse_bool(pd.Series(sorted(cells), dtype=object), column)
    for cell, value in zip(sorted(cells), got):
        expected = want[cell.strip().lower()]
        assert pd.isna(value) if expected is None else (not pd.isna(value) and bool(value) == expected), (cell, value)


def test_all_spellings_the_former_readers_accepted():
    """compare.py accepted 1.0 and yes, seeds.py 1.0, metrics.py yes: all read alike now, in any case."""
    raw = pd.Series(
        [
            "True",
            "true",
            " TRUE ",
            "1",
            "1.0",
            "yes",
            "Yes",
            "False",
            "false",
            "0",
            "0.0",
            "no",
            "NO",
            "",
            None,
            float("nan"),
            True,
            False,
            1.0,
            0.0,
        ],
        dtype=object,
    )
    want = [True] * 7 + [False] * 6 + [None] * 3 + [True, False, True, False]
    got = parse_bool(raw, "correct").tolist()
    assert [None if pd.isna(g) else bool(g) for g in got] == want
    assert parse_bool(pd.Series([True, False]), "closed").tolist() == [True, False]  # bool columns pass through


def test_unknown_spelling_is_an_error_that_names_file_and_column(tmp_path):
    p = tmp_path / "answers.csv"
    pd.DataFrame({"file_name": ["a.wav", "b.wav"], "correct": ["True", "maybe"], "closed": ["True", "True"]}).to_csv(
        p, index=False
    )
    with pytest.raises(AnswersError, match=r"answers.csv: column 'correct' has value\(s\) \['maybe'\]"):
        read_answers(p)
    p.write_text("row_id,prediction\n1,x\n")
    with pytest.raises(AnswersError, match=r"missing column\(s\) file_name, correct.*workbench.evaluate"):
        read_answers(p)


def test_read_and_clip_scores_on_a_committed_run():
    """Per-clip sums against a count made with the csv module (no pandas, no code of ours)."""
    import csv

    path = ROOT / "results/checkpoints/baseline/eval/answers.csv"
    df = read_answers(path)
    assert pd.api.types.is_string_dtype(df["row_id"]) and df["closed"].dtype == bool
    assert str(df["correct"].dtype) == "boolean"
    scores = clip_scores(df)
    counts: dict[str, list[int]] = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["closed"] == "True":
                c = counts.setdefault(r["file_name"], [0, 0])
                c[0] += 1
                c[1] += r["correct"] == "True"
    assert list(scores["clip"]) == sorted(counts)
    assert [[int(n), int(k)] for n, k in zip(scores["n"], scores["correct"])] == [counts[c] for c in sorted(counts)]
    assert int(closed_rows(df).sum()) == sum(n for n, _ in counts.values())


def test_closed_defaults_to_rows_with_a_correct_value():
    df = pd.DataFrame({"file_name": ["a", "a", "b"], "correct": ["yes", "", "0"]})
    assert closed_rows(df).tolist() == [True, False, True]
    assert clip_scores(df).to_dict("list") == {"clip": ["a", "b"], "n": [1, 1], "correct": [1, 0]}
