"""Cost of the SAE pipeline: activation collection vs a plain forward, SAE training steps/s, and whether a
4096-wide TopK SAE trains on ~100k audio-token rows within 10 minutes on 2 cores.

Model: a committed tiny checkpoint (default results/checkpoints/delayed/final, PLITS@8 on SmolLM2-135M, so its audio
tokens are in the residual stream from layer 8), clips of data/synth-tiny/val with the fixed probe question
(`workbench.analysis.sae.activations.clip_view`). Timings, variants interleaved repetition by repetition:
  plain     model(batch) over the clips
  collect   collect_rows(site at audio positions) over the same clips, every layer run (stop_early=False)
  early     the same with stop_early=True (the forward ends at the site)
Training: `train_sae` steps (width, k, batch 1024) on the collected rows tiled to --train-rows, 2 warm-up steps
excluded. The 10-minute question extrapolates from steps/s to the steps of the default config (10 epochs of
--target-rows at batch 1024), and says so; the load average is printed (the dev machine is shared).
Usage: python benchmarks/sae_cost.py [--checkpoint DIR] [--site HOOK] [--clips 32] [--reps 3] [--threads 2]
                                     [--width 4096] [--k 32] [--steps 20] [--target-rows 100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
import torch


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _cpu_timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads)."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def collection(args, model, ds, tmp) -> dict:
    from workbench.analysis.core import batches
    from workbench.analysis.sae.activations import clip_view, collect_rows

    view = clip_view(ds)
    times = {"plain": [], "collect": [], "early": []}
    rows = 0

    @torch.no_grad()
    def plain():
        for s in range(0, len(view), args.batch):
            model(view.collate_fn([view[j] for j in range(s, min(s + args.batch, len(view)))]))

    def coll(early, tag):
        nonlocal rows
        d = os.path.join(tmp, tag)
        shutil.rmtree(d, ignore_errors=True)
        st = collect_rows(model, ds, args.site, "audio", d, batch_size=args.batch, progress=False, stop_early=early)
        rows = len(st)

    plain()  # warm-up: hook order, caches
    coll(True, "w")
    for _ in range(args.reps):
        times["plain"].append(_timed(plain))
        times["collect"].append(_timed(lambda: coll(False, "c")))
        times["early"].append(_timed(lambda: coll(True, "e")))
    del batches
    return {"times": times, "rows": rows}


def training(args, X) -> dict:
    from workbench.analysis.sae.train import TrainConfig, train_sae

    reps = int(np.ceil(args.train_rows / len(X)))
    rows = np.tile(X, (reps, 1))[: args.train_rows]
    cfg = TrainConfig(width=args.width, k=args.k, batch_size=1024, steps=2, warmup_steps=10)
    t_warm, c_warm = _cpu_timed(lambda: train_sae(rows, cfg, progress=False))
    cfg.steps = 2 + args.steps
    t_all, c_all = _cpu_timed(lambda: train_sae(rows, cfg, progress=False))
    per_step = (t_all - t_warm) / args.steps
    return {"steps_per_s": 1 / per_step, "s_per_step": per_step, "cpu_s_per_step": (c_all - c_warm) / args.steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="results/checkpoints/delayed/final")
    p.add_argument("--site", default="blocks.12.hook_resid_post")
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--width", type=int, default=4096)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--train-rows", type=int, default=20_000)
    p.add_argument("--target-rows", type=int, default=100_000)
    p.add_argument(
        "--no-collection",
        action="store_true",
        help="skip the collection timings; train on random rows of width 576 (speed does not depend on values)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.no_collection:
        print(
            f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        report_training(args, np.random.default_rng(0).standard_normal((4096, 576)).astype(np.float32))
        return
    from workbench.analysis.core import load_for_analysis

    model, ds = load_for_analysis(args.checkpoint)
    keep = set(list(dict.fromkeys(r["file_name"] for r in ds.rows))[: args.clips])
    ds.rows = [r for r in ds.rows if r["file_name"] in keep]
    print(
        f"checkpoint {args.checkpoint}, site {args.site} (audio positions), {len(keep)} clips, batch {args.batch}, "
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    tmp = tempfile.mkdtemp(prefix="sae-cost-")
    try:
        c = collection(args, model, ds, tmp)
        t = {k: np.asarray(v) for k, v in c["times"].items()}
        for name in ("plain", "collect", "early"):
            print(
                f"  {name:8s} {np.median(t[name]):7.2f} s (min {t[name].min():.2f}, max {t[name].max():.2f})"
                + ("" if name == "plain" else f"   {c['rows'] / np.median(t[name]):8.1f} rows/s")
            )
        for name in ("collect", "early"):
            r = t[name] / t["plain"]
            print(f"  ratio {name}/plain: {np.median(r):.2f} (per repetition {', '.join(f'{x:.2f}' for x in r)})")
        from workbench.analysis.sae.activations import RowStore

        X = RowStore(os.path.join(tmp, "e")).matrix()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report_training(args, X)


def report_training(args, X) -> None:
    tr = training(args, X)
    steps = int(10 * (args.target_rows // 1024))
    est = steps * tr["s_per_step"]
    print(
        f"SAE training: width {args.width}, k {args.k}, batch 1024, d_in {X.shape[1]}: {tr['steps_per_s']:.2f} steps/s "
        f"({tr['s_per_step']:.3f} s/step, {args.steps} steps on {args.train_rows} rows)"
    )
    print(
        f"  extrapolated: 10 epochs of {args.target_rows} rows = {steps} steps ~ {est / 60:.1f} min "
        f"({'within' if est <= 600 else 'over'} 10 min at this load; measured on {args.train_rows} rows, "
        f"not {args.target_rows})"
    )
    cpu = steps * tr["cpu_s_per_step"]
    print(
        f"  CPU time {tr['cpu_s_per_step']:.3f} s/step (all threads): on 2 free cores the run would take between "
        f"{cpu / 2 / 60:.1f} min (perfect 2-thread scaling) and {cpu / 60:.1f} min (none); the wall time above "
        f"includes waiting for cores shared with other jobs"
    )


if __name__ == "__main__":
    main()
