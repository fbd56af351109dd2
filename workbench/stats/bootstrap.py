"""The one bootstrap of the workbench: resampling indices, percentile intervals, and the seed-aware (two-level)
interval of a paired contrast, with the verdict rule that reads it.

Used by :mod:`workbench.claims.compare` (cell CIs over items), :mod:`workbench.analysis.probes` (probe metric CIs over
clips) and :mod:`workbench.claims.seeds` (contrasts over training seeds and test clips).

**Two-level interval of a paired contrast** (:func:`two_level_interval`). Input: ``diff[s, c]``, the summed
per-row score difference (variant minus reference, paired on the same rows) of test clip ``c`` under training
seed ``s``, and ``n[c]``, that clip's number of rows. The estimate is the mean over seeds of the row-weighted
difference ``sum_c diff[s, c] / sum_c n[c]``. Every seed answered the *same* clips, so seeds and clips are crossed,
not nested: one bootstrap replicate resamples the seeds with replacement and then the clips with replacement,
the clip resample shared by the chosen seeds (a clip that is easy for one seed's contrast tends to be easy for
the others', and resampling clips independently per seed would average that shared part away). Clips, not rows,
are the resampled unit: the ~7 task rows of one clip are correlated.

With few seeds (3) a percentile interval of the seed level is as narrow as the range of the seeds and covers the
true contrast in only about 3 of 4 cases when the seed variance dominates (measured in tests/test_stats.py).
So with two or more seeds the interval is ``estimate +- t * SE``: ``SE^2 = V_seed * S / (S - 1) + V_clip * C /
(C - 1)``, where ``V_seed`` and ``V_clip`` are the bootstrap variances of the estimate when only the seeds or
only the clips are resampled (the same replicates' draws; the factors undo the bootstrap's ``(k - 1) / k``
shrinkage), and ``t`` is Student's quantile with Welch-Satterthwaite degrees of freedom ``(V_s + V_c)^2 /
(V_s^2 / (S - 1) + V_c^2 / (C - 1))`` (close to ``S - 1`` when seeds dominate, large when clips do). With one
seed it falls back to the percentile interval of the clip bootstrap (and says so: the method column).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["stable_seed", "resample_indices", "percentile_ci", "bootstrap_ci", "bootstrap_weights", "TwoLevel",
           "two_level_interval", "decide_contrast", "decide_claim", "VERDICT_RULE"]

VERDICT_RULE = ("agree only when the seed-aware 95% interval of every contrast of the claim lies above 0 and the "
                "contrast is positive for every training seed; disagree when an interval lies below 0; otherwise "
                "inconclusive")


def stable_seed(*key) -> int:
    """A process-independent integer for ``key`` (crc32; Python's ``hash()`` is salted per process)."""
    return zlib.crc32("\x1f".join(str(k) for k in key).encode())


def resample_indices(rng: np.random.Generator, n: int, resamples: int, chunk: int | None = None) -> Iterator[np.ndarray]:
    """Bootstrap index matrices ``[k, n]`` (rows drawn with replacement from ``range(n)``), ``resamples`` rows in
    all, in chunks of ``chunk`` rows (``None``: one chunk). The chunking is part of the random stream: the same
    ``rng``, ``n`` and ``chunk`` give the same indices."""
    step = resamples if chunk is None else chunk
    for start in range(0, resamples, max(step, 1)):
        yield rng.integers(0, n, size=(min(step, resamples - start), n))


def percentile_ci(stats: np.ndarray, level: float = 0.95, nan_ok: bool = False) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (``nan_ok``: ignore NaN replicates)."""
    a = (1 - level) / 2
    q = np.nanquantile if nan_ok else np.quantile
    lo, hi = q(stats, [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_ci(values: np.ndarray, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` (NaNs dropped) over bootstrap resamples of its entries;
    (nan, nan) with fewer than 2 finite values."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return (np.nan, np.nan)
    idx = next(resample_indices(np.random.default_rng(seed), len(v), resamples))
    a = round((1 - level) / 2, 12)  # 0.025 exactly for 95% (not 0.025000000000000022)
    lo, hi = np.quantile(v[idx].mean(1), [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_weights(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """``[resamples, n]`` counts: how often each unit is drawn in each bootstrap resample of size ``n``."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)


@dataclass(frozen=True)
class TwoLevel:
    """A paired contrast over seeds and clips: the estimate, its 95% interval, the per-seed estimates."""

    estimate: float
    ci_low: float
    ci_high: float
    per_seed: tuple[float, ...]
    n_seeds: int
    n_clips: int
    n_rows: int
    method: str
    se: float = float("nan")
    df: float = float("nan")


def _seed_estimates(diff: np.ndarray, n: np.ndarray) -> np.ndarray:
    return diff.sum(axis=1) / n.sum()


def two_level_interval(diff: np.ndarray, n: np.ndarray, resamples: int = 2000, seed: int = 0, level: float = 0.95,
                       key: tuple = ()) -> TwoLevel:
    """Seed-aware interval of a paired contrast (see the module docstring). ``diff``: ``[S, C]`` per-seed,
    per-clip summed score differences; ``n``: ``[C]`` rows per clip (the same for every seed)."""
    diff, n = np.asarray(diff, float), np.asarray(n, float)
    if diff.ndim != 2 or n.shape != (diff.shape[1],):
        raise ValueError(f"diff must be [seeds, clips] and n [clips]; got {diff.shape} and {n.shape}")
    S, C = diff.shape
    if S < 1 or C < 2 or n.sum() <= 0:
        raise ValueError(f"need at least one seed and two clips with rows; got {S} seeds, {C} clips, {n.sum():.0f} rows")
    rng = np.random.default_rng([seed, stable_seed("two-level", *key)])
    per_seed = _seed_estimates(diff, n)
    est = float(per_seed.mean())
    w = bootstrap_weights(rng, C, resamples)  # [R, C] clip counts
    clip_sums = w @ diff.T  # [R, S]: each seed's summed difference over the resampled clips
    rows = w @ n  # [R]
    common = dict(estimate=est, per_seed=tuple(float(x) for x in per_seed), n_seeds=S, n_clips=C, n_rows=int(n.sum()))
    if S == 1:
        lo, hi = percentile_ci(clip_sums[:, 0] / rows, level)
        return TwoLevel(ci_low=lo, ci_high=hi, method="clip bootstrap (1 training seed: seed variance not covered)",
                        se=float(np.std(clip_sums[:, 0] / rows, ddof=1)), **common)
    u = bootstrap_weights(rng, S, resamples)  # [R, S] seed counts
    v_clip = float(np.var(clip_sums.mean(axis=1) / rows, ddof=1))  # clips resampled, every seed once
    v_seed = float(np.var(u @ per_seed / S, ddof=1))  # seeds resampled, every clip once
    vs, vc = v_seed * S / (S - 1), v_clip * C / (C - 1)
    se = float(np.sqrt(vs + vc))
    if se == 0:
        return TwoLevel(ci_low=est, ci_high=est, method="two-level bootstrap (no variation)", se=0.0, df=float("inf"),
                        **common)
    df = (vs + vc) ** 2 / (vs ** 2 / (S - 1) + vc ** 2 / (C - 1))
    from scipy.stats import t as student_t

    half = float(student_t.ppf(0.5 + level / 2, df)) * se
    return TwoLevel(ci_low=est - half, ci_high=est + half, se=se, df=float(df),
                    method=f"two-level bootstrap over {S} seeds and {C} clips, t interval (df {df:.1f})", **common)


def decide_contrast(ci_low: float, ci_high: float, per_seed=()) -> str:
    """The rule for one contrast: agree (interval above 0 and every seed's estimate above 0), disagree (interval
    below 0), inconclusive otherwise; 'no data' when the interval is missing."""
    if ci_low is None or ci_high is None or np.isnan(ci_low) or np.isnan(ci_high):
        return "no data"
    if ci_high < 0:
        return "disagree"
    if ci_low > 0 and all(x > 0 for x in per_seed):
        return "agree"
    return "inconclusive"


def decide_claim(verdicts: list[str]) -> str:
    """A claim's verdict from its contrasts' verdicts: disagree if any disagrees, agree if all agree, 'no data'
    if any has none, else inconclusive."""
    if not verdicts or "no data" in verdicts:
        return "no data"
    if "disagree" in verdicts:
        return "disagree"
    return "agree" if all(v == "agree" for v in verdicts) else "inconclusive"
