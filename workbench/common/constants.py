"""Names the whole workbench shares, each defined once (modules that used to define them re-export them).

* ``VARIANTS``: the trained variants, in report order: ``configs/<variant>.yaml`` and
  ``results/checkpoints/<variant>/`` (the claims of :mod:`workbench.claims.registry` contrast them);
* ``TRAINABLE_PARTS``: what training can unfreeze (``PALModel.set_trainable``, ``training.stages[].trainable``);
* ``TOKEN_CACHE``: the encoder token cache the configs (``data.cache_dir``), analyses, evaluation and the demo
  share (relative to the repository root), so nothing is encoded twice.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["VARIANTS", "TRAINABLE_PARTS", "TOKEN_CACHE"]

#: the tiny variants the demo evaluates and compares (checkpoints ``results/checkpoints/VARIANT``)
VARIANTS: tuple[str, ...] = ("baseline", "delayed", "lal", "ensemble", "pal", "hybrid")
TRAINABLE_PARTS = ("connectors", "adapters", "lora")
TOKEN_CACHE = Path("cache/tokens")
