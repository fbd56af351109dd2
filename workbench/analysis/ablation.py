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
:func:`ablate`, :func:`ablation_sweep`, :func:`run_ablate_command` (``python -m workbench.ablate``); the figures (:func:`ablation_figure`, :func:`sweep_figure`,
:func:`conditions_figure`) live in `workbench.analysis.ablation_figures`, the checks, means and hooks in
`workbench.analysis.ablation_hooks`; both are re-exported here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.analysis.ablation_figures import ablation_figure, conditions_figure, sweep_figure
from workbench.analysis.ablation_hooks import MODES as MODES
from workbench.analysis.ablation_hooks import AblationError as AblationError
from workbench.analysis.ablation_hooks import Intervention as Intervention
from workbench.analysis.ablation_hooks import ablation_interventions as ablation_interventions
from workbench.analysis.ablation_hooks import audio_means as audio_means
from workbench.analysis.ablation_hooks import resolve_encoders as resolve_encoders
from workbench.analysis.ablation_hooks import resolve_layers as resolve_layers
from workbench.analysis.cli import fail
from workbench.analysis.core import (
    answer_logprob,
    default_out_dir,
    load_for_analysis,
    prompt_item,
    run_with_interventions,
    write_outputs,
)
from workbench.evaluation.evaluator import load_answer_options

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
    "run_ablate_command",
]

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


def _ablation_outputs(a: argparse.Namespace, model, ds, kw: dict[str, Any]):
    """(table, figure, output name) of the single ablation or the sweep that ``a`` asks for."""
    if a.sweep:
        start = a.layer or 0
        last = a.to if a.to is not None else model.cfg.n_layers - 1
        layers = resolve_layers(model, start, last)
        table = ablation_sweep(model, ds, a.mode, a.encoder, span=a.span, layers=layers, progress=True, **kw)
        fig = sweep_figure(
            table, title=f"Audio ablation sweep: mode {a.mode}, span {a.span}, encoder {a.encoder or 'all'}"
        )
        name = f"ablation_sweep_{a.mode}_{a.span}" + (f"_{a.encoder}" if a.encoder else "")
    else:
        layers = resolve_layers(model, a.layer, a.to)
        table, _ = ablate(model, ds, layers, a.mode, a.encoder, **kw)
        fig = ablation_figure(table)
        name = f"ablation_{a.mode}_L{layers[0]}-{layers[-1]}" + (f"_{a.encoder}" if a.encoder else "")
    return table, fig, name


def run_ablate_command(a: argparse.Namespace) -> int:
    """``python -m workbench.ablate`` with parsed arguments ``a``: checks them, ablates (or sweeps), writes
    ``OUT_DIR/ablation_*.csv/.html/.png`` and prints the all/all rows; its exit code (2: bad input)."""
    if a.mode not in MODES:
        return fail(f"unknown --mode {a.mode!r}; choose one of {', '.join(MODES)}")
    if a.span not in SPANS:
        return fail(f"unknown --span {a.span!r}; choose one of {', '.join(SPANS)}")
    if a.layer is None and not a.sweep:
        return fail("pass --layer L (or --sweep)")
    model, ds = load_for_analysis(a.checkpoint, a.data, a.n, seed=a.seed)
    resolve_encoders(model, a.encoder, a.mode)
    accuracy = not a.no_accuracy and a.backend == "transformer_lens"
    if a.backend == "nnsight" and not a.no_accuracy:
        print("note: the nnsight backend reports the answer log-probability only (accuracy: NaN)")
    kw: dict[str, Any] = dict(
        backend=a.backend,
        batch_size=a.batch_size,
        accuracy=accuracy,
        max_new_tokens=a.max_new_tokens,
        answer_options=load_answer_options(ds.root),
    )
    table, fig, name = _ablation_outputs(a, model, ds, kw)
    out = write_outputs(table, fig, default_out_dir(a), name)
    allrows = table[(table["task"] == "all") & (table["attribute"] == "all")]
    print(
        allrows[
            ["mode", "encoder", "layer_start", "layer_end", "metric", "baseline", "ablated", "delta", "n"]
        ].to_string(index=False)
    )
    print("wrote " + ", ".join(str(p) for p in out.values()))
    return 0
