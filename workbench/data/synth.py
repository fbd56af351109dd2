"""Synthetic corpus generator: writes an audiofolder (see :mod:`workbench.data.audiofolder`).

CLI::

    python -m workbench.data.synth --out DIR --n N --seed S [--preset tiny|default]
        [--split train|val|test|test_comp | --all-splits] [--workers W]

``--all-splits`` writes DIR/train (N clips), DIR/val, DIR/test and DIR/test_comp (max(1, N // 10) each).
Same arguments -> byte-identical files, whatever the worker count: each clip has its own seeded stream
(:func:`workbench.data.clips.clip_rng`) and rows are written in index order.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from workbench.data.audiofolder import METADATA, TASKS, write_json, write_jsonl
from workbench.data.clips import PRESETS, sample_clip
from workbench.data.music import note_bank
from workbench.data.synth_splits import SPLIT_CODES, SPLITS, holdout_for_preset, write_holdout_json
from workbench.data.tasks import make_tasks
from workbench.data.vocab import ANSWER_OPTIONS, INSTRUMENTS, SAMPLE_RATE

__all__ = ["generate", "generate_all_splits", "wav_bytes", "main"]


def wav_bytes(wave: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM mono WAV bytes of a float ``[S]`` wave (clipped to [-1, 1])."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def _one(args) -> dict:
    index, seed, split, preset, out = args
    wave, row = sample_clip(index, seed, split, preset)
    clip_id = f"{split}-{index:06d}"
    row["clip_id"] = clip_id
    row["file_name"] = f"audio/{clip_id}.wav"
    Path(out, row["file_name"]).write_bytes(wav_bytes(wave))
    return row


def _render_clips(jobs: list, split: str, workers: int, progress: bool) -> list[dict]:
    """The metadata row of each job (clip written by :func:`_one`), in job order; ``workers`` > 1 forks a pool."""
    bar = tqdm(total=len(jobs), desc=f"synth {split}", unit="clip", disable=not progress, file=sys.stderr)
    rows = []
    if workers > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(workers) as pool:
            for row in pool.imap(_one, jobs, chunksize=4):
                rows.append(row)
                bar.update()
    else:
        for j in jobs:
            rows.append(_one(j))
            bar.update()
    bar.close()
    return rows


def generate(
    out: str | os.PathLike,
    n: int,
    seed: int = 0,
    split: str = "train",
    preset: str = "default",
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Write ``n`` clips of ``split`` into the audiofolder ``out``; returns ``out``.

    Files: ``audio/{split}-{i:06d}.wav`` (16 kHz mono PCM-16), ``metadata.jsonl`` (columns: see
    :data:`workbench.data.clips.COLUMNS`), ``tasks.jsonl`` (see :mod:`workbench.data.tasks`),
    ``answer_options.json``, ``holdout.json``, ``dataset_info.json``.
    """
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {list(PRESETS)}")
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    jobs = [(i, seed, split, preset, str(out)) for i in range(n)]
    if "music" in PRESETS[preset]["categories"]:  # build/load note banks once, before forking workers
        for program in INSTRUMENTS.values():
            note_bank(program, SAMPLE_RATE)
    rows = _render_clips(jobs, split, workers, progress)
    tasks = []
    for row in rows:
        rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], row["index"], 7919]))
        tasks.extend(make_tasks(row, rng))
    write_jsonl(out / METADATA, rows)
    write_jsonl(out / TASKS, tasks)
    write_json(out / "answer_options.json", ANSWER_OPTIONS)
    write_holdout_json(out / "holdout.json", PRESETS[preset]["categories"])
    write_json(
        out / "dataset_info.json",
        {
            "generator": "workbench.data.synth",
            "seed": seed,
            "split": split,
            "preset": preset,
            "n_clips": n,
            "n_tasks": len(tasks),
            "sample_rate": SAMPLE_RATE,
            "holdout": holdout_for_preset(PRESETS[preset]["categories"]),
        },
    )
    return out


def generate_all_splits(
    out: str | os.PathLike,
    n: int,
    seed: int = 0,
    preset: str = "default",
    workers: int = 1,
    n_eval: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Write ``out/{train,val,test,test_comp}``: ``n`` training clips, ``n_eval`` (default max(1, n//10)) others."""
    n_eval = n_eval if n_eval is not None else max(1, n // 10)
    out = Path(out)
    res = {}
    for split in SPLITS:
        res[split] = generate(out / split, n if split == "train" else n_eval, seed, split, preset, workers, progress)
    write_holdout_json(out / "holdout.json", PRESETS[preset]["categories"])
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workbench.data.synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--n", type=int, required=True, help="number of clips (train size with --all-splits)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", choices=list(PRESETS), default="default")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--split", choices=SPLITS, default="train")
    g.add_argument("--all-splits", action="store_true", help="write train/val/test/test_comp subfolders")
    p.add_argument("--n-eval", type=int, default=None, help="clips per eval split with --all-splits")
    p.add_argument("--workers", type=int, default=1, help="processes (output is identical for any value)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.all_splits:
        paths = generate_all_splits(a.out, a.n, a.seed, a.preset, a.workers, a.n_eval, not a.no_progress)
        print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    else:
        print(generate(a.out, a.n, a.seed, a.split, a.preset, a.workers, not a.no_progress))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
