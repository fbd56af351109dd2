"""Timing two or more variants on a shared, noisy machine: interleaved repetition by repetition, ratios per repetition.

A machine shared with other jobs slows whatever runs during a busy spell. Timing variant A's repetitions, then
B's, lets a spell land on one variant only and bias A/B; running A, B, A, B, ... lets a spell land on both
members of one pair, and the ratio of each pair (one per repetition) cancels it. `ratio_spread` summarises those
per-repetition ratios (median, interquartile range, min-max), so a reader sees whether a difference is resolved.

Used by benchmarks/integration_cost.py and benchmarks/hook_overhead.py (both put this folder on sys.path; the leading underscore keeps it off `./run bench`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(
    variants: dict[str, Callable[[], object]], reps: int, warmup: int = 1, sync: Callable[[], None] = lambda: None
) -> dict[str, list[float]]:
    """{name: [seconds per repetition]}: ``warmup`` untimed calls of each, then ``reps`` rounds of one timed
    call of every variant in turn (``sync`` before each clock read, e.g. torch.cuda.synchronize)."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t)
    return times


def spread(values: list[float]) -> dict[str, float]:
    """{"median", "q1", "q3", "min", "max", "n"} of a list (quartiles: statistics.quantiles, inclusive method)."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values[0],) * 3
    return {
        "median": statistics.median(values),
        "q1": q1,
        "q3": q3,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def ratio_spread(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """`spread` of the per-repetition ratios numerator[i] / denominator[i] (pairs timed back to back)."""
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(f"need one denominator per numerator, got {len(numerator)} and {len(denominator)}")
    return spread([a / b for a, b in zip(numerator, denominator)])


def fmt_spread(s: dict[str, float], digits: int = 2) -> str:
    """'1.23 [IQR 1.20-1.25, min-max 1.18-1.31, n=5]'."""
    f = f"{{:.{digits}f}}"
    return (
        f"{f.format(s['median'])} [IQR {f.format(s['q1'])}-{f.format(s['q3'])}, "
        f"min-max {f.format(s['min'])}-{f.format(s['max'])}, n={s['n']}]"
    )
