"""A released model's audio tower as a hooked PAL encoder, and its projector as the connector.

The tower runs through our own loop over transformers' own layer modules (their weights, their norms, their
projections), so every intermediate passes a TransformerLens ``HookPoint`` that can be read *and* replaced.
Hook names, inside ``encoders.{key}.`` (``key`` from `registry.Architecture`):

    hook_embed                           [B, T, D]      conv front end + positions (whisper towers)
    blocks.{i}.hook_resid_pre / _mid / _post   [B, T, D]
    blocks.{i}.attn.hook_q / hook_k / hook_v   [B, T, H, d_head]   (k, v: after RoPE / GQA expansion: [B, T, H, d])
    blocks.{i}.attn.hook_attn_scores / hook_pattern   [B, H, T, T]
    blocks.{i}.attn.hook_z               [B, T, H, d_head]
    blocks.{i}.hook_attn_out / hook_mlp_out    [B, T, D];  blocks.{i}.mlp.hook_post [B, T, D_ffn]
    hook_out                             [B, T', D]     after the final norm (and the pooling of Qwen2-Audio / AF3)
    hook_mask                            [B, T'] bool   its real frames

``connectors.{key}.hook_out`` [B, N, d_model] is the projector's output: the tokens written at the
placeholder positions (``connectors.{key}.hook_mask`` [B, N] bool: the real ones).
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from workbench.model.released.registry import Architecture, conv_frames


class AttnHooks(nn.Module):
    """The attention hook points of one tower block (q, k, v, scores, pattern, z), shared by every released tower."""

    hook_q: HookPoint
    hook_k: HookPoint
    hook_v: HookPoint
    hook_attn_scores: HookPoint
    hook_pattern: HookPoint
    hook_z: HookPoint

    def __init__(self):
        super().__init__()
        for name in ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z"):
            setattr(self, name, HookPoint())


class _MLPHooks(nn.Module):
    def __init__(self):
        super().__init__()
        self.hook_post = HookPoint()


class TowerBlockHooks(nn.Module):
    """The hook points of one tower layer (the layer's weights stay in transformers' module)."""

    hook_resid_pre: HookPoint
    hook_attn_out: HookPoint
    hook_resid_mid: HookPoint
    hook_mlp_out: HookPoint
    hook_resid_post: HookPoint

    def __init__(self):
        super().__init__()
        self.attn, self.mlp = AttnHooks(), _MLPHooks()
        for name in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"):
            setattr(self, name, HookPoint())


class HookedTower(nn.Module):
    """transformers' audio tower of a released model, run layer by layer with hooks.

    ``forward(features [B, n_mel, F_window], feature_mask [B, F_window])`` -> (frames [B, T, D], frame mask [B, T]).
    """

    def __init__(self, hf_tower: Any, arch: Architecture):
        super().__init__()
        self.tower: Any = hf_tower  # transformers' tower module: its sub-modules are looked up by name
        self.arch = arch
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList(TowerBlockHooks() for _ in hf_tower.layers)
        self.hook_out = HookPoint()
        self.hook_mask = HookPoint()  # [B, T'] bool: real frames
        cfg = hf_tower.config
        self.dim = cfg.hidden_size
        self.n_heads = cfg.num_attention_heads
        self.window_frames: int | None = 2 * cfg.max_source_positions if arch.tower == "whisper" else None
        self.frames_per_second: float | None = None  # frames at hook_out per second of audio (set with the extractor)

    def set_mel_rate(self, mel_frames_per_second: float) -> None:
        """Frames per second at ``hook_out``: the mel rate halved by the second convolution (and by the pooling)."""
        self.frames_per_second = mel_frames_per_second / 2 / (2 if self.arch.pool else 1)

    # ------------------------------------------------------------------ helpers
    def block_hooks(self) -> list[TowerBlockHooks]:
        """The per-layer hook modules (``self.blocks`` holds only `TowerBlockHooks`)."""
        return cast(list[TowerBlockHooks], list(self.blocks))

    def _split(self, x: torch.Tensor, n_heads: int) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n_heads, -1)

    def _attend(self, hooks: AttnHooks, q, k, v, key_mask, scale: float) -> torch.Tensor:
        """q, k, v [B, T, H, d] (k, v already expanded to H heads) -> z [B, T, H, d]."""
        q, k, v = hooks.hook_q(q), hooks.hook_k(k), hooks.hook_v(v)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)
        scores = hooks.hook_attn_scores(scores)
        pattern = hooks.hook_pattern(scores.float().softmax(-1).to(q.dtype))
        return hooks.hook_z(torch.einsum("bhqk,bkhd->bqhd", pattern, v))

    def _whisper_layer(self, layer, hooks: TowerBlockHooks, x, key_mask):
        at = layer.self_attn
        h = layer.self_attn_layer_norm(x)
        H = at.num_heads
        q = self._split(at.q_proj(h) * at.scaling, H)  # transformers scales q before the product
        z = self._attend(hooks.attn, q, self._split(at.k_proj(h), H), self._split(at.v_proj(h), H), key_mask, 1.0)
        x = hooks.hook_resid_mid(x + hooks.hook_attn_out(at.out_proj(z.flatten(2))))
        post = hooks.mlp.hook_post(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        x = x + hooks.hook_mlp_out(layer.fc2(post))
        if x.dtype == torch.float16:  # as transformers does
            big = torch.finfo(x.dtype).max - 1000
            x = x.clamp(-big, big)
        return x

    def _glm_layer(self, layer, hooks: TowerBlockHooks, x, rope):
        from transformers.models.glmasr.modeling_glmasr import apply_rotary_pos_emb

        at = layer.self_attn
        h = layer.input_layernorm(x)
        n_kv = at.k_proj.out_features // at.head_dim
        q = at.q_proj(h).view(*h.shape[:2], -1, at.head_dim).transpose(1, 2)
        k = at.k_proj(h).view(*h.shape[:2], n_kv, at.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, *rope)
        v = self._split(at.v_proj(h), n_kv)
        g = at.num_key_value_groups
        k = k.transpose(1, 2).repeat_interleave(g, 2)
        z = self._attend(hooks.attn, q.transpose(1, 2), k, v.repeat_interleave(g, 2), None, at.scaling)
        x = hooks.hook_resid_mid(x + hooks.hook_attn_out(at.o_proj(z.flatten(2))))
        mlp = layer.mlp
        post = hooks.mlp.hook_post(mlp.act_fn(mlp.fc1(layer.post_attention_layernorm(x))))
        return x + hooks.hook_mlp_out(mlp.fc2(post))

    # ------------------------------------------------------------------ forward
    def forward(self, features: torch.Tensor, feature_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.tower
        if self.window_frames is not None and features.shape[-1] != self.window_frames:
            raise ValueError(
                f"{self.arch.cls}: the tower reads windows of exactly {self.window_frames} mel frames "
                f"(max_source_positions x 2), got {features.shape[-1]}"
            )
        features = features.to(t.conv1.weight.dtype)
        x = nn.functional.gelu(t.conv1(features))
        x = nn.functional.gelu(t.conv2(x)).transpose(1, 2)  # [B, T, D]
        n_mel = feature_mask.long().sum(-1)
        T = x.shape[1]
        key_mask = (
            (torch.arange(T, device=x.device)[None] < conv_frames(n_mel).to(x.device)[:, None])
            if self.arch.masked
            else None
        )
        rope = None
        if self.arch.tower == "whisper":
            x = (x + t.embed_positions.weight).to(x.dtype)
        else:
            rope = t.rotary_emb(x, position_ids=torch.arange(T, device=x.device)[None])
        x = self.hook_embed(x)
        for layer, hooks in zip(t.layers, self.block_hooks()):
            x = hooks.hook_resid_pre(x)
            x = (
                self._whisper_layer(layer, hooks, x, key_mask)
                if rope is None
                else self._glm_layer(layer, hooks, x, rope)
            )
            x = hooks.hook_resid_post(x)
        if self.arch.pool:
            x = t.avg_pooler(x.transpose(1, 2)).transpose(1, 2)
        x = (t.norm if self.arch.tower == "glm" else t.layer_norm)(x)
        frames = self.arch.valid_frames(n_mel, x.shape[1]).to(x.device)
        mask = torch.arange(x.shape[1], device=x.device)[None] < frames[:, None]
        return self.hook_out(x), self.hook_mask(mask)


class ReleasedConnector(nn.Module):
    """The released projector: ``stack`` consecutive tower frames concatenated, then transformers' projector.

    ``forward(frames [B, T, D], frame mask [B, T])`` -> (tokens [B, T // stack, d_model], token mask).
    """

    def __init__(self, projector: nn.Module, arch: Architecture):
        super().__init__()
        self.projector, self.arch = projector, arch
        self.hook_out = HookPoint()
        self.hook_mask = HookPoint()  # [B, N] bool: real tokens

    @torch.no_grad()
    def frame_weights(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, N, T]: token j reads the ``stack`` frames j*stack ... (j+1)*stack - 1 (each row sums to 1)."""
        B, T, _ = frames.shape
        k = self.arch.stack
        w = torch.zeros(B, T // k, T, dtype=frames.dtype, device=frames.device)
        for j in range(T // k):
            w[:, j, j * k : (j + 1) * k] = 1.0 / k
        return w

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, D = frames.shape
        k = self.arch.stack
        tokens = self.projector(frames.reshape(B, T // k, k * D))
        n = (mask.long().sum(1) - k) // k + 1
        out_mask = torch.arange(T // k, device=frames.device)[None] < n[:, None]
        return self.hook_out(tokens), self.hook_mask(out_mask)
