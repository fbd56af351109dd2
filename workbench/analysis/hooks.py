"""Run a model and read / replace named activations through either TransformerLens hooks or nnsight.

    logits, acts = collect(model, batch, ["blocks.3.attn.hook_pattern"], backend="nnsight")
    logits = run_with_interventions(model, batch, [("connectors.mel.hook_out", torch.zeros_like)])

``model`` is a `PALModel` called on a collate batch dict, or a plain `HookedDecoder` called on input_ids
[B, L]. Both backends give identical numbers (tests/analysis/test_core.py).

nnsight reads a trace body from source and needs module accesses in execution order, so this file keeps the
traces and sorts hook names by the order they fire (recorded once per model with TransformerLens hooks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = [
    "BACKENDS",
    "Intervention",
    "collect",
    "run_with_interventions",
    "execution_order",
    "block_audio_interventions",
]

BACKENDS = ("transformer_lens", "nnsight")

Intervention = tuple[str, Callable[[torch.Tensor], torch.Tensor]]


# ---------------------------------------------------------------------------------------------- helpers
def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    return backend


def execution_order(model, batch) -> list[str]:
    """Hook names in the order they fire in one forward of ``model`` on ``batch`` (hooks that never fire, e.g.
    audio hooks at layers without audio, are absent). Recorded once with TransformerLens hooks and cached on
    the model, keyed by the kind of input (batch dict vs input_ids)."""
    key = "dict" if isinstance(batch, dict) else "ids"
    cache = model.__dict__.setdefault("_analysis_hook_order", {})
    if key not in cache:
        order: list[str] = []

        def record(_tensor, hook):
            if hook.name not in order:
                order.append(hook.name)

        with torch.no_grad():
            model.run_with_hooks(batch, fwd_hooks=[(lambda name: True, record)])
        cache[key] = order
    return cache[key]


def _sorted_names(model, batch, names: Sequence[str]) -> list[str]:
    """Unique names, each checked (clear KeyError), sorted by execution order; a valid hook that does not fire
    on this model/batch is a KeyError too (nothing to read or replace there)."""
    unique = list(dict.fromkeys(names))
    for name in unique:
        model.check_hook_name(name)
    order = execution_order(model, batch)
    rank = {n: i for i, n in enumerate(order)}
    silent = [n for n in unique if n not in rank]
    if silent:
        raise KeyError(
            f"hook(s) {silent} exist but do not fire for this model and input (e.g. audio hooks at a "
            f"layer this model's audio does not reach); hooks that fire: {len(order)}, first/last "
            f"{order[:1]} .. {order[-1:]}"
        )
    return sorted(unique, key=rank.__getitem__)


def _envoy(wrapped, name: str):
    """nnsight envoy of the HookPoint module ``name`` (dotted path; ModuleList indices)."""
    obj = wrapped
    for part in name.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def _compose(interventions: Sequence[Intervention]) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """{name: fn} with several functions on one name applied in list order."""
    by_name: dict[str, list[Callable]] = {}
    for name, fn in interventions:
        if not callable(fn):
            raise TypeError(f"intervention on {name!r} is not callable: {fn!r}")
        by_name.setdefault(name, []).append(fn)

    def chain(fns):
        def run(t):
            for f in fns:
                t = f(t)
            return t

        return run

    return {name: chain(fns) for name, fns in by_name.items()}


# ---------------------------------------------------------------------------------------------- backends
def _nnsight_collect(model, batch, names: list[str], save: set, fns: dict):
    """One trace: in execution order, replace the output of each name in ``fns``, then save those in ``save``."""
    from nnsight import NNsight

    wrapped = NNsight(model)
    saved = {}
    with wrapped.trace(batch):
        for name in names:
            envoy = _envoy(wrapped, name)
            if name in fns:
                envoy.output = fns[name](envoy.output)
            if name in save:
                saved[name] = envoy.output.save()
        logits = wrapped.output.save()
    return logits, saved


@torch.no_grad()
def collect(
    model, batch, names: list[str], backend: str = "transformer_lens", *, interventions: Sequence[Intervention] = ()
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``model`` on ``batch`` (a batch dict for a PALModel, input_ids for a HookedDecoder) and return
    ``(logits, {hook name: activation})``. Unknown hook names raise the model's KeyError.

    interventions (optional): ``[(hook name, fn)]`` applied during the same run (as in
    `run_with_interventions`); an activation that is both replaced and collected is returned replaced."""
    _check_backend(backend)
    if isinstance(names, str):
        names = [names]
    names = _sorted_names(model, batch, names)
    fns = _compose(interventions)
    if not fns and backend == "transformer_lens":
        logits, cache = model.run_with_cache(batch, names_filter=names)
        return logits, {n: cache[n] for n in names}
    if backend == "transformer_lens":
        saved: dict[str, torch.Tensor] = {}

        def saver(t, hook):
            saved[hook.name] = t.detach()

        hooks = [(n, (lambda f: lambda t, hook: f(t))(fns[n])) for n in _sorted_names(model, batch, list(fns))]
        logits = model.run_with_hooks(batch, fwd_hooks=hooks + [(n, saver) for n in names])
        return logits, {n: saved[n] for n in names}
    every = _sorted_names(model, batch, list(names) + list(fns))
    logits, saved = _nnsight_collect(model, batch, every, set(names), fns)
    return logits, {n: saved[n] for n in names}


