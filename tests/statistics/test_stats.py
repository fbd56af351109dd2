"""workbench.stats.bootstrap: the seed-aware interval covers the true contrast 95% of the time on simulated data with known
seed, clip and row variance (checked with enough simulations to tell 0.95 from 0.925), is wider than a row-only
interval when seeds vary, and the verdict rule decides as written.

The wide coverage study (2-10 seeds, seed SD 0.01-0.06, the committed runs' clip components, 5,000 simulations per
cell, old vs new) is ``benchmarks/interval_coverage.py``; its table is in results/README.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from workbench.stats.bootstrap import decide_claim, decide_contrast, percentile_ci, resample_indices, two_level_interval

TRUE = 0.05  # the true contrast (expected difference in accuracy over seeds and clips)


def _simulate(rng, S, C, sd_seed, sd_clip, sd_row):
    """Row-level paired score differences: TRUE + seed effect + clip effect (shared by seeds) + row noise; each
    clip has 5-8 rows. Returns (diff[S, C] per-clip sums, n[C], rows of seed 0 as a flat array)."""
    n = rng.integers(5, 9, size=C)
    u = rng.normal(0, sd_seed, S)
    v = rng.normal(0, sd_clip, C)
    rows = [TRUE + u[:, None] + v[c] + rng.normal(0, sd_row, (S, n[c])) for c in range(C)]  # each [S, n_c]
    diff = np.stack([r.sum(axis=1) for r in rows], axis=1)
    return diff, n.astype(float), np.concatenate([r[0] for r in rows])


def _row_only(rows, R, rng):
    """Today's interval: percentile bootstrap over the rows of one training run."""
    stats = np.concatenate([rows[idx].mean(axis=1) for idx in resample_indices(rng, len(rows), R)])
    return percentile_ci(stats)


def _coverage(sd_seed, sims=200, S=3, C=120, R=400):
    rng = np.random.default_rng(12345)
    hit = row_hit = 0
    widths, row_widths = [], []
    for i in range(sims):
        diff, n, rows0 = _simulate(rng, S, C, sd_seed, sd_clip=0.08, sd_row=0.5)
        r = two_level_interval(diff, n, resamples=R, seed=i)
        lo, hi = _row_only(rows0, R, rng)
        hit += r.ci_low <= TRUE <= r.ci_high
        row_hit += lo <= TRUE <= hi
        widths.append(r.ci_high - r.ci_low)
        row_widths.append(hi - lo)
    return hit / sims, row_hit / sims, float(np.mean(widths)), float(np.mean(row_widths))


def _committed_like(rng, sims, S, n, sd_seed, sd_clip=0.058, sd_row=0.46):
    """``[sims, S, C]`` per-clip summed differences: TRUE + seed shift + clip effect shared by the seeds (per row)
    + seed-specific row noise; the clip and row SDs are those benchmarks/interval_coverage.py estimates from the
    committed runs (mean sd_clip of the four claim contrasts, sd_row)."""
    u = rng.normal(0, sd_seed, (sims, S, 1))
    g = rng.normal(0, sd_clip, (sims, 1, len(n)))
    return n * (TRUE + u + g) + np.sqrt(n) * sd_row * rng.standard_normal((sims, S, len(n)))


def test_coverage_is_95_percent_where_the_committed_runs_live():
    """3 seeds, 240 clips of 5-7 rows, seed SD 0.05 (pal - lal's seeds spread by 0.05): the cell where the
    Welch-Satterthwaite t interval (before issue 25) covered about 0.925. With 2,000 simulations the binomial SE
    of a coverage is 0.0049 at 0.95 and 0.0059 at 0.925, so the bound 0.9375 lies 2.6 SE below 0.95 and 2.1 SE
    above 0.925: an interval that truly covers 95% fails it with probability 0.5%, one that covers 92.5% passes
    with probability 1.7% (the simulation is seeded, so the outcome is fixed). The upper bound (2.6 SE above 0.95)
    catches an interval that is needlessly wide. Calls the public ``two_level_interval`` once per simulation."""
    rng = np.random.default_rng(2025)
    n = rng.integers(5, 8, size=240).astype(float)
    diff = _committed_like(rng, 2000, 3, n, sd_seed=0.05)
    hits = 0
    for i, d in enumerate(diff):
        r = two_level_interval(d, n, seed=i)
        hits += r.ci_low <= TRUE <= r.ci_high
    cover = hits / len(diff)
    assert 0.9375 <= cover <= 0.9625, cover


def test_two_level_interval_covers_the_true_contrast_and_is_wider_than_row_only_with_seed_variance():
    cover, row_cover, width, row_width = _coverage(sd_seed=0.03)
    assert 0.9 <= cover <= 0.99, cover
    assert width > 1.5 * row_width, (width, row_width)
    assert row_cover < 0.8, row_cover  # the row-only interval ignores the seed: it misses often


def test_without_seed_variance_coverage_is_still_about_95_percent():
    cover, _, _, _ = _coverage(sd_seed=0.0)
    assert 0.9 <= cover <= 0.99, cover


def test_one_seed_falls_back_to_the_clip_bootstrap_and_says_so():
    rng = np.random.default_rng(0)
    diff, n, _ = _simulate(rng, 1, 120, 0.0, 0.08, 0.5)
    r = two_level_interval(diff, n, resamples=500)
    assert r.n_seeds == 1 and "clip bootstrap" in r.method and "seed variance not covered" in r.method
    assert r.ci_low < r.estimate < r.ci_high
    assert r.estimate == pytest.approx(diff.sum() / n.sum())
    again = two_level_interval(diff, n, resamples=500)
    assert (again.ci_low, again.ci_high) == (r.ci_low, r.ci_high)  # deterministic


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"diff must be \[seeds, clips\]"):
        two_level_interval(np.zeros((2, 3)), np.ones(4))
    with pytest.raises(ValueError, match="two clips"):
        two_level_interval(np.zeros((2, 1)), np.ones(1))


