"""The training driver: the three-stage curriculum of one run (:func:`train`), and the logic of the
``workbench.train`` command (:func:`run_command`: one run, every variant, or many seeds as separate processes).

:func:`train` runs (or resumes) the curriculum of a :class:`~workbench.training.run_config.RunConfig` into a folder:
``train_log.csv`` (one row per optimizer step, flushed each step), ``val_log.csv`` (validation loss at the end of
each stage), ``checkpoints/step-XXXXXX`` + ``checkpoints/latest`` (atomic; see :mod:`workbench.training.checkpoint`),
``final/`` (``save_pretrained``) and ``train_summary.json`` (what the numbers depend on: config hash, seed, versions,
threads, CPU and vector ISA, device, processes; paths relative to the repository; see
:mod:`workbench.training.environment`).

Stages, trainable parts, tasks and learning rates come from the config; each stage starts a fresh AdamW +
warmup/decay schedule. The data order depends only on (seed, stage, dataset), never on the model variant or the
number of processes (see :mod:`workbench.training.batch_order`). ``resume`` restores the trainable weights, optimizer,
scheduler, every process's RNG state and the position in the stage's data order, so an interrupted + resumed run
writes the same CSV rows as an uninterrupted one; resuming with another thread count or vector ISA warns that the
continuation will not be bit-identical. ``reproducible`` checks and applies :mod:`workbench.training.reproducible`.
Several processes (``torchrun`` / ``accelerate launch``) train data-parallel: see :mod:`workbench.training.launch`
and :mod:`workbench.training.loop`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from workbench.common.constants import VARIANTS
from workbench.common.paths import atomic_write_bytes
from workbench.data.audiofolder import DataError
from workbench.training.batch_order import EmptyDatasetError, prepare_data
from workbench.training.checkpoint import CheckpointError, find_latest
from workbench.training.environment import relative_command, repo_relative, run_environment, versions
from workbench.training.loop import LOG_COLUMNS, VAL_COLUMNS, CurriculumLoop, TrainingDivergedError, lr_factor, read_log
from workbench.training.run_config import ConfigError, RunConfig, load_run_config, to_jsonable
from workbench.training.run_steps import _accelerator as _accelerator
from workbench.training.run_steps import _encoder_specs as _encoder_specs
from workbench.training.run_steps import _resume_point as _resume_point
from workbench.training.run_steps import _save_final as _save_final
from workbench.training.run_steps import _stage_datasets as _stage_datasets
from workbench.training.run_steps import _stage_summary as _stage_summary
from workbench.training.run_steps import _warn_environment_change as _warn_environment_change

__all__ = [
    "train",
    "run_command",
    "run_one",
    "default_model_factory",
    "TrainingDivergedError",
    "VARIANTS",
    "LOG_COLUMNS",
    "VAL_COLUMNS",
    "read_log",
    "lr_factor",
    "parse_seeds",
]

log = logging.getLogger("workbench.train")


def default_model_factory(model_dict: dict, seed: int = 0):
    """``PALModel.from_config(PALConfig.from_dict(model_dict), seed=seed)`` (connector init from ``seed``)."""
    from workbench.model.pal import PALConfig, PALModel

    return PALModel.from_config(PALConfig.from_dict(model_dict), seed=seed)


def train(
    cfg: RunConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    model_factory: Callable[[dict], torch.nn.Module] | None = None,
    progress: bool = True,
    command: str | None = None,
    reproducible: bool = False,
    _fail_checkpoint_at: int | None = None,
) -> dict:
    """Run (or resume) the curriculum of ``cfg`` into ``out``; returns the summary dict.

    ``reproducible``: one thread, deterministic algorithms, and a check that the AVX2 pins of
    :mod:`workbench.training.reproducible` are in the environment and took effect (ReproducibilityError if not).

    ``model_factory(cfg.model)`` builds the model (default: ``PALModel.from_config(PALConfig.from_dict(cfg.model),
    seed=training.seed)``).
    ``max_steps`` stops after that global step (with a checkpoint). Raises ConfigError / CheckpointError /
    DataError for bad input, TrainingDivergedError for a non-finite loss.
    """
    t0 = time.time()
    tc = cfg.training
    out = Path(out).resolve()
    acc = _accelerator(cfg)
    main_proc = acc.is_main_process
    state, ckpt = _resume_point(cfg, out, acc, resume)
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)

    prev_det = torch.are_deterministic_algorithms_enabled()
    if reproducible:
        from workbench.training.reproducible import enter

        enter()
    elif tc.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    if state is not None and main_proc:
        _warn_environment_change(ckpt, state.get("environment"), run_environment(str(acc.device)))
    try:
        return _run(cfg, out, acc, state, ckpt, max_steps, model_factory, progress, command, t0, _fail_checkpoint_at)
    finally:
        torch.use_deterministic_algorithms(prev_det)


def _seeded_model(cfg, model_factory):
    """Seed Python, NumPy and torch with the run's seed, then build the model (LoRA enabled when configured)."""
    import random

    import numpy as np

    tc = cfg.training
    seed = tc.seed
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
    model = model_factory(cfg.model) if model_factory is not None else default_model_factory(cfg.model, seed=seed)
    if tc.uses_lora:
        lc = tc.lora
        model.enable_lora(rank=lc.rank, alpha=lc.alpha, dropout=lc.dropout, targets=list(lc.targets))
    return model


