"""What identifies a run's config: the keys that change its numbers (:func:`semantic_dict`;
:data:`NON_SEMANTIC_TRAINING_KEYS` do not), their hash (:func:`config_hash`, the resume check), the key paths where two differ (:func:`config_diff`),
and the JSON form of a parsed config (:func:`to_jsonable`)."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

#: training keys that do not change the numbers a run produces (excluded from the resume hash)
NON_SEMANTIC_TRAINING_KEYS = {"checkpoint_every", "log_every", "keep_checkpoints"}


def _semantic(raw: dict) -> dict:
    raw = copy.deepcopy(raw)
    tr = raw.get("training", {})
    for k in NON_SEMANTIC_TRAINING_KEYS:
        tr.pop(k, None)
    raw.pop("description", None)
    raw.pop("eval", None)
    _hash_spelling_of_encoders(raw.get("model"))
    return raw


def _hash_spelling_of_encoders(model: Any) -> None:
    """Spell every encoder name in ``model`` (a preset's model dict, changed in place) as hashes have always spelled
    it: a name and its old alias (yamnet / general, crepe / pitch) run the same numbers, so they hash the same,
    and runs hashed before the encoders were named by model still match (``--resume``, reuse of finished runs)."""
    from workbench.encoders import ENCODER_ALIASES

    old_spelling = {new: old for old, new in ENCODER_ALIASES.items()}
    for enc in (model or {}).get("encoders", []) if isinstance(model, dict) else []:
        if isinstance(enc, dict) and enc.get("name") in old_spelling:
            enc["name"] = old_spelling[enc["name"]]


def config_hash(raw: dict, seed: int | None = None) -> str:
    """sha256 (16 hex) of everything in a preset that changes the numbers of a run."""
    sem = _semantic(raw)
    if seed is not None:
        sem.setdefault("training", {})["seed"] = int(seed)
    blob = json.dumps(sem, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Key paths where two (semantic) preset dicts differ: ``['training.stages[0].lr: 0.001 -> 0.002']``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            p = f"{prefix}.{k}" if prefix else str(k)
            if k not in a:
                out.append(f"{p}: (absent) -> {b[k]!r}")
            elif k not in b:
                out.append(f"{p}: {a[k]!r} -> (absent)")
            else:
                out += config_diff(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += config_diff(x, y, f"{prefix}[{i}]")
        return out
    return [] if a == b else [f"{prefix}: {a!r} -> {b!r}"]


def semantic_dict(raw: dict) -> dict:
    return _semantic(raw)


def to_jsonable(obj):
    if hasattr(obj, "__dataclass_fields__"):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
