"""How much work each step of the one-model study does: :class:`StudySizes`, the full run's :data:`STUDY_SIZES` and
``--quick``'s :data:`QUICK_STUDY` (a smoke run; its numbers are not meaningful).
The steps: :mod:`workbench.pipeline.study`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StudySizes:
    """How much work each step does (``--quick`` shrinks all of it)."""

    rows: int = 48  # task rows for attention, lenses, ablation sweep, AtP pairs, retrofits
    eval_rows: int | None = None  # rows answered for the accuracy step (None: every row of --data)
    k: int = 5  # listening heads ablated / steered; AtP heads checked by exact patching
    draws: int = 3  # random-head draws
    alphas: tuple[float, ...] = (-2.0, -1.0, 1.0, 2.0)
    pairs: int = 8  # clean/corrupted pairs for AtP
    sweep_points: int = 8  # layers in the ablation sweep
    retrofit_layers: int = 3  # injection layers of the retrofits besides 0 (evenly spaced)
    resamples: int = 1000
    max_new_tokens: int = 16


STUDY_SIZES = StudySizes()
QUICK_STUDY = StudySizes(
    rows=6,
    eval_rows=6,
    k=2,
    draws=1,
    alphas=(1.0,),
    pairs=2,
    sweep_points=2,
    retrofit_layers=1,
    resamples=200,
    max_new_tokens=4,
)
