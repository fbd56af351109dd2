"""Training: config loading/checks, the driver (:func:`workbench.training.driver.train`), the step loop, atomic
checkpoints, data order, run layout, many runs as jobs, the injection-layer sweep, the run's environment and the
reproducible mode. Names below are imported lazily (``workbench.training.reproducible`` must load before torch)."""

from __future__ import annotations

import importlib

__all__ = ["CheckpointError", "ConfigError", "EmptyDatasetError", "RunConfig", "load_run_config"]

_WHERE = {
    "CheckpointError": "checkpoint",
    "ConfigError": "config",
    "RunConfig": "config",
    "load_run_config": "config",
    "EmptyDatasetError": "data",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"workbench.training.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'workbench.training' has no attribute {name!r}")