def test_chunked_resampling_is_part_of_the_stream():
    a = np.concatenate(list(resample_indices(np.random.default_rng(1), 7, 600, chunk=256)))
    b = np.concatenate(list(resample_indices(np.random.default_rng(1), 7, 600, chunk=256)))
    assert a.shape == (600, 7) and (a == b).all() and a.min() >= 0 and a.max() <= 6


@pytest.mark.parametrize(
    "lo, hi, per_seed, want",
    [
        (0.02, 0.1, (0.05, 0.04, 0.06), "agree"),
        (0.02, 0.1, (0.09, 0.08, -0.01), "inconclusive"),  # pooled interval above 0, one seed's sign negative
        (-0.1, -0.02, (-0.05, -0.04, 0.01), "disagree"),
        (-0.02, 0.1, (0.05, 0.04, 0.06), "inconclusive"),
        (0.02, 0.1, (), "agree"),
        (float("nan"), float("nan"), (), "no data"),
    ],
)
def test_verdict_rule_for_one_contrast(lo, hi, per_seed, want):
    assert decide_contrast(lo, hi, per_seed) == want


@pytest.mark.parametrize(
    "verdicts, want",
    [
        (["agree", "agree"], "agree"),
        (["agree", "inconclusive"], "inconclusive"),
        (["agree", "disagree"], "disagree"),
        (["agree", "no data"], "no data"),
        ([], "no data"),
    ],
)
def test_verdict_rule_for_a_claim(verdicts, want):
    assert decide_claim(verdicts) == want


def test_pooled_interval_above_zero_but_one_seed_negative_is_inconclusive_end_to_end():
    # two seeds with a large positive contrast, one with a small negative one, many clips: the interval's
    # lower end is above 0 only if the t interval is narrow, so check the rule on whatever the interval is
    rng = np.random.default_rng(3)
    n = rng.integers(5, 9, size=200).astype(float)
    diff = np.stack([(m + rng.normal(0, 0.1, 200)) * n for m in (0.20, 0.21, -0.05)])
    r = two_level_interval(diff, n, resamples=500)
    assert min(r.per_seed) < 0 < r.estimate
    assert decide_contrast(r.ci_low, r.ci_high, r.per_seed) == "inconclusive"
    assert decide_contrast(0.01, r.ci_high, r.per_seed) == "inconclusive"  # even were the interval above 0


def test_bootstrap_ci_of_a_mean():
    """The one row bootstrap of a mean (listening heads, steering): NaNs dropped, the interval holds the mean and
    narrows with more data; fewer than two values give no interval."""
    import numpy as np

    from workbench.stats.bootstrap import bootstrap_ci

    rng = np.random.default_rng(0)
    small, big = rng.normal(1.0, 1.0, 30), rng.normal(1.0, 1.0, 3000)
    lo, hi = bootstrap_ci(np.append(small, np.nan), 1000, 0)
    assert lo < small.mean() < hi and (lo, hi) == bootstrap_ci(small, 1000, 0)
    blo, bhi = bootstrap_ci(big, 1000, 0)
    assert blo < 1.0 < bhi and (bhi - blo) < (hi - lo) / 5
    assert all(np.isnan(bootstrap_ci(np.array([1.0, np.nan]))))


def test_seeds_that_tie_by_chance_still_get_an_interval_of_their_clip_noise():
    """Three seeds with the same estimate (whole-row differences on few clips tie) but different clips: the seed
    spread is 0 and the shared clip part estimates 0, so without the floor the interval would have zero width."""
    n = np.full(20, 2.0)
    diff = np.zeros((3, 20))
    diff[0, [0, 1]] = (1, -1)
    diff[1, [2, 3]] = (2, -2)
    diff[2, [4, 5, 6]] = (1, 1, -2)
    r = two_level_interval(diff, n)
    assert r.per_seed == (0.0, 0.0, 0.0) and r.ci_low < 0 < r.ci_high
    assert "calibrated t" in r.method and r.seed_share == 1.0


def test_the_multiplier_runs_from_t_of_the_clips_to_t_of_the_seeds_and_the_batch_matches_one_call():
    """Share 1 (seeds only): Student's t with S - 1 degrees of freedom; share 0 (clips only): with C - 1 (scipy's
    quantiles as the oracle). The vectorised form gives what one call gives."""
    from scipy import stats

    from workbench.stats.bootstrap import two_level_intervals
    from workbench.stats.calibrated_t import seed_share_multiplier

    for S, C in ((2, 240), (3, 120), (5, 23)):
        lo, hi = seed_share_multiplier(np.array([0.0, 1.0]), S, C)
        assert hi == pytest.approx(stats.t.ppf(0.975, S - 1), rel=5e-3)  # within the quadrature's error
        assert lo == pytest.approx(stats.t.ppf(0.975, C - 1), rel=5e-3)
    rng = np.random.default_rng(5)
    n = rng.integers(5, 8, size=60).astype(float)
    diff = _committed_like(rng, 4, 3, n, sd_seed=0.03)
    batch = two_level_intervals(diff, n)
    for i, d in enumerate(diff):
        one = two_level_interval(d, n)
        assert (one.ci_low, one.ci_high) == pytest.approx((batch["ci_low"][i], batch["ci_high"][i]), abs=1e-12)
