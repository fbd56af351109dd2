"""The reproducible mode: pin what x86 allows, so a run gives the same numbers bit for bit on any x86 CPU with AVX2.

Pinned (``--reproducible`` of ``workbench.train``, the default of ``./run retrain`` and of the seed / curve jobs):

- one thread per run (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``, ``torch.set_num_threads(1)``): the order of
  the partial sums of every reduction;
- the AVX2 code paths of MKL (``MKL_CBWR=AVX2``, conditional numerical reproducibility), ATen
  (``ATEN_CPU_CAPABILITY=avx2``) and oneDNN (``ONEDNN_MAX_CPU_ISA=AVX2``): an AVX-512 machine otherwise runs
  other kernels than an AVX2-only one (e.g. an AMD CPU), with other roundings;
- ``torch.use_deterministic_algorithms(True)`` (an error, not a warning, for an op without a deterministic
  implementation).

The libraries read these variables once, when they first run a kernel, so they must be in the environment
before Python starts: :func:`relaunch_with_pins` re-executes the command with them (the same process id, so
``torchrun`` and signals keep working) and :func:`enter` checks, inside the run, that they took effect
(``torch.backends.cpu.get_cpu_capability()`` must say ``AVX2``; MKL's branch is recorded and a warning says when
it is not AVX2: MKL documents its ISA branches for Intel processors only, falling back to ``AUTO`` elsewhere, so on
an AMD CPU the committed reference of ``tests/training/test_reproducible.py`` tells whether MKL's products
still match). Not pinned: GPUs (other kernels altogether),
other versions of torch / MKL, and more than one thread. This module imports nothing heavy (it runs before torch).
"""

from __future__ import annotations

import os
import subprocess
import sys

from workbench.training.environment import REPRO_ENV, mkl_branch, pins_in_place

__all__ = ["REPRO_ENV", "ReproducibilityError", "pins_in_place", "pinned_env", "relaunch_with_pins", "enter"]


class ReproducibilityError(RuntimeError):
    """The reproducible mode cannot be entered here (the message says why and what to do)."""


def pinned_env(env: dict | None = None) -> dict[str, str]:
    """``env`` (default ``os.environ``) with the pins of :data:`REPRO_ENV` set."""
    return {**(os.environ if env is None else env), **REPRO_ENV}


def relaunch_with_pins(module: str, argv: list[str], exec_: bool = True) -> int | None:
    """Make ``python -m module argv`` run with the pins: None when they are already in place (go on in this
    process); else re-execute this process with them (``exec_``; never returns) or, for a library call that must
    not replace its caller (a test, the demo), run the command as a subprocess and return its exit code."""
    if pins_in_place():
        return None
    cmd = [sys.executable, "-m", module, *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    if exec_:
        os.execve(sys.executable, cmd, pinned_env())
    return subprocess.run(cmd, env=pinned_env()).returncode


def enter() -> bool:
    """Inside the run (torch imported): one thread, deterministic algorithms, and a check that the pins took
    effect. Returns the previous ``torch.are_deterministic_algorithms_enabled()`` (to restore it afterwards).
    Raises :class:`ReproducibilityError` when the variables are missing or ATen does not dispatch to AVX2."""
    import torch

    if not pins_in_place():
        missing = {k: os.environ.get(k) for k, v in REPRO_ENV.items() if os.environ.get(k) != v}
        raise ReproducibilityError(
            f"reproducible mode: the environment lacks {missing} (wanted {REPRO_ENV}); they must be set before Python "
            "starts: run `python -m workbench.train --reproducible ...` (it re-launches itself with them) or export "
            "them before calling train(..., reproducible=True)"
        )
    cap = torch.backends.cpu.get_cpu_capability()
    if cap != "AVX2":
        raise ReproducibilityError(
            f"reproducible mode: torch dispatches to {cap!r}, not AVX2, although ATEN_CPU_CAPABILITY=avx2: either "
            "torch ran a kernel before the variable was set (start a fresh process with the variables exported) or "
            "this CPU has no AVX2 (the mode needs an x86 CPU with AVX2)"
        )

    branch = mkl_branch()
    if branch not in ("AVX2", None):
        import warnings

        warnings.warn(
            f"reproducible mode: MKL runs its {branch!r} branch, not AVX2, although MKL_CBWR=AVX2 (MKL's ISA "
            "branches exist on Intel processors only and it falls back to AUTO silently elsewhere): the "
            "matrix products may not match an Intel machine's; the summary records it (mkl_cbwr)",
            stacklevel=2,
        )
    torch.set_num_threads(1)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    return before
