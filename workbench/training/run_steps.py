"""The steps of one training run that :func:`workbench.training.driver.train` calls around the curriculum loop: the
run's Accelerator (:func:`_accelerator`), where to resume from (:func:`_resume_point`, with
:func:`_warn_environment_change`), the datasets of each stage (:func:`_stage_datasets`; token-cache specs from
:func:`_encoder_specs`), the final save (:func:`_save_final`) and the per-stage summary of the logs
(:func:`_stage_summary`)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from workbench.training.batch_order import EmptyDatasetError
from workbench.training.checkpoint import CheckpointError, clean_tmp, find_latest, read_trainer_state
from workbench.training.environment import resume_mismatches
from workbench.training.launch import make_accelerator
from workbench.training.loop import read_log
from workbench.training.run_config import ConfigError, RunConfig, config_diff, semantic_dict


def _encoder_specs(model) -> list:
    """``[(name, load_encoder kwargs)]`` for the token cache: the model's encoder specs if it has them (a
    `PALModel`), else its encoder names with default options."""
    specs = getattr(model, "encoder_specs", None)
    if specs:
        return [(e.name, dict(e.options or {})) for e in specs]
    return [(n, {}) for n in model.encoder_names]


def _stage_datasets(cfg: RunConfig, model, split: str) -> dict[tuple, object]:
    from workbench.data.dataset import AudioTaskDataset

    root = cfg.data.train if split == "train" else cfg.data.val
    out = {}
    for st in cfg.training.stages:
        key = tuple(st.tasks)
        if key in out:
            continue
        if hasattr(model, "task_dataset"):  # a PALModel: its encoders and audio slot (cache filled by prepare_data)
            ds = model.task_dataset(root, tasks=list(st.tasks), cache_dir=cfg.data.cache_dir, fill_cache=False)
        else:
            ds = AudioTaskDataset(
                root,
                model.tokenizer,
                tasks=list(st.tasks),
                encoders=list(model.encoder_names),
                cache_dir=cfg.data.cache_dir,
            )
        if len(ds) == 0 and split == "train":
            raise EmptyDatasetError(
                f"{root}: 0 task rows after the task filter tasks={list(st.tasks)} "
                f"(stage {st.name!r}; {len(ds.report.tasks)} rows before filtering)"
            )
        out[key] = ds
    return out


def _save_final(model, out: Path) -> Path:
    """``OUT/final`` (``save_pretrained`` writes it atomically)."""
    return model.save_pretrained(out / "final")


def _stage_summary(log_path: Path, val_path: Path, cfg: RunConfig) -> list[dict]:
    rows = read_log(log_path) if log_path.is_file() else []
    vals = read_log(val_path) if val_path.is_file() else []
    out = []
    for i, st in enumerate(cfg.training.stages):
        r = [x for x in rows if int(x["stage"]) == i]
        v = [x for x in vals if int(x["stage"]) == i]
        tail = [float(x["loss"]) for x in r[-10:]]
        out.append(
            {
                "name": st.name,
                "steps": st.steps,
                "steps_done": len(r),
                "final_loss": float(r[-1]["loss"]) if r else None,
                "mean_loss_last10": sum(tail) / len(tail) if tail else None,
                "val_loss": float(v[-1]["val_loss"]) if v else None,
            }
        )
    return out


def _accelerator(cfg: RunConfig):
    """The run's Accelerator (mixed precision only on a GPU); the batch must split evenly over its processes."""
    tc = cfg.training
    if tc.deterministic and torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    mp = tc.mixed_precision
    if mp != "no" and not torch.cuda.is_available():
        warnings.warn(f"mixed_precision={mp!r} needs a GPU; training in float32 on CPU", stacklevel=2)
        mp = "no"
    acc = make_accelerator(mp)  # one process, or a group of the launcher's processes (LaunchError if alone)
    if acc.distributed_type.value == "FSDP":
        warnings.warn(
            "FSDP: checkpoints save the trainable parts through model.save_pretrained and the optimizer "
            "state as seen by this process; this path is untested (DDP is): prefer DDP for these sizes",
            stacklevel=2,
        )
    world = acc.num_processes
    if tc.batch_size % world:
        raise ConfigError(
            f"{cfg.path} [preset {cfg.preset}]: training.batch_size {tc.batch_size} is not divisible "
            f"by the number of processes {world}"
        )
    return acc


def _resume_point(cfg: RunConfig, out: Path, acc, resume: bool) -> tuple[dict | None, Path | None]:
    """(trainer state, checkpoint folder) to resume from, or (None, None) for a fresh run; a fresh run into a
    folder that holds a checkpoint, or a resume with another config, is a CheckpointError."""
    ckpt_root = out / "checkpoints"
    main_proc, world = acc.is_main_process, acc.num_processes
    state, ckpt = None, None
    if main_proc:
        clean_tmp(ckpt_root)
    acc.wait_for_everyone()
    existing = find_latest(ckpt_root)
    if resume:
        if existing is None:
            raise CheckpointError(f"--resume: no checkpoint in {ckpt_root} (nothing to resume; run without --resume)")
        ckpt, state = existing, read_trainer_state(existing)
        if state["config_hash"] != cfg.hash():
            diff = config_diff(semantic_dict(state["config"]), semantic_dict(cfg.raw))
            raise CheckpointError(
                f"--resume: the config differs from the one checkpoint {ckpt} was trained with "
                f"(hash {state['config_hash']} vs {cfg.hash()}): " + "; ".join(diff[:10])
            )
        if state.get("world_size", 1) != world and main_proc:
            warnings.warn(
                f"--resume: {ckpt} was written by {state.get('world_size', 1)} process(es), this run has "
                f"{world}: the continuation will not be bit-identical to an uninterrupted run",
                stacklevel=2,
            )
    elif existing is not None:
        raise CheckpointError(
            f"{out} already holds a checkpoint ({existing}); pass --resume to continue it or choose another --out"
        )
    return state, ckpt


def _warn_environment_change(ckpt: Path, saved: dict | None, now: dict) -> None:
    diffs = resume_mismatches(saved, now)
    if diffs:
        warnings.warn(
            f"--resume: {ckpt} was written with other settings that change the numbers ({'; '.join(diffs)}): "
            "the continuation will not be bit-identical to an uninterrupted run (resume with the "
            "checkpoint's settings, e.g. --reproducible if it was made with it, to continue exactly)",
            stacklevel=2,
        )
