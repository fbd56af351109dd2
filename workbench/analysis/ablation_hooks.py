"""What an ablation does to one batch: the checks of a request (:func:`resolve_encoders`, :func:`resolve_layers`;
:data:`MODES`, :class:`AblationError`), the audio means that mode ``mean`` writes (:func:`audio_means`) and the
hook interventions of every mode (:func:`ablation_interventions`). The modes are described in
:mod:`workbench.analysis.ablation`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from workbench.analysis.core import batches, block_audio_interventions

MODES = ("block", "zero", "mean", "ffn")
Intervention = tuple[str, Callable[[torch.Tensor], torch.Tensor]]


class AblationError(ValueError):
    """Bad ablation request (the message names the fix)."""


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
