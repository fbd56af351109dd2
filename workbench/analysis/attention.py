"""Attention to audio: how much attention text queries put on each encoder's audio keys, per layer and head.

``attention_to_audio(model, batches, query_set=...)`` -> tidy DataFrame, one row per (layer, head, encoder):

    layer, head, encoder, query_set, mass, uniform_mass, ratio, n, sem

* mass: attention weight on that encoder's audio keys, summed over its keys, averaged over the selected
  queries of an example, then over examples (n = examples with at least one selected query).
* uniform_mass: the same under uniform attention over each query's visible keys: N_audio visible /
  number of visible keys (read from the model's own mask: the masked entries of ``hook_attn_scores``).
* ratio = mass / uniform_mass (NaN where no audio key is visible, e.g. layers before an encoder's layer).
* sem: standard error of mass over examples.

Query sets: ``"after_slot"`` every real text token after the audio slot; ``"answer"`` the positions that
predict an answer token (the last prompt token up to the last-but-one answer token); ``"last_prompt"`` the
last prompt token only. ``attention_tokens`` gives the full query x key pattern of one layer/head for one
example, with token strings. Key/residual positions come from ``model.token_layout(batch)``.
``run_attention_command(args)`` is ``python -m workbench.attention``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from workbench.analysis.core import (
    batches,
    collect,
    default_out_dir,
    last_prompt_index,
    load_for_analysis,
    write_outputs,
)
from workbench.analysis.figures import add_caption

__all__ = [
    "QUERY_SETS",
    "attention_to_audio",
    "attention_tokens",
    "query_mask",
    "fig_heatmap",
    "fig_layers",
    "fig_tokens",
    "run_attention_command",
]

QUERY_SETS = ("after_slot", "answer", "last_prompt")


def query_mask(batch: dict, query_set: str) -> torch.Tensor:
    """[B, Lt] bool over text positions: which text tokens are the queries of ``query_set``."""
    if query_set not in QUERY_SETS:
        raise ValueError(f"unknown query set {query_set!r}; choose one of {QUERY_SETS}")
    real = batch["attention_mask"].bool()
    B, Lt = real.shape
    t = torch.arange(Lt)[None].expand(B, -1)
    if query_set == "after_slot":
        return real & (t >= batch["audio_slot"][:, None])
    if query_set == "last_prompt":
        return real & (t == last_prompt_index(batch)[:, None])
    if "labels" not in batch:
        raise KeyError("query set 'answer' needs batch['labels'] (build the dataset with with_answer=True)")
    nxt = torch.zeros_like(real)
    nxt[:, :-1] = batch["labels"][:, 1:] != -100
    return real & nxt


def _check(model, layers, encoders):
    encoders = model.check_encoders(encoders)
    layers = list(range(model.cfg.n_layers)) if layers is None else [model.check_layer(l) for l in layers]
    return layers, encoders


def _batch_rows(model, batch, layers, encoders, query_set, backend):
    """Per-example arrays: {(layer, encoder): (mass [B, H], uniform [B], has_query [B])}."""
    names = [f"blocks.{l}.attn.{h}" for l in layers for h in ("hook_attn_scores", "hook_pattern")]
    _, acts = collect(model, batch, names, backend=backend)
    layout = model.token_layout(batch)
    qmask = query_mask(batch, query_set).to(layout.text_index.device)  # [B, Lt]
    n_q = qmask.sum(1)  # [B]
    has = n_q > 0
    out = {}
    for l in layers:
        pattern = acts[f"blocks.{l}.attn.hook_pattern"].float()  # [B, H, S, K]
        scores = acts[f"blocks.{l}.attn.hook_attn_scores"]
        B, H, S, K = pattern.shape
        visible = scores[:, 0] > torch.finfo(scores.dtype).min  # [B, S, K] (the mask is the same for all heads)
        qi = layout.text_index  # [B, Lt]: residual (= query) index of each text token
        pat_q = pattern.gather(2, qi[:, None, :, None].expand(B, H, -1, K))  # [B, H, Lt, K]
        vis_q = visible.gather(1, qi[:, :, None].expand(-1, -1, K))  # [B, Lt, K]
        n_vis = vis_q.sum(-1).clamp(min=1).float()  # [B, Lt]
        for e in encoders:
            idx = layout.audio_key_index(l, e)
            if idx is None or idx.shape[1] == 0:
                mass = torch.zeros(B, H)
                uni = torch.zeros(B)
            else:
                m = pat_q.gather(3, idx[:, None, None, :].expand(B, H, pat_q.shape[2], -1)).sum(-1)  # [B, H, Lt]
                u = vis_q.gather(2, idx[:, None, :].expand(-1, vis_q.shape[1], -1)).sum(-1) / n_vis  # [B, Lt]
                w = qmask.float() / n_q.clamp(min=1)[:, None]  # mean over selected queries
                mass = (m * w[:, None]).sum(-1)
                uni = (u * w).sum(-1)
            out[(l, e)] = (mass.cpu().numpy(), uni.cpu().numpy(), has.cpu().numpy())
    return out


@torch.no_grad()
def attention_to_audio(
    model,
    batches: dict | Iterable[dict],
    query_set: str = "after_slot",
    layers: list[int] | None = None,
    encoders: list[str] | None = None,
    backend: str = "transformer_lens",
) -> pd.DataFrame:
    """Attention mass of text queries on each encoder's audio keys (see the module docstring).

    batches: one collate batch or an iterable of them. layers / encoders: subsets (default all)."""
    layers, encoders = _check(model, layers, encoders)
    if query_set not in QUERY_SETS:
        raise ValueError(f"unknown query set {query_set!r}; choose one of {QUERY_SETS}")
    if isinstance(batches, dict):
        batches = [batches]
    acc: dict = {}
    for batch in batches:
        for key, (mass, uni, has) in _batch_rows(model, batch, layers, encoders, query_set, backend).items():
            acc.setdefault(key, []).append((mass[has], uni[has]))
    if not acc:
        raise ValueError("no batches given")
    rows = []
    for (l, e), parts in acc.items():
        mass = np.concatenate([p[0] for p in parts])  # [n, H]
        uni = np.concatenate([p[1] for p in parts])  # [n]
        n = mass.shape[0]
        u = float(uni.mean()) if n else math.nan
        for h in range(mass.shape[1]):
            mh = float(mass[:, h].mean()) if n else math.nan
            sem = float(mass[:, h].std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
            rows.append(
                {
                    "layer": l,
                    "head": h,
                    "encoder": e,
                    "query_set": query_set,
                    "mass": mh,
                    "uniform_mass": u,
                    "ratio": mh / u if u > 0 else math.nan,
                    "n": n,
                    "sem": sem,
                }
            )
    return pd.DataFrame(
        rows, columns=["layer", "head", "encoder", "query_set", "mass", "uniform_mass", "ratio", "n", "sem"]
    )


def _token_strings(tokenizer, ids: list[int]) -> list[str]:
    if tokenizer is None:
        return [str(i) for i in ids]
    return [
        tokenizer.convert_tokens_to_string([t]) if t is not None else str(i)
        for i, t in zip(ids, tokenizer.convert_ids_to_tokens(ids))
    ]


@torch.no_grad()
def attention_tokens(
    model, batch: dict, layer: int, head: int, example: int = 0, backend: str = "transformer_lens"
) -> pd.DataFrame:
    """The attention pattern of one layer/head for one example, text queries x all keys, as a tidy frame:
    query (text index), query_token, key (key-axis index), key_token, key_kind ("text" or encoder name),
    weight. Padding positions are left out; audio keys are named ``<encoder:j>``."""
    model.check_layer(layer)
    if not 0 <= head < model.cfg.n_heads:
        raise IndexError(
            f"head {head!r} is out of range: this model has {model.cfg.n_heads} heads (0..{model.cfg.n_heads - 1})"
        )
    B = batch["input_ids"].shape[0]
    if not 0 <= example < B:
        raise IndexError(f"example {example} is out of range for a batch of {B}")
    _, acts = collect(model, batch, [f"blocks.{layer}.attn.hook_pattern"], backend=backend)
    pattern = acts[f"blocks.{layer}.attn.hook_pattern"][example, head].float().cpu()  # [S, K]
    layout = model.token_layout(batch)
    real = batch["attention_mask"][example].bool().cpu()
    ids = batch["input_ids"][example].tolist()
    toks = _token_strings(getattr(model, "tokenizer", None), ids)
    keys: list[tuple[int, str, str]] = []  # (key index, token, kind)
    text_k = layout.text_key_index(layer)[example].cpu()
    for t in range(len(ids)):
        if real[t]:
            keys.append((int(text_k[t]), toks[t], "text"))
    for name, a in layout.audio.items():
        idx = layout.audio_key_index(layer, name)
        if idx is None:
            continue
        for j in range(idx.shape[1]):
            if a.mask[example, j]:
                keys.append((int(idx[example, j]), f"<{name}:{j}>", name))
    keys.sort()
    q_res = layout.text_index[example].cpu()
    rows = []
    for t in range(len(ids)):
        if not real[t]:
            continue
        for k, ktok, kind in keys:
            rows.append(
                {
                    "query": t,
                    "query_token": toks[t],
                    "key": k,
                    "key_token": ktok,
                    "key_kind": kind,
                    "weight": float(pattern[q_res[t], k]),
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- figures
_VALUE_UNIT = {
    "ratio": "mass / uniform mass (ratio; 1 = uniform)",
    "mass": "attention mass (fraction of softmax)",
    "uniform_mass": "uniform-attention mass (fraction of softmax)",
}


def _query_sets(df: pd.DataFrame) -> str:
    return ", ".join(map(str, dict.fromkeys(df["query_set"]))) if "query_set" in df else "text"


def fig_heatmap(df: pd.DataFrame, value: str = "ratio", title: str | None = None):
    """One heatmap per encoder: layer (y) x head (x), colour = ``value`` ("ratio", "mass" or "uniform_mass")."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if value not in _VALUE_UNIT:
        raise ValueError(f"value must be 'ratio', 'mass' or 'uniform_mass', got {value!r}")
    encs = list(dict.fromkeys(df["encoder"]))
    fig = make_subplots(
        rows=1, cols=max(1, len(encs)), subplot_titles=[f"encoder: {e}" for e in encs], shared_yaxes=True
    )
    unit = _VALUE_UNIT[value]
    for i, e in enumerate(encs):
        sub = df[df["encoder"] == e].pivot_table(
            index="layer", columns="head", values=value, aggfunc="mean", dropna=False
        )
        fig.add_trace(
            go.Heatmap(
                z=sub.values,
                x=sub.columns.tolist(),
                y=sub.index.tolist(),
                coloraxis="coloraxis",
                hovertemplate="layer %{y}, head %{x}<br>" + value + " %{z:.3f}<extra>" + e + "</extra>",
            ),
            row=1,
            col=i + 1,
        )
        fig.update_xaxes(title_text="head (index)", row=1, col=i + 1)
    fig.update_yaxes(title_text="layer (index)", row=1, col=1)
    qs = _query_sets(df)
    n = int(df["n"].max()) if len(df) else 0
    fig.update_layout(
        coloraxis={"colorscale": "Viridis", "colorbar": {"title": {"text": unit, "side": "right"}}},
        title=title or f"Attention of text queries to audio keys, per layer and head ({value})",
    )
    what = {
        "ratio": "attention mass on the encoder's audio keys divided by the mass uniform attention over the "
        "visible keys would give (1 = no preference, >1 = the head seeks out the audio)",
        "mass": "attention mass on the encoder's audio keys (summed over its keys)",
        "uniform_mass": "the mass uniform attention over the visible keys would put on the audio keys",
    }[value]
    return add_caption(
        fig,
        f"Colour: {what}, averaged over the text queries ({qs}) of each example and over {n} "
        "examples. Blank cells: no audio key of that encoder is visible at that layer.",
    )


