"""benchmarks/_interleave.py: variants alternate repetition by repetition; ratios are read per repetition."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _interleave import fmt_spread, interleaved, ratio_spread, spread  # noqa: E402


def test_variants_alternate_after_their_warmups():
    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=3, warmup=2)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert [len(t) for t in times.values()] == [3, 3] and all(t >= 0 for ts in times.values() for t in ts)


def test_ratio_is_read_per_repetition():
    # a slow spell in round 2 slows both variants: per-round ratios stay 2, the ratio of medians would not
    s = ratio_spread([2.0, 20.0, 2.2, 2.4], [1.0, 10.0, 1.1, 1.2])
    assert s["median"] == pytest.approx(2.0) and s["min"] == pytest.approx(2.0) and s["max"] == pytest.approx(2.0)
    assert spread([1.0, 2.0, 3.0, 4.0, 5.0]) == {"median": 3.0, "q1": 2.0, "q3": 4.0, "min": 1.0, "max": 5.0, "n": 5}
    assert fmt_spread(spread([1.0, 2.0, 3.0])) == "2.00 [IQR 1.50-2.50, min-max 1.00-3.00, n=3]"
    with pytest.raises(ValueError, match="one denominator per numerator"):
        ratio_spread([1.0], [1.0, 2.0])
