"""Which split each clip of an audiofolder goes to: at random by clip with seeded largest-remainder cuts
(:func:`random_assignment`) or by a metadata column, optionally grouped by a value map (:func:`column_assignment`,
:func:`parse_map`); :class:`SplitError` for bad arguments or data. Used by :mod:`workbench.data.split`."""

from __future__ import annotations

import json
import math
import random

from workbench.data.audiofolder import METADATA


class SplitError(ValueError):
    """Bad arguments or data for a split (the message says what to change)."""


def _value_key(v) -> str:
    """A metadata value as text: strings as they are, anything else as JSON (``1``, ``true``, ``null``)."""
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _check_name(name: str, what: str) -> str:
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or name.startswith(".")
        or "\0" in name
    ):
        raise SplitError(f"{what} {name!r} cannot be a folder name (non-empty, no '/', not starting with '.')")
    return name


def random_assignment(file_names: list[str], fractions, names, seed: int = 0) -> dict[str, str]:
    """``{file_name: split name}``: shuffle the sorted clips with ``seed`` and cut them by ``fractions``.

    Counts use largest-remainder rounding (they sum to the number of clips). Raises :class:`SplitError` on
    fractions that are negative, do not sum to 1, do not match ``names``, or leave a split empty.
    """
    fractions, names = [float(f) for f in fractions], list(names)
    if len(fractions) != len(names):
        raise SplitError(
            f"{len(fractions)} fractions {fractions} for {len(names)} split names {names}; give one fraction per name"
        )
    if any(not math.isfinite(f) or f < 0 for f in fractions):
        raise SplitError(f"fractions must be non-negative numbers, got {fractions}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise SplitError(f"fractions {fractions} sum to {sum(fractions):g}, not 1")
    n = len(file_names)
    exact = [f * n for f in fractions]
    counts = [int(math.floor(x)) for x in exact]
    by_remainder = sorted(range(len(names)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    empty = [nm for nm, c in zip(names, counts) if c == 0]
    if empty:
        raise SplitError(
            f"split(s) {empty} would get no clips ({n} clips, fractions {fractions}); use more clips, "
            f"larger fractions, or fewer names (e.g. --fractions 0.9,0.1 for train,val)"
        )
    order = sorted(file_names)
    random.Random(seed).shuffle(order)
    out, start = {}, 0
    for nm, c in zip(names, counts):
        for fn in order[start : start + c]:
            out[fn] = nm
        start += c
    return out


def column_assignment(
    clips: list[dict], by: str, mapping: dict[str, str] | None = None, where: str = METADATA
) -> dict[str, str]:
    """``{file_name: split name}`` from the metadata column ``by`` (through ``mapping`` of value text -> name,
    if given). Raises :class:`SplitError` for an unknown column, clips without a value, or unmapped values."""
    columns = sorted({k for c in clips for k in c})
    if not any(by in c for c in clips):
        raise SplitError(f"{where}: no column {by!r}; available columns: {', '.join(columns)}")
    missing = [c["file_name"] for c in clips if c.get(by) is None]
    if missing:
        raise SplitError(
            f"{where}: {len(missing)} clip(s) have no value in column {by!r} (first: {missing[0]!r}); "
            f"fill the column, or split at random (leave out --by)"
        )
    out = {}
    unmapped: set[str] = set()
    for c in clips:
        v = c[by]
        if isinstance(v, (dict, list)):
            raise SplitError(
                f"{where}: column {by!r} holds a {type(v).__name__} for {c['file_name']!r}; "
                f"--by needs a column of single values"
            )
        key = _value_key(v)
        if mapping is not None:
            if key not in mapping:
                unmapped.add(key)
                continue
            out[c["file_name"]] = mapping[key]
        else:
            out[c["file_name"]] = _check_name(key, f"value of column {by!r}")
    if unmapped:
        raise SplitError(
            f"column {by!r} has value(s) {sorted(unmapped)} that --map does not name; mapped: {sorted(mapping)}"
        )
    return out


def parse_map(items) -> dict[str, str]:
    """``["1,2,3=train", "4=val", "5=test"]`` -> ``{"1": "train", "2": "train", ..., "5": "test"}``."""
    mapping: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise SplitError(f"--map item {item!r}: expected VALUES=NAME, e.g. 1,2,3=train")
        values, name = item.rsplit("=", 1)
        name = _check_name(name.strip(), f"--map item {item!r}: split name")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise SplitError(f"--map item {item!r}: no values before '='")
        for v in vals:
            if v in mapping and mapping[v] != name:
                raise SplitError(f"--map: value {v!r} is mapped to both {mapping[v]!r} and {name!r}")
            mapping[v] = name
    return mapping
