"""``python -m workbench.patch``: exact activation patching (`workbench.analysis.patching`) or attribution patching
validated against it (`workbench.analysis.atp`) over the pairs of one dataset, written as tables and figures.

:func:`run_patch_command` takes the command's parsed arguments and returns its exit code (2: bad input).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from workbench.analysis.atp import agreement, atp_dataset, atp_figure, summarize_atp
from workbench.analysis.cli import BAD_INPUT, fail
from workbench.analysis.core import default_out_dir, load_for_analysis, write_outputs
from workbench.analysis.patching import (
    PatchingError,
    make_pairs,
    patch_dataset,
    patching_figure,
    resolve_sites,
    summarize_patching,
)

__all__ = ["run_patch_command"]


def _layers(a: argparse.Namespace) -> list[int] | None:
    """``--layers`` as integers (None: every layer)."""
    if not a.layers:
        return None
    try:
        return [int(x) for x in a.layers.split(",") if x.strip()]
    except ValueError:
        raise PatchingError(f"--layers must be comma-separated integers, got {a.layers!r}") from None


def run_patch_command(a: argparse.Namespace) -> int:
    """``python -m workbench.patch`` with parsed arguments ``a``: ``OUT_DIR/patching[_ATTRIBUTE]*.csv`` (+ figure),
    or with ``--method atp`` ``OUT_DIR/atp[_ATTRIBUTE]*.csv``; prints the best sites. Its exit code."""
    try:
        layers = _layers(a)
        model, ds = load_for_analysis(a.checkpoint, a.data, a.n, seed=a.seed)
        sites, _ = resolve_sites(model, a.sites, a.encoder)
        if layers is not None:
            for l in layers:
                model.check_layer(l, "--layers entry")
        pairs = make_pairs(ds, a.attribute, a.max_pairs, a.seed)
        if a.method == "atp":
            return _atp(a, model, ds, pairs, sites, layers)
        items = patch_dataset(
            model, ds, pairs, sites, a.encoder, layers, a.backend, a.batch_size, progress=True, group=a.group
        )
        summary = summarize_patching(items)
    except BAD_INPUT as e:
        return fail(str(e))
    name = "patching" + (f"_{a.attribute}" if a.attribute else "")
    title = f"Activation patching ({len(pairs)} pairs" + (f", attribute {a.attribute}" if a.attribute else "") + ")"
    out_dir = default_out_dir(a)
    out = write_outputs(summary, patching_figure(summary, title), out_dir, name)
    write_outputs(items, None, out_dir, f"{name}_items")
    write_outputs(pairs, None, out_dir, f"{name}_pairs")
    best = summary[summary["layer"] >= 0].sort_values("restored", ascending=False).head(8)
    print(best[["site", "layer", "head", "encoder", "restored", "n_pairs"]].to_string(index=False))
    print("wrote " + ", ".join(str(p) for p in out.values()))
    return 0


def _atp(a: argparse.Namespace, model, ds, pairs, sites, layers) -> int:
    """``--method atp``: AtP (+ QK fix) over every site, validated by exact patching unless ``--no-exact``."""
    t0 = time.perf_counter()
    est = atp_dataset(model, ds, pairs, sites, a.encoder, layers, a.backend, a.batch_size, progress=True)
    t_atp = time.perf_counter() - t0
    exact, t_exact = None, float("nan")
    if not a.no_exact:
        t0 = time.perf_counter()
        exact = patch_dataset(
            model, ds, pairs, sites, a.encoder, layers, a.backend, a.batch_size, progress=True, group=a.group
        )
        t_exact = time.perf_counter() - t0
    summary = summarize_atp(est, exact)
    agree = agreement(summary) if exact is not None else pd.DataFrame()
    agree = agree.assign(atp_seconds=t_atp, exact_seconds=t_exact, n_pairs=len(pairs))
    name = "atp" + (f"_{a.attribute}" if a.attribute else "")
    out_dir = default_out_dir(a)
    out = write_outputs(
        summary,
        atp_figure(summary, f"Attribution patching vs exact patching ({len(pairs)} pairs)")
        if exact is not None
        else None,
        out_dir,
        name,
    )
    write_outputs(est, None, out_dir, f"{name}_items")
    write_outputs(agree, None, out_dir, f"{name}_agreement")
    if len(agree):
        print(agree[["method", "sites", "spearman", "top_overlap", "top_k", "n_sites"]].to_string(index=False))
    print(f"AtP {t_atp:.1f} s, exact {t_exact:.1f} s over {len(summary)} sites and {len(pairs)} pairs")
    print("wrote " + ", ".join(str(p) for p in out.values()))
    return 0
