"""LAL: audio read as extra keys/values by every layer l >= L, never a query, never in the residual stream.

Everything about it lives here:

* `ExtraKV`: the entries one layer reads, and `extra_mask` (which text queries see them) and `gate_bias` (the
  learned per-head gate, an additive bias on their attention logits);
* `LowRankAdapter` / `adapter_key` / `add_lal_modules`: the trainable per-layer adapter and gate of an encoder;
* `lal_kv`: the K/V of every LAL layer of a batch, computed once before layer 0. They depend on the connector
  output alone (layer l: adapter_l -> layer l's input norm -> W_K, W_V (+ LoRA) -> RoPE at the slot
  positions), so all layers of an encoder come from one batched matmul over [layers, B*N, d_model] instead
  of one projection per layer inside the layer loop. The values are those of the per-layer path bit for bit
  (same kernels per layer slice; checked in tests/model/test_audio_plan.py). ``blocks.{l}.attn.hook_audio_k/v``
  still fire as layer l runs (the attention reads the entries through them), so editing them still acts.

Shape letters: B batch, N audio tokens, M d_model, G key/value heads, D d_head, H query heads, nL layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeGuard, cast

import torch
import torch.nn.functional as F
from torch import nn

from workbench.model.rope import apply_rotary

if TYPE_CHECKING:
    from peft.tuners.lora.layer import Linear as LoraLinear

__all__ = ["ExtraKV", "LowRankAdapter", "adapter_key", "add_lal_modules", "lal_kv", "extra_mask", "gate_bias"]


@dataclass
class ExtraKV:
    """Key/value entries that text queries may read but that never form queries (LAL audio).

    k, v: [B, N, G, D], already in the layer's key space (normed, projected, rotated as the caller
    decided); key_mask: [B, N] bool, True for real entries (padding False); positions: [B, N] long or
    None. With positions, query q sees entry n only if ``positions[n] <= position_ids[q]`` (causal in
    position space, so text before the audio slot cannot see audio); without, every query sees every
    real entry. On the pattern's key axis these entries come first: [extra ; past text ; this call's text].
    """

    k: torch.Tensor
    v: torch.Tensor
    key_mask: torch.Tensor
    positions: torch.Tensor | None = None
    #: optional additive bias on the attention logits of these entries, broadcastable to [B, H, 1, N]
    #: (a learned per-head gate on how much the layer listens to audio).
    logit_bias: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return self.k.shape[1]


def extra_mask(extra: ExtraKV, position_ids: torch.Tensor) -> torch.Tensor:
    """[B, L, N] bool: which queries (position ids [B, L]) see which extra entries."""
    allowed = extra.key_mask.bool()[:, None, :]
    if extra.positions is not None:
        allowed = allowed & (extra.positions[:, None, :] <= position_ids[:, :, None])
    return allowed.expand(position_ids.shape[0], position_ids.shape[1], extra.n)


def gate_bias(extra: ExtraKV | None, B: int, H: int, K: int, dtype: torch.dtype) -> torch.Tensor | None:
    """[B, H, 1, K] additive logit bias over the key axis [extra ; text]: the gate on the extra entries, 0 on
    the K - N text keys; None without a gate."""
    if extra is None or extra.logit_bias is None:
        return None
    lb = extra.logit_bias.to(dtype)
    lb = lb.view(1, -1, 1, 1) if lb.ndim == 1 else lb  # [H] -> [1, H, 1, 1]
    lb = lb.expand(B, H, 1, extra.n)
    return torch.cat([lb, lb.new_zeros(B, H, 1, K - extra.n)], -1)


# ---------------------------------------------------------------------------------------------- trainable parts
class LowRankAdapter(nn.Module):
    """x + up(down(x)), up initialised to zero (identity at start). [B, N, M] -> [B, N, M]."""

    def __init__(self, d_model: int, rank: int):
        super().__init__()
        self.down = nn.Linear(d_model, rank, bias=False)
        self.up = nn.Linear(rank, d_model, bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.down(x))


def adapter_key(name: str, layer: int) -> str:
    """Key of encoder ``name``'s LAL adapter / gate at ``layer`` (``lal_adapters`` / ``lal_gates``)."""
    return f"{name}_L{layer}"


def add_lal_modules(model, spec, device) -> None:
    """Add encoder ``spec``'s adapters (``model.lal_adapters``) and gates (``model.lal_gates``, zero: no bias at
    start), one per layer from its integration layer on, as its config asks; in layer order (the draw order of
    the adapters' random init)."""
    integ = spec.integration
    for layer in range(integ.layer, model.cfg.n_layers):
        if integ.adapter:
            model.lal_adapters[adapter_key(spec.key, layer)] = LowRankAdapter(model.cfg.d_model, integ.adapter_rank).to(
                device
            )
        if integ.gate:
            model.lal_gates[adapter_key(spec.key, layer)] = nn.Parameter(torch.zeros(model.cfg.n_heads, device=device))


