"""Synthetic generator: determinism, files, splits and hold-outs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from workbench.data.audiofolder import METADATA, TASKS
from workbench.data.clips import COLUMNS, sample_clip
from workbench.data.synth import generate
from workbench.data.synth_splits import HOLDOUT, matching_holdouts
from workbench.data.vocab import ANSWER_OPTIONS


def _hashes(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_any_worker_count(tmp_path):
    a = generate(tmp_path / "a", 16, seed=5, preset="default", workers=1, progress=False)
    b = generate(tmp_path / "b", 16, seed=5, preset="default", workers=2, progress=False)
    ha, hb = _hashes(a), _hashes(b)
    assert len(ha) == 16 + 5  # wavs + metadata, tasks, answer_options, holdout, dataset_info
    assert ha == hb
    c = generate(tmp_path / "c", 16, seed=6, preset="default", progress=False)
    hc = _hashes(c)
    assert sum(ha[k] != hc[k] for k in ha if k.endswith(".wav")) >= 14


def test_splits_use_disjoint_streams():
    w1, _ = sample_clip(0, 0, "train", "tiny")
    w2, _ = sample_clip(0, 0, "val", "tiny")
    assert len(w1) != len(w2) or (w1 != w2).any()


def test_metadata_columns_and_tasks(small_ds):
    meta = [json.loads(l) for l in (small_ds / METADATA).read_text(encoding="utf-8").splitlines()]
    assert len(meta) == 24
    for row in meta:
        assert list(row) == COLUMNS
        assert (small_ds / row["file_name"]).is_file()
    assert len({r["category"] for r in meta}) >= 5
    tasks = [json.loads(l) for l in (small_ds / TASKS).read_text(encoding="utf-8").splitlines()]
    names = {r["file_name"] for r in meta}
    kinds = {t["task"] for t in tasks}
    assert kinds == {"cls", "caption", "qa"}
    for t in tasks:
        assert set(t) == {"row_id", "file_name", "task", "attribute", "question", "answer", "closed"}
        assert t["file_name"] in names
        if t["closed"]:
            assert t["answer"] in ANSWER_OPTIONS[t["attribute"]], t
            assert len(t["answer"].split()) <= 2
        else:
            assert t["answer"][0].isupper() or t["attribute"] == "text"
    assert len({t["row_id"] for t in tasks}) == len(tasks)
    opts = json.loads((small_ds / "answer_options.json").read_text())
    assert opts["count"] == ["1", "2", "3", "4", "5", "6"]


def test_compositional_holdout():
    for i in range(40):
        _, row = sample_clip(i, 2, "train", "default")
        assert matching_holdouts(row) == []
    seen = set()
    for i in range(len(HOLDOUT)):
        _, row = sample_clip(i, 2, "test_comp", "default")
        assert HOLDOUT[i % len(HOLDOUT)] in row["holdout"]
        seen.add(json.dumps(HOLDOUT[i % len(HOLDOUT)], sort_keys=True))
    assert len(seen) == len(HOLDOUT)


def test_cli_all_splits(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.data.synth",
            "--out",
            str(tmp_path / "d"),
            "--n",
            "6",
            "--seed",
            "0",
            "--preset",
            "tiny",
            "--all-splits",
            "--n-eval",
            "3",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    for split, n in [("train", 6), ("val", 3), ("test", 3), ("test_comp", 3)]:
        rows = [json.loads(l) for l in (tmp_path / "d" / split / METADATA).read_text().splitlines()]
        assert len(rows) == n and {x["split"] for x in rows} == {split}
    hold = json.loads((tmp_path / "d" / "holdout.json").read_text())["holdout"]
    assert {h["category"] for h in hold} <= {"tone", "chirp", "noise", "clicks", "speech"}


@pytest.mark.slow
def test_default_preset_many_clips_deterministic(tmp_path):
    a = generate(tmp_path / "a", 120, seed=9, workers=2, progress=False)
    b = generate(tmp_path / "b", 120, seed=9, workers=1, progress=False)
    assert _hashes(a) == _hashes(b)
