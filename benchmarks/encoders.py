"""Encoder throughput: seconds of audio encoded per second of CPU time (batch 8 x 5-s clips).

Usage: ``python benchmarks/encoders.py [--repeats 3]``. Prints one table measured in this run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from workbench.encoders import available_encoders, load_encoder


def _clips(n: int = 8, seconds: float = 5.0, sr: int = 16000) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    return [
        (0.2 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        for _ in range(n)
    ]


def bench(enc, waves, repeats: int) -> float:
    """Best-of-``repeats`` audio seconds per CPU second for one batch."""
    batch, lengths = enc.prepare(waves, 16000)
    audio_s = float(lengths.sum()) / enc.sample_rate
    with torch.no_grad():
        enc(batch, lengths)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.process_time()
            enc(batch, lengths)
            best = min(best, time.process_time() - t0)
    return audio_s / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    waves = _clips()
    rows = []
    for name in available_encoders():
        try:
            enc = load_encoder(name)
        except Exception as e:  # e.g. an optional encoder whose weights are not installed
            print(f"skip {name}: {type(e).__name__}: {e}")
            continue
        rows.append((name, enc.dim, enc.frames_per_second, bench(enc, waves, args.repeats)))
    w30 = bench(load_encoder("whisper", pad_to_30s=True), waves, args.repeats)
    rows.append(("whisper (pad_to_30s)", 512, 50.0, w30))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch 8 x 5 s, best of {args.repeats}")
    print(f"{'encoder':<22}{'dim':>6}{'tok/s':>8}{'audio s / CPU s':>18}")
    for name, dim, fps, speed in rows:
        print(f"{name:<22}{dim:>6}{fps:>8.2f}{speed:>18.1f}")
    trunc = next(r[3] for r in rows if r[0] == "whisper")
    print(f"truncated Whisper speed-up over 30-s padding: {trunc / w30:.1f}x")


if __name__ == "__main__":
    main()