# ---------------------------------------------------------------------------------------------- K/V of a batch
def lal_kv(model, audio: dict, layout) -> dict[int, ExtraKV]:
    """{layer: ExtraKV} for every layer that reads LAL audio in this batch (none: {}).

    audio: {encoder: (connector tokens [B, N, M], mask [B, N])}; layout: the batch's `TokenLayout`. At each
    layer the entries of every LAL encoder visible there are concatenated in config order (the key axis of
    `TokenLayout.audio_key_index`)."""
    specs = {s.name: s for s in model.pal_cfg.encoders}
    n_layers = model.cfg.n_layers
    per_encoder = {}
    for a in layout.audio.values():
        if a.mode == "lal" and a.layer < n_layers:
            x, _ = audio[a.name]
            k, v = _encoder_kv(model, specs[a.name], x, a.positions, range(a.layer, n_layers))
            per_encoder[a.name] = (k.unbind(0), v.unbind(0))  # per layer [B, N, G, D]
    with_gate = len(model.lal_gates) > 0
    out = {}
    for layer in range(n_layers):
        parts = layout.lal_at(layer)
        if not parts:
            continue
        ks, vs, masks, poss, biases = [], [], [], [], []
        for a in parts:
            k, v = per_encoder[a.name]
            i = layer - a.layer
            ks.append(k[i])
            vs.append(v[i])
            masks.append(audio[a.name][1])
            poss.append(a.positions)
            key = adapter_key(specs[a.name].key, layer)
            gate = model.lal_gates[key] if key in model.lal_gates else k[i].new_zeros(model.cfg.n_heads)
            biases.append(gate.view(1, -1, 1, 1).expand(1, -1, 1, a.n_tokens))
        bias = torch.cat(biases, -1) if with_gate else None
        out[layer] = ExtraKV(torch.cat(ks, 1), torch.cat(vs, 1), torch.cat(masks, 1), torch.cat(poss, 1), bias)
    return out


def _encoder_kv(model, spec, x: torch.Tensor, positions: torch.Tensor, layers: range):
    """One encoder's audio K, V at ``layers``: ([nL, B, N, G, D], [nL, B, N, G, D]) from connector tokens x
    [B, N, M] and their position ids [B, N]."""
    nL, (B, N, M) = len(layers), x.shape
    G, D = model.cfg.n_kv_heads, model.cfg.d_head
    blocks = [model.blocks[l] for l in layers]
    keys = [adapter_key(spec.key, l) for l in layers]
    rows = x.reshape(1, B * N, M)  # [1, B*N, M]: the same rows for every layer until an adapter acts
    if keys[0] in model.lal_adapters:  # x + up(down(x)), each layer its own adapter
        adapters = [model.lal_adapters[k] for k in keys]
        down = _bmm_linear(rows.expand(nL, -1, -1), *_stack(model, [[a.down] for a in adapters]))
        rows = rows + _bmm_linear(down, *_stack(model, [[a.up] for a in adapters]))
    ln1 = [b.ln1 for b in blocks]
    normed = ln1[0].normalize_stacked(ln1, rows)  # [nL, B*N, M], layer i's input norm on its rows
    projs = [(b.attn.k_proj, b.attn.v_proj) for b in blocks]
    uniform = all(len({type(pair[j]) for pair in projs}) == 1 for j in (0, 1))
    if uniform and all(_plain_or_lora(p) for pair in projs for p in pair):
        kv = _bmm_linear(normed, *_stack(model, [[_base(k), _base(v)] for k, v in projs]))  # [nL, B*N, 2*G*D]
        k, v = kv.split(G * D, -1)  # (split and unbind: one backward node each, not one zero-filled slice per layer)
        dk = _lora_delta(normed, [k_ for k_, _ in projs]) if _lora(projs[0][0]) else None
        dv = _lora_delta(normed, [v_ for _, v_ in projs]) if _lora(projs[0][1]) else None
        k = k if dk is None else k + dk
        v = v if dv is None else v + dv
    else:  # a projection this module cannot batch (e.g. a LoRA variant): the layers' own modules, one by one
        k = torch.stack([kp(normed[i]) for i, (kp, _) in enumerate(projs)])
        v = torch.stack([vp(normed[i]) for i, (_, vp) in enumerate(projs)])
    k, v = k.reshape(nL, B, N, G, D), v.reshape(nL, B, N, G, D)
    if spec.integration.audio_rope == "slot":
        k = apply_rotary(k, *model.rope(positions))
    return k, v


