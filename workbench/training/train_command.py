"""The body of ``python -m workbench.train`` (:func:`run_train_command`, given the parsed arguments): enter the
reproducible mode when asked (re-launching with the pins before torch loads), then
:func:`workbench.training.driver.run_command`. Imports nothing heavy: torch must not load before the re-launch."""

from __future__ import annotations

import argparse
import sys

__all__ = ["run_train_command"]


def run_train_command(a: argparse.Namespace, argv: list[str] | None) -> int:
    """``python -m workbench.train`` with parsed arguments ``a``; ``argv``: the arguments as given (None: this
    process's command line, which ``--reproducible`` then replaces by a pinned re-execution). Its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if a.reproducible and a.seeds is None:  # the pins must be in the environment before torch starts
        from workbench.training.reproducible import relaunch_with_pins

        rc = relaunch_with_pins("workbench.train", args, exec_=argv is None)
        if rc is not None:
            return rc
    from workbench.training.driver import run_command

    return run_command(a, args)
