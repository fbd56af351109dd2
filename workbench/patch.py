"""Activation patching: clean audio into corrupted runs (pairs differing in one attribute, same question).

```
python -m workbench.patch [--method exact|atp] [--attribute pitch_class] [--sites audio_kv,resid_audio,head_out,connector]
       [--encoder NAME] [--layers 0,4,8] [--max-pairs 16] [--group 1] [--no-exact]
       [--checkpoint DIR] [--data DIR] [--n 32] [--backend transformer_lens|nnsight] [--out-dir DIR] [--seed 0]
```
Reports the fraction of the answer logit difference restored per site/layer/head (see
:mod:`workbench.analysis.patching`). Sites that need another integration than the model's are skipped
(audio_kv: LAL, resid_audio: PLITS). Writes ``OUT_DIR/patching[_ATTRIBUTE].csv/.html/.png`` (summary),
``..._items.csv`` (per pair) and ``..._pairs.csv``.

``--method atp``: attribution patching with the QK fix (:mod:`workbench.analysis.atp`) for every site, validated
against exact patching on the same pairs (skip with ``--no-exact``). Writes ``OUT_DIR/atp[_ATTRIBUTE].csv`` (per
site: AtP, AtP with QK fix, exact effect), ``..._agreement.csv`` (Spearman over sites, top-10 overlap, times),
``..._items.csv`` and the figure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from workbench.analysis.cli import BAD_INPUT, fail
from workbench.analysis.core import cli_common, default_out_dir, load_for_analysis, write_outputs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workbench.patch",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--attribute", default=None, help="only pairs asking about this attribute (default: every closed one)"
    )
    p.add_argument(
        "--sites",
        default=None,
        help="comma-separated: audio_kv,resid_audio,head_out,connector (default audio_kv,resid_audio,head_out)",
    )
    p.add_argument("--encoder", default=None, help="patch only this encoder's audio (default: all)")
    p.add_argument("--layers", default=None, help="comma-separated layers (default: all)")
    p.add_argument("--max-pairs", type=int, default=16)
    p.add_argument(
        "--method",
        choices=("exact", "atp"),
        default="exact",
        help="exact patching (one patched run per site) or attribution patching (AtP + QK fix)",
    )
    p.add_argument(
        "--group",
        type=int,
        default=1,
        help="exact patching: patched runs per forward (default 1; more helps on a GPU, not on a small CPU)",
    )
    p.add_argument("--no-exact", action="store_true", help="--method atp: skip the validation by exact patching")
    cli_common(p)
    p.set_defaults(n=128)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.analysis.patching import (
        PatchingError,
        make_pairs,
        patch_dataset,
        patching_figure,
        resolve_sites,
        summarize_patching,
    )

    a = build_parser().parse_args(argv)
    try:
        layers = None
        if a.layers:
            try:
                layers = [int(x) for x in a.layers.split(",") if x.strip()]
            except ValueError:
                raise PatchingError(f"--layers must be comma-separated integers, got {a.layers!r}") from None
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


def _atp(a, model, ds, pairs, sites, layers) -> int:
    import time

    import pandas as pd

    from workbench.analysis.atp import agreement, atp_dataset, atp_figure, summarize_atp
    from workbench.analysis.patching import patch_dataset

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


if __name__ == "__main__":
    sys.exit(main())
