"""Numerical helpers of :mod:`workbench.stats` (the seed-aware interval's calibrated multiplier)."""
