"""CLI: attention of text queries to each encoder's audio keys, per layer x head (workbench.analysis.attention).

    python -m workbench.attention [--checkpoint results/checkpoints/pal/final] [--data data/synth-tiny/val]
        [--n 32] [--query-set after_slot|answer|last_prompt|all] [--backend transformer_lens|nnsight]
        [--out-dir results/pal]

Writes ``attention_to_audio.csv`` (one row per layer/head/encoder/query set), ``attention_to_audio.html``
(ratio to uniform, layer x head per encoder), ``attention_layers.html`` (mass per layer vs uniform) and
``attention_tokens.html`` (one example's pattern at the layer/head with the largest audio ratio).
"""

from __future__ import annotations

import argparse

import pandas as pd

from workbench.analysis.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    from workbench.analysis import attention as A
    from workbench.analysis.core import cli_common

    p = argparse.ArgumentParser(prog="python -m workbench.attention", description=__doc__.split("\n\n")[0])
    cli_common(p)
    p.add_argument("--query-set", choices=[*A.QUERY_SETS, "all"], default="all")
    a = p.parse_args(argv)
    return run_cli(lambda: _run(a))


def _run(a) -> int:
    from workbench.analysis import attention as A
    from workbench.analysis.core import batches, default_out_dir, load_for_analysis, write_outputs

    model, ds = load_for_analysis(a.checkpoint, a.data, a.n, seed=a.seed)
    out = default_out_dir(a)
    sets = A.QUERY_SETS if a.query_set == "all" else (a.query_set,)
    frames = [A.attention_to_audio(model, batches(ds, a.batch_size), q, backend=a.backend) for q in sets]
    df = pd.concat(frames, ignore_index=True)
    main_set = sets[0]
    sub = df[df.query_set == main_set]
    write_outputs(df, A.fig_heatmap(sub), out, "attention_to_audio")
    write_outputs(None, A.fig_layers(sub), out, "attention_layers")
    best = sub.dropna(subset=["ratio"]).sort_values("ratio", ascending=False).head(1)
    if len(best):
        layer, head = int(best["layer"].iloc[0]), int(best["head"].iloc[0])
        tok = A.attention_tokens(model, next(batches(ds, 1)), layer, head, backend=a.backend)
        write_outputs(
            tok,
            A.fig_tokens(
                tok,
                title=f"Attention pattern, layer {layer} head {head} (largest audio "
                f"ratio, query set {main_set}), example 0; weight: fraction of 1",
            ),
            out,
            "attention_tokens",
        )
    print(f"wrote {out}/attention_to_audio.csv (+ .html), attention_layers.html, attention_tokens.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
