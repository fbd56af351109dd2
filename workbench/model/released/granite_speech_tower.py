"""Granite Speech's audio side as hooked modules: the Conformer tower (:class:`GraniteTower`, its blocks' hook points
:class:`ConformerBlockHooks`; the Shaw relative-position distances :func:`_attention_dists`), the windowed Q-Former
connector (:class:`GraniteConnector`) and the frame / token counts of a clip (:func:`frames_for`, :func:`tokens_for`).
Hook names and shapes: :mod:`workbench.model.released.granite_speech`."""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from workbench.model.released.tower import AttnHooks

_HOOKS = (
    "hook_resid_pre",
    "hook_ff1_out",
    "hook_attn_out",
    "hook_resid_mid",
    "hook_conv_out",
    "hook_mlp_out",
    "hook_resid_post",
)


class ConformerBlockHooks(nn.Module):
    hook_resid_pre: HookPoint
    hook_ff1_out: HookPoint
    hook_resid_mid: HookPoint
    hook_attn_out: HookPoint
    hook_conv_out: HookPoint
    hook_mlp_out: HookPoint
    hook_resid_post: HookPoint

    def __init__(self):
        super().__init__()
        self.attn = AttnHooks()
        for name in _HOOKS:
            setattr(self, name, HookPoint())


class GraniteTower(nn.Module):
    """transformers' Conformer encoder run block by block with hooks (see the module docstring).

    ``forward(features [B, T, 160], frame_lengths [B])`` -> (frames [B, T, D], frame mask [B, T])."""

    def __init__(self, encoder: Any):
        super().__init__()
        self.tower: Any = encoder  # transformers' GraniteSpeechCTCEncoder: its parts are looked up by name
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList(ConformerBlockHooks() for _ in encoder.layers)
        self.hook_ctc_logits = HookPoint()
        self.hook_out = HookPoint()
        self.hook_mask = HookPoint()
        self.dim = encoder.config.hidden_dim
        self.window_frames = None

    def _attention(self, at, hooks: AttnHooks, x: torch.Tensor, dists: torch.Tensor) -> torch.Tensor:
        """Block-local attention with Shaw relative positions, as `GraniteSpeechConformerAttention`."""
        h = at.pre_norm(x)
        B, T, _ = h.shape
        C, H = at.context_size, at.num_heads
        nb = math.ceil(T / C)
        rem = T % C
        h = nn.functional.pad(h, (0, 0, 0, nb * C - T))
        k, v = at.to_kv(h).chunk(2, dim=-1)
        q = hooks.hook_q(at.to_q(h).view(B, nb * C, H, -1))
        k, v = hooks.hook_k(k.reshape(B, nb * C, H, -1)), hooks.hook_v(v.reshape(B, nb * C, H, -1))
        qb, kb, vb = (t.reshape(B, nb, C, H, -1).permute(0, 3, 1, 2, 4) for t in (q, k, v))  # [B, H, nb, C, d]
        rel = at.rel_pos_emb(dists)  # [C, C, d]
        scores = (torch.einsum("bhncd,bhnkd->bhnck", qb, kb) + torch.einsum("bhncd,ckd->bhnck", qb, rel)) * at.scale
        if rem:
            keep = torch.zeros(C, C, dtype=torch.bool, device=x.device)
            keep[:rem, :rem] = True
            scores[:, :, -1] = scores[:, :, -1].masked_fill(~keep, -torch.finfo(scores.dtype).max)
        scores = hooks.hook_attn_scores(scores)
        pattern = hooks.hook_pattern(scores.float().softmax(-1).to(qb.dtype))
        z = torch.einsum("bhnck,bhnkd->bhncd", pattern, vb).permute(0, 2, 3, 1, 4).reshape(B, nb * C, H, -1)
        z = hooks.hook_z(z)
        return at.to_out(z.flatten(2)[:, :T])

    def forward(self, features: torch.Tensor, frame_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.tower
        x = self.hook_embed(t.input_linear(features.to(t.input_linear.weight.dtype)))
        block_hooks = cast(list[ConformerBlockHooks], list(self.blocks))  # built in __init__: only these
        for idx, (layer, hooks) in enumerate(zip(t.layers, block_hooks), start=1):
            x = hooks.hook_resid_pre(x)
            x = x + hooks.hook_ff1_out(0.5 * layer.ff1(x))
            x = hooks.hook_resid_mid(
                x + hooks.hook_attn_out(self._attention(layer.attn, hooks.attn, x, t.attention_dists))
            )
            x = x + hooks.hook_conv_out(layer.conv(x))
            x = x + hooks.hook_mlp_out(0.5 * layer.ff2(x))
            x = hooks.hook_resid_post(layer.post_norm(x))
            if idx == t.num_layers // 2:  # CTC self-conditioning
                x = x + t.out_mid(self.hook_ctc_logits(t.out(x)).softmax(-1))
        mask = torch.arange(x.shape[1], device=x.device)[None] < frame_lengths.to(x.device)[:, None]
        return self.hook_out(x), self.hook_mask(mask)


class GraniteConnector(nn.Module):
    """transformers' windowed Q-Former projector. ``forward(frames [B, T, D], frame mask [B, T])`` ->
    (tokens [B, ceil(T / window) * queries, d_model], token mask)."""

    def __init__(self, projector: Any):
        super().__init__()
        self.projector: Any = projector  # transformers' GraniteSpeechEncoderProjector
        self.n_slots: int | None = None  # set by the model: tokens are padded / cut to its audio slot
        self.hook_out = HookPoint()
        self.hook_mask = HookPoint()

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.projector
        tokens = p(frames)
        N = self.n_slots or tokens.shape[1]
        tokens = nn.functional.pad(tokens, (0, 0, 0, max(0, N - tokens.shape[1])))[:, :N]
        n = -(-mask.long().sum(1) // p.window_size) * p.num_queries  # ceil(frames / window) * queries
        out_mask = torch.arange(N, device=frames.device)[None] < n[:, None]
        return self.hook_out(tokens), self.hook_mask(out_mask)


def frames_for(samples, hop: int = 160):
    """Tower frames for a clip of ``samples`` raw samples (the feature extractor's count)."""
    return (samples // hop + 1) // 2


def tokens_for(samples, window: int = 15, queries: int = 3, hop: int = 160):
    """Audio tokens (placeholder count) for a clip of ``samples`` raw samples: ceil(frames / window) * queries."""
    return -(-frames_for(samples, hop) // window) * queries


def _attention_dists(enc_cfg) -> torch.Tensor:
    """The encoder's relative-distance index buffer (not in the state dict), [C, C] long."""
    seq = torch.arange(enc_cfg.context_size)
    rel = seq.view(-1, 1) - seq.view(1, -1)
    return torch.clamp(rel, -enc_cfg.context_size, enc_cfg.context_size) + enc_cfg.max_pos_emb
