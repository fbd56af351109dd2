"""Splits: disjoint per-split seeds and the compositional hold-out.

Every clip's random stream is ``SeedSequence([seed, SPLIT_CODES[split], index, attempt])``, so train, val,
test and test_comp never share a stream even with the same ``--seed``. The compositional split holds
out attribute *combinations* (each value is seen in training, the pair never is): train/val/test clips
never match a combination in :data:`HOLDOUT`; every ``test_comp`` clip matches exactly the one it was
forced to.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["SPLITS", "SPLIT_CODES", "HOLDOUT", "holdout_for_preset", "matching_holdouts", "write_holdout_json"]

SPLITS = ["train", "val", "test", "test_comp"]
SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "test_comp": 3}

# Each entry: attribute -> value; a clip matches when all its attributes equal these values.
HOLDOUT: list[dict[str, str]] = [
    {"category": "music", "instrument": "violin", "pitch_class": "low"},
    {"category": "music", "instrument": "piano", "pitch_class": "high"},
    {"category": "music", "instrument": "trumpet", "pitch_class": "medium"},
    {"category": "tone", "loudness_class": "quiet"},
    {"category": "speech", "loudness_class": "quiet"},
    {"category": "buzz", "loudness_class": "loud"},
    {"category": "chirp", "direction": "down", "loudness_class": "loud"},
]


def holdout_for_preset(categories: list[str]) -> list[dict[str, str]]:
    """The hold-out combinations whose category the preset generates."""
    return [h for h in HOLDOUT if h["category"] in categories]


def matching_holdouts(row: dict) -> list[dict[str, str]]:
    """All :data:`HOLDOUT` combinations that a metadata row (dict of attribute columns) matches."""
    return [h for h in HOLDOUT if all(row.get(k) == v for k, v in h.items())]


def write_holdout_json(path: str | Path, categories: list[str]) -> None:
    """Write ``{"holdout": [...], "rule": ...}`` describing the held-out combinations."""
    Path(path).write_text(
        json.dumps(
            {
                "holdout": holdout_for_preset(categories),
                "rule": "train/val/test clips never match any combination; each test_comp clip matches one",
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
