"""``python -m workbench.steer``: audio-minus-silence steering (`workbench.analysis.steering`) of every checkpoint,
alpha chosen on the validation rows and its gain measured on the test rows, written as one table and figure.

:func:`run_steer_command` takes the command's parsed arguments and returns its exit code (2: bad input).
"""

from __future__ import annotations

import argparse

from workbench.analysis import core
from workbench.analysis.cli import run_cli, run_per_checkpoint, variant_first
from workbench.analysis.listening import listening_scores, top_heads
from workbench.analysis.steering import check_alpha, steer, steering_figure
from workbench.evaluation.evaluator import load_answer_options

__all__ = ["run_steer_command"]


def _steer_one(a: argparse.Namespace, settings: dict, variant: str, model, val):
    """One checkpoint: its steering table (test rows loaded with the model's template; the listening heads scored
    on the validation rows when mode ``heads`` is asked for); prints its gain rows."""
    _, test = core.load_for_analysis(data_dir=a.test_data, n=a.n_test, split="test", seed=a.seed, model=model)
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
    g = t[t["split"] == "gain"]
    print(g[["variant", "mode", "metric", "alpha", "gain", "ci_low", "ci_high", "n"]].to_string(index=False))
    return t


def run_steer_command(a: argparse.Namespace) -> int:
    """``python -m workbench.steer`` with parsed arguments ``a``: ``OUT_DIR/steering.csv`` (+ .html/.png) over
    every checkpoint; its exit code."""
    tables = []
    settings = {}

    def parse() -> None:
        settings["alphas"] = [check_alpha(x) for x in a.alphas.split(",") if x.strip()]
        settings["modes"] = [m.strip() for m in a.modes.split(",") if m.strip()]

    def one(variant, model, val):
        tables.append(_steer_one(a, settings, variant, model, val))

    rc = run_cli(parse) or run_per_checkpoint(a, one)
    if rc:
        return rc
    table = variant_first(tables)
    out = core.write_outputs(table, steering_figure(table), a.out_dir, "steering", png=not a.no_png)
    print("wrote " + ", ".join(str(v) for v in out.values()))
    return 0
