"""Atomic training checkpoints.

Layout under ``OUT/checkpoints/``::

    step-000050/
        model/                 model.save_pretrained(...) (config.json + model.safetensors, trainable parts)
        optimizer.pt           optimizer.state_dict()
        scheduler.pt           lr_scheduler.state_dict()
        rng-rank{r}.pt         python / numpy / torch (CPU + CUDA) RNG states of process r
        trainer_state.json     global step, stage index + step, data position, config hash, ... (written last)
    latest                     text: "step-000050" (written atomically, after the folder is in place)

A checkpoint is written into ``OUT/checkpoints/.tmp-step-XXXXXX-<pid>/`` and moved into place with one
``os.replace``; ``latest`` is replaced only afterwards. A crash at any point leaves the previous checkpoint
and the previous ``latest`` intact; leftover ``.tmp-*`` folders are removed at the next start.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from workbench.common.paths import atomic_write_bytes, replace_dir

__all__ = [
    "CheckpointError",
    "rng_state",
    "set_rng_state",
    "write_checkpoint",
    "find_latest",
    "read_trainer_state",
    "clean_tmp",
    "STATE_FILE",
]

STATE_FILE = "trainer_state.json"
LATEST = "latest"


class CheckpointError(RuntimeError):
    """No usable checkpoint, or one that does not match the run."""


def rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    for p in sorted([root, *[q for q in root.rglob("*") if q.is_dir()]]):
        _fsync_dir(p)


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def tmp_dir_for(ckpt_root: Path, step: int) -> Path:
    return ckpt_root / f".tmp-{step_name(step)}-{os.getpid()}"


def clean_tmp(ckpt_root: Path) -> None:
    """Remove leftovers of interrupted checkpoint writes."""
    if ckpt_root.is_dir():
        for p in ckpt_root.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in ckpt_root.glob(".old-*"):
            shutil.rmtree(p, ignore_errors=True)


def is_complete(ckpt: Path) -> bool:
    f = ckpt / STATE_FILE
    if not f.is_file():
        return False
    try:
        st = json.loads(f.read_text())
    except (OSError, ValueError):
        return False
    return all((ckpt / n).exists() for n in st.get("files", []))


def write_checkpoint(ckpt_root: Path, step: int, write_fn, state: dict, keep: int = 2) -> Path:
    """Write a checkpoint atomically (single process).

    ``write_fn(tmp_dir)`` writes the model / optimizer / scheduler / RNG files into ``tmp_dir``; then
    ``trainer_state.json`` (``state`` + the list of files) is written, the folder fsynced and moved to
    ``ckpt_root/step-XXXXXX`` and ``latest`` updated. Older complete checkpoints beyond ``keep`` are removed.
    """
    ckpt_root = Path(ckpt_root)
    ckpt_root.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir_for(ckpt_root, step)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        write_fn(tmp)
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        (tmp / STATE_FILE).write_text(json.dumps({**state, "files": files}, indent=1, default=str))
        _fsync_tree(tmp)
        final = ckpt_root / step_name(step)
        replace_dir(tmp, final)  # e.g. re-saving a step after a resume replaces the old one
        _fsync_dir(ckpt_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_bytes(ckpt_root / LATEST, step_name(step).encode())
    _prune(ckpt_root, keep, protect=final)
    return final


def _prune(ckpt_root: Path, keep: int, protect: Path) -> None:
    done = sorted(p for p in ckpt_root.glob("step-*") if p.is_dir() and is_complete(p))
    for p in done[:-keep] if keep > 0 else []:
        if p != protect:
            shutil.rmtree(p, ignore_errors=True)


def find_latest(ckpt_root: Path) -> Path | None:
    """The checkpoint named by ``latest`` if complete, else the newest complete ``step-*`` folder, else None."""
    ckpt_root = Path(ckpt_root)
    ptr = ckpt_root / LATEST
    if ptr.is_file():
        cand = ckpt_root / ptr.read_text().strip()
        if cand.is_dir() and is_complete(cand):
            return cand
    done = sorted(p for p in ckpt_root.glob("step-*") if p.is_dir() and is_complete(p))
    return done[-1] if done else None


def read_trainer_state(ckpt: Path) -> dict:
    return json.loads((Path(ckpt) / STATE_FILE).read_text())
