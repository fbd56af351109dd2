"""Three-stage training curriculum for the PAL audio-LLM variants (one script for CPU, one GPU, many GPUs).

    python -m workbench.train --config configs/pal.yaml --preset tiny --out runs/pal [--resume]
                              [--max-steps N] [--seed S] [--no-progress]
    python -m workbench.train --all --preset tiny --out-root results/checkpoints   # every configs/{variant}.yaml
    accelerate launch -m workbench.train --config ... (DDP; batch_size is the global batch)

Outputs under ``--out``: ``train_log.csv`` (one row per optimizer step, flushed each step), ``val_log.csv``
(validation loss at the end of each stage), ``checkpoints/step-XXXXXX`` + ``checkpoints/latest`` (atomic;
see :mod:`workbench.training.checkpoint`), ``final/`` (``save_pretrained``) and ``train_summary.json``.

Stages, trainable parts, tasks and learning rates come from the config (see
:mod:`workbench.training.config`); each stage starts a fresh AdamW + warmup/decay schedule. The data order
depends only on (seed, stage, dataset), never on the model variant (see :mod:`workbench.training.data`).
``--resume`` restores the trainable weights, optimizer, scheduler, every RNG state and the position in the
stage's data order, so an interrupted + resumed run writes the same CSV rows as an uninterrupted one.

Exit codes: 0 done (or stopped at ``--max-steps`` with a checkpoint), 2 bad config / data / checkpoint,
3 training diverged (non-finite loss or gradient norm).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from workbench.constants import VARIANTS
from workbench.data.audiofolder import DataError
from workbench.paths import atomic_write_bytes
from workbench.training.checkpoint import (CheckpointError, clean_tmp, find_latest, read_trainer_state, rng_state,
                                           set_rng_state, write_checkpoint)
from workbench.training.config import (REPO_ROOT, ConfigError, RunConfig, StageConfig, config_diff, load_run_config,
                                       semantic_dict, to_jsonable)
from workbench.training.data import EmptyDatasetError, StageBatchSampler, order_seed, prepare_data

__all__ = ["train", "main", "TrainingDivergedError", "VARIANTS", "LOG_COLUMNS", "read_log", "lr_factor"]

log = logging.getLogger("workbench.train")

LOG_COLUMNS = ["step", "stage", "stage_name", "stage_step", "epoch", "loss", "lr", "grad_norm", "tokens",
               "label_tokens"]
VAL_COLUMNS = ["step", "stage", "stage_name", "val_loss", "val_batches"]


class TrainingDivergedError(RuntimeError):
    """A non-finite loss / gradient norm; the message names the step, the stage and the last good checkpoint."""

    def __init__(self, msg: str, checkpoint: Path | None = None):
        super().__init__(msg)
        self.checkpoint = checkpoint


class _LossModule(torch.nn.Module):
    """``forward(batch) = model.loss(batch)`` so DDP/FSDP wrappers and autocast see the loss computation."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)


