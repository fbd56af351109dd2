"""Listening heads (audio-specialist heads): which attention heads carry the audio to the answer, and does the
model need them?

**Listening score** of head h in layer l. At the answer-predicting position (the last prompt token; residual
index from ``model.token_layout``) the head writes ``o = W_O[h] z_h`` into the residual stream (``z_h`` from
``blocks.{l}.attn.hook_z``, ``W_O[h]`` the head's slice of the output projection; [d_model]). With the real
audio and with silence of the same length in its place (same rows, same prompts):

    score(l, h) = mean_rows ||o_audio - o_silence|| / sqrt(mean_rows ||o_audio||^2)

the change the audio makes to the head's output, in units of the head's typical output size (RMS over rows).
0 exactly for a head whose output does not depend on the audio (e.g. below the layer where audio enters).
Beside it, ``audio_mass``: the head's attention weight on all audio keys at that position, with the audio
(``hook_pattern``, key indices from ``token_layout.audio_key_index``), mean over rows.

**Causal check** (:func:`listening_ablation`): mean-ablate the top-k heads by score, i.e. replace their
``hook_z`` at every real text position by that head's mean ``z`` over all real text positions of the analysed
rows (with audio), vs k heads drawn uniformly at random from all heads (``draws`` draws). Per row: the
teacher-forced answer log-probability (nats, summed over answer tokens) and, on closed rows with an option
list, option accuracy (the right option's first token has the largest logit among the options at the last
prompt position). Deltas are ablated minus unablated on the same rows; intervals are 95% bootstrap
percentiles over rows (random heads: each row's delta averaged over the draws), and ``top_minus_random``
is the paired difference.

API: :func:`listening_scores`, :func:`listening_ablation`, :func:`listening_figure`,
:func:`listening_ablation_figure`, :func:`run_listening_heads_command` (``python -m workbench.listening_heads``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.analysis.audio_conditions import (
    AudioAnalysisError,
    closed_rows_with_options,
    last_prompt_residual_index,
    make_silence,
    paired_batches,
    require_audio,
)
from workbench.analysis.cli import run_per_checkpoint, variant_first
from workbench.analysis.core import answer_logprob, collect, run_with_interventions, write_outputs
from workbench.analysis.listening_figures import listening_ablation_figure as listening_ablation_figure
from workbench.analysis.listening_figures import listening_figure as listening_figure
from workbench.evaluation.evaluator import load_answer_options
from workbench.stats.bootstrap import bootstrap_ci

__all__ = [
    "listening_scores",
    "top_heads",
    "head_means",
    "mean_ablation",
    "option_correct",
    "listening_ablation",
    "listening_figure",
    "listening_ablation_figure",
    "run_listening_heads_command",
]

SCORE_COLUMNS = ["layer", "head", "score", "delta_norm", "out_rms", "audio_mass", "rank", "n"]


def _head_out(model, z: torch.Tensor, layer: int) -> torch.Tensor:
    """z [B, H, D] at one position -> per-head residual writes [B, H, M] (W_O slice per head, no bias)."""
    H, D = model.cfg.n_heads, model.cfg.d_head
    w = model.blocks[layer].attn.o_proj.weight  # [M, H*D]
    return torch.einsum("bhd,mhd->bhm", z.to(w.dtype), w.view(-1, H, D))


@torch.no_grad()
def listening_scores(
    model,
    dataset,
    silence: str | Callable[[dict], dict] = "encoder",
    *,
    backend: str = "transformer_lens",
    batch_size: int = 8,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per (layer, head): ``SCORE_COLUMNS`` (module docstring), ranked by score (rank 1 = top)."""
    require_audio(model, "listening scores")
    L, H = model.cfg.n_layers, model.cfg.n_heads
    sil = make_silence(model, dataset, silence)
    zn = [f"blocks.{l}.attn.hook_z" for l in range(L)]
    pn = [f"blocks.{l}.attn.hook_pattern" for l in range(L)]
    dnorm = torch.zeros(L, H, dtype=torch.float64)
    sq = torch.zeros(L, H, dtype=torch.float64)
    mass = torch.zeros(L, H, dtype=torch.float64)
    n = 0
    it = paired_batches(dataset, list(range(len(dataset))), sil, batch_size)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=-(-len(dataset) // batch_size), desc="listening scores")
    for _, audio_b, silent_b in it:
        _, a = collect(model, audio_b, zn + pn, backend=backend)
        _, s = collect(model, silent_b, zn, backend=backend)
        pos = last_prompt_residual_index(model, audio_b)
        layout = model.token_layout(audio_b)
        B = pos.shape[0]
        ar = torch.arange(B)
        for l in range(L):
            oa = _head_out(model, a[zn[l]][ar, pos.to(a[zn[l]].device)], l).double()
            os_ = _head_out(model, s[zn[l]][ar, pos.to(s[zn[l]].device)], l).double()
            dnorm[l] += (oa - os_).norm(dim=-1).sum(0).cpu()
            sq[l] += oa.pow(2).sum(-1).sum(0).cpu()
            keys = [layout.audio_key_index(l, e) for e in layout.audio]
            keys = [k for k in keys if k is not None and k.shape[1]]
            if keys:
                kidx = torch.cat(keys, 1).to(a[pn[l]].device)  # [B, N]
                p = a[pn[l]][ar, :, pos.to(a[pn[l]].device)]  # [B, H, K]
                mass[l] += p.gather(2, kidx[:, None].expand(-1, H, -1)).double().sum((0, 2)).cpu()
        n += B
    delta, rms = dnorm / n, (sq / n).sqrt()
    score = torch.where(delta == 0, torch.zeros_like(delta), delta / rms.clamp(min=1e-30))
    rows = [
        (l, h, float(score[l, h]), float(delta[l, h]), float(rms[l, h]), float(mass[l, h] / n), 0, n)
        for l in range(L)
        for h in range(H)
    ]
    df = pd.DataFrame(rows, columns=SCORE_COLUMNS).sort_values(
        ["score", "layer", "head"], ascending=[False, True, True]
    )
    df["rank"] = np.arange(1, len(df) + 1)
    return df.reset_index(drop=True)


def top_heads(scores: pd.DataFrame, k: int) -> list[tuple[int, int]]:
    """The k best-ranked (layer, head) pairs; a clear error when k is not in 1..number of heads."""
    n = len(scores)
    if not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= n:
        raise AudioAnalysisError(
            f"k={k!r} heads requested but the model has {n} heads (layers x heads); pass --k between 1 and {n}"
        )
    top = scores.sort_values("rank").head(int(k))
    return [(int(r.layer), int(r.head)) for r in top.itertuples()]


def _text_positions(model, batch) -> torch.Tensor:
    layout = model.token_layout(batch)
    B, S = layout.attention_mask.shape
    is_text = torch.zeros(B, S, dtype=torch.bool, device=layout.text_index.device)
    is_text.scatter_(1, layout.text_index, layout.text_mask)
    return is_text


@torch.no_grad()
def head_means(
    model, dataset, indices: Sequence[int] | None = None, *, backend: str = "transformer_lens", batch_size: int = 8
) -> torch.Tensor:
    """[L, H, D] mean of each head's ``z`` over every real text position of the rows (with audio)."""
    L = model.cfg.n_layers
    names = [f"blocks.{l}.attn.hook_z" for l in range(L)]
    idx = list(range(len(dataset))) if indices is None else list(indices)
    total: torch.Tensor | None = None
    count = 0
    for i in range(0, len(idx), batch_size):
        batch = dataset.collate_fn([dataset[j] for j in idx[i : i + batch_size]])
        _, acts = collect(model, batch, names, backend=backend)
        m = _text_positions(model, batch)
        z = torch.stack([acts[n][m.to(acts[n].device)].double().sum(0) for n in names])  # [L, H, D]
        total = z if total is None else total + z
        count += int(m.sum())
    if total is None:
        raise AudioAnalysisError("head_means needs at least one row (indices is empty)")
    return (total / count).to(model.dtype)


def mean_ablation(model, batch, heads: Sequence[tuple[int, int]], means: torch.Tensor):
    """Interventions replacing each (layer, head)'s z at the real text positions by ``means[layer, head]``."""
    m = _text_positions(model, batch)
    by_layer: dict[int, list[int]] = {}
    for l, h in heads:
        by_layer.setdefault(int(l), []).append(int(h))

    def make(l, hs):
        def fn(z):  # [B, S, H, D]
            z = z.clone()
            mask = m.to(z.device)[..., None]
            for h in hs:
                z[:, :, h] = torch.where(mask, means[l, h].to(z.device, z.dtype), z[:, :, h])
            return z

        return fn

    return [(f"blocks.{l}.attn.hook_z", make(l, hs)) for l, hs in sorted(by_layer.items())]


def option_correct(model, batch, logits: torch.Tensor, option_ids: list[dict[str, int] | None], right: list) -> list:
    """Per row: whether the right option's first token has the largest logit among the options at the last
    prompt position (NaN for rows without options)."""
    from workbench.analysis.core import last_prompt_index

    lp = last_prompt_index(batch).to(logits.device)
    out = []
    for b, (ids, r) in enumerate(zip(option_ids, right)):
        if ids is None:
            out.append(np.nan)
            continue
        opts = list(ids)
        v = logits[b, lp[b], [ids[o] for o in opts]].double()
        others = torch.cat([v[: opts.index(r)], v[opts.index(r) + 1 :]])
        out.append(float(bool(v[opts.index(r)] > others.max())))
    return out


def _row_metrics(model, dataset, indices, toks, make_ivs, backend, batch_size) -> pd.DataFrame:
    rows = []
    for i in range(0, len(indices), batch_size):
        idx = indices[i : i + batch_size]
        batch = dataset.collate_fn([dataset[j] for j in idx])
        ivs = make_ivs(batch) if make_ivs else []
        logits = run_with_interventions(model, batch, ivs, backend=backend) if ivs else model(batch)
        lp = answer_logprob(model, batch, logits).double().cpu().tolist()
        rights = []
        for j in idx:
            ans = str(dataset.rows[j]["answer"]).strip().lower()
            rights.append(next((o for o in toks[j] if o.lower() == ans), None) if j in toks else None)
        corr = option_correct(model, batch, logits, [toks.get(j) for j in idx], rights)
        rows += [{"row": j, "logprob": a, "option_correct": c} for j, a, c in zip(idx, lp, corr)]
    return pd.DataFrame(rows)


def _random_head_sets(scores: pd.DataFrame, size: int, draws: int, seed: int) -> list[list[tuple[int, int]]]:
    """``draws`` sets of ``size`` distinct (layer, head) pairs of ``scores``, drawn with ``seed``."""
    all_heads = [(int(r.layer), int(r.head)) for r in scores.itertuples()]
    rng = np.random.default_rng(seed)
    return [[all_heads[j] for j in sorted(rng.choice(len(all_heads), size=size, replace=False))] for _ in range(draws)]


def _heads_label(cond: str, heads) -> str:
    """``L{l}H{h};...`` of a head set; for ``random`` the sets joined by `` | ``."""
    if cond != "random":
        return ";".join(f"L{l}H{h}" for l, h in heads)
    return " | ".join(";".join(f"L{l}H{h}" for l, h in s) for s in heads)


def _ablation_rows(base, deltas, top, random_sets, draws: int, resamples: int, seed: int) -> list[dict]:
    """The table rows of :func:`listening_ablation` from the per-row metrics without (``base``) and with each
    ablation (``deltas``: name -> per-row metrics)."""
    out = []
    for metric, col in (("answer_logprob", "logprob"), ("option_accuracy", "option_correct")):
        b = base[col].to_numpy(float)
        d_top = deltas["top-k"][col].to_numpy(float) - b
        d_rand = np.stack([deltas[f"random-{d}"][col].to_numpy(float) - b for d in range(draws)])  # [draws, rows]
        per_draw = np.nanmean(d_rand, 1) if np.isfinite(d_rand).any() else np.full(draws, np.nan)
        d_rand_row = d_rand.mean(0)
        n = int(np.isfinite(b).sum())
        if n == 0:
            continue
        conditions: list[tuple[str, np.ndarray, list[Any], tuple[float, float]]] = [
            ("top-k", d_top, top, (np.nan, np.nan)),
            ("random", d_rand_row, random_sets, (float(np.min(per_draw)), float(np.max(per_draw)))),
            ("top_minus_random", d_top - d_rand_row, top, (np.nan, np.nan)),
        ]
        for cond, d, heads, extra in conditions:
            lo, hi = bootstrap_ci(d, resamples, seed)
            out.append(
                {
                    "condition": cond,
                    "k": len(top),
                    "metric": metric,
                    "baseline": float(np.nanmean(b)),
                    "ablated": float(np.nanmean(b + d)) if cond != "top_minus_random" else np.nan,
                    "delta": float(np.nanmean(d)),
                    "ci_low": lo,
                    "ci_high": hi,
                    "draw_min": extra[0],
                    "draw_max": extra[1],
                    "draws": draws if cond != "top-k" else 0,
                    "n": n,
                    "heads": _heads_label(cond, heads),
                }
            )
    return out


@torch.no_grad()
def listening_ablation(
    model,
    dataset,
    scores: pd.DataFrame,
    k: int = 5,
    *,
    draws: int = 5,
    seed: int = 0,
    answer_options: dict | None = None,
    option_ids: dict | None = None,
    backend: str = "transformer_lens",
    batch_size: int = 8,
    resamples: int = 1000,
    progress: bool = False,
) -> pd.DataFrame:
    """Mean-ablate the top-k listening heads vs k random heads (module docstring). One row per (condition,
    metric): ``condition`` in top-k / random / top_minus_random, ``baseline``, ``ablated``, ``delta``, ``ci_low``,
    ``ci_high``, ``draw_min``/``draw_max`` (random: range of the per-draw mean deltas), ``n``, ``heads``."""
    require_audio(model, "the listening-head ablation")
    top = top_heads(scores, k)
    if draws < 1:
        raise AudioAnalysisError(f"draws must be >= 1, got {draws}")
    random_sets = _random_head_sets(scores, len(top), draws, seed)
    indices = list(range(len(dataset)))
    toks: dict[int, dict[str, int]] = {}
    if answer_options:
        try:
            _, toks = closed_rows_with_options(dataset, answer_options, None, option_ids)
        except AudioAnalysisError:
            toks = {}
    means = head_means(model, dataset, indices, backend=backend, batch_size=batch_size)
    kw: dict[str, Any] = dict(backend=backend, batch_size=batch_size)
    sets = [("top-k", top)] + [(f"random-{d}", s) for d, s in enumerate(random_sets)]
    if progress:
        from tqdm.auto import tqdm

        sets = tqdm(sets, desc="listening ablation")
    base = _row_metrics(model, dataset, indices, toks, None, **kw)
    deltas = {}
    for name, heads in sets:
        m = _row_metrics(
            model, dataset, indices, toks, lambda b, heads=heads: mean_ablation(model, b, heads, means), **kw
        )
        deltas[name] = m
    return pd.DataFrame(_ablation_rows(base, deltas, top, random_sets, draws, resamples, seed))


def _listening_heads_of(a: argparse.Namespace, variant: str, model, ds) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One checkpoint of ``python -m workbench.listening_heads``: (scores, ablation table); writes its two
    figures and prints its top heads and ablation rows."""
    s = listening_scores(model, ds, a.silence, backend=a.backend, batch_size=a.batch_size, progress=True)
    t = listening_ablation(
        model,
        ds,
        s,
        a.k,
        draws=a.draws,
        seed=a.seed,
        answer_options=load_answer_options(ds.root),
        backend=a.backend,
        batch_size=a.batch_size,
        progress=True,
    )
    png = not a.no_png
    write_outputs(
        None, listening_figure(s, f"{variant}: listening heads"), a.out_dir, f"listening_heads_{variant}", png=png
    )
    write_outputs(
        None,
        listening_ablation_figure(t, f"{variant}: top {a.k} listening heads vs {a.k} random heads, mean-ablated"),
        a.out_dir,
        f"listening_ablation_{variant}",
        png=png,
    )
    top = s.head(a.k)
    print(
        f"{variant}: top heads "
        + ", ".join(f"L{r.layer}H{r.head} ({r.score:.3f}, audio {r.audio_mass:.2f})" for r in top.itertuples())
    )
    print(t[["condition", "metric", "delta", "ci_low", "ci_high", "n"]].to_string(index=False))
    return s, t


def run_listening_heads_command(a: argparse.Namespace) -> int:
    """``python -m workbench.listening_heads`` with parsed arguments ``a``: scores and ablation of every checkpoint,
    written to ``OUT_DIR/listening_heads.csv``, ``listening_ablation.csv`` and per-variant figures; its exit code."""
    scores, tables = [], []

    def one(variant, model, ds):
        s, t = _listening_heads_of(a, variant, model, ds)
        scores.append(s.assign(variant=variant))
        tables.append(t.assign(variant=variant))

    rc = run_per_checkpoint(a, one)
    if rc:
        return rc
    w1 = write_outputs(variant_first(scores), None, a.out_dir, "listening_heads")
    w2 = write_outputs(variant_first(tables), None, a.out_dir, "listening_ablation")
    print(f"wrote {w1['csv']}, {w2['csv']} and the figures in {a.out_dir}")
    return 0
