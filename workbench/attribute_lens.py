"""Attribute lens: at which layer does each variant know the attribute, with audio, with silence, audio blocked?

```
python -m workbench.attribute_lens [--checkpoint DIR ...] [--attribute NAME] [--n 48] [--silence encoder|zeros]
       [--data data/synth-tiny/val] [--backend transformer_lens|nnsight] [--out-dir results/analyses] [--seed 0]
```
Default: every committed checkpoint ``results/checkpoints/*/final`` (one figure across variants); ``--checkpoint``
also takes a released model folder or hub id. The critical
layer is defined in :mod:`workbench.analysis.attribute_lens`. Writes ``OUT_DIR/attribute_lens.csv`` (per
variant, condition, position, split, layer: accuracy, mean probability, critical layer), ``.html``/``.png``
(the figure) and ``attribute_lens_items.csv`` (per row and layer).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from workbench.analysis.cli import analysis_parser, run_per_checkpoint, variant_first


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.analysis.attribute_lens import attribute_lens, attribute_lens_figure, summarize_lens
    from workbench.analysis.core import write_outputs
    from workbench.evaluation.evaluator import load_answer_options

    p = analysis_parser("python -m workbench.attribute_lens", __doc__)
    p.add_argument(
        "--attribute",
        default=None,
        help="only rows asking about this attribute (default: every one with an option list)",
    )
    a = p.parse_args(argv)
    frames, summaries = {}, []

    def one(variant, model, ds):
        df = attribute_lens(
            model,
            ds,
            load_answer_options(ds.root),
            a.attribute,
            silence=a.silence,
            backend=a.backend,
            batch_size=a.batch_size,
            progress=True,
        )
        frames[variant] = df
        summaries.append(summarize_lens(df).assign(variant=variant))

    rc = run_per_checkpoint(a, one)
    if rc:
        return rc
    summary = variant_first(summaries)
    items = variant_first(d.assign(variant=v) for v, d in frames.items())
    title = "Attribute lens: when does each variant resolve the attribute?" + (
        f" ({a.attribute})" if a.attribute else ""
    )
    out = write_outputs(summary, attribute_lens_figure(frames, title), a.out_dir, "attribute_lens", png=not a.no_png)
    write_outputs(items, None, a.out_dir, "attribute_lens_items")
    s = summary[(summary["position"] == "last_prompt") & (summary["split"] == "all")]
    crit = s.drop_duplicates(["variant", "condition"])[["variant", "condition", "critical_median", "resolved"]]
    last = s[s["layer"] == s["layer"].max()][["variant", "condition", "accuracy"]]
    print(crit.merge(last, on=["variant", "condition"]).to_string(index=False))
    print("wrote " + ", ".join(str(v) for v in out.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