def lr_factor(step: int, stage: StageConfig, min_ratio: float = 0.0) -> float:
    """LR multiplier at scheduler step ``step`` (0-based): linear warmup, then cosine / linear / constant."""
    if stage.warmup > 0 and step < stage.warmup:
        return (step + 1) / stage.warmup
    if stage.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - stage.warmup) / max(1, stage.steps - stage.warmup))
    f = 0.5 * (1.0 + math.cos(math.pi * progress)) if stage.schedule == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * f


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "accelerate", "transformers", "numpy", "peft", "pal-workbench"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        out["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                           text=True, timeout=5).stdout.strip() or None
    except Exception:
        out["git_commit"] = None
    return out


def default_model_factory(model_dict: dict, seed: int = 0):
    """``PALModel.from_config(PALConfig.from_dict(model_dict), seed=seed)`` (connector init from ``seed``)."""
    from workbench.model.pal import PALConfig, PALModel

    return PALModel.from_config(PALConfig.from_dict(model_dict), seed=seed)


def _encoder_specs(model) -> list:
    """``[(name, load_encoder kwargs)]`` for the token cache: from ``model.pal_cfg`` if there, else names only."""
    pal_cfg = getattr(model, "pal_cfg", None)
    if pal_cfg is not None and getattr(pal_cfg, "encoders", None):
        return [(e.name, dict(getattr(e, "options", {}) or {})) for e in pal_cfg.encoders]
    return [(n, {}) for n in model.encoder_names]


def read_log(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``train_log.csv`` as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fmt(x) -> str:
    return repr(float(x)) if isinstance(x, float) else str(x)


class _CsvLog:
    """Append-only CSV, flushed + fsynced per row. On resume, rows after the checkpoint's step are dropped."""

    def __init__(self, path: Path, columns: list[str], resume_step: int | None, inclusive: bool = True):
        self.path, self.columns = path, columns
        if resume_step is not None and path.is_file():
            keep = [r for r in read_log(path)
                    if int(r["step"]) < resume_step or (inclusive and int(r["step"]) == resume_step)]
            buf = io.StringIO()
            w = csv.DictWriter(buf, columns, lineterminator="\n")
            w.writeheader()
            w.writerows(keep)
            atomic_write_bytes(path, buf.getvalue().encode())
        else:
            path.write_text(",".join(columns) + "\n")
        self.f = open(path, "a", newline="")
        self.w = csv.DictWriter(self.f, columns, lineterminator="\n")

    def write(self, row: dict) -> None:
        self.w.writerow({k: _fmt(row[k]) for k in self.columns})
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def _stage_datasets(cfg: RunConfig, model, split: str) -> dict[tuple, object]:
    from workbench.data.dataset import AudioTaskDataset

    root = cfg.data.train if split == "train" else cfg.data.val
    out = {}
    for st in cfg.training.stages:
        key = tuple(st.tasks)
        if key in out:
            continue
        ds = AudioTaskDataset(root, model.tokenizer, tasks=list(st.tasks), encoders=list(model.encoder_names),
                              cache_dir=cfg.data.cache_dir)
        if len(ds) == 0 and split == "train":
            raise EmptyDatasetError(f"{root}: 0 task rows after the task filter tasks={list(st.tasks)} "
                                    f"(stage {st.name!r}; {len(ds.report.tasks)} rows before filtering)")
        out[key] = ds
    return out


def _finite(x: float) -> bool:
    return math.isfinite(x)


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
        out.append({"name": st.name, "steps": st.steps, "steps_done": len(r),
                    "final_loss": float(r[-1]["loss"]) if r else None,
                    "mean_loss_last10": sum(tail) / len(tail) if tail else None,
                    "val_loss": float(v[-1]["val_loss"]) if v else None})
    return out


def train(cfg: RunConfig, out: str | os.PathLike, *, resume: bool = False, max_steps: int | None = None,
          model_factory: Callable[[dict], torch.nn.Module] | None = None, progress: bool = True,
          command: str | None = None, _fail_checkpoint_at: int | None = None) -> dict:
    """Run (or resume) the curriculum of ``cfg`` into ``out``; returns the summary dict.

    ``model_factory(cfg.model)`` builds the model (default: ``PALModel.from_config(PALConfig.from_dict(cfg.model),
    seed=training.seed)``).
    ``max_steps`` stops after that global step (with a checkpoint). Raises ConfigError / CheckpointError /
    DataError for bad input, TrainingDivergedError for a non-finite loss.
    """
    from accelerate import Accelerator
    from accelerate.utils import gather_object, send_to_device

    t0 = time.time()
    tc = cfg.training
    out = Path(out).resolve()
    ckpt_root = out / "checkpoints"
    if tc.deterministic and torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    mp = tc.mixed_precision
    if mp != "no" and not torch.cuda.is_available():
        warnings.warn(f"mixed_precision={mp!r} needs a GPU; training in float32 on CPU")
        mp = "no"
    acc = Accelerator(mixed_precision=mp)
    if acc.distributed_type.value == "FSDP":
        warnings.warn("FSDP: checkpoints save the trainable parts through model.save_pretrained and the optimizer "
                      "state as seen by this process; this path is untested (DDP is): prefer DDP for these sizes")
    main_proc, rank, world = acc.is_main_process, acc.process_index, acc.num_processes
    if tc.batch_size % world:
        raise ConfigError(f"{cfg.path} [preset {cfg.preset}]: training.batch_size {tc.batch_size} is not divisible "
                          f"by the number of processes {world}")

    # ---- resume point -------------------------------------------------------------------------------
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
                f"(hash {state['config_hash']} vs {cfg.hash()}): " + "; ".join(diff[:10]))
    elif existing is not None:
        raise CheckpointError(f"{out} already holds a checkpoint ({existing}); pass --resume to continue it or "
                              f"choose another --out")
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)

    prev_det = torch.are_deterministic_algorithms_enabled()
    if tc.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    try:
        return _run(cfg, out, ckpt_root, acc, state, ckpt, max_steps, model_factory,
                    progress, command, t0, gather_object, send_to_device, _fail_checkpoint_at)
    finally:
        torch.use_deterministic_algorithms(prev_det)


