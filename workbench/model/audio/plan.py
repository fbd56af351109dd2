"""`AudioPlan`: what one batch's audio does to the decoder, computed once before layer 0.

A model turns a batch into a plan (`plan_batch`: encoders -> connectors -> `TokenLayout` -> PLITS writes and
LAL K/V); `HookedDecoder.decode` reads it layer by layer and computes nothing about audio itself. A text-only
call gets a plan too (`text_plan`: no slots, maybe caller-made extra K/V), so there is one decoder path.
`LayerMasks` turns a plan into each layer's attention mask: causal text, PLITS staging, LAL visibility.

Shape letters: B batch, Lt text tokens, S residual positions of this call, P cached positions, N audio entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch

from workbench.model.audio import lal, plits
from workbench.model.audio.lal import ExtraKV

__all__ = ["AudioPlan", "plan_batch", "text_plan", "LayerMasks"]


@dataclass
class AudioPlan:
    """seq_len S; text_index [B, Lt] (residual index of each text token; None: the residual is the text);
    attention_mask [B, S] bool (real positions); position_ids [B, S] long (RoPE; audio slots reserved);
    plits {layer: (residual index [B, N], tokens [B, N, M])} (written before that block runs);
    lal {layer: ExtraKV} (audio keys/values read by that layer)."""

    seq_len: int
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    text_index: torch.Tensor | None = None
    plits: dict[int, plits.Write] = field(default_factory=dict)
    lal: dict[int, ExtraKV] = field(default_factory=dict)

    def after_prefix(self, n: int) -> AudioPlan:
        """The plan of the positions after the first ``n`` (text shared by every row and run before into a
        KV cache, see `workbench.model.shared_prefix`): residual indices shift down by n; LAL K/V unchanged."""
        index = None if self.text_index is None else self.text_index[:, n:] - n
        writes = {layer: (i - n, t) for layer, (i, t) in self.plits.items()}
        return replace(
            self,
            seq_len=self.seq_len - n,
            attention_mask=self.attention_mask[:, n:],
            position_ids=self.position_ids[:, n:],
            text_index=index,
            plits=writes,
        )


def plan_batch(model, layout, audio: dict) -> AudioPlan:
    """The plan of one batch: layout (`TokenLayout`) and audio {encoder: (connector tokens [B, N, M], mask
    [B, N])} -> slots, PLITS writes per layer, LAL K/V of every LAL layer (one batched matmul per encoder)."""
    return AudioPlan(
        layout.seq_len,
        layout.attention_mask.bool(),
        layout.position_ids,
        layout.text_index,
        plits.plits_writes(layout, audio),
        lal.lal_kv(model, audio, layout),
    )


def text_plan(
    model,
    B: int,
    L: int,
    device,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    extra_kv: Mapping[int, ExtraKV] | None = None,
    past=None,
) -> AudioPlan:
    """The plan of a text-only call of L positions: attention_mask [B, L] (default all real), position_ids [B, L]
    (default counting real tokens on from the cache's last position), extra_kv {layer: ExtraKV} (default: the
    audio K/V the cache keeps from its prompt)."""
    if attention_mask is None:
        attention_mask = torch.ones(B, L, dtype=torch.bool, device=device)
    attention_mask = attention_mask.bool()
    if attention_mask.shape != (B, L):
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(B, L)}")
    if position_ids is None:
        start = (past.last_position + 1) if past is not None and past.last_position is not None else 0
        position_ids = model.default_position_ids(attention_mask, start)
    if position_ids.shape != (B, L):
        raise ValueError(f"position_ids has shape {tuple(position_ids.shape)}, expected {(B, L)}")
    if extra_kv is None and past is not None:
        extra_kv = past.extra
    for layer in extra_kv or {}:
        model.check_layer(layer, "extra_kv layer")
    return AudioPlan(L, attention_mask, position_ids, lal={k: v for k, v in (extra_kv or {}).items() if v is not None})


class LayerMasks:
    """Each layer's attention mask and live positions for a plan (and the cache it extends).

    ``at(layer, extra)`` -> (allowed [B, S, N + P + S] bool over the key axis [LAL entries ; cached ; this call],
    live [B, S] bool or None): causal over real keys, minus PLITS slots not yet written (their outputs held at
    zero: ``live``), each query's own key always allowed, LAL entries by `lal.extra_mask`. ``live_from`` [B, S]
    is what the cache records for later calls."""

    def __init__(self, plan: AudioPlan, past=None):
        B, S = plan.attention_mask.shape
        dev = plan.attention_mask.device
        P = past.length if past is not None else 0
        key_mask = (
            plan.attention_mask
            if past is None or past.key_mask is None
            else torch.cat([past.key_mask, plan.attention_mask], 1)
        )
        q_idx = torch.arange(S, device=dev)[:, None] + P
        k_idx = torch.arange(P + S, device=dev)[None, :]
        self.causal = (k_idx <= q_idx)[None] & key_mask[:, None, :]  # [B, S, P + S]
        self.self_key = (k_idx == q_idx)[None]  # [1, S, P + S]
        self.live_from = plits.live_from(plan.plits, B, S, dev)
        past_live = past.active_from if past is not None else None
        self.keys_live_from = self.live_from if past_live is None else torch.cat([past_live, self.live_from], 1)
        staged = bool(plan.plits) or bool(past_live is not None and past_live.any())
        #: the mask of every layer when no PLITS slot is staged (this call's or the cache's); None otherwise
        self.text_only: torch.Tensor | None = None if staged else self.causal | self.self_key
        self.position_ids = plan.position_ids

    def at(self, layer: int, extra: ExtraKV | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.text_only is None:  # staged: the mask changes with the layer
            allowed = plits.staged_mask(self.causal, self.self_key, self.keys_live_from, layer)
            live = self.live_from <= layer
        else:
            allowed, live = self.text_only, None
        if extra is not None:
            allowed = torch.cat([lal.extra_mask(extra, self.position_ids), allowed], -1)
        return allowed, live
