"""Seed-aware statistics of the claims' contrasts, over training seeds and both test splits.

    python -m workbench.seed_stats [--checkpoints results/checkpoints] [--sweeps results/sweeps/injection-layer]
                                   [--out results] [--markdown results/seeds.md]

What it reads and writes, and the interval: :mod:`workbench.claims.seeds`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.claims.seeds import (
    SeedStatsError,
    claim_seed_verdicts,
    load_clip_scores,
    markdown_tables,
    seed_accuracy,
    seed_contrasts,
)


def main(argv: list[str] | None = None) -> int:
    from workbench.common.paths import atomic_write_bytes

    p = argparse.ArgumentParser(prog="python -m workbench.seed_stats", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="results/checkpoints", help="root of the seed runs")
    p.add_argument("--sweeps", default=None, help="injection-layer sweep root (e.g. results/sweeps/injection-layer)")
    p.add_argument("--out", default="results", help="folder for seed_accuracy.csv / seed_contrasts.csv")
    p.add_argument("--markdown", default=None, help="also write the README tables to this file ('-': print)")
    p.add_argument("--resamples", type=int, default=2000)
    a = p.parse_args(argv)
    try:
        clips = load_clip_scores(a.checkpoints)
        if clips.empty:
            raise SeedStatsError(
                f"no evaluated runs under {a.checkpoints} (expected VARIANT/eval/answers.csv or "
                "VARIANT/seed-S/eval/answers.csv)"
            )
        acc, con = seed_accuracy(clips), seed_contrasts(clips, resamples=a.resamples)
    except SeedStatsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    for name, df in (("seed_accuracy", acc), ("seed_contrasts", con)):
        print(f"wrote {atomic_write_bytes(out / f'{name}.csv', df.to_csv(index=False).encode())}")
    sentence = None
    if a.sweeps:
        from workbench.claims.layer_curve import write_layer_curve

        sentence = write_layer_curve(a.sweeps, out)
    md = markdown_tables(acc, con, sentence)
    if a.markdown == "-":
        print(md)
    elif a.markdown:
        print(f"wrote {atomic_write_bytes(Path(a.markdown), md.encode())}")
    print(claim_seed_verdicts(con).pivot(index="claim", columns="scope", values="verdict").to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
