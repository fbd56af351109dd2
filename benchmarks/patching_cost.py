"""Patching cost: attribution patching (AtP with the QK fix) vs exact patching over every attention head, in one
run on the same clean/corrupted pairs, and how well the estimates agree with the exact effects.

Exact patching of the ``head_out`` site runs one patched forward per (layer, head) (grouped ``--group`` per
forward, see :func:`workbench.analysis.patching.patch_batch`); AtP runs one clean forward and one corrupted
forward + backward per batch of pairs (:func:`workbench.analysis.atp.atp_batch`). Printed: both times, their
ratio (target >= 20x), and the agreement over the head sites (Spearman correlation of the mean effects, overlap
of the top-10 heads by |effect|) for plain AtP and AtP with the QK fix (the QK fix changes only audio-key sites,
so it equals plain AtP on heads). ``--audio`` adds the audio K/V / audio residual sites to the comparison (not
to the timed head run).

Usage: python benchmarks/patching_cost.py [--checkpoint results/checkpoints/pal/final] [--data data/synth-tiny/test]
       [--pairs 4] [--group 1] [--threads 1] [--audio] [--out results/analyses/patching_cost.csv]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="results/checkpoints/pal/final")
    p.add_argument("--data", default="data/synth-tiny/test")
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--group", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--audio", action="store_true", help="also compare the audio sites (timed separately)")
    p.add_argument("--out", default=None, help="write the agreement table here (csv)")
    a = p.parse_args(argv)
    import pandas as pd
    import torch

    torch.set_num_threads(a.threads)
    from workbench.analysis.atp import agreement, atp_dataset, summarize_atp
    from workbench.analysis.core import load_for_analysis
    from workbench.analysis.patching import make_pairs, patch_dataset
    from workbench.evaluation.evaluator import load_answer_options

    model, ds = load_for_analysis(a.checkpoint, a.data, None, split="test")
    pairs = make_pairs(ds, None, a.pairs, seed=0, answer_options=load_answer_options(ds.root))
    n_heads = model.cfg.n_layers * model.cfg.n_heads
    print(f"{a.checkpoint}: {len(pairs)} pairs, {n_heads} heads, {torch.get_num_threads()} thread(s)", flush=True)
    t0 = time.perf_counter()
    est = atp_dataset(model, ds, pairs, ["head_out"], batch_size=len(pairs))
    t_atp = time.perf_counter() - t0
    print(f"AtP over all heads: {t_atp:.1f} s", flush=True)
    t0 = time.perf_counter()
    exact = patch_dataset(model, ds, pairs, ["head_out"], batch_size=len(pairs), group=a.group, progress=True)
    t_exact = time.perf_counter() - t0
    print(f"exact patching over all heads: {t_exact:.1f} s ({n_heads} patched runs, {a.group} per forward)")
    print(f"speed-up (exact / AtP): {t_exact / t_atp:.1f}x  (target >= 20x)")
    summary = summarize_atp(est, exact)
    agree = agreement(summary).assign(
        what="heads", atp_seconds=t_atp, exact_seconds=t_exact, speedup=t_exact / t_atp, n_pairs=len(pairs)
    )
    if a.audio:
        sites = [
            s
            for s in ("audio_kv", "resid_audio")
            if any(e.integration.mode == {"audio_kv": "lal", "resid_audio": "plits"}[s] for e in model.pal_cfg.encoders)
        ]
        t0 = time.perf_counter()
        est_a = atp_dataset(model, ds, pairs, sites, batch_size=len(pairs))
        ta = time.perf_counter() - t0
        t0 = time.perf_counter()
        ex_a = patch_dataset(model, ds, pairs, sites, batch_size=len(pairs), group=a.group)
        te = time.perf_counter() - t0
        s_a = summarize_atp(est_a, ex_a)
        agree = pd.concat(
            [
                agree,
                agreement(s_a).assign(
                    what="audio sites", atp_seconds=ta, exact_seconds=te, speedup=te / ta, n_pairs=len(pairs)
                ),
            ],
            ignore_index=True,
        )
    print(
        agree[["what", "method", "sites", "spearman", "top_overlap", "top_k", "n_sites", "speedup"]].to_string(
            index=False
        )
    )
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        agree.to_csv(a.out, index=False)
        summary.to_csv(Path(a.out).with_name(Path(a.out).stem + "_heads.csv"), index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