def _run(cfg, out, acc, state, ckpt, max_steps, model_factory, progress, command, t0, fail_ckpt_at) -> dict:
    """Seed, model, data, then the :class:`CurriculumLoop`; writes ``final/`` and ``train_summary.json``."""
    tc = cfg.training
    seed = tc.seed
    model = _seeded_model(cfg, model_factory)
    with acc.main_process_first():
        if acc.is_main_process:
            prepare_data(cfg.data, _encoder_specs(model), progress=progress)
    train_sets = _stage_datasets(cfg, model, "train")
    val_sets = _stage_datasets(cfg, model, "val") if (cfg.data.val and tc.eval_batches) else {}
    if state is not None:
        from safetensors.torch import load_file

        model.load_trainable_state_dict(load_file(str(ckpt / "model" / "model.safetensors")))
    loop = CurriculumLoop(
        cfg,
        out,
        acc,
        model,
        train_sets,
        val_sets,
        state=state,
        ckpt=ckpt,
        max_steps=max_steps,
        progress=progress,
        t0=t0,
        fail_checkpoint_at=fail_ckpt_at,
    )
    stopped_early = loop.run()
    global_step = loop.pos.global_step
    ckpt_root = out / "checkpoints"
    completed = not stopped_early and global_step >= tc.total_steps
    latest = find_latest(ckpt_root)
    summary = {
        "command": command or relative_command(["python", *sys.argv]),
        "config": repo_relative(cfg.path),
        "preset": cfg.preset,
        "config_hash": cfg.hash(),
        "seed": seed,
        "completed": completed,
        "steps": global_step,
        "total_steps": tc.total_steps,
        "resumed_from": repo_relative(ckpt),
        "wall_time_s": loop.pos.wall_before + time.time() - t0,
        "device": str(acc.device),
        "num_processes": acc.num_processes,
        "mixed_precision": acc.mixed_precision,
        "stages": _stage_summary(out / "train_log.csv", out / "val_log.csv", cfg),
        "final": repo_relative(out / "final") if completed else None,
        "last_checkpoint": repo_relative(latest),
        "versions": versions(),
        "environment": run_environment(str(acc.device)),
        "training": to_jsonable(tc),
    }
    if acc.is_main_process:
        if completed:
            _save_final(model, out)
        atomic_write_bytes(out / "train_summary.json", json.dumps(summary, indent=1, default=str).encode())
    acc.wait_for_everyone()
    return summary


# ---- the command's logic (workbench.train parses the arguments) -------------------------------------


def _model_errors() -> tuple:
    """The model's bad-input errors beyond the shared ConfigError (a checkpoint that does not fit)."""
    from workbench.model.pal import CheckpointMismatchError

    return (CheckpointMismatchError,)


def _is_rank0() -> bool:
    """Whether this process is the launcher's rank 0 (True without a launcher)."""
    return os.environ.get("RANK", "0") == "0"