def fig_layers(df: pd.DataFrame, title: str | None = None):
    """Mass per layer (mean over heads, with the range over heads shaded as min..max) per encoder, and the
    uniform-attention reference as a dashed line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for e in dict.fromkeys(df["encoder"]):
        sub = (
            df[df["encoder"] == e]
            .groupby("layer")
            .agg(mass=("mass", "mean"), lo=("mass", "min"), hi=("mass", "max"), uniform=("uniform_mass", "mean"))
            .reset_index()
        )
        fig.add_trace(
            go.Scatter(x=sub.layer, y=sub.hi, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip")
        )
        fig.add_trace(
            go.Scatter(
                x=sub.layer,
                y=sub.lo,
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                name=f"{e}: range over heads",
                opacity=0.3,
                hoverinfo="skip",
            )
        )
        fig.add_trace(go.Scatter(x=sub.layer, y=sub.mass, mode="lines+markers", name=f"{e}: mean over heads"))
        fig.add_trace(
            go.Scatter(x=sub.layer, y=sub.uniform, mode="lines", line={"dash": "dash"}, name=f"{e}: uniform attention")
        )
    qs = _query_sets(df)
    n = int(df["n"].max()) if "n" in df and len(df) else 0
    fig.update_layout(
        title=title or "Attention mass on audio keys per layer",
        xaxis_title="layer (index)",
        yaxis_title="attention mass on audio keys (fraction of softmax)",
    )
    return add_caption(
        fig,
        f"Attention mass that text queries ({qs}) put on each encoder's audio keys, averaged over "
        f"{n} examples. Solid line: mean over heads; shaded band: min..max over heads; dashed line: "
        "the mass expected under uniform attention over the visible keys (above it = the layer "
        "seeks out the audio).",
    )


def fig_tokens(df: pd.DataFrame, title: str | None = None):
    """Heatmap of one example's pattern (from `attention_tokens`): query tokens (y) x keys (x)."""
    import plotly.graph_objects as go

    qs = df.drop_duplicates("query").sort_values("query")
    ks = df.drop_duplicates("key").sort_values("key")
    z = df.pivot_table(index="query", columns="key", values="weight").reindex(index=qs["query"], columns=ks["key"])
    xl = [f"{k}:{t!r}" for k, t in zip(ks["key"], ks["key_token"])]
    yl = [f"{q}:{t!r}" for q, t in zip(qs["query"], qs["query_token"])]
    fig = go.Figure(
        go.Heatmap(
            z=z.values,
            x=xl,
            y=yl,
            colorscale="Blues",
            colorbar={"title": {"text": "attention weight (fraction of softmax)", "side": "right"}},
        )
    )
    fig.update_layout(
        title=title or "Attention pattern of one head for one example",
        xaxis_title="key (key-axis index: token)",
        yaxis_title="query (text index: token)",
        yaxis={"autorange": "reversed"},
    )
    n_audio = int((ks["key_kind"] != "text").sum()) if "key_kind" in ks else 0
    return add_caption(
        fig,
        f"One example (n = 1), {len(qs)} text queries (rows) x {len(ks)} keys (columns, "
        f"{n_audio} of them audio keys named <encoder:j>). Colour: softmax attention weight; each "
        "row sums to 1 over the keys it can see. Padding is left out.",
    )