def _run(cfg, out, ckpt_root, acc, state, ckpt, max_steps, model_factory, progress, command, t0, gather_object,
         send_to_device, fail_ckpt_at):
    import random

    import numpy as np
    from tqdm.auto import tqdm

    tc = cfg.training
    main_proc, rank, world = acc.is_main_process, acc.process_index, acc.num_processes
    seed = tc.seed
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)

    # ---- model and data -----------------------------------------------------------------------------
    model = model_factory(cfg.model) if model_factory is not None else default_model_factory(cfg.model, seed=seed)
    if tc.uses_lora:
        lc = tc.lora
        model.enable_lora(rank=lc.rank, alpha=lc.alpha, dropout=lc.dropout, targets=list(lc.targets))
    with acc.main_process_first():
        if main_proc:
            prepare_data(cfg.data, _encoder_specs(model), progress=progress)
    train_sets = _stage_datasets(cfg, model, "train")
    val_sets = _stage_datasets(cfg, model, "val") if (cfg.data.val and tc.eval_batches) else {}

    global_step, start_stage, start_step, wall_before = 0, 0, 0, 0.0
    if state is not None:
        from safetensors.torch import load_file

        model.load_trainable_state_dict(load_file(str(ckpt / "model" / "model.safetensors")))
        global_step, start_stage, start_step = state["global_step"], state["stage_index"], state["stage_step"]
        wall_before = float(state.get("wall_time_s", 0.0))
    log_path, val_path = out / "train_log.csv", out / "val_log.csv"
    csv_log = _CsvLog(log_path, LOG_COLUMNS, global_step if state else None) if main_proc else None
    # a stage-end validation row at the checkpoint's step is recomputed after resuming, so drop it too
    val_log = _CsvLog(val_path, VAL_COLUMNS, global_step if state else None, inclusive=False) if main_proc else None
    last_good = ckpt

    def save_checkpoint(si, stage_step, opt, sched, sampler):
        nonlocal last_good
        rngs = gather_object([rng_state()])
        if main_proc:
            if fail_ckpt_at is not None and global_step == fail_ckpt_at:
                def write(tmp):  # test hook: a crash in the middle of writing
                    model.save_pretrained(tmp / "model")
                    raise OSError(f"simulated crash while writing the checkpoint of step {global_step}")
            else:
                def write(tmp):
                    model.save_pretrained(tmp / "model")
                    torch.save(opt.state_dict(), tmp / "optimizer.pt")
                    torch.save(sched.state_dict(), tmp / "scheduler.pt")
                    for r, st in enumerate(rngs):
                        torch.save(st, tmp / f"rng-rank{r}.pt")
            st = {"global_step": global_step, "stage_index": si, "stage_name": tc.stages[si].name,
                  "stage_step": stage_step, "data_position": sampler.position(stage_step * tc.grad_accum),
                  "order_seed": order_seed(seed, si, sampler.position(stage_step * tc.grad_accum)["epoch"]),
                  "seed": seed, "world_size": world, "config_hash": cfg.hash(), "config": cfg.raw,
                  "config_path": str(cfg.path), "preset": cfg.preset, "total_steps": tc.total_steps,
                  "wall_time_s": wall_before + time.time() - t0, "versions": _versions()}
            last_good = write_checkpoint(ckpt_root, global_step, write, st, keep=tc.keep_checkpoints)
        acc.wait_for_everyone()

    bar = tqdm(total=tc.total_steps, initial=global_step, desc="train", unit="step",
               disable=not (progress and acc.is_local_main_process), dynamic_ncols=True)
    runner = _LossModule(model)
    stopped_early = False
    try:
        for si in range(start_stage, len(tc.stages)):
            st = tc.stages[si]
            names = model.set_trainable(list(st.trainable))
            if not names:
                raise ConfigError(f"{cfg.path} [preset {cfg.preset}]: stage {st.name!r} trains {st.trainable} but the "
                                  f"model has no parameters in those parts")
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=st.lr, betas=tc.adam_betas, eps=tc.adam_eps, weight_decay=st.weight_decay)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s, st=st: lr_factor(s, st, tc.min_lr_ratio))
            acc.free_memory()
            prunner, popt = acc.prepare(runner, opt)
            stage_step = start_step if si == start_stage else 0
            if state is not None and si == start_stage:
                popt.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=False))
                sched.load_state_dict(torch.load(ckpt / "scheduler.pt", map_location="cpu", weights_only=False))
                rf = ckpt / f"rng-rank{rank}.pt"
                if not rf.is_file():
                    warnings.warn(f"{rf} missing (different number of processes?); using rank 0's RNG state")
                    rf = ckpt / "rng-rank0.pt"
                set_rng_state(torch.load(rf, map_location="cpu", weights_only=False))
            ds = train_sets[tuple(st.tasks)]
            ga = tc.grad_accum
            sampler = StageBatchSampler(len(ds), tc.batch_size, seed, si, stage_step * ga, st.steps * ga, rank, world)
            gen = torch.Generator()
            gen.manual_seed(order_seed(seed, si, -1))  # DataLoader's base seed: never from the global RNG
            loader = DataLoader(ds, batch_sampler=sampler, collate_fn=ds.collate_fn,
                                num_workers=cfg.data.num_workers, generator=gen)
            it = iter(loader)
            model.train()
            bar.set_description(f"train [{si + 1}/{len(tc.stages)} {st.name}]")
            while stage_step < st.steps:
                if max_steps is not None and global_step >= max_steps:
                    stopped_early = True
                    break
                loss_sum, tokens, label_tokens = 0.0, 0, 0
                epoch = sampler.position(stage_step * ga)["epoch"]
                for micro in range(ga):
                    batch = next(it)
                    batch.pop("row", None)
                    batch = send_to_device(batch, acc.device)
                    tokens += int(batch["attention_mask"].sum())
                    label_tokens += int((batch["labels"] != -100).sum())
                    ctx = acc.no_sync(prunner) if micro < ga - 1 else _nullctx()
                    with ctx:
                        loss = prunner(batch)
                        mean_loss = acc.reduce(loss.detach().float().clone(), "mean")
                        lv = float(mean_loss)
                        if not _finite(lv):
                            raise _diverged("loss", lv, global_step + 1, si, st, stage_step + 1, last_good)
                        acc.backward(loss / ga)
                    loss_sum += lv
                gn = acc.clip_grad_norm_(params, tc.max_grad_norm if tc.max_grad_norm else float("inf"))
                gn = float(gn) if gn is not None else float("nan")
                if not _finite(gn):
                    raise _diverged("gradient norm", gn, global_step + 1, si, st, stage_step + 1, last_good)
                lr = sched.get_last_lr()[0]
                popt.step()
                sched.step()
                popt.zero_grad(set_to_none=True)
                global_step += 1
                stage_step += 1
                counts = acc.reduce(torch.tensor([tokens, label_tokens], device=acc.device), "sum")
                row = {"step": global_step, "stage": si, "stage_name": st.name, "stage_step": stage_step,
                       "epoch": epoch, "loss": loss_sum / ga, "lr": float(lr), "grad_norm": gn,
                       "tokens": int(counts[0]), "label_tokens": int(counts[1])}
                if main_proc:
                    csv_log.write(row)
                bar.update(1)
                if global_step % tc.log_every == 0:
                    bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}", gn=f"{gn:.3f}")
                    if bar.disable and main_proc:
                        log.info("step %d/%d [%s] loss %.4f lr %.2e grad-norm %.3f", global_step, tc.total_steps,
                                 st.name, row["loss"], lr, gn)
                if global_step % tc.checkpoint_every == 0 or (max_steps is not None and global_step >= max_steps):
                    save_checkpoint(si, stage_step, popt, sched, sampler)
            if stopped_early:
                break
            if tuple(st.tasks) in val_sets:
                vl, nb = _evaluate(prunner, val_sets[tuple(st.tasks)], tc, seed, si, rank, world, acc, send_to_device)
                if main_proc and vl is not None:
                    val_log.write({"step": global_step, "stage": si, "stage_name": st.name, "val_loss": vl,
                                   "val_batches": nb})
                model.train()
            if max_steps is not None and global_step >= max_steps and si < len(tc.stages) - 1:
                stopped_early = True
                break
    finally:
        bar.close()
        for lg in (csv_log, val_log):
            if lg is not None:
                lg.close()

    completed = not stopped_early and global_step >= tc.total_steps
    summary = {"command": command or " ".join([sys.executable, *sys.argv]), "config": str(cfg.path),
               "preset": cfg.preset, "config_hash": cfg.hash(), "seed": seed, "completed": completed,
               "steps": global_step, "total_steps": tc.total_steps, "resumed_from": str(ckpt) if ckpt else None,
               "wall_time_s": wall_before + time.time() - t0, "device": str(acc.device), "num_processes": world,
               "mixed_precision": acc.mixed_precision, "stages": _stage_summary(out / "train_log.csv",
                                                                                out / "val_log.csv", cfg),
               "final": str(out / "final") if completed else None,
               "last_checkpoint": str(find_latest(ckpt_root)) if find_latest(ckpt_root) else None,
               "versions": _versions(), "training": to_jsonable(tc)}
    if main_proc:
        if completed:
            _save_final(model, out)
        atomic_write_bytes(out / "train_summary.json", json.dumps(summary, indent=1, default=str).encode())
    acc.wait_for_everyone()
    return summary


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _diverged(what, value, step, si, st, stage_step, last_good) -> TrainingDivergedError:
    where = (f"the last good checkpoint is {last_good} (it was not overwritten; fix the cause, then rerun with --resume)"
             if last_good else "no checkpoint was written before it")
    return TrainingDivergedError(f"training diverged: non-finite {what} ({value}) at step {step} (stage {si} "
                                 f"{st.name!r}, stage step {stage_step}); stopped without saving; {where}", last_good)


