"""Benchmark the synthetic generator: clips per second for a preset, with 1..W worker processes.

    .venv/bin/python benchmarks/synth.py [--n 2000] [--preset default] [--workers 1 2] [--seed 0]

Prints one line per worker count (wall seconds, clips/s, audio seconds generated per wall second) and
checks that every worker count wrote byte-identical files. The one-off note-bank build (fluidsynth renders
each instrument once; cached under ~/.cache/pal-workbench/notebank) is timed separately.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.data.music import note_bank  # noqa: E402
from workbench.data.synth import generate  # noqa: E402
from workbench.data.vocab import INSTRUMENTS, SAMPLE_RATE  # noqa: E402


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(f"cpus={os.cpu_count()} n={a.n} preset={a.preset}")
    t = time.perf_counter()
    for p in INSTRUMENTS.values():
        note_bank(p, SAMPLE_RATE)
    print(f"note banks ready in {time.perf_counter() - t:.2f} s (cached after the first run)")
    digests = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w in a.workers:
            out = Path(tmp) / f"w{w}"
            t = time.perf_counter()
            generate(out, a.n, a.seed, "train", a.preset, workers=w, progress=False)
            dt = time.perf_counter() - t
            audio_s = sum(json.loads(l)["duration_s"] for l in (out / "metadata.jsonl").read_text().splitlines())
            n_tasks = sum(1 for _ in open(out / "tasks.jsonl"))
            print(
                f"workers={w}: {dt:.1f} s wall, {a.n / dt:.1f} clips/s, {audio_s / dt:.0f} audio-s/s, "
                f"{n_tasks} task rows, {audio_s / 3600:.2f} h audio"
            )
            digests[w] = _digest(out)
    same = len(set(digests.values())) == 1
    print(f"identical output across worker counts: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
