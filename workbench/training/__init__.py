"""Training helpers for :mod:`workbench.train`: config loading/checks, atomic checkpoints, data order."""

from workbench.training.checkpoint import CheckpointError
from workbench.training.config import ConfigError, RunConfig, load_run_config
from workbench.training.data import EmptyDatasetError

__all__ = ["CheckpointError", "ConfigError", "EmptyDatasetError", "RunConfig", "load_run_config"]