@torch.no_grad()
def _evaluate(prunner, ds, tc, seed, si, rank, world, acc, send_to_device):
    """Mean loss over the first ``eval_batches`` batches of a fixed (seeded) order of the val set."""
    if len(ds) == 0:
        return None, 0
    nb = min(tc.eval_batches, math.ceil(len(ds) / tc.batch_size))
    sampler = StageBatchSampler(len(ds), tc.batch_size, seed, 10_000 + si, 0, nb, rank, world)
    gen = torch.Generator()
    gen.manual_seed(order_seed(seed, 10_000 + si, -1))
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=ds.collate_fn, generator=gen)
    prunner.eval()
    total = 0.0
    for batch in loader:
        batch.pop("row", None)
        total += float(acc.reduce(prunner(send_to_device(batch, acc.device)).detach().float().clone(), "mean"))
    return total / nb, nb


# ---- CLI ------------------------------------------------------------------------------------------------

def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workbench.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (presets: {NAME: {model, data, training}})")
    p.add_argument("--preset", default="tiny", help="preset name inside the config (default: tiny)")
    p.add_argument("--out", help="run folder (log, checkpoints, final/)")
    p.add_argument("--all", action="store_true", help=f"train every configs/{{{','.join(VARIANTS)}}}.yaml")
    p.add_argument("--out-root", default="results/checkpoints", help="with --all: runs go to OUT_ROOT/VARIANT")
    p.add_argument("--configs-dir", default=str(REPO_ROOT / "configs"), help="with --all: where the variant configs are")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this global step (writes a checkpoint)")
    p.add_argument("--seed", type=int, default=None, help="override training.seed")
    p.add_argument("--no-progress", action="store_true")
    return p


