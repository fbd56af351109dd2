"""Where the curriculum is and its learning rate there: :class:`LoopPosition` (steps done overall and in the
stage, restored from a checkpoint's state) and :func:`lr_factor` (linear warmup, then cosine / linear / constant)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from workbench.training.run_config import StageConfig


@dataclass
class LoopPosition:
    """Where the curriculum is: steps done overall and in the current stage, wall time of earlier sessions."""

    global_step: int = 0
    stage_index: int = 0
    stage_step: int = 0
    wall_before: float = 0.0

    @classmethod
    def from_state(cls, state: dict | None) -> LoopPosition:
        if state is None:
            return cls()
        return cls(
            state["global_step"], state["stage_index"], state["stage_step"], float(state.get("wall_time_s", 0.0))
        )


def lr_factor(step: int, stage: StageConfig, min_ratio: float = 0.0) -> float:
    """LR multiplier at scheduler step ``step`` (0-based): linear warmup, then cosine / linear / constant."""
    if stage.warmup > 0 and step < stage.warmup:
        return (step + 1) / stage.warmup
    if stage.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - stage.warmup) / max(1, stage.steps - stage.warmup))
    f = 0.5 * (1.0 + math.cos(math.pi * progress)) if stage.schedule == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * f
