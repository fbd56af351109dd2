"""Ablations of the model's access to audio at inference, layer by layer (claims 1 and 2 from the inside).

Modes (every one reads/writes activations only through hook names and ``model.token_layout(batch)``):

* ``block``: text queries may not attend to the encoder's audio keys: ``blocks.{l}.attn.hook_attn_scores``
  set to ``finfo.min`` at the audio key indices (rows of text queries only; the hook fires before the
  softmax, so the audio weights are exactly 0). PLITS and LAL alike.
* ``zero`` / ``mean``: the audio itself is replaced, by zeros or by its mean over the analysed rows (per
  token slot): LAL: ``blocks.{l}.attn.hook_audio_k`` and ``hook_audio_v`` (the encoder's slice of the extra
  keys/values); PLITS: ``blocks.{l}.hook_resid_pre`` at ``token_layout.audio_residual_index(name)``.
* ``ffn``: the FFN is skipped at the audio residual positions (``blocks.{l}.hook_mlp_out`` zeroed there);
  PLITS only (LAL audio never passes an FFN): the direct test of claim 2 on a baseline-trained model.

Layers: an ablation acts on the layers ``layer..to`` (inclusive). Layers before an encoder's integration
layer are no-ops for it (its audio is not there yet). The sweep's default span is ``from``: for each l the
layers ``l..n_layers-1`` ("cut audio from layer l on": the curve says from which layer on the model still
needs audio; it is monotone by construction for block/ffn and comparable between PLITS and LAL, since a
PLITS residual ablation at one layer already cuts every later layer). ``single`` ablates ``l..l``.

Metrics, per task and attribute (plus all/all and task/all): the teacher-forced answer log-probability
(sum over answer tokens, nats, from the collate batch's labels) and, with the TransformerLens backend,
closed-task accuracy of greedy answers generated with the ablation hooks active (``model.hooks``; the
hooks also act on the cached audio keys during decoding). The nnsight backend reports the log-probability
only (its traces do not wrap generation); accuracy is NaN there.

API: :func:`ablation_interventions` (hooks for one batch), :func:`audio_means`, :func:`item_metrics`,
:func:`ablate`, :func:`ablation_sweep`; the figures (:func:`ablation_figure`, :func:`sweep_figure`,
:func:`conditions_figure`) live in `workbench.analysis.ablation_figures` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.analysis.ablation_figures import ablation_figure, conditions_figure, sweep_figure
from workbench.analysis.core import (
    answer_logprob,
    batches,
    block_audio_interventions,
    prompt_item,
    run_with_interventions,
)

__all__ = [
    "MODES",
    "SPANS",
    "AblationError",
    "conditions_figure",
    "ablation_interventions",
    "audio_means",
    "item_metrics",
    "ablate",
    "ablation_sweep",
    "summarize_items",
    "ablation_figure",
    "sweep_figure",
    "resolve_layers",
    "resolve_encoders",
]

MODES = ("block", "zero", "mean", "ffn")
SPANS = ("from", "single")
TABLE_COLUMNS = [
    "mode",
    "encoder",
    "layer_start",
    "layer_end",
    "task",
    "attribute",
    "metric",
    "baseline",
    "ablated",
    "delta",
    "delta_se",
    "n",
]

Intervention = tuple[str, Callable[[torch.Tensor], torch.Tensor]]


class AblationError(ValueError):
    """Bad ablation request (the message names the fix)."""


# ---------------------------------------------------------------------------------------------- checks
def resolve_encoders(model, encoders: str | Sequence[str] | None, mode: str) -> list[str]:
    """Encoder names to ablate (default: every encoder the mode applies to), checked."""
    if mode not in MODES:
        raise AblationError(f"unknown ablation mode {mode!r}; choose one of {MODES}")
    chosen = model.check_encoders(encoders, AblationError)
    modes = {name: mode for name, (mode, _) in model.integration.items()}
    if mode == "ffn":
        lal = [e for e in chosen if modes[e] != "plits"]
        if encoders is not None and lal:
            raise AblationError(
                f"mode 'ffn' needs PLITS audio in the residual stream, but encoder(s) {lal} are "
                "integrated by LAL (their audio never passes an FFN); use --mode block/zero/mean"
            )
        chosen = [e for e in chosen if modes[e] == "plits"]
        if not chosen:
            raise AblationError(
                "mode 'ffn' needs a PLITS encoder, but every encoder of this model is LAL (audio "
                "never passes an FFN there); use --mode block/zero/mean, or a PLITS checkpoint"
            )
    return chosen


def resolve_layers(model, layer: int, to: int | None = None) -> list[int]:
    """``layer..to`` inclusive (``to`` default: the last layer), both checked against the model."""
    n = model.cfg.n_layers
    for v, what in ((layer, "--layer"), (to, "--to")):
        if v is not None and (not isinstance(v, (int, np.integer)) or not 0 <= int(v) < n):
            raise AblationError(f"{what} {v!r} is out of range: this model has {n} layers, valid layers are 0..{n - 1}")
    to = n - 1 if to is None else int(to)
    if to < layer:
        raise AblationError(f"--to {to} is before --layer {layer}; pass --to >= --layer")
    return list(range(int(layer), to + 1))


# ---------------------------------------------------------------------------------------------- hooks
def _mean_key(mode_hook: str, layer: int, name: str) -> str:
    return f"{mode_hook}|{layer}|{name}"


def audio_means(
    model,
    dataset_or_batches,
    layers: Sequence[int],
    encoders: Sequence[str],
    backend: str = "transformer_lens",
    batch_size: int = 8,
) -> dict[str, torch.Tensor]:
    """Mean audio activation per token slot over the rows, at every site the ``mean`` mode replaces:
    LAL ``hook_audio_k/v`` slices [N, G, D], PLITS audio residual entering the layer [N, d_model]."""
    from workbench.analysis.core import collect

    its = batches(dataset_or_batches, batch_size) if hasattr(dataset_or_batches, "collate_fn") else dataset_or_batches
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    for batch in its:
        layout = model.token_layout(batch)
        names, wants = [], []
        for l in layers:
            for e in encoders:
                a = layout.audio[e]
                if l < a.layer or a.n_tokens == 0:
                    continue
                if a.mode == "lal":
                    for h in ("hook_audio_k", "hook_audio_v"):
                        names.append(f"blocks.{l}.attn.{h}")
                        wants.append((f"blocks.{l}.attn.{h}", l, e, h))
                else:
                    names.append(f"blocks.{l}.hook_resid_pre")
                    wants.append((f"blocks.{l}.hook_resid_pre", l, e, "hook_resid_pre"))
        if not names:
            continue
        _, acts = collect(model, batch, names, backend=backend)
        for hook_name, l, e, h in wants:
            a = layout.audio[e]
            act = acts[hook_name]
            if h == "hook_resid_pre":
                idx = a.residual_index.to(act.device)
                x = act.gather(1, idx[..., None].expand(-1, -1, act.shape[-1]))  # [B, N, M]
            else:
                x = act[:, layout.audio_key_slice(l, e)]  # [B, N, G, D]
            w = a.mask.to(x.dtype).view(*a.mask.shape, *([1] * (x.ndim - 2)))
            key = _mean_key(h, l, e)
            s = (x.double() * w.double()).sum(0)
            c = w.double().sum(0)
            sums[key] = sums[key] + s if key in sums else s
            counts[key] = counts[key] + c if key in counts else c
    return {k: (sums[k] / counts[k].clamp(min=1)).to(model.dtype) for k in sums}


def ablation_interventions(
    model,
    batch,
    layers: Sequence[int],
    mode: str = "block",
    encoders: str | Sequence[str] | None = None,
    means: dict[str, torch.Tensor] | None = None,
) -> list[Intervention]:
    """``[(hook name, fn)]`` that ablate ``encoders``' audio at ``layers`` for this ``batch`` (see the module
    docstring). ``fn(activation) -> replacement`` also works during cached generation (decoding steps, whose
    query axis is one token, pass through residual hooks unchanged and block the cached audio keys)."""
    encs = resolve_encoders(model, encoders, mode)
    n_layers = model.cfg.n_layers
    for l in layers:
        if not 0 <= int(l) < n_layers:
            raise AblationError(f"layer {l} is out of range: this model has {n_layers} layers (0..{n_layers - 1})")
    if mode == "mean" and means is None:
        raise AblationError("mode 'mean' needs the dataset means: compute them with audio_means(...) first")
    layout = model.token_layout(batch)
    S = layout.seq_len
    dev = model.device
    if mode == "block":  # the workbench's one block-the-audio intervention
        return block_audio_interventions(model, batch, encs, layers)
    out: list[Intervention] = []
    for l in sorted(set(int(x) for x in layers)):
        visible = [e for e in encs if l >= layout.audio[e].layer and layout.audio[e].n_tokens > 0]
        if not visible:
            continue
        for e in visible:
            a = layout.audio[e]
            lal = a.mode == "lal"
            if mode == "ffn":
                out.append((f"blocks.{l}.hook_mlp_out", _resid_fn(a.residual_index.to(dev), S, None)))
            elif lal:
                keys = layout.audio_key_slice(l, e)
                for h in ("hook_audio_k", "hook_audio_v"):
                    value = None if mode == "zero" else _need_mean(means, h, l, e)
                    out.append((f"blocks.{l}.attn.{h}", _slice_fn(keys.start, a.n_tokens, value)))
            else:
                value = None if mode == "zero" else _need_mean(means, "hook_resid_pre", l, e)
                out.append((f"blocks.{l}.hook_resid_pre", _resid_fn(a.residual_index.to(dev), S, value)))
    return out


def _need_mean(means, h, l, e):
    key = _mean_key(h, l, e)
    if key not in means:
        raise AblationError(f"no mean for {h} of encoder {e!r} at layer {l}: compute audio_means over these layers")
    return means[key]


def _slice_fn(off: int, n: int, value: torch.Tensor | None):
    def fn(x: torch.Tensor) -> torch.Tensor:  # [B, N_all, G, D]
        x = x.clone()
        x[:, off : off + n] = 0 if value is None else value.to(x.device, x.dtype)[None]
        return x

    return fn


def _resid_fn(index: torch.Tensor, S: int, value: torch.Tensor | None):
    def fn(x: torch.Tensor) -> torch.Tensor:  # [B, S, M]; decoding steps (1 position) pass through
        if x.shape[1] != S:
            return x
        B, N, M = index.shape[0], index.shape[1], x.shape[-1]
        src = x.new_zeros(B, N, M) if value is None else value.to(x.device, x.dtype)[None].expand(B, N, M)
        return x.scatter(1, index.to(x.device)[..., None].expand(B, N, M), src)

    return fn


# ---------------------------------------------------------------------------------------------- metrics
def item_metrics(
    model,
    dataset,
    make_interventions: Callable[[dict], list[Intervention]] | None = None,
    *,
    backend: str = "transformer_lens",
    batch_size: int = 8,
    accuracy: bool = True,
    max_new_tokens: int = 8,
    answer_options: dict | None = None,
) -> pd.DataFrame:
    """One row per task row: ``row_id, task, attribute, closed, logprob, prediction, correct`` with the
    interventions ``make_interventions(batch)`` active (None: the unablated model). Accuracy (greedy answers
    under the same hooks) only with the TransformerLens backend."""
    from workbench.evaluation.metrics import is_correct

    records: list[dict[str, Any]] = []
    options = answer_options or {}
    for i in range(0, len(dataset), batch_size):
        items = [dataset[j] for j in range(i, min(i + batch_size, len(dataset)))]
        batch = dataset.collate_fn(items)
        hooks = make_interventions(batch) if make_interventions else []
        with torch.no_grad():
            logits = run_with_interventions(model, batch, hooks, backend=backend) if hooks else model(batch)
        lp = answer_logprob(model, batch, logits).double().cpu().tolist()
        preds = [None] * len(items)
        if accuracy and backend == "transformer_lens":
            pbatch = dataset.prompt_collate_fn()([prompt_item(it) for it in items])
            phooks = make_interventions(pbatch) if make_interventions else []
            tl = [(n, (lambda f: lambda t, hook: f(t))(f)) for n, f in phooks]  # noqa: B023 - f is bound by the outer call
            with model.hooks(fwd_hooks=tl):
                preds = model.generate_answers(pbatch, max_new_tokens=max_new_tokens)
        for it, l, p in zip(items, lp, preds):
            row = it["row"]
            closed = bool(row.get("closed", False))
            correct = np.nan
            if p is not None and closed:
                correct = float(is_correct(p, str(row["answer"]), options.get(str(row.get("attribute")))))
            records.append(
                {
                    "row_id": str(row.get("row_id", len(records))),
                    "task": str(row.get("task", "all")),
                    "attribute": str(row.get("attribute", "all")),
                    "closed": closed,
                    "logprob": l,
                    "prediction": p,
                    "correct": correct,
                }
            )
    return pd.DataFrame(records)


def summarize_items(base: pd.DataFrame, abl: pd.DataFrame, **meta) -> pd.DataFrame:
    """Tidy table (``TABLE_COLUMNS``): per (task, attribute), (task, all) and (all, all) the mean of each
    metric without and with the ablation, the paired delta and its standard error. Metrics:
    ``answer_logprob`` (nats, every row) and ``accuracy`` (closed rows, fraction; absent without predictions)."""
    m = base[["row_id", "task", "attribute", "closed", "logprob", "correct"]].merge(
        abl[["row_id", "logprob", "correct"]], on="row_id", suffixes=("_base", "_abl")
    )
    rows = []
    groups = [(("all", "all"), m)]
    groups += [((t, "all"), g) for t, g in m.groupby("task", sort=True)]
    groups += [((t, a), g) for (t, a), g in m.groupby(["task", "attribute"], sort=True)]
    for (task, att), g in groups:
        for metric, col, sel in (("answer_logprob", "logprob", slice(None)), ("accuracy", "correct", None)):
            gg = g if sel is not None else g[g["closed"] & g["correct_base"].notna() & g["correct_abl"].notna()]
            if not len(gg):
                continue
            b, a = gg[f"{col}_base"].astype(float), gg[f"{col}_abl"].astype(float)
            d = (a - b).to_numpy()
            se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else np.nan
            rows.append(
                {
                    **meta,
                    "task": task,
                    "attribute": att,
                    "metric": metric,
                    "baseline": float(b.mean()),
                    "ablated": float(a.mean()),
                    "delta": float(d.mean()),
                    "delta_se": se,
                    "n": len(d),
                }
            )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def ablate(
    model,
    dataset,
    layers: Sequence[int],
    mode: str = "block",
    encoders: str | Sequence[str] | None = None,
    *,
    backend: str = "transformer_lens",
    batch_size: int = 8,
    accuracy: bool = True,
    max_new_tokens: int = 8,
    answer_options: dict | None = None,
    means: dict | None = None,
    base: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ablate ``encoders``' audio at ``layers`` over ``dataset`` -> ``(table, items)``: the tidy summary
    (:func:`summarize_items`) and the per-row metrics with the ablation. ``base``: the unablated per-row
    metrics (computed if None)."""
    encs = resolve_encoders(model, encoders, mode)
    layers = [int(l) for l in layers]
    if not layers:
        raise AblationError("no layers to ablate")
    resolve_layers(model, min(layers), max(layers))
    kw: dict[str, Any] = dict(
        backend=backend,
        batch_size=batch_size,
        accuracy=accuracy,
        max_new_tokens=max_new_tokens,
        answer_options=answer_options,
    )
    if base is None:
        base = item_metrics(model, dataset, None, **kw)
    if mode == "mean" and means is None:
        means = audio_means(model, dataset, layers, encs, backend=backend, batch_size=batch_size)
    abl = item_metrics(model, dataset, lambda b: ablation_interventions(model, b, layers, mode, encs, means), **kw)
    enc_label = encs[0] if isinstance(encoders, str) or (encoders is not None and len(encs) == 1) else "all"
    table = summarize_items(base, abl, mode=mode, encoder=enc_label, layer_start=min(layers), layer_end=max(layers))
    return table, abl


