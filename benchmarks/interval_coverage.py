"""Coverage of the seed-aware interval (``workbench.stats.bootstrap.two_level_interval``), old vs new, on contrasts simulated
like the committed runs: how often the 95% interval holds the true contrast, and its mean width.

Simulation (one cell = a number of training seeds S and a seed SD). Each simulated contrast has the committed
runs' 240 test clips (both splits pooled) with their closed rows per clip ``n[c]`` (mean 5.7), and per clip and
seed the summed paired difference

    diff[s, c] = n[c] * (TRUE + u[s] + g[c]) + sqrt(n[c]) * sd_row * e[s, c],   u ~ N(0, seed SD), g ~ N(0, sd_clip)

``g`` is the clip effect shared by every seed (per row), ``e`` the seed-specific row noise (standard normal).
``sd_clip`` and ``sd_row`` are estimated from the committed answers (``results/checkpoints/VARIANT[/seed-S]/
{eval,eval-test-seed1}/answers.csv`` via ``workbench.claims.seeds.load_clip_scores``): for each claim contrast, three
seeds, by the method of moments on the per-clip residuals (the seed-by-clip spread gives ``sd_row``, the spread of
the seed-mean residual beyond it gives ``sd_clip``). ``--clips`` picks the smallest, the mean or the largest
``sd_clip`` of the four contrasts (default: all three; ``sd_row`` is their mean). The seed SD is the SD of the
seed's own shift ``u``; the seeds' estimates spread more (``sd_row`` adds about 0.012).

``--model resampled`` (2 or 3 seeds) keeps the committed answers' own clip effects, whole-row and not normal:
each simulation takes one claim contrast's per-clip residuals ``diff[s, c] - n[c] * y_s`` of its three seeds
(``y_s`` the seed's estimate), draws 240 clips with replacement (the same draw for every seed), takes S of the
three seeds in random order and adds ``n[c] * (TRUE + u[s])``.

Methods, each applied to the same simulated data:
* ``old``: the interval of ef57a41 (before issue 25): ``estimate +- t(df) * SE``, ``SE^2 = var(y_s) / S + V_c``
  (``V_c`` the clip bootstrap's variance of the seed-mean estimate), Welch-Satterthwaite ``df``; the bootstrap
  variances are replaced by their closed-form limits (no Monte Carlo noise; run the default test suite's coverage
  test against the old code for the bootstrap itself);
* ``new``: ``workbench.stats.bootstrap.two_level_intervals`` (the library's vectorised ``two_level_interval``).

Usage: nice python benchmarks/interval_coverage.py [--seeds 2,3,5,10] [--sds 0.01,0.02,0.035,0.05,0.06]
       [--sims 5000] [--clips small,mean,large] [--model normal|resampled]
       [--out results/interval_coverage.csv]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

TRUE = 0.08  # the simulated true contrast (any value gives the same coverage: the model is shift-invariant)


def committed_components(root: str = "results/checkpoints") -> tuple[np.ndarray, dict[str, float], float]:
    """``n [C]`` of the committed pooled test clips, ``sd_clip`` per claim contrast and the mean ``sd_row``."""
    from workbench.claims.registry import contrast_pairs
    from workbench.claims.seeds import _matrix, load_clip_scores

    clips = load_clip_scores(root)
    sd_clip, sd_row, n = {}, [], None
    for _, a, b in contrast_pairs():
        diff, n = _matrix(clips, a, b, ["test", "test-seed1"], [0, 1, 2])
        S, C = diff.shape
        z = diff - np.outer(diff.sum(1) / n.sum(), n)  # [S, C] residual of each clip about its seed's estimate
        z_mean = z.mean(0)
        row_var = ((z - z_mean) ** 2).sum() / ((S - 1) * (C - 1)) / n.mean()  # per-row seed-specific variance
        clip_var = ((z_mean**2).sum() * C / (C - 1) - row_var * n.sum() / S) / (n**2).sum()
        sd_clip[f"{a} - {b}"] = float(np.sqrt(max(clip_var, 0.0)))
        sd_row.append(row_var)
    return n, sd_clip, float(np.sqrt(np.mean(sd_row)))


def committed_residuals(root: str = "results/checkpoints") -> list[tuple[np.ndarray, np.ndarray]]:
    """Per claim contrast: ``(residuals [3, C], n [C])`` of the committed runs (both test splits pooled)."""
    from workbench.claims.registry import contrast_pairs
    from workbench.claims.seeds import _matrix, load_clip_scores

    clips = load_clip_scores(root)
    out = []
    for _, a, b in contrast_pairs():
        diff, n = _matrix(clips, a, b, ["test", "test-seed1"], [0, 1, 2])
        out.append((diff - np.outer(diff.sum(1) / n.sum(), n), n))
    return out


def simulate_resampled(rng, sims: int, S: int, pool: list, sd_seed: float) -> tuple[np.ndarray, np.ndarray]:
    """``([sims, S, C], n [sims, C])``: committed residuals, clips resampled, plus seed shifts (docstring)."""
    diffs, ns = [], []
    for i in range(sims):
        resid, n = pool[i % len(pool)]
        clips = rng.integers(0, len(n), len(n))
        seeds = rng.permutation(resid.shape[0])[:S]
        u = rng.normal(0.0, sd_seed, (S, 1))
        diffs.append(resid[np.ix_(seeds, clips)] + n[clips] * (TRUE + u))
        ns.append(n[clips])
    return np.stack(diffs), np.stack(ns)


def simulate(rng, sims: int, S: int, n: np.ndarray, sd_seed: float, sd_clip: float, sd_row: float) -> np.ndarray:
    """``[sims, S, C]`` simulated per-clip summed differences (module docstring)."""
    u = rng.normal(0.0, sd_seed, (sims, S, 1))
    g = rng.normal(0.0, sd_clip, (sims, 1, len(n)))
    e = rng.standard_normal((sims, S, len(n)))
    return n * (TRUE + u + g) + np.sqrt(n) * sd_row * e


def old_interval(diff: np.ndarray, n: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The pre-issue-25 interval in closed form: ``(low, high)`` each ``[sims]``."""
    from scipy import stats

    S, C = diff.shape[-2:]
    rows = n.sum()
    per_seed = diff.sum(-1) / rows
    est = per_seed.mean(-1)
    z_mean = (diff - per_seed[..., None] * n).mean(-2)
    vc = C / (C - 1) * (z_mean**2).sum(-1) / rows**2
    vs = per_seed.var(-1, ddof=1) / S
    df = (vs + vc) ** 2 / (vs**2 / (S - 1) + vc**2 / (C - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * np.sqrt(vs + vc)
    return est - half, est + half


def _intervals(diff: np.ndarray, n: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Old and new intervals of ``diff [sims, S, C]`` with ``n [C]`` or one ``n`` per simulation ``[sims, C]``."""
    from workbench.stats.bootstrap import two_level_intervals

    if n.ndim == 1:
        new = two_level_intervals(diff, n)
        return {"old": old_interval(diff, n), "new": (new["ci_low"], new["ci_high"])}
    rows = [(old_interval(d, m), two_level_intervals(d, m)) for d, m in zip(diff, n)]
    return {
        "old": (np.array([o[0] for o, _ in rows]), np.array([o[1] for o, _ in rows])),
        "new": (np.array([r["ci_low"] for _, r in rows]), np.array([r["ci_high"] for _, r in rows])),
    }


def run_cell(
    S: int,
    sd_seed: float,
    sd_clip: float,
    sd_row: float,
    n: np.ndarray,
    sims: int,
    chunk: int = 1000,
    pool: list | None = None,
):
    """Coverage and mean width of each method in one cell (``pool``: the resampled model's residuals)."""
    from workbench.stats.bootstrap import stable_seed

    rng = np.random.default_rng(stable_seed("interval-coverage", S, sd_seed, sd_clip, sd_row, pool is not None))
    hits = {"old": 0, "new": 0}
    widths = {"old": 0.0, "new": 0.0}
    for start in range(0, sims, chunk):
        k = min(chunk, sims - start)
        diff, ns = (
            simulate_resampled(rng, k, S, pool, sd_seed)
            if pool
            else (simulate(rng, k, S, n, sd_seed, sd_clip, sd_row), n)
        )
        for name, (lo, hi) in _intervals(diff, ns).items():
            hits[name] += int(((lo <= TRUE) & (TRUE <= hi)).sum())
            widths[name] += float((hi - lo).sum())
    return {k: hits[k] / sims for k in hits}, {k: widths[k] / sims for k in widths}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="2,3,5,10")
    p.add_argument("--sds", default="0.01,0.02,0.035,0.05,0.06", help="seed SDs (of the contrast, accuracy units)")
    p.add_argument("--sims", type=int, default=5000, help="simulated contrasts per cell (>= 2000)")
    p.add_argument("--clips", default="small,mean,large", help="clip-effect settings: small, mean, large sd_clip")
    p.add_argument(
        "--model",
        choices=["normal", "resampled"],
        default="normal",
        help="normal clip effects, or the committed residuals resampled (2-3 seeds)",
    )
    p.add_argument("--checkpoints", default="results/checkpoints")
    p.add_argument("--out", default=None, help="also write the table here (csv)")
    a = p.parse_args(argv)
    n, per_contrast, sd_row = committed_components(a.checkpoints)
    clip_sds = {
        "small": min(per_contrast.values()),
        "mean": float(np.mean(list(per_contrast.values()))),
        "large": max(per_contrast.values()),
    }
    print(
        f"committed runs: {len(n)} clips, {n.mean():.2f} rows per clip (min {n.min():.0f}, max {n.max():.0f}); "
        f"sd_row {sd_row:.3f}; sd_clip per contrast: " + ", ".join(f"{k} {v:.3f}" for k, v in per_contrast.items())
    )
    print(f"{a.sims} simulations per cell; binomial SE of a coverage of 0.95: {np.sqrt(0.95 * 0.05 / a.sims):.4f}\n")
    print("| clips (sd_clip) | seeds | seed SD | old coverage | new coverage | old mean width | new mean width |")
    print("|---|---|---|---|---|---|---|")
    rows, t0 = [], time.perf_counter()
    pool = committed_residuals(a.checkpoints) if a.model == "resampled" else None
    for clip_name in a.clips.split(",") if pool is None else ["committed"]:
        clip_sds.setdefault("committed", float("nan"))  # the resampled model has the committed clips' own
        for S in (int(x) for x in a.seeds.split(",")):
            for sd in (float(x) for x in a.sds.split(",")):
                cover, width = run_cell(S, sd, clip_sds[clip_name], sd_row, n, a.sims, pool=pool)
                rows.append(
                    {
                        "clips": clip_name,
                        "sd_clip": clip_sds[clip_name],
                        "sd_row": sd_row,
                        "seeds": S,
                        "seed_sd": sd,
                        "sims": a.sims,
                        "old_coverage": cover["old"],
                        "new_coverage": cover["new"],
                        "old_width": width["old"],
                        "new_width": width["new"],
                    }
                )
                label = "committed residuals" if pool else f"{clip_name} ({clip_sds[clip_name]:.3f})"
                print(
                    f"| {label} | {S} | {sd:.3f} | {cover['old']:.3f} | "
                    f"{cover['new']:.3f} | {width['old']:.3f} | {width['new']:.3f} |",
                    flush=True,
                )
    new = np.array([r["new_coverage"] for r in rows])
    old = np.array([r["old_coverage"] for r in rows])
    print(
        f"\nnew coverage {new.min():.3f}-{new.max():.3f} (old {old.min():.3f}-{old.max():.3f}) over {len(rows)} "
        f"cells; {time.perf_counter() - t0:.0f} s"
    )
    if a.out:
        import pandas as pd

        pd.DataFrame(rows).to_csv(a.out, index=False)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
