"""Attribute lens: at which layer does each variant know the attribute, with audio, with silence, audio blocked?

```
python -m workbench.attribute_lens [--checkpoint DIR ...] [--attribute NAME] [--n 48] [--silence encoder|zeros]
       [--data data/synth-tiny/val] [--backend transformer_lens|nnsight] [--out-dir results/analyses] [--seed 0]
```
Default: every committed checkpoint ``results/checkpoints/*/final`` (one figure across variants). The critical
layer is defined in :mod:`workbench.analysis.attribute_lens`. Writes ``OUT_DIR/attribute_lens.csv`` (per
variant, condition, position, split, layer: accuracy, mean probability, critical layer), ``.html``/``.png``
(the figure) and ``attribute_lens_items.csv`` (per row and layer).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from workbench.analysis.cli import fail
from workbench.analysis.core import BACKENDS

DEFAULT_OUT = Path("results/analyses")


def committed_checkpoints(root: Path = Path("results/checkpoints")) -> list[Path]:
    """Every ``ROOT/VARIANT/final`` with a config.json, sorted by variant."""
    return sorted(p for p in root.glob("*/final") if (p / "config.json").exists())


def analysis_parser(prog: str, doc: str, n: int = 48) -> argparse.ArgumentParser:
    """Arguments shared by the attribute-lens / listening / steering CLIs (several checkpoints allowed)."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", default=None,
                   help="checkpoint folder (repeat for several; default every results/checkpoints/*/final)")
    p.add_argument("--data", default=None, help="audiofolder (default data/synth-tiny/val; generated if missing)")
    p.add_argument("--n", type=int, default=n, help=f"task rows (seeded random subset; default {n})")
    p.add_argument("--silence", choices=("encoder", "zeros"), default="encoder",
                   help="silence: encoder tokens of a silent clip of the same length (default) or zero tokens")
    p.add_argument("--backend", choices=BACKENDS, default="transformer_lens")
    p.add_argument("--out-dir", default=str(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-png", action="store_true", help="skip the PNG export")
    return p


def cli_errors() -> tuple[type[Exception], ...]:
    """The errors these CLIs turn into ``error: ...`` and exit status 2: :data:`workbench.analysis.cli.BAD_INPUT`
    (AudioAnalysisError is a ValueError)."""
    from workbench.analysis.cli import BAD_INPUT

    return BAD_INPUT


def variant_first(frames):
    """Frames (each with a ``variant`` column) concatenated, ``variant`` as the first column."""
    import pandas as pd

    df = pd.concat(list(frames), ignore_index=True)
    return df[["variant", *[c for c in df.columns if c != "variant"]]]


def checkpoints_of(a) -> list[Path]:
    cks = [Path(c) for c in a.checkpoint] if a.checkpoint else committed_checkpoints()
    if not cks:
        raise FileNotFoundError("no checkpoints: pass --checkpoint DIR (a PAL checkpoint folder) or train the tiny "
                                "variants (./run retrain)")
    return cks


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.analysis.attribute_lens import attribute_lens, attribute_lens_figure, summarize_lens
    from workbench.analysis.core import load_for_analysis, write_outputs
    from workbench.evaluation.evaluator import load_answer_options
    from workbench.common.paths import variant_of

    p = analysis_parser("python -m workbench.attribute_lens", __doc__)
    p.add_argument("--attribute", default=None, help="only rows asking about this attribute (default: every one "
                                                     "with an option list)")
    a = p.parse_args(argv)
    frames, summaries = {}, []
    try:
        for ck in checkpoints_of(a):
            variant = variant_of(ck)
            model, ds = load_for_analysis(ck, a.data, a.n, seed=a.seed)
            df = attribute_lens(model, ds, load_answer_options(ds.root), a.attribute, silence=a.silence,
                                backend=a.backend, batch_size=a.batch_size, progress=True)
            frames[variant] = df
            summaries.append(summarize_lens(df).assign(variant=variant))
            del model
    except cli_errors() as e:
        return fail(str(e))
    summary = variant_first(summaries)
    items = variant_first(d.assign(variant=v) for v, d in frames.items())
    title = "Attribute lens: when does each variant resolve the attribute?" + (f" ({a.attribute})" if a.attribute else "")
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
