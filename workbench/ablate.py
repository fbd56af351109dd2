"""Cut the model's access to audio at inference, at some layers, and measure what the answers lose.

```
python -m workbench.ablate --layer 8 [--to 12] [--mode block|zero|mean|ffn] [--encoder NAME]
       [--sweep [--span from|single]] [--no-accuracy] [--max-new-tokens 8]
       [--checkpoint DIR] [--data DIR] [--n 32] [--backend transformer_lens|nnsight] [--out-dir DIR] [--seed 0]
```
Modes (see :mod:`workbench.analysis.ablation`): ``block`` audio keys blocked in attention, ``zero`` /
``mean`` audio K/V (LAL) or audio residual (PLITS) replaced, ``ffn`` FFN skipped at the audio positions
(PLITS only: claim 2 on a baseline-trained model). ``--layer L`` alone ablates L..last ("from L on");
``--to M`` ends at M (``--to L``: that layer only). ``--sweep`` runs every layer from ``--layer`` (default 0)
with span ``from`` (l..last, default) or ``single`` (l only) and plots the curve.
Writes ``OUT_DIR/ablation_{mode}_{layers}.csv/.html/.png`` (default OUT_DIR: results/<variant>).
The nnsight backend reports the answer log-probability only (accuracy needs generation, done with
TransformerLens hooks).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from workbench.analysis.cli import fail, run_cli
from workbench.analysis.core import cli_common, default_out_dir, load_for_analysis, write_outputs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workbench.ablate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--layer", type=int, default=None, help="first ablated layer (required unless --sweep)")
    p.add_argument("--to", type=int, default=None, help="last ablated layer (default: the model's last layer)")
    p.add_argument("--mode", default="block", help="block | zero | mean | ffn (default block)")
    p.add_argument("--encoder", default=None, help="ablate only this encoder (default: all)")
    p.add_argument("--sweep", action="store_true", help="ablate at every layer from --layer (default 0) on")
    p.add_argument("--span", default="from", help="sweep span: 'from' (layers l..last, default) or 'single' (l only)")
    p.add_argument("--no-accuracy", action="store_true", help="skip greedy generation (log-probability only)")
    p.add_argument("--max-new-tokens", type=int, default=8)
    cli_common(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(lambda: _run(build_parser().parse_args(argv)))


def _run(a) -> int:
    from workbench.analysis.ablation import (
        MODES,
        SPANS,
        ablate,
        ablation_figure,
        ablation_sweep,
        resolve_encoders,
        resolve_layers,
        sweep_figure,
    )
    from workbench.evaluation.evaluator import load_answer_options

    if a.mode not in MODES:
        return fail(f"unknown --mode {a.mode!r}; choose one of {', '.join(MODES)}")
    if a.span not in SPANS:
        return fail(f"unknown --span {a.span!r}; choose one of {', '.join(SPANS)}")
    if a.layer is None and not a.sweep:
        return fail("pass --layer L (or --sweep)")
    model, ds = load_for_analysis(a.checkpoint, a.data, a.n, seed=a.seed)
    resolve_encoders(model, a.encoder, a.mode)
    accuracy = not a.no_accuracy and a.backend == "transformer_lens"
    if a.backend == "nnsight" and not a.no_accuracy:
        print("note: the nnsight backend reports the answer log-probability only (accuracy: NaN)")
    kw = dict(
        backend=a.backend,
        batch_size=a.batch_size,
        accuracy=accuracy,
        max_new_tokens=a.max_new_tokens,
        answer_options=load_answer_options(ds.root),
    )
    if a.sweep:
        start = a.layer or 0
        last = a.to if a.to is not None else model.cfg.n_layers - 1
        layers = resolve_layers(model, start, last)
        table = ablation_sweep(model, ds, a.mode, a.encoder, span=a.span, layers=layers, progress=True, **kw)
        fig = sweep_figure(
            table, title=f"Audio ablation sweep: mode {a.mode}, span {a.span}, encoder {a.encoder or 'all'}"
        )
        name = f"ablation_sweep_{a.mode}_{a.span}" + (f"_{a.encoder}" if a.encoder else "")
    else:
        layers = resolve_layers(model, a.layer, a.to)
        table, _ = ablate(model, ds, layers, a.mode, a.encoder, **kw)
        fig = ablation_figure(table)
        name = f"ablation_{a.mode}_L{layers[0]}-{layers[-1]}" + (f"_{a.encoder}" if a.encoder else "")
    out = write_outputs(table, fig, default_out_dir(a), name)
    allrows = table[(table["task"] == "all") & (table["attribute"] == "all")]
    print(
        allrows[
            ["mode", "encoder", "layer_start", "layer_end", "metric", "baseline", "ablated", "delta", "n"]
        ].to_string(index=False)
    )
    print("wrote " + ", ".join(str(p) for p in out.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
