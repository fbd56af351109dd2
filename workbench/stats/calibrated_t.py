"""The multiplier of the seed-aware interval: a t-like quantile with 95% coverage whatever the share of the seeds
in the variance (Welch's 1947 exact-coverage criterion, solved numerically).

Setting (the normal crossed model of :func:`workbench.stats.bootstrap.two_level_interval`). The estimate's error is normal
with variance ``V = V_seed + V_clip``; the estimates of the two parts are ``A ~ V_seed * chi2(k1) / k1`` (``k1 =
S - 1``: from the spread of S per-seed estimates) and ``B ~ V_clip * chi2(k2) / k2`` (``k2 = C - 1``), independent
of the error and of each other. The interval is ``estimate +- h(a) * sqrt(A + B)`` with ``a = A / (A + B)`` (the
estimated seed share). Its coverage depends on the true share ``lam = V_seed / V`` only:

    coverage(lam) = E[ 2 Phi(h(a) sqrt(lam W1 / k1 + (1 - lam) W2 / k2)) - 1 ],  W1 ~ chi2(k1), W2 ~ chi2(k2).

Welch-Satterthwaite's ``h`` (a t quantile with estimated degrees of freedom) and a plug-in parametric bootstrap-t
both set ``h`` from ``a`` as if it were ``lam``; with 3 seeds ``a`` is small exactly when the seeds agree by chance,
i.e. when ``A`` underestimates ``V_seed``, so they under-cover (0.92 at lam = 0.9, measured by this quadrature).
Welch (1947) asked instead for the ``h`` with ``coverage(lam) = level`` at every ``lam``; his series solution
needs many degrees of freedom, so :func:`seed_share_multiplier` solves the equation numerically: ``h`` is
piecewise linear in ``a`` on :data:`KNOTS`, monotone between ``t(k2)`` at ``a = 0`` and ``t(k1)`` at ``a = 1``
(the exact answers when one part is absent), fitted by least squares to ``coverage(lam_j) = level`` on a grid of
``lam`` (midpoint quadrature in the chi-square probabilities; no random numbers; the two ends weighted so that
they hold). With 3 or more seeds the coverage is then within 0.003 of the level at every ``lam`` (:func:`ideal_coverage`);
with 2 seeds (1 degree of freedom) no monotone ``h`` is exact, and the fit stays within 0.94-0.962. A solve
takes about 0.5 s and is cached per (seeds, clips, level).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import optimize, special, stats

__all__ = ["KNOTS", "ideal_coverage", "multiplier_table", "seed_share_multiplier"]

#: estimated seed shares where the multiplier is solved (dense near 1, where it rises to t(S - 1))
KNOTS = np.concatenate([np.linspace(0.0, 0.9, 19)[:-1], 1.0 - np.geomspace(0.1, 1e-3, 12), [1.0]])
_TRUE_SHARES = np.concatenate([[0.0], 1.0 / (1.0 + np.exp(-np.linspace(-8.0, 10.0, 44))), [1.0]])


def _chi2_nodes(k: float, count: int) -> np.ndarray:
    """``[count]`` equal-probability midpoints of ``chi2(k) / k`` (1 where ``k`` is infinite)."""
    if not np.isfinite(k):
        return np.ones(1)
    return stats.chi2.ppf((np.arange(count) + 0.5) / count, k) / k


def _quadrature(k1: float, k2: float, shares: np.ndarray):
    """For each true share: the standard error ``[J, Q]`` (true V = 1) and the estimated share's knot interval
    (``idx [J, Q]``, weight ``frac [J, Q]``) at the quadrature nodes."""
    w1, w2 = _chi2_nodes(k1, 240), _chi2_nodes(k2, 12)
    a = shares[:, None, None] * w1[None, :, None]
    b = (1.0 - shares)[:, None, None] * w2[None, None, :]
    total = (a + b).reshape(len(shares), -1)
    share = np.divide(a, a + b, out=np.zeros(np.broadcast_shapes(a.shape, b.shape)), where=(a + b) > 0)
    share = share.reshape(len(shares), -1)
    idx = np.clip(np.searchsorted(KNOTS, share, side="right") - 1, 0, len(KNOTS) - 2)
    frac = (share - KNOTS[idx]) / (KNOTS[idx + 1] - KNOTS[idx])
    return np.sqrt(total), idx, frac


def _coverage_and_jacobian(h: np.ndarray, se, idx, frac):
    """Coverage ``[J]`` of the interval with knot multipliers ``h [P]`` and its derivative ``[J, P]``."""
    x = (h[idx] * (1 - frac) + h[idx + 1] * frac) * se
    cover = (2 * special.ndtr(x) - 1).mean(axis=1)
    g = np.sqrt(2 / np.pi) * np.exp(-0.5 * x * x) * se / x.shape[1]
    flat = (np.arange(len(cover))[:, None] * len(KNOTS) + idx).ravel()  # [J * Q] cell of (true share, knot)
    size = len(cover) * len(KNOTS)
    jac = np.bincount(flat, (g * (1 - frac)).ravel(), size) + np.bincount(flat + 1, (g * frac).ravel(), size)
    return cover, jac.reshape(len(cover), len(KNOTS))


@lru_cache(maxsize=64)
def multiplier_table(n_seeds: int, n_clips: float, level: float = 0.95) -> tuple[float, ...]:
    """The multiplier ``h`` at each of :data:`KNOTS` for ``n_seeds`` seeds and ``n_clips`` clips (cached)."""
    if n_seeds < 2:
        raise ValueError(f"the calibrated multiplier needs at least 2 seeds; got {n_seeds}")
    k1, k2 = float(n_seeds - 1), float(n_clips - 1)
    q = 0.5 + level / 2
    t1, t2 = stats.t.ppf(q, k1), (stats.t.ppf(q, k2) if np.isfinite(k2) else stats.norm.ppf(q))
    sign = 1.0 if t1 >= t2 else -1.0  # h runs monotonically from t(k2) at share 0 to t(k1) at share 1
    se, idx, frac = _quadrature(k1, k2, _TRUE_SHARES)
    smooth = 1e-3 * np.diff(np.eye(len(KNOTS)), 2, axis=0)  # a light second-difference penalty: no wiggles
    steps = np.tril(np.ones((len(KNOTS), len(KNOTS))))
    steps[:, 1:] *= sign  # h = steps @ theta: theta[0] = h(0), theta[1:] >= 0 the monotone increments

    last: dict = {}

    def evaluate(theta):  # least_squares asks for residuals and Jacobian at the same point: compute both once
        if last.get("theta") is None or not np.array_equal(last["theta"], theta):
            last.update(theta=theta.copy(), out=_coverage_and_jacobian(steps @ theta, se, idx, frac))
        return last["out"]

    weight = np.where((_TRUE_SHARES == 0) | (_TRUE_SHARES == 1), 30.0, 1.0)  # the exact ends: t(k2) and t(k1)

    def residuals(theta):
        return np.concatenate([weight * (evaluate(theta)[0] - level), smooth @ steps @ theta])

    def jacobian(theta):
        return np.vstack([weight[:, None] * evaluate(theta)[1] @ steps, smooth @ steps])

    welch_df = 1.0 / (KNOTS**2 / k1 + (1 - KNOTS) ** 2 / k2)  # start from Welch-Satterthwaite's multiplier
    start = np.abs(np.diff(stats.t.ppf(q, welch_df), prepend=0.0))
    fit = optimize.least_squares(
        residuals, np.maximum(start, 1e-6), jac=jacobian, bounds=(0.0, np.inf), xtol=1e-9, ftol=1e-9
    )
    return tuple(float(x) for x in steps @ fit.x)


def seed_share_multiplier(share, n_seeds: int, n_clips: float, level: float = 0.95) -> np.ndarray:
    """The interval's multiplier at the estimated seed shares ``share`` (any shape, values in [0, 1])."""
    return np.interp(np.clip(share, 0.0, 1.0), KNOTS, multiplier_table(int(n_seeds), float(n_clips), level))


def ideal_coverage(n_seeds: int, n_clips: float, shares, level: float = 0.95) -> np.ndarray:
    """The coverage of the calibrated interval under the normal model at true seed shares ``shares`` (quadrature)."""
    shares = np.asarray(shares, float)
    se, idx, frac = _quadrature(n_seeds - 1.0, n_clips - 1.0, shares)
    h = np.asarray(multiplier_table(int(n_seeds), float(n_clips), level))
    return _coverage_and_jacobian(h, se, idx, frac)[0]
