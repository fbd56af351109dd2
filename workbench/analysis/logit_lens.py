"""Logit lens: when does the answer appear, and does it need the audio?

For each example, the residual stream after each layer (``blocks.{l}.hook_resid_post``) at the last prompt
position (the one that predicts the first answer token) is decoded with the model's own ``ln_final`` and
unembedding. Two conditions:

* ``audio``: the model as it is;
* ``no_audio``: the same prompt with the audio cut: every text query's attention scores on audio keys set to
  the mask value (`workbench.analysis.core.block_audio_interventions`), i.e. the bare LLM on the text with
  the same position ids.

``logit_lens(model, batches)`` -> one row per (example, layer, condition): example, layer, condition,
answer_id, answer_token, prob, logprob, rank (0 = top-1; number of tokens with a larger logit).
``summarize(df)`` -> per (layer, condition): mean prob, its standard error, mean log-prob, median rank,
top-1 rate, n. ``fig_logit_lens(df)`` plots it. ``run_logit_lens_command(args)`` is ``python -m workbench.logit_lens``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from workbench.analysis.core import (
    batches,
    block_audio_interventions,
    collect,
    default_out_dir,
    last_prompt_index,
    load_for_analysis,
    write_outputs,
)
from workbench.analysis.figures import add_caption

__all__ = ["CONDITIONS", "logit_lens", "summarize", "fig_logit_lens", "run_logit_lens_command"]

CONDITIONS = ("audio", "no_audio")


@torch.no_grad()
def logit_lens(
    model,
    batches: dict | Iterable[dict],
    layers: list[int] | None = None,
    conditions: tuple[str, ...] = CONDITIONS,
    backend: str = "transformer_lens",
) -> pd.DataFrame:
    """Answer-token probability and rank decoded from each layer's residual stream (module docstring)."""
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"unknown condition {c!r}; choose from {CONDITIONS}")
    layers = list(range(model.cfg.n_layers)) if layers is None else [model.check_layer(l) for l in layers]
    if isinstance(batches, dict):
        batches = [batches]
    names = [f"blocks.{l}.hook_resid_post" for l in layers]
    tok = getattr(model, "tokenizer", None)
    rows, offset = [], 0
    for batch in batches:
        lp = last_prompt_index(batch)
        B, Lt = batch["input_ids"].shape
        if bool((lp + 1 >= Lt).any()) or bool((lp < 0).any()):
            raise ValueError("every example needs at least one prompt token and one answer token (labels != -100)")
        answer = batch["input_ids"].gather(1, (lp + 1)[:, None])[:, 0]  # [B]
        layout = model.token_layout(batch)
        res_pos = layout.text_index.gather(1, lp.to(layout.text_index.device)[:, None])[:, 0]  # [B]
        for cond in conditions:
            ivs = block_audio_interventions(model, batch) if cond == "no_audio" else []
            _, acts = collect(model, batch, names, backend=backend, interventions=ivs)
            for l in layers:
                resid = acts[f"blocks.{l}.hook_resid_post"]
                x = resid[torch.arange(B, device=resid.device), res_pos.to(resid.device)]  # [B, M]
                logits = model.unembed(model.ln_final(x)).float()  # [B, V]
                logp = torch.log_softmax(logits, -1)
                a = answer.to(logits.device)
                lp_a = logp.gather(1, a[:, None])[:, 0]
                rank = (logits > logits.gather(1, a[:, None])).sum(1)
                for b in range(B):
                    aid = int(answer[b])
                    rows.append(
                        {
                            "example": offset + b,
                            "layer": l,
                            "condition": cond,
                            "answer_id": aid,
                            "answer_token": tok.decode([aid]) if tok is not None else str(aid),
                            "prob": float(lp_a[b].exp()),
                            "logprob": float(lp_a[b]),
                            "rank": int(rank[b]),
                        }
                    )
        offset += B
    if not rows:
        raise ValueError("no batches given")
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, condition): prob (mean), prob_sem, logprob (mean), rank_median, top1 (rate), n."""
    g = df.groupby(["layer", "condition"], sort=True)
    out = g.agg(
        prob=("prob", "mean"),
        prob_std=("prob", "std"),
        logprob=("logprob", "mean"),
        rank_median=("rank", "median"),
        top1=("rank", lambda r: float((r == 0).mean())),
        n=("prob", "size"),
    )
    out["prob_sem"] = out["prob_std"] / np.sqrt(out["n"])
    return out.drop(columns="prob_std").reset_index()


def fig_logit_lens(df: pd.DataFrame, title: str | None = None):
    """Left: mean answer probability per layer (± s.e.m.) with and without audio; right: median rank."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    s = summarize(df)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["answer-token probability", "answer-token rank (median, +1)"])
    style = {"audio": {}, "no_audio": {"dash": "dash"}}
    for cond in dict.fromkeys(s["condition"]):
        sub = s[s.condition == cond]
        fig.add_trace(
            go.Scatter(
                x=sub.layer,
                y=sub.prob,
                mode="lines+markers",
                name=f"{cond}: probability",
                error_y={"type": "data", "array": sub.prob_sem.fillna(0)},
                line=style.get(cond, {}),
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=sub.layer, y=sub.rank_median + 1, mode="lines+markers", name=f"{cond}: rank", line=style.get(cond, {})
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="layer (index; residual stream after the layer)")
    fig.update_yaxes(title_text="P(answer token) (probability, 0..1)", row=1, col=1)
    fig.update_yaxes(title_text="median rank + 1 (rank; 1 = top-1, log scale)", type="log", row=1, col=2)
    n = int(s["n"].max()) if len(s) else 0
    fig.update_layout(title=title or "Logit lens at the last prompt position: the first answer token")
    return add_caption(
        fig,
        f"Each layer's residual stream at the last prompt position, decoded with the model's final "
        f"norm and unembedding, {n} examples. Solid: with audio; dashed: audio cut (text queries "
        "cannot attend to audio keys). Left: mean probability of the first answer token, error "
        "bars ±1 s.e.m.; right: its median rank + 1 (1 = top-1).",
    )


def run_logit_lens_command(a: argparse.Namespace) -> int:
    """``python -m workbench.logit_lens`` with parsed arguments ``a``: writes ``logit_lens.csv`` (+ .html) and
    ``logit_lens_summary.csv`` into the output folder; its exit code."""
    model, ds = load_for_analysis(a.checkpoint, a.data, a.n, seed=a.seed)
    out = default_out_dir(a)
    df = logit_lens(model, batches(ds, a.batch_size), backend=a.backend)
    write_outputs(df, fig_logit_lens(df), out, "logit_lens")
    write_outputs(summarize(df), None, out, "logit_lens_summary")
    print(f"wrote {out}/logit_lens.csv, logit_lens_summary.csv, logit_lens.html")
    return 0
