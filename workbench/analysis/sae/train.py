"""Train a `SparseAutoencoder` on collected activations: deterministic for a seed (and thread count), resumable
exactly (an atomic ``train_state.pt`` every ``checkpoint_every`` steps), with a tqdm progress bar.

    sae, log = train_sae(rows, TrainConfig(width=4096, k=32), out_dir="runs/sae/x")   # rows [n, d_in]

Recipe (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): inputs scaled by one scalar so the mean
squared row norm is ``d_in`` (folded into the weights when saved), ``b_dec`` initialised at the (scaled) data
mean, Adam with linear learning-rate warm-up then constant (linear decay over the last 20%), unit-norm decoder
rows (gradient projected, rows renormalised every step), and the AuxK loss: features that have not fired for
``dead_after`` rows reconstruct the residual error with their own top ``aux_k`` (coefficient ``aux_coef``), which
keeps features from dying. Batches are a fixed permutation per epoch drawn from ``(seed, epoch)``, so a resumed
run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.analysis.sae.model import SparseAutoencoder
from workbench.analysis.sae.saelens_format import load_sae, save_sae

log = logging.getLogger(__name__)

__all__ = ["STATE_FILENAME", "TrainConfig", "input_scale", "train_sae"]

STATE_FILENAME = "train_state.pt"


@dataclass
class TrainConfig:
    """width: features (d_sae); k: active per row; steps: optimiser steps (None: ``epochs`` over the rows)."""

    width: int = 4096
    k: int = 32
    architecture: str = "topk"
    batch_size: int = 1024
    steps: int | None = None
    epochs: float = 10.0
    lr: float = 4e-4
    warmup_steps: int = 100
    aux_k: int | None = None  # default d_in // 2
    aux_coef: float = 1 / 32
    dead_after: int = 20_000  # rows without firing before a feature counts as dead (for AuxK)
    seed: int = 0
    checkpoint_every: int = 200
    threads: int | None = None  # torch threads while training (None: leave as is)

    def n_steps(self, n_rows: int) -> int:
        if self.steps is not None:
            return int(self.steps)
        return max(1, int(self.epochs * max(1, n_rows // self.batch_size)))


def input_scale(rows, max_rows: int = 20_000, seed: int = 0) -> float:
    """The scalar s with mean ||s x||^2 = d_in over (a seeded sample of) ``rows`` [n, d_in]."""
    n = len(rows)
    idx = np.sort(np.random.default_rng(seed).choice(n, min(n, max_rows), replace=False))
    x = torch.as_tensor(np.asarray(rows[idx], dtype=np.float32))
    ms = float((x**2).sum(1).mean())
    if not ms > 0:
        raise ValueError("activations are all zero: nothing to train an SAE on (wrong hook or positions?)")
    return float(np.sqrt(x.shape[1] / ms))


def _batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    per_epoch = max(1, n // batch_size)
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    if n < batch_size:
        return np.sort(perm)
    return np.sort(perm[pos * batch_size : (pos + 1) * batch_size])


def _lr_at(step: int, cfg: TrainConfig, total: int) -> float:
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    decay_start = int(0.8 * total)
    decay = 1.0 if step < decay_start else max(0.0, (total - step) / max(1, total - decay_start))
    return cfg.lr * warm * decay


def _losses(sae: SparseAutoencoder, x: torch.Tensor, since_fired: torch.Tensor, cfg: TrainConfig):
    """(total loss, stats dict, feats) on one scaled batch x [B, d_in]."""
    pre = sae.pre_activations(x)
    feats = sae.activate(pre, batch_topk=sae.architecture == "batchtopk")
    x_hat = sae.decode(feats)
    err = x - x_hat
    var = ((x - x.mean(0)) ** 2).sum(1).mean().clamp(min=1e-8)
    mse = (err**2).sum(1).mean() / var  # normalised MSE = 1 - explained variance
    loss = mse
    dead = since_fired >= cfg.dead_after
    aux = torch.zeros(())
    if bool(dead.any()):
        k_aux = min(int(dead.sum()), cfg.aux_k or sae.d_in // 2)
        pre_dead = pre.masked_fill(~dead, -torch.inf)
        vals, idx = pre_dead.topk(k_aux, dim=-1)
        aux_feats = torch.zeros_like(pre).scatter_(-1, idx, vals.relu().nan_to_num(0.0))
        e_hat = aux_feats @ sae.W_dec
        target = err.detach()
        aux = ((target - e_hat) ** 2).sum(1).mean() / ((target - target.mean(0)) ** 2).sum(1).mean().clamp(min=1e-8)
        loss = loss + cfg.aux_coef * aux.nan_to_num(0.0)
    stats = {
        "loss": float(loss.detach()),
        "nmse": float(mse.detach()),
        "aux": float(aux.detach()),
        "l0": float((feats > 0).sum(1).float().mean()),
        "dead": float(dead.float().mean()),
    }
    return loss, stats, feats


def _save_state(path: Path, sae, opt, step: int, scale: float, since_fired, log_rows: list, cfg: TrainConfig) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "sae": sae.state_dict(),
            "opt": opt.state_dict(),
            "step": step,
            "scale": scale,
            "since_fired": since_fired,
            "log": log_rows,
            "cfg": asdict(cfg),
        },
        tmp,
    )
    os.replace(tmp, path)


def _finished(out: Path | None, cfg: TrainConfig, n: int, resume: bool):
    """(SAE, log) of ``out`` when it already holds an SAE trained with ``cfg`` on ``n`` rows, else None."""
    if out is not None and resume and (out / "workbench.json").is_file():
        info = json.loads((out / "workbench.json").read_text())
        if info.get("train_config") == asdict(cfg) and info.get("n_rows") == n and info.get("complete"):
            log.info("%s: already trained with this config; reusing", out)
            return load_sae(out), pd.read_csv(out / "train_log.csv")
    return None


def _start_state(rows, sae, opt, cfg: TrainConfig, state_path: Path | None, resume: bool, out, total: int):
    """(start step, input scale, since_fired [width], log rows): from ``state_path`` when it holds this config's
    state (loaded into ``sae`` and ``opt``), else step 0 with ``b_dec`` set to the scaled mean of a row sample."""
    since_fired = torch.zeros(cfg.width, dtype=torch.long)
    start, log_rows = 0, []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if state_path is not None and resume and state_path.is_file():
        st = torch.load(state_path, weights_only=False)
        if st["cfg"] == asdict(cfg):
            sae.load_state_dict(st["sae"]), opt.load_state_dict(st["opt"])
            start, scale, since_fired, log_rows = st["step"], st["scale"], st["since_fired"], st["log"]
            log.info("resuming %s at step %d/%d", out, start, total)
    if start == 0:
        n = rows.shape[0]
        scale = input_scale(rows, seed=cfg.seed)
        with torch.no_grad():
            idx = np.sort(np.random.default_rng(cfg.seed).choice(n, min(n, 20_000), replace=False))
            sae.b_dec.copy_(torch.as_tensor(np.asarray(rows[idx], dtype=np.float32)).mean(0) * scale)
    return start, scale, since_fired, log_rows


def _train_step(sae, opt, x, since_fired, cfg: TrainConfig, step: int, total: int):
    """One optimiser step on the scaled batch ``x`` [batch, d_in]: (loss stats, updated since_fired [width])."""
    for group in opt.param_groups:
        group["lr"] = _lr_at(step, cfg, total)
    loss, stats, feats = _losses(sae, x, since_fired, cfg)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    sae.remove_parallel_grad()
    opt.step()
    sae.normalize_decoder()
    fired = (feats > 0).any(0)
    since_fired = torch.where(fired, torch.zeros_like(since_fired), since_fired + x.shape[0])
    if sae.architecture == "batchtopk":
        sae.update_threshold(feats.detach())
    return stats, since_fired


def _write_finished(sae, out: Path, cfg: TrainConfig, n: int, scale, log_rows, log_df, metadata, extra, state_path):
    """The SAE in SAELens format with its ``workbench.json`` info, ``train_log.csv``; the resume state removed."""
    info = {
        "train_config": asdict(cfg),
        "n_rows": n,
        "input_scale_folded": scale,
        "complete": True,
        "final": log_rows[-1] if log_rows else {},
        **(extra or {}),
    }
    save_sae(sae, out, metadata=metadata, extra=info)
    tmp = out / "train_log.csv.tmp"
    log_df.to_csv(tmp, index=False)
    os.replace(tmp, out / "train_log.csv")
    if state_path is not None and state_path.is_file():
        state_path.unlink()


def train_sae(
    rows,
    cfg: TrainConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    hook_name: str = "",
    model_name: str = "",
    metadata: dict | None = None,
    extra: dict | None = None,
    progress: bool = True,
    resume: bool = True,
) -> tuple[SparseAutoencoder, pd.DataFrame]:
    """Train on ``rows`` [n, d_in] (numpy array or memmap; read one batch at a time). With ``out_dir``: resumes
    from its ``train_state.pt``, returns the finished SAE when the folder already holds one trained with the same
    config, and writes the SAE in SAELens format + ``train_log.csv``. Returns (SAE taking raw activations, log)."""
    out = Path(out_dir) if out_dir is not None else None
    n, d_in = rows.shape
    if n < 2:
        raise ValueError(f"an SAE needs at least 2 activation rows, got {n}")
    total = cfg.n_steps(n)
    done = _finished(out, cfg, n, resume)
    if done is not None:
        return done
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    sae = SparseAutoencoder(
        d_in, cfg.width, cfg.k, cfg.architecture, seed=cfg.seed, hook_name=hook_name, model_name=model_name
    )
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=6.25e-10)
    state_path = out / STATE_FILENAME if out is not None else None
    start, scale, since_fired, log_rows = _start_state(rows, sae, opt, cfg, state_path, resume, out, total)
    steps = range(start, total)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            steps, desc=f"SAE {cfg.architecture} w={cfg.width} k={cfg.k}", unit="step", initial=start, total=total
        )
    for step in bar if bar is not None else steps:
        idx = _batch_indices(n, cfg.batch_size, cfg.seed, step)
        x = torch.as_tensor(np.asarray(rows[idx], dtype=np.float32)) * scale
        stats, since_fired = _train_step(sae, opt, x, since_fired, cfg, step, total)
        if step % 10 == 0 or step == total - 1:
            log_rows.append({"step": step, "lr": _lr_at(step, cfg, total), **stats})
            if bar is not None:
                bar.set_postfix(nmse=f"{stats['nmse']:.3f}", l0=f"{stats['l0']:.1f}", dead=f"{stats['dead']:.2f}")
        if state_path is not None and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < total:
            _save_state(state_path, sae, opt, step + 1, scale, since_fired, log_rows, cfg)
    sae.fold_input_scale(scale)
    sae.input_scale = scale
    log_df = pd.DataFrame(log_rows)
    if out is not None:
        _write_finished(sae, out, cfg, n, scale, log_rows, log_df, metadata, extra, state_path)
    return sae, log_df