def run_attention_command(a: argparse.Namespace) -> int:
    """``python -m workbench.attention`` with parsed arguments ``a``: writes ``attention_to_audio.csv`` (+ .html),
    ``attention_layers.html`` and ``attention_tokens.csv`` (+ .html) into the output folder; its exit code."""
    model, ds = load_for_analysis(a.checkpoint, a.data, a.n, seed=a.seed)
    out = default_out_dir(a)
    sets = QUERY_SETS if a.query_set == "all" else (a.query_set,)
    frames = [attention_to_audio(model, batches(ds, a.batch_size), q, backend=a.backend) for q in sets]
    df = pd.concat(frames, ignore_index=True)
    main_set = sets[0]
    sub = df[df.query_set == main_set]
    write_outputs(df, fig_heatmap(sub), out, "attention_to_audio")
    write_outputs(None, fig_layers(sub), out, "attention_layers")
    best = sub.dropna(subset=["ratio"]).sort_values("ratio", ascending=False).head(1)
    if len(best):
        layer, head = int(best["layer"].iloc[0]), int(best["head"].iloc[0])
        tok = attention_tokens(model, next(batches(ds, 1)), layer, head, backend=a.backend)
        write_outputs(
            tok,
            fig_tokens(
                tok,
                title=f"Attention pattern, layer {layer} head {head} (largest audio "
                f"ratio, query set {main_set}), example 0; weight: fraction of 1",
            ),
            out,
            "attention_tokens",
        )
    print(f"wrote {out}/attention_to_audio.csv (+ .html), attention_layers.html, attention_tokens.html")
    return 0
