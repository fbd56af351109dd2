"""Clean/corrupted pairs for activation patching: two closed task rows with the same question whose answers
(and first answer tokens) differ, the corrupted clip the one whose other class attributes differ least.

API: :func:`make_pairs`; :class:`PatchingError` (bad patching request) lives here, the lowest patching module."""

from __future__ import annotations

import random

import pandas as pd


class PatchingError(ValueError):
    """Bad patching request (the message names the fix)."""


def _first_answer_token(dataset, row) -> int:
    from workbench.data.dataset import encode_example

    if hasattr(dataset, "encode_row"):  # a released model's dataset: its own chat template
        enc = dataset.encode_row(row["question"], str(row["answer"]))
    else:
        enc = encode_example(
            dataset.tokenizer, row["question"], str(row["answer"]), dataset.system_prompt, dataset.slot
        )
    if enc["prompt_len"] >= len(enc["input_ids"]):
        raise PatchingError(f"row {row.get('row_id')!r} has an empty answer")
    return int(enc["input_ids"][enc["prompt_len"]])


_PAIR_COLUMNS = [
    "clean",
    "corrupted",
    "attribute",
    "task",
    "question",
    "clean_answer",
    "corrupted_answer",
    "clean_token",
    "corrupted_token",
    "n_other_diffs",
]


def _question_groups(rows, closed, attribute) -> dict[tuple, list[int]]:
    """(task, attribute, question) -> indices of the closed rows that ask it (only ``attribute``'s if given)."""
    groups: dict[tuple, list[int]] = {}
    for i in closed:
        r = rows[i]
        if attribute is not None and str(r.get("attribute")) != attribute:
            continue
        groups.setdefault((r.get("task"), str(r.get("attribute")), r["question"]), []).append(i)
    return groups


def _n_other_diffs(rows, class_keys, i, j, att) -> int:
    """How many class attributes other than ``att`` rows i and j both have and differ in."""
    return sum(
        1
        for k in class_keys
        if k != att
        and k in rows[i]
        and k in rows[j]
        and rows[i][k] is not None
        and rows[j][k] is not None
        and rows[i][k] != rows[j][k]
    )


def _pair_group(key, idx, rows, tok, n_diff, out) -> None:
    """Append to ``out`` the pairs of one question group ``idx`` (already shuffled), each row used once."""
    used: set[int] = set()
    for i in idx:
        if i in used:
            continue
        cands = [
            j
            for j in idx
            if j != i and j not in used and str(rows[j]["answer"]) != str(rows[i]["answer"]) and tok(j) != tok(i)
        ]
        if not cands:
            continue
        j = min(cands, key=lambda j: n_diff(i, j, key[1]))
        used.update((i, j))
        out.append(
            {
                "clean": i,
                "corrupted": j,
                "attribute": key[1],
                "task": key[0],
                "question": key[2],
                "clean_answer": str(rows[i]["answer"]),
                "corrupted_answer": str(rows[j]["answer"]),
                "clean_token": tok(i),
                "corrupted_token": tok(j),
                "n_other_diffs": n_diff(i, j, key[1]),
            }
        )


def make_pairs(
    dataset,
    attribute: str | None = None,
    max_pairs: int | None = None,
    seed: int = 0,
    answer_options: dict | None = None,
) -> pd.DataFrame:
    """Clean/corrupted pairs of row indices: columns ``clean, corrupted, attribute, task, question,
    clean_answer, corrupted_answer, clean_token, corrupted_token, n_other_diffs``. Each row is used once."""
    rows = dataset.rows
    closed = [i for i, r in enumerate(rows) if r.get("closed")]
    attrs = sorted({str(rows[i].get("attribute")) for i in closed})
    if attribute is not None and attribute not in attrs:
        raise PatchingError(f"no closed task rows ask about attribute {attribute!r}; attributes in this data: {attrs}")
    if answer_options is None:
        from workbench.evaluation.evaluator import load_answer_options

        answer_options = load_answer_options(dataset.root) if getattr(dataset, "root", None) else {}
    class_keys = sorted(answer_options)
    groups = _question_groups(rows, closed, attribute)
    rng = random.Random(seed)
    tok_cache: dict[int, int] = {}

    def tok(i):
        if i not in tok_cache:
            tok_cache[i] = _first_answer_token(dataset, rows[i])
        return tok_cache[i]

    def n_diff(i, j, att):
        return _n_other_diffs(rows, class_keys, i, j, att)

    out: list[dict] = []
    for key in sorted(groups, key=str):
        idx = groups[key][:]
        rng.shuffle(idx)
        _pair_group(key, idx, rows, tok, n_diff, out)
    pairs = pd.DataFrame(out, columns=_PAIR_COLUMNS)
    if not len(pairs):
        raise PatchingError(
            "no clean/corrupted pairs: need closed rows with the same question but answers whose "
            f"first tokens differ{' for attribute ' + repr(attribute) if attribute else ''}; "
            "analyse more rows (--n) or another --attribute"
        )
    if max_pairs is not None and len(pairs) > max_pairs:
        pairs = pairs.sample(n=max_pairs, random_state=seed).sort_index().reset_index(drop=True)
    return pairs
