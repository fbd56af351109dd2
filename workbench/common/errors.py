"""Error classes shared across the workbench's packages."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A config that cannot describe a model or a run: a model config (``workbench.model.pal_config``) or a run
    config file (``workbench.training.run_config``; the message names the file, the preset and the key). One class,
    importable from both places, so one ``except ConfigError`` catches either."""
