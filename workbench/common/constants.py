"""Names the whole workbench shares, each defined once (modules that used to define them re-export them).

* ``VARIANTS``: the trained variants, in report order: ``configs/<variant>.yaml`` and
  ``results/checkpoints/<variant>/`` (defined with the claims that contrast them, in :mod:`workbench.claims.registry`);
* ``TRAINABLE_PARTS``: what training can unfreeze (``PALModel.set_trainable``, ``training.stages[].trainable``);
* ``TOKEN_CACHE``: the encoder token cache the configs (``data.cache_dir``), analyses, evaluation and the demo
  share (relative to the repository root), so nothing is encoded twice.
"""

from __future__ import annotations

from pathlib import Path

from workbench.claims.registry import VARIANTS  # the registry is the one place a variant is added

__all__ = ["VARIANTS", "TRAINABLE_PARTS", "TOKEN_CACHE"]

TRAINABLE_PARTS = ("connectors", "adapters", "lora")
TOKEN_CACHE = Path("cache/tokens")