def _model_errors() -> tuple:
    """The model package's bad-input errors (config / checkpoint mismatch), if it is there."""
    try:
        from workbench.model.pal import CheckpointMismatchError
        from workbench.model.pal_config import ConfigError as ModelConfigError
    except ImportError:
        return ()
    return (ModelConfigError, CheckpointMismatchError)


def _run_one(config, preset, out, a, command) -> int:
    try:
        cfg = load_run_config(config, preset, seed=a.seed)
        s = train(cfg, out, resume=a.resume, max_steps=a.max_steps, progress=not a.no_progress, command=command)
    except (ConfigError, CheckpointError, DataError, EmptyDatasetError, *_model_errors()) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingDivergedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    state = "done" if s["completed"] else f"stopped at step {s['steps']}/{s['total_steps']} (resume with --resume)"
    print(f"{out}: {state}; " + ", ".join(f"{x['name']} loss {x['final_loss']}" for x in s["stages"]
                                          if x["final_loss"] is not None))
    return 0


def main(argv: list[str] | None = None) -> int:
    a = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = " ".join(["python -m workbench.train", *(argv if argv is not None else sys.argv[1:])])
    if a.all:
        if a.config or a.out:
            print("error: --all takes --out-root (and --configs-dir), not --config/--out", file=sys.stderr)
            return 2
        rc, ran = 0, 0
        for v in VARIANTS:
            path = Path(a.configs_dir) / f"{v}.yaml"
            if not path.is_file():
                warnings.warn(f"--all: {path} missing; skipping variant {v!r}")
                continue
            ran += 1
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


if __name__ == "__main__":
    sys.exit(main())
