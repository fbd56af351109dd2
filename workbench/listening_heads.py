"""Listening heads: per-head listening score (audio vs silence of the same length) and its causal check.

```
python -m workbench.listening_heads [--checkpoint DIR ...] [--k 5] [--draws 5] [--n 48] [--silence encoder|zeros]
       [--data data/synth-tiny/val] [--backend transformer_lens|nnsight] [--out-dir results/analyses] [--seed 0]
```
Score and ablation are defined in :mod:`workbench.analysis.listening`. Writes ``OUT_DIR/listening_heads.csv``
(every head of every variant, ranked), ``listening_ablation.csv`` (top-k vs random heads mean-ablated, 95%
intervals) and per variant ``listening_heads_VARIANT.html`` / ``listening_ablation_VARIANT.html`` (+ .png).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from workbench.analysis.cli import analysis_parser, run_per_checkpoint, variant_first


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.analysis.core import write_outputs
    from workbench.analysis.listening import (
        listening_ablation,
        listening_ablation_figure,
        listening_figure,
        listening_scores,
    )
    from workbench.evaluation.evaluator import load_answer_options

    p = analysis_parser("python -m workbench.listening_heads", __doc__)
    p.add_argument("--k", type=int, default=5, help="top heads to ablate (default 5)")
    p.add_argument("--draws", type=int, default=5, help="random head sets (default 5)")
    a = p.parse_args(argv)
    scores, tables = [], []

    def one(variant, model, ds):
        s = listening_scores(model, ds, a.silence, backend=a.backend, batch_size=a.batch_size, progress=True)
        t = listening_ablation(
            model,
            ds,
            s,
            a.k,
            draws=a.draws,
            seed=a.seed,
            answer_options=load_answer_options(ds.root),
            backend=a.backend,
            batch_size=a.batch_size,
            progress=True,
        )
        write_outputs(
            None,
            listening_figure(s, f"{variant}: listening heads"),
            a.out_dir,
            f"listening_heads_{variant}",
            png=not a.no_png,
        )
        write_outputs(
            None,
            listening_ablation_figure(t, f"{variant}: top {a.k} listening heads vs {a.k} random heads, mean-ablated"),
            a.out_dir,
            f"listening_ablation_{variant}",
            png=not a.no_png,
        )
        scores.append(s.assign(variant=variant))
        tables.append(t.assign(variant=variant))
        top = s.head(a.k)
        print(
            f"{variant}: top heads "
            + ", ".join(f"L{r.layer}H{r.head} ({r.score:.3f}, audio {r.audio_mass:.2f})" for r in top.itertuples())
        )
        print(t[["condition", "metric", "delta", "ci_low", "ci_high", "n"]].to_string(index=False))

    rc = run_per_checkpoint(a, one)
    if rc:
        return rc
    w1 = write_outputs(variant_first(scores), None, a.out_dir, "listening_heads")
    w2 = write_outputs(variant_first(tables), None, a.out_dir, "listening_ablation")
    print(f"wrote {w1['csv']}, {w2['csv']} and the figures in {a.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
