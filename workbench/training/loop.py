"""The curriculum's step loop: stages, optimizer steps, logs, atomic checkpoints and exact resume.

:func:`workbench.training.driver.train` builds the model, the data and the :class:`accelerate.Accelerator`, then hands them
to a :class:`CurriculumLoop`. What the loop needs from a model is the small :class:`TrainableModel` protocol
(``PALModel`` implements it; so does the stand-in model of the tests).

Per optimizer step: ``grad_accum`` micro-batches (``loss / grad_accum`` backpropagated, no DDP sync but on
the last), gradient clipping, AdamW + warmup/decay schedule, one ``train_log.csv`` row (flushed and fsynced).

With P processes (data-parallel), each process computes its shard of every global micro-batch (see
:class:`~workbench.training.batch_order.StageBatchSampler`) and scales its mean loss by ``P * n_r / N`` (``n_r`` its
answer tokens, ``N`` the micro-batch's): DDP's gradient average is then the gradient of the token mean over the
whole global micro-batch, the loss one process computes on it; the logged loss is the same token mean. Only
rank 0 writes the logs and checkpoints (holding every rank's RNG state) and prints.
Every ``checkpoint_every`` steps (and at ``max_steps``) an atomic checkpoint holds the trainable weights, the
optimizer, the scheduler, every process's RNG state and the position in the stage's data order, so an
interrupted and resumed run writes the same rows as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch.utils.data import DataLoader

from workbench.training.batch_order import StageBatchSampler, order_seed
from workbench.training.checkpoint import rng_state, set_rng_state, write_checkpoint
from workbench.training.environment import repo_relative, run_environment, versions
from workbench.training.run_config import ConfigError, RunConfig, StageConfig
from workbench.training.schedule import LoopPosition as LoopPosition
from workbench.training.schedule import lr_factor as lr_factor
from workbench.training.train_logs import LOG_COLUMNS as LOG_COLUMNS
from workbench.training.train_logs import VAL_COLUMNS as VAL_COLUMNS
from workbench.training.train_logs import CsvLog as CsvLog
from workbench.training.train_logs import read_log as read_log

__all__ = [
    "TrainableModel",
    "CurriculumLoop",
    "LoopPosition",
    "TrainingDivergedError",
    "lr_factor",
    "read_log",
    "LOG_COLUMNS",
    "VAL_COLUMNS",
    "CsvLog",
]


@runtime_checkable
class TrainableModel(Protocol):
    """What the loop uses of a model (``torch.nn.Module`` methods aside: ``parameters``, ``train``, ``eval``)."""

    def loss(self, batch: dict) -> torch.Tensor:
        """Scalar mean loss of a collated batch (the answer tokens' cross-entropy for ``PALModel``)."""

    def set_trainable(self, parts: list[str]) -> list[str]:
        """Freeze everything but ``parts`` (e.g. ``["connectors", "lora"]``); returns the trainable names."""

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the trainable parts (resume)."""

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write the trainable parts and config atomically (checkpoints and ``final/``)."""


class TrainingDivergedError(RuntimeError):
    """A non-finite loss / gradient norm; the message names the step, the stage and the last good checkpoint."""

    def __init__(self, msg: str, checkpoint: Path | None = None):
        super().__init__(msg)
        self.checkpoint = checkpoint


class _NullCtx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _finite(x: float) -> bool:
    return math.isfinite(x)


class CurriculumLoop:
    """Runs the stages of ``cfg.training`` on ``model`` from ``position`` (0, or a checkpoint's ``state``).

    ``train_sets``/``val_sets``: {stage tasks tuple: dataset}. ``ckpt``: the checkpoint folder resumed from (its
    optimizer, scheduler and RNG files are restored at the first stage run). ``run()`` returns True when it
    stopped early at ``max_steps``.
    """

    def __init__(
        self,
        cfg: RunConfig,
        out: Path,
        acc,
        model: TrainableModel,
        train_sets: dict,
        val_sets: dict,
        *,
        state: dict | None,
        ckpt: Path | None,
        max_steps: int | None,
        progress: bool,
        t0: float,
        fail_checkpoint_at: int | None = None,
    ):
        from accelerate.utils import gather_object, send_to_device

        self.cfg, self.tc, self.out, self.acc, self.model = cfg, cfg.training, out, acc, model
        self.train_sets, self.val_sets = train_sets, val_sets
        self.ckpt, self.max_steps, self.progress, self.t0 = ckpt, max_steps, progress, t0
        self.fail_checkpoint_at = fail_checkpoint_at
        self.gather_object, self.send_to_device = gather_object, send_to_device
        self.pos = LoopPosition.from_state(state)
        self.resuming = state is not None
        self.last_good = ckpt
        self.main_proc, self.rank, self.world = acc.is_main_process, acc.process_index, acc.num_processes
        self.seed = self.tc.seed
        self.ckpt_root = out / "checkpoints"
        self.csv_log = self.val_log = None
        self.bar = None

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, si: int, stage_step: int, opt, sched, sampler: StageBatchSampler) -> None:
        tc, model, step = self.tc, self.model, self.pos.global_step
        rngs = self.gather_object([rng_state()])
        if self.main_proc:
            if self.fail_checkpoint_at is not None and step == self.fail_checkpoint_at:

                def write(tmp):  # test hook: a crash in the middle of writing
                    model.save_pretrained(tmp / "model")
                    raise OSError(f"simulated crash while writing the checkpoint of step {step}")
            else:

                def write(tmp):
                    model.save_pretrained(tmp / "model")
                    torch.save(opt.state_dict(), tmp / "optimizer.pt")
                    torch.save(sched.state_dict(), tmp / "scheduler.pt")
                    for r, st in enumerate(rngs):
                        torch.save(st, tmp / f"rng-rank{r}.pt")

            where = sampler.position(stage_step * tc.grad_accum)
            st = {
                "global_step": step,
                "stage_index": si,
                "stage_name": tc.stages[si].name,
                "stage_step": stage_step,
                "data_position": where,
                "order_seed": order_seed(self.seed, si, where["epoch"]),
                "seed": self.seed,
                "world_size": self.world,
                "config_hash": self.cfg.hash(),
                "config": self.cfg.raw,
                "config_path": repo_relative(self.cfg.path),
                "preset": self.cfg.preset,
                "total_steps": tc.total_steps,
                "wall_time_s": self.pos.wall_before + time.time() - self.t0,
                "versions": versions(),
                "environment": run_environment(str(self.acc.device)),
            }
            self.last_good = write_checkpoint(self.ckpt_root, step, write, st, keep=tc.keep_checkpoints)
        self.acc.wait_for_everyone()

    def _restore(self, popt, sched) -> None:
        """Optimizer, scheduler and this process's RNG state from the checkpoint resumed from."""
        import warnings

        ckpt = self.ckpt
        popt.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=False))
        sched.load_state_dict(torch.load(ckpt / "scheduler.pt", map_location="cpu", weights_only=False))
        rf = ckpt / f"rng-rank{self.rank}.pt"
        if not rf.is_file():
            warnings.warn(f"{rf} missing (different number of processes?); using rank 0's RNG state", stacklevel=2)
            rf = ckpt / "rng-rank0.pt"
        set_rng_state(torch.load(rf, map_location="cpu", weights_only=False))

    # ------------------------------------------------------------------ the loop
    def run(self) -> bool:
        from tqdm.auto import tqdm

        tc, pos = self.tc, self.pos
        if self.main_proc:
            resume_step = pos.global_step if self.resuming else None
            self.csv_log = CsvLog(self.out / "train_log.csv", LOG_COLUMNS, resume_step)
            # a stage-end validation row at the checkpoint's step is recomputed after resuming, so drop it too
            self.val_log = CsvLog(self.out / "val_log.csv", VAL_COLUMNS, resume_step, inclusive=False)
        self.bar = tqdm(
            total=tc.total_steps,
            initial=pos.global_step,
            desc="train",
            unit="step",
            disable=not (self.progress and self.acc.is_local_main_process),
            dynamic_ncols=True,
        )
        try:
            for si in range(pos.stage_index, len(tc.stages)):
                if self._run_stage(si, first=si == pos.stage_index):
                    return True
                if self.max_steps is not None and pos.global_step >= self.max_steps and si < len(tc.stages) - 1:
                    return True
            return False
        finally:
            self.bar.close()
            for lg in (self.csv_log, self.val_log):
                if lg is not None:
                    lg.close()

    def _run_stage(self, si: int, first: bool) -> bool:
        """One stage from its current step; True when stopped early at ``max_steps``."""
        tc, acc, model, pos = self.tc, self.acc, self.model, self.pos
        st = tc.stages[si]
        names = model.set_trainable(list(st.trainable))
        if not names:
            raise ConfigError(
                f"{self.cfg.path} [preset {self.cfg.preset}]: stage {st.name!r} trains {st.trainable} "
                f"but the model has no parameters in those parts"
            )
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=st.lr, betas=tc.adam_betas, eps=tc.adam_eps, weight_decay=st.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s, st=st: lr_factor(s, st, tc.min_lr_ratio))
        acc.free_memory()
        prunner, popt = acc.prepare(_LossModule(model), opt)
        stage_step = pos.stage_step if first else 0
        if self.resuming and first:
            self._restore(popt, sched)
        ds = self.train_sets[tuple(st.tasks)]
        ga = tc.grad_accum
        sampler = StageBatchSampler(
            len(ds), tc.batch_size, self.seed, si, stage_step * ga, st.steps * ga, self.rank, self.world
        )
        gen = torch.Generator()
        gen.manual_seed(order_seed(self.seed, si, -1))  # DataLoader's base seed: never from the global RNG
        it = iter(
            DataLoader(
                ds,
                batch_sampler=sampler,
                collate_fn=ds.collate_fn,
                num_workers=self.cfg.data.num_workers,
                generator=gen,
            )
        )
        model.train()
        self.bar.set_description(f"train [{si + 1}/{len(tc.stages)} {st.name}]")
        while stage_step < st.steps:
            if self.max_steps is not None and pos.global_step >= self.max_steps:
                return True
            row = self._optimizer_step(si, st, stage_step, it, prunner, popt, sched, params, sampler)
            stage_step += 1
            pos.global_step, pos.stage_step = pos.global_step + 1, stage_step
            row.update(step=pos.global_step, stage_step=stage_step)
            if self.main_proc:
                self.csv_log.write(row)
            self._report(row, st)
            if pos.global_step % tc.checkpoint_every == 0 or (
                self.max_steps is not None and pos.global_step >= self.max_steps
            ):
                self.save_checkpoint(si, stage_step, popt, sched, sampler)
        if tuple(st.tasks) in self.val_sets:
            vl, nb = self._validate(prunner, self.val_sets[tuple(st.tasks)], si)
            if self.main_proc and vl is not None:
                self.val_log.write(
                    {"step": pos.global_step, "stage": si, "stage_name": st.name, "val_loss": vl, "val_batches": nb}
                )
            model.train()
        return False

    def _optimizer_step(self, si, st, stage_step, it, prunner, popt, sched, params, sampler) -> dict:
        """``grad_accum`` micro-batches, clip, step; the log row (step numbers filled in by the caller)."""
        tc, acc = self.tc, self.acc
        ga = tc.grad_accum
        loss_sum, tokens, label_tokens = 0.0, 0, 0
        epoch = sampler.position(stage_step * ga)["epoch"]
        for micro in range(ga):
            batch = next(it)
            batch.pop("row", None)
            batch = self.send_to_device(batch, acc.device)
            tokens += int(batch["attention_mask"].sum())
            label_tokens += int((batch["labels"] != -100).sum())
            with acc.no_sync(prunner) if micro < ga - 1 else _NullCtx():
                loss = prunner(batch)
                loss, lv = self._global_mean(loss, batch)
                if not _finite(lv):
                    raise self._diverged("loss", lv, si, st, stage_step + 1)
                acc.backward(loss / ga)
            loss_sum += lv
        gn = acc.clip_grad_norm_(params, tc.max_grad_norm if tc.max_grad_norm else float("inf"))
        gn = float(gn) if gn is not None else float("nan")
        if not _finite(gn):
            raise self._diverged("gradient norm", gn, si, st, stage_step + 1)
        lr = sched.get_last_lr()[0]
        popt.step()
        sched.step()
        popt.zero_grad(set_to_none=True)
        counts = acc.reduce(torch.tensor([tokens, label_tokens], device=acc.device), "sum")
        return {
            "stage": si,
            "stage_name": st.name,
            "epoch": epoch,
            "loss": loss_sum / ga,
            "lr": float(lr),
            "grad_norm": gn,
            "tokens": int(counts[0]),
            "label_tokens": int(counts[1]),
        }

    def _global_mean(self, loss: torch.Tensor, batch: dict) -> tuple[torch.Tensor, float]:
        """(the loss to backpropagate, the global micro-batch's mean loss as a float).

        One process: ``(loss, loss)``. P processes: ``loss * P * n_r / N`` (DDP averages the gradients of these, which
        gives the gradient of the token mean over the global micro-batch) and the token-weighted mean of the
        processes' losses (``n_r``: this process's answer tokens, ``labels[:, 1:] != -100``; ``N``: their sum)."""
        if self.world == 1:
            return loss, float(self.acc.reduce(loss.detach().float().clone(), "mean"))
        n_r = (batch["labels"][:, 1:] != -100).sum().to(torch.float64)
        n_all = float(self.acc.reduce(n_r.clone(), "sum"))
        share = float(n_r) / n_all if n_all > 0 else 1.0 / self.world
        mean = float(self.acc.reduce(loss.detach().double() * share, "sum"))
        return loss * (share * self.world), mean

    def _report(self, row: dict, st: StageConfig) -> None:
        import logging

        self.bar.update(1)
        if row["step"] % self.tc.log_every == 0:
            self.bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", gn=f"{row['grad_norm']:.3f}")
            if self.bar.disable and self.main_proc:
                logging.getLogger("workbench.train").info(
                    "step %d/%d [%s] loss %.4f lr %.2e grad-norm %.3f",
                    row["step"],
                    self.tc.total_steps,
                    st.name,
                    row["loss"],
                    row["lr"],
                    row["grad_norm"],
                )

    def _diverged(self, what: str, value: float, si: int, st: StageConfig, stage_step: int) -> TrainingDivergedError:
        last_good, step = self.last_good, self.pos.global_step + 1
        where = (
            f"the last good checkpoint is {last_good} (it was not overwritten; fix the cause, then rerun with --resume)"
            if last_good
            else "no checkpoint was written before it"
        )
        return TrainingDivergedError(
            f"training diverged: non-finite {what} ({value}) at step {step} (stage {si} "
            f"{st.name!r}, stage step {stage_step}); stopped without saving; {where}",
            last_good,
        )

    @torch.no_grad()
    def _validate(self, prunner, ds, si: int) -> tuple[float | None, int]:
        """Mean loss over the first ``eval_batches`` batches of a fixed (seeded) order of the val set."""
        tc, acc = self.tc, self.acc
        if len(ds) == 0:
            return None, 0
        nb = min(tc.eval_batches, math.ceil(len(ds) / tc.batch_size))
        sampler = StageBatchSampler(len(ds), tc.batch_size, self.seed, 10_000 + si, 0, nb, self.rank, self.world)
        gen = torch.Generator()
        gen.manual_seed(order_seed(self.seed, 10_000 + si, -1))
        loader = DataLoader(ds, batch_sampler=sampler, collate_fn=ds.collate_fn, generator=gen)
        prunner.eval()
        total = 0.0
        for batch in loader:
            batch.pop("row", None)
            batch = self.send_to_device(batch, acc.device)
            total += self._global_mean(prunner(batch), batch)[1]
        return total / nb, nb


class _LossModule(torch.nn.Module):
    """``forward(batch) = model.loss(batch)`` so DDP/FSDP wrappers and autocast see the loss computation."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)
