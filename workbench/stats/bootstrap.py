"""The one bootstrap of the workbench: resampling indices, percentile intervals, and the seed-aware (two-level)
interval of a paired contrast, with the verdict rule that reads it.

Used by :mod:`workbench.claims.compare` (cell CIs over items), :mod:`workbench.analysis.probes` (probe metric CIs over
clips) and :mod:`workbench.claims.seeds` (contrasts over training seeds and test clips).

**Two-level interval of a paired contrast** (:func:`two_level_interval`). Input: ``diff[s, c]``, the summed
per-row score difference (variant minus reference, paired on the same rows) of test clip ``c`` under training
seed ``s``, and ``n[c]``, that clip's number of rows. The estimate is the mean over seeds of the row-weighted
difference ``y_s = sum_c diff[s, c] / N`` (``N = sum_c n[c]``). Every seed answered the *same* clips, so seeds and
clips are crossed, not nested: ``y_s = mu + u_s + a + b_s``, with ``u_s`` the seed's own shift, ``a`` the part of
the clip sample shared by all seeds (a clip that is easy for one seed's contrast tends to be easy for the others')
and ``b_s`` the seed-specific clip-and-row noise. Clips, not rows, are the unit: the ~6 task rows of a clip are
correlated. The estimate's variance is ``V = V_seed + V_clip``:

* ``V_seed = Var(u + b) / S``, estimated by ``A = var(y_s) / S`` (``S - 1`` degrees of freedom: all the spread of
  the seeds, whatever its source);
* ``V_clip = Var(a)``, estimated by ``B = V_c - I / S``: ``V_c`` is the clip bootstrap's variance of the
  seed-mean estimate (the clip draw shared by the seeds) and ``I`` the mean over seeds of the same variance of one
  seed's clip residuals about the seed mean (the seed-by-clip noise ``Var(b)``, already inside ``A``); both in
  closed form, the delta-method variance of a ratio ``C / (C - 1) * sum_c z_c^2 / N^2`` with ``z_c = diff[c] - y *
  n[c]`` (what the bootstrap estimates, without its Monte Carlo noise); ``B`` is set to 0 when negative. (Adding
  ``V_c`` to ``A``, as this module did before, counts the seed-by-clip noise twice.)
* Seeds cannot agree better than their clip noise allows: ``A`` is kept at least at ``I / S * q`` with ``q`` the
  2.5% quantile of ``chi2(S - 1) / (S - 1)`` (:data:`SEED_FLOOR_QUANTILE`), the value ``A`` falls below in 2.5%
  of the cases when the seeds differ by that noise alone. It matters only when the per-seed estimates tie by
  chance (few clips, whole-row differences), where ``A = B = 0`` would give an interval of zero width; in the
  coverage study it moves no cell by more than 0.001.

The interval is ``estimate +- h * sqrt(A + B)``. With three seeds ``A`` is uncertain by a large factor (``chi2(2) /
2`` has the 95% range 0.025-3.7), and a t quantile with Welch-Satterthwaite degrees of freedom (this module's
interval until issue 25) under-covers: its degrees of freedom grow when the seeds happen to agree, which is
exactly when ``A`` underestimates ``V_seed``. Simulated like the committed runs (3 seeds, 240 clips, seed SD
0.02-0.06) it covered 0.92-0.95, and 0.87-0.93 with two seeds (``benchmarks/interval_coverage.py``). A
parametric bootstrap-t that simulates the pivot at the estimated components has the same flaw: it too treats the
estimated seed share as the true one. So ``h`` is the calibrated multiplier of
:mod:`workbench.stats.calibrated_t`: a function of the estimated seed share ``A / (A + B)``, solved so that the
coverage is 95% whatever the true share (Welch's 1947 exact-coverage criterion, solved numerically by quadrature;
it runs from ``t(C - 1)`` at share 0 to ``t(S - 1)`` at share 1). It assumes normal seed shifts (three seeds
cannot check that) and uses no random numbers, so it is deterministic and vectorised
(:func:`two_level_intervals` takes a batch). ``benchmarks/interval_coverage.py`` measures 0.94-0.96 in every cell
of 2, 3, 5 and 10 seeds, seed SD 0.01-0.06 and the committed runs' clip components (table in results/README.md).
With one seed it falls back to the percentile interval of the clip bootstrap (and says so: the method column).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "stable_seed",
    "resample_indices",
    "percentile_ci",
    "bootstrap_ci",
    "bootstrap_weights",
    "TwoLevel",
    "seed_clip_components",
    "two_level_intervals",
    "two_level_interval",
    "decide_contrast",
    "decide_claim",
    "VERDICT_RULE",
]

#: ``A`` is kept at least at this quantile of its distribution when seeds differ by clip noise alone (docstring)
SEED_FLOOR_QUANTILE = 0.025

VERDICT_RULE = (
    "agree only when the seed-aware 95% interval of every contrast of the claim lies above 0 and the "
    "contrast is positive for every training seed; disagree when an interval lies below 0; otherwise "
    "inconclusive"
)


def stable_seed(*key) -> int:
    """A process-independent integer for ``key`` (crc32; Python's ``hash()`` is salted per process)."""
    return zlib.crc32("\x1f".join(str(k) for k in key).encode())


def resample_indices(
    rng: np.random.Generator, n: int, resamples: int, chunk: int | None = None
) -> Iterator[np.ndarray]:
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
    """A paired contrast over seeds and clips: the estimate, its 95% interval, the per-seed estimates; ``se`` and
    ``multiplier`` (interval = estimate +- multiplier * se) and ``seed_share`` (the seeds' estimated share of the
    variance) for two or more seeds."""

    estimate: float
    ci_low: float
    ci_high: float
    per_seed: tuple[float, ...]
    n_seeds: int
    n_clips: int
    n_rows: int
    method: str
    se: float = float("nan")
    multiplier: float = float("nan")
    seed_share: float = float("nan")


def _seed_estimates(diff: np.ndarray, n: np.ndarray) -> np.ndarray:
    return diff.sum(axis=-1) / n.sum()


def _check_shapes(diff: np.ndarray, n: np.ndarray) -> None:
    if diff.ndim < 2 or n.shape != (diff.shape[-1],):
        raise ValueError(
            f"diff must be [seeds, clips] (or [..., seeds, clips]) and n [clips]; got {diff.shape} and {n.shape}"
        )
    S, C = diff.shape[-2:]
    if S < 1 or C < 2 or n.sum() <= 0:
        raise ValueError(
            f"need at least one seed and two clips with rows; got {S} seeds, {C} clips, {n.sum():.0f} rows"
        )


def seed_clip_components(diff: np.ndarray, n: np.ndarray) -> dict[str, np.ndarray]:
    """The variance components of the module docstring for a batch of contrasts. ``diff``: ``[..., S, C]`` (S >= 2),
    ``n``: ``[C]``. Returns ``estimate [...]``, ``per_seed [..., S]``, ``v_seed [...]`` (``A``) and ``v_clip [...]``
    (``B``)."""
    diff, n = np.asarray(diff, float), np.asarray(n, float)
    _check_shapes(diff, n)
    S, C = diff.shape[-2:]
    if S < 2:
        raise ValueError(f"the seed component needs at least 2 seeds; got {S}")
    rows = n.sum()
    per_seed = _seed_estimates(diff, n)  # [..., S]
    z = diff - per_seed[..., None] * n  # [..., S, C]: each seed's clip residuals about its own estimate
    z_mean = z.mean(axis=-2)  # [..., C]
    scale = C / (C - 1) / rows**2
    v_mean = scale * (z_mean**2).sum(axis=-1)  # clip bootstrap variance of the seed-mean estimate
    interaction = scale * ((z - z_mean[..., None, :]) ** 2).sum(axis=(-2, -1)) / (S - 1)
    from scipy.stats import chi2

    floor = interaction / S * chi2.ppf(SEED_FLOOR_QUANTILE, S - 1) / (S - 1)  # seeds never agree beyond clip noise
    return {
        "estimate": per_seed.mean(axis=-1),
        "per_seed": per_seed,
        "v_seed": np.maximum(per_seed.var(axis=-1, ddof=1) / S, floor),
        "v_clip": np.maximum(v_mean - interaction / S, 0.0),
    }


def two_level_intervals(diff: np.ndarray, n: np.ndarray, level: float = 0.95) -> dict[str, np.ndarray]:
    """Vectorised :func:`two_level_interval` for ``diff [..., S, C]`` (S >= 2) sharing ``n [C]``: ``estimate,
    ci_low, ci_high, se, multiplier, seed_share``, each ``[...]``."""
    from workbench.stats.calibrated_t import seed_share_multiplier

    comp = seed_clip_components(diff, n)
    S, C = np.shape(diff)[-2:]
    total = comp["v_seed"] + comp["v_clip"]
    share = np.divide(comp["v_seed"], total, out=np.ones_like(total), where=total > 0)
    h = seed_share_multiplier(share, S, C, level)
    se = np.sqrt(total)
    est = comp["estimate"]
    return {
        "estimate": est,
        "ci_low": est - h * se,
        "ci_high": est + h * se,
        "se": se,
        "multiplier": h,
        "seed_share": share,
    }


def two_level_interval(
    diff: np.ndarray, n: np.ndarray, resamples: int = 2000, seed: int = 0, level: float = 0.95, key: tuple = ()
) -> TwoLevel:
    """Seed-aware interval of a paired contrast (see the module docstring). ``diff``: ``[S, C]`` per-seed,
    per-clip summed score differences; ``n``: ``[C]`` rows per clip (the same for every seed). ``resamples``,
    ``seed`` and ``key`` drive the clip bootstrap of one seed (two or more seeds: closed form, no random numbers)."""
    diff, n = np.asarray(diff, float), np.asarray(n, float)
    if diff.ndim != 2:
        raise ValueError(f"diff must be [seeds, clips] and n [clips]; got {diff.shape} and {n.shape}")
    _check_shapes(diff, n)
    S, C = diff.shape
    per_seed = _seed_estimates(diff, n)
    common = dict(
        estimate=float(per_seed.mean()),
        per_seed=tuple(float(x) for x in per_seed),
        n_seeds=S,
        n_clips=C,
        n_rows=int(n.sum()),
    )
    if S == 1:
        rng = np.random.default_rng([seed, stable_seed("two-level", *key)])
        w = bootstrap_weights(rng, C, resamples)  # [R, C] clip counts
        stats = (w @ diff[0]) / (w @ n)
        lo, hi = percentile_ci(stats, level)
        return TwoLevel(
            ci_low=lo,
            ci_high=hi,
            method="clip bootstrap (1 training seed: seed variance not covered)",
            se=float(np.std(stats, ddof=1)),
            **common,
        )
    r = {k: float(v) for k, v in two_level_intervals(diff, n, level).items()}
    if r["se"] == 0:
        return TwoLevel(
            ci_low=r["estimate"], ci_high=r["estimate"], method="two-level interval (no variation)", se=0.0, **common
        )
    return TwoLevel(
        ci_low=r["ci_low"],
        ci_high=r["ci_high"],
        se=r["se"],
        multiplier=r["multiplier"],
        seed_share=r["seed_share"],
        method=f"two-level interval over {S} seeds and {C} clips, calibrated t (seed share "
        f"{r['seed_share']:.2f}, multiplier {r['multiplier']:.2f})",
        **common,
    )


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
