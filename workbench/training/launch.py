"""One process or several: build the run's :class:`accelerate.Accelerator` and refuse a launch that would train
each process alone.

``torchrun --nproc_per_node N -m workbench.train ...`` (CPU or GPU) and ``accelerate launch --multi_gpu
--num_processes N -m workbench.train ...`` (GPU) start N processes with ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` in
their environment. On GPUs accelerate forms the NCCL group from them; on CPU it forms a gloo group only when told
(``Accelerator(cpu=True)``), which :func:`make_accelerator` does whenever there is no GPU. If the launcher
started several processes but the accelerator still sees one, every rank would train the whole batch alone and
write the same folder: :func:`check_launch` stops with :class:`LaunchError` instead.
"""

from __future__ import annotations

import os

from workbench.common.errors import ConfigError

__all__ = ["LaunchError", "launched_world_size", "make_accelerator", "check_launch", "LAUNCH_HELP"]

LAUNCH_HELP = (
    "Launch several processes with `torchrun --nproc_per_node N -m workbench.train ...` (CPU: they form a "
    "gloo group; GPU: NCCL) or `accelerate launch --multi_gpu --num_processes N -m workbench.train ...` "
    "(GPUs); one process: `python -m workbench.train ...`"
)

_WORLD_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class LaunchError(ConfigError):
    """A multi-process launch that the accelerator does not see as one (each process would train alone)."""


def launched_world_size(env: dict | None = None) -> int:
    """How many processes the launcher says it started (``WORLD_SIZE`` and the MPI equivalents; 1 if none)."""
    env = os.environ if env is None else env
    for k in _WORLD_VARS:
        if str(env.get(k, "")).strip().isdigit():
            return int(env[k])
    return 1


def make_accelerator(mixed_precision: str = "no"):
    """``Accelerator(mixed_precision, cpu=True when there is no GPU)``, then :func:`check_launch`."""
    import torch
    from accelerate import Accelerator

    acc = Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available())
    check_launch(acc)
    return acc


def check_launch(acc, env: dict | None = None) -> None:
    """Raise :class:`LaunchError` when the launcher started more processes than ``acc.num_processes``."""
    launched = launched_world_size(env)
    if launched > 1 and acc.num_processes != launched:
        env = os.environ if env is None else env
        rank = env.get("RANK", env.get("LOCAL_RANK", "?"))
        raise LaunchError(
            f"the launcher started {launched} processes (WORLD_SIZE={launched}, this is rank {rank}) but accelerate "
            f"sees {acc.num_processes} (distributed type {getattr(acc, 'distributed_type', '?')}): every process "
            f"would train the whole batch alone and write the same --out. {LAUNCH_HELP}; check that the GPUs are "
            "visible (CUDA_VISIBLE_DEVICES) or, on CPU, that no ACCELERATE_* variable turns the group off"
        )