def _base(proj: nn.Module) -> nn.Linear:
    """The plain linear of a projection that `_plain_or_lora` accepted (peft's LoRA layer wraps it as
    ``base_layer``)."""
    return cast(nn.Linear, getattr(proj, "base_layer", proj))


def _lora(proj: nn.Module) -> TypeGuard[LoraLinear]:
    """A peft LoRA layer with active adapters (here always on a k/v projection: peft's LoRA Linear)."""
    return hasattr(proj, "lora_A") and bool(getattr(proj, "active_adapters", ()))


def _plain_or_lora(proj: nn.Module) -> bool:
    """A plain nn.Linear, or peft's LoRA Linear computing base(x) + B(A(x)) * scaling (unmerged, enabled,
    no variant such as DoRA, no live dropout): what `_bmm_linear` + `_lora_delta` reproduce exactly."""
    if type(proj) is nn.Linear:
        return True
    if not (_lora(proj) and type(proj.base_layer) is nn.Linear) or proj.merged or proj.disable_adapters:
        return False
    for name in proj.active_adapters:
        if name in getattr(proj, "lora_variant", {}):
            return False
        if name in proj.lora_dropout and proj.training and not isinstance(proj.lora_dropout[name], nn.Identity):
            return False
    return True


def _lora_delta(rows: torch.Tensor, projs: list[LoraLinear]) -> torch.Tensor | None:
    """Sum over active adapters of B(A(rows)) * scaling, per layer: rows [nL, R, M] -> [nL, R, out]; None when
    no active adapter has weights in these layers (peft then runs the base layer alone)."""
    out = None
    for name in projs[0].active_adapters:
        if name not in projs[0].lora_A:
            continue
        a = torch.stack([cast(nn.Linear, p.lora_A[name]).weight for p in projs])  # peft makes A and B nn.Linear
        b = torch.stack([cast(nn.Linear, p.lora_B[name]).weight for p in projs])
        scale = torch.tensor([p.scaling[name] for p in projs], dtype=rows.dtype, device=rows.device)
        d = _bmm_linear(_bmm_linear(rows, a, None), b, None) * scale[:, None, None]
        out = d if out is None else out + d
    return out


def _bmm_linear(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Per-layer ``F.linear``: rows [nL, R, in] @ weight [nL, out, in]^T (+ bias [nL, out]) -> [nL, R, out]
    (baddbmm adds the bias inside the product, as addmm does for F.linear).

    torch's bmm runs every slice through the same GEMM as F.linear's mm (bit-identical results, checked on a
    grid of shapes), except for tiny products (in * R * out < 400: a naive loop) and single-row or
    single-column ones (mm takes a GEMV path): those, a few multiply-adds, go slice by slice."""
    n_in, R, n_out = weight.shape[2], rows.shape[1], weight.shape[1]
    if n_in * R * n_out < 400 or R == 1 or n_out == 1:
        rows = rows.expand(weight.shape[0], -1, -1)
        return torch.stack(
            [F.linear(rows[i], weight[i], None if bias is None else bias[i]) for i in range(len(weight))]
        )
    if bias is None:
        return torch.bmm(rows, weight.transpose(1, 2))
    return torch.baddbmm(bias[:, None, :], rows, weight.transpose(1, 2))


def _stack(model, groups: list[list[nn.Linear]]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight [nL, sum of outs, in], bias [nL, sum of outs] | None): layer i's linears ``groups[i]`` side by side.

    Frozen weights are stacked once and kept on the model until one of them changes (another tensor, an
    in-place edit: its version counter moves, a device or dtype change); weights that need a gradient are
    stacked anew on every call, inside the autograd graph."""
    params = [t for g in groups for lin in g for t in (lin.weight, lin.bias) if t is not None]
    fresh = torch.is_grad_enabled() and any(t.requires_grad for t in params)
    stamp = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in params) + (torch.is_inference_mode_enabled(),)
    cache = model.__dict__.setdefault("_lal_stacks", {})
    slot = tuple(id(t) for t in params)
    if not fresh and slot in cache and cache[slot][0] == stamp:
        return cache[slot][1]
    weight = torch.stack([torch.cat([lin.weight for lin in g]) if len(g) > 1 else g[0].weight for g in groups])
    bias = None
    if groups[0][0].bias is not None:
        bias = torch.stack([torch.cat([lin.bias for lin in g]) if len(g) > 1 else g[0].bias for g in groups])
    if not fresh:
        cache[slot] = (stamp, (weight, bias))
    return weight, bias
