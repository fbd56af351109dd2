"""CLI: logit lens of the answer token per layer, with and without audio (workbench.analysis.logit_lens).

    python -m workbench.logit_lens [--checkpoint results/checkpoints/pal/final] [--data data/synth-tiny/val]
        [--n 32] [--backend transformer_lens|nnsight] [--out-dir results/pal]

Writes ``logit_lens.csv`` (one row per example x layer x condition), ``logit_lens_summary.csv`` (per layer x
condition) and ``logit_lens.html``.
"""

from __future__ import annotations

import argparse

from workbench.analysis.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    from workbench.analysis.core import cli_common

    p = argparse.ArgumentParser(prog="python -m workbench.logit_lens", description=__doc__.split("\n\n")[0])
    cli_common(p)
    a = p.parse_args(argv)
    return run_cli(lambda: _run(a))


def _run(a) -> int:
    from workbench.analysis import logit_lens as LL
    from workbench.analysis.core import batches, default_out_dir, load_for_analysis, write_outputs

    model, ds = load_for_analysis(a.checkpoint, a.data, a.n, seed=a.seed)
    out = default_out_dir(a)
    df = LL.logit_lens(model, batches(ds, a.batch_size), backend=a.backend)
    write_outputs(df, LL.fig_logit_lens(df), out, "logit_lens")
    write_outputs(LL.summarize(df), None, out, "logit_lens_summary")
    print(f"wrote {out}/logit_lens.csv, logit_lens_summary.csv, logit_lens.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