def ablation_sweep(
    model,
    dataset,
    mode: str = "block",
    encoders: str | Sequence[str] | None = None,
    *,
    span: str = "from",
    layers: Sequence[int] | None = None,
    backend: str = "transformer_lens",
    batch_size: int = 8,
    accuracy: bool = True,
    max_new_tokens: int = 8,
    answer_options: dict | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """:func:`ablate` at every layer l (default all): span ``from`` ablates ``l..n_layers-1``, ``single``
    ablates ``l`` alone. The unablated metrics and the means are computed once."""
    if span not in SPANS:
        raise AblationError(f"unknown sweep span {span!r}; choose one of {SPANS}")
    encs = resolve_encoders(model, encoders, mode)
    n = model.cfg.n_layers
    layers = list(range(n)) if layers is None else [int(l) for l in layers]
    for l in layers:
        resolve_layers(model, l, l)
    kw: dict[str, Any] = dict(
        backend=backend,
        batch_size=batch_size,
        accuracy=accuracy,
        max_new_tokens=max_new_tokens,
        answer_options=answer_options,
    )
    base = item_metrics(model, dataset, None, **kw)
    means = (
        audio_means(model, dataset, list(range(min(layers), n)), encs, backend, batch_size) if mode == "mean" else None
    )
    tables = []
    it = layers
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(layers, desc=f"ablation sweep ({mode})")
    for l in it:
        span_layers = list(range(l, n)) if span == "from" else [l]
        t, _ = ablate(model, dataset, span_layers, mode, encoders, base=base, means=means, **kw)
        tables.append(t.assign(span=span))
    return pd.concat(tables, ignore_index=True)