def run_one(
    config,
    preset: str,
    out: str | os.PathLike,
    *,
    seed: int | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
    command: str | None = None,
    reproducible: bool = False,
) -> int:
    """Train one run and print one line (rank 0): the exit code of ``workbench.train`` (0 done or stopped at
    ``max_steps``, 2 bad input, 3 diverged); errors are printed to stderr."""
    from workbench.training.reproducible import ReproducibilityError

    try:
        cfg = load_run_config(config, preset, seed=seed)
        s = train(
            cfg, out, resume=resume, max_steps=max_steps, progress=progress, command=command, reproducible=reproducible
        )
    except (ConfigError, CheckpointError, DataError, EmptyDatasetError, ReproducibilityError, *_model_errors()) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingDivergedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    if _is_rank0():
        state = "done" if s["completed"] else f"stopped at step {s['steps']}/{s['total_steps']} (resume with --resume)"
        print(
            f"{out}: {state}; "
            + ", ".join(f"{x['name']} loss {x['final_loss']}" for x in s["stages"] if x["final_loss"] is not None)
        )
    return 0


def _run_one(config, preset, out, a, command) -> int:
    return run_one(
        config,
        preset,
        out,
        seed=a.seed,
        resume=a.resume,
        max_steps=a.max_steps,
        progress=not a.no_progress,
        command=command,
        reproducible=bool(a.reproducible),
    )


def _parse_variants(text: str | None) -> tuple[str, ...]:
    if text is None:
        return VARIANTS
    chosen = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown or not chosen:
        raise SystemExit(f"error: --variants {text!r}: unknown {unknown}; choose from {','.join(VARIANTS)}")
    return chosen


def parse_seeds(text: str) -> list[int]:
    """ "0,1,2" -> [0, 1, 2] (non-negative, no duplicates); ValueError naming the flag otherwise."""
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must be distinct non-negative integers, got {text!r}")
    return seeds


def _run_seeds(a, variants) -> int:
    from workbench.training.jobs import Job, run_jobs
    from workbench.training.runs import run_dir

    if a.max_steps is not None or a.resume or a.seed is not None:
        print("error: --seeds runs whole, resumable jobs: drop --max-steps/--resume/--seed", file=sys.stderr)
        return 2
    if a.reproducible is not False and a.threads != 1:
        print(
            f"error: --threads {a.threads}: the seed runs are reproducible (one thread) by default; add "
            "--no-reproducible to run them with more threads",
            file=sys.stderr,
        )
        return 2
    try:
        seeds = parse_seeds(a.seeds)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    jobs = []
    for s in seeds:
        for v in variants:
            path = Path(a.configs_dir) / f"{v}.yaml"
            if not path.is_file():
                print(f"error: {path} missing (variant {v!r})", file=sys.stderr)
                return 2
            jobs.append(
                Job(
                    f"{v}/seed-{s}",
                    path,
                    a.preset,
                    s,
                    run_dir(a.out_root, v, s),
                    reproducible=a.reproducible is not False,
                )
            )
    try:
        run_jobs(jobs, parallel=a.jobs, threads=a.threads)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def run_command(a, argv: list[str]) -> int:
    """The ``workbench.train`` command with parsed arguments ``a`` (``argv``: the arguments as given, recorded in
    the summary): one run (``--config``/``--out``), every variant (``--all``) or seed jobs (``--all --seeds``)."""
    logging.basicConfig(level=logging.INFO if _is_rank0() else logging.WARNING, format="%(message)s")
    if not _is_rank0():
        warnings.filterwarnings("ignore")  # rank 0 says it once
    command = relative_command(["python -m workbench.train", *argv])
    if a.all:
        if a.config or a.out:
            print("error: --all takes --out-root (and --configs-dir), not --config/--out", file=sys.stderr)
            return 2
        variants = _parse_variants(a.variants)
        if a.seeds is not None:
            return _run_seeds(a, variants)
        rc, ran = 0, 0
        for v in variants:
            path = Path(a.configs_dir) / f"{v}.yaml"
            if not path.is_file():
                warnings.warn(f"--all: {path} missing; skipping variant {v!r}", stacklevel=2)
                continue
            ran += 1
            if _is_rank0():
                print(f"== {v}: {path} -> {Path(a.out_root) / v}")
            rc = max(rc, _run_one(path, a.preset, Path(a.out_root) / v, a, command))
        if not ran:
            print(f"error: no variant configs found in {a.configs_dir}", file=sys.stderr)
            return 2
        return rc
    if not a.config or not a.out:
        print("error: --config and --out are required (or use --all)", file=sys.stderr)
        return 2
    return _run_one(a.config, a.preset, Path(a.out), a, command)