@torch.no_grad()
def run_with_interventions(
    model, batch, interventions: list[Intervention], backend: str = "transformer_lens"
) -> torch.Tensor:
    """Logits of ``model`` on ``batch`` with each named activation replaced by ``fn(activation)``.

    Several functions on one hook name are applied in list order. ``fn`` may modify its argument in place
    and return it, or return a new tensor of the same shape."""
    _check_backend(backend)
    fns = _compose(interventions)
    names = _sorted_names(model, batch, list(fns))
    if backend == "transformer_lens":
        hooks = [(n, (lambda f: lambda t, hook: f(t))(fns[n])) for n in names]
        return model.run_with_hooks(batch, fwd_hooks=hooks)
    return _nnsight_collect(model, batch, names, set(), fns)[0]


def block_audio_interventions(
    model, batch, encoders: Sequence[str] | None = None, layers: Sequence[int] | None = None
) -> list[Intervention]:
    """The one "block the audio" intervention of the workbench (logit lens, attribute lens, ablation ``block``):
    at each of ``layers`` (default every layer) where ``encoders``' tokens (default all) are keys, text queries'
    attention scores on them are set to the mask value (``finfo.min``), so no text query reads them (pattern exactly
    0 there). With every layer blocked the text runs as the bare LLM with the same position ids; PLITS audio tokens
    still flow through the residual stream, but no text reads them. Also works during cached generation (a decoding
    step's single query is text)."""
    layout = model.token_layout(batch)
    names = model.check_encoders(encoders)
    text_q = layout.text_positions()
    out: list[Intervention] = []
    for layer in range(model.cfg.n_layers) if layers is None else sorted({int(x) for x in layers}):
        idx = [layout.audio_key_index(layer, n) for n in names]
        idx = [i for i in idx if i is not None and i.shape[1]]
        if idx:
            out.append(
                (f"blocks.{layer}.attn.hook_attn_scores", block_scores_fn(torch.cat(idx, 1), text_q, layout.seq_len))
            )
    return out


def block_scores_fn(kidx: torch.Tensor, text_q: torch.Tensor, S: int):
    """scores [B, H, Lq, K] -> the same with text queries' scores on keys ``kidx`` [B, n] at the mask value.
    ``text_q`` [B, S]: which residual positions are text; a call with Lq != S (a decoding step) blocks every query."""

    def fn(scores: torch.Tensor) -> torch.Tensor:
        B, _, Lq, K = scores.shape
        kmask = torch.zeros(B, K, dtype=torch.bool, device=scores.device).scatter(1, kidx.to(scores.device), True)
        q = text_q.to(scores.device) if Lq == S else torch.ones(B, Lq, dtype=torch.bool, device=scores.device)
        return scores.masked_fill(q[:, None, :, None] & kmask[:, None, None, :], torch.finfo(scores.dtype).min)

    return fn
