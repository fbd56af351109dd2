"""Audio-minus-silence steering: alpha chosen on the validation split, gain measured on the test split.

```
python -m workbench.steer [--checkpoint DIR ...] [--alphas -4,-2,-1,-0.5,0.5,1,2,4] [--modes resid,heads] [--k 5]
       [--data data/synth-tiny/val] [--test-data data/synth-tiny/test] [--n 48] [--n-test 120]
       [--silence encoder|zeros] [--backend transformer_lens|nnsight] [--out-dir results/analyses] [--seed 0]
```
The protocol is :mod:`workbench.analysis.steering`; mode ``heads`` steers the top-k listening heads (scored on
the validation rows). Writes ``OUT_DIR/steering.csv`` (every variant, mode, split and alpha; ``split == gain``:
the test gain of the chosen alpha over alpha = 0, 95% paired interval) and ``steering.html`` (+ .png).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from workbench.analysis.cli import analysis_parser, run_cli, run_per_checkpoint, variant_first

TEST_DATA = Path("data/synth-tiny/test")


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.analysis.core import load_for_analysis, write_outputs
    from workbench.analysis.listening import listening_scores, top_heads
    from workbench.analysis.steering import DEFAULT_ALPHAS, check_alpha, steer, steering_figure
    from workbench.evaluation.evaluator import load_answer_options

    p = analysis_parser("python -m workbench.steer", __doc__)
    p.add_argument("--test-data", default=str(TEST_DATA), help=f"test audiofolder (default {TEST_DATA})")
    p.add_argument("--n-test", type=int, default=120, help="test rows (seeded subset; default 120)")
    p.add_argument(
        "--alphas",
        default=",".join(f"{a:g}" for a in DEFAULT_ALPHAS if a),
        help="comma-separated scales tried on validation (0 is always added)",
    )
    p.add_argument("--modes", default="resid,heads", help="resid (final residual) and/or heads (top listening heads)")
    p.add_argument("--k", type=int, default=5, help="listening heads steered in mode heads (default 5)")
    a = p.parse_args(argv)
    tables = []
    settings = {}

    def parse() -> None:
        settings["alphas"] = [check_alpha(x) for x in a.alphas.split(",") if x.strip()]
        settings["modes"] = [m.strip() for m in a.modes.split(",") if m.strip()]

    def one(variant, model, val):
        _, test = load_for_analysis(data_dir=a.test_data, n=a.n_test, split="test", seed=a.seed, model=model)
        modes, heads = settings["modes"], []
        if "heads" in modes:
            heads = top_heads(
                listening_scores(model, val, a.silence, backend=a.backend, batch_size=a.batch_size, progress=True), a.k
            )
        t = steer(
            model,
            val,
            test,
            load_answer_options(val.root),
            alphas=settings["alphas"],
            modes=modes,
            heads=heads,
            silence=a.silence,
            backend=a.backend,
            batch_size=a.batch_size,
            seed=a.seed,
            progress=True,
        )
        t = t.assign(variant=variant, heads=";".join(f"L{l}H{h}" for l, h in heads))
        tables.append(t)
        g = t[t["split"] == "gain"]
        print(g[["variant", "mode", "metric", "alpha", "gain", "ci_low", "ci_high", "n"]].to_string(index=False))

    rc = run_cli(parse) or run_per_checkpoint(a, one)
    if rc:
        return rc
    table = variant_first(tables)
    out = write_outputs(table, steering_figure(table), a.out_dir, "steering", png=not a.no_png)
    print("wrote " + ", ".join(str(v) for v in out.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
