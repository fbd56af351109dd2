"""The decoder's building blocks, each tensor behind a TransformerLens `HookPoint`.

Shape letters: B batch, L query positions of this call, P past (cached) text positions,
N extra (audio) key/value entries, H query heads, G key/value heads, D d_head, M d_model, F d_mlp.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint
from transformers.activations import ACT2FN

from workbench.model.audio import plits
from workbench.model.audio.lal import ExtraKV, gate_bias
from workbench.model.decoder_config import DecoderConfig
from workbench.model.rope import apply_rotary, rotate_half

__all__ = ["ExtraKV", "RMSNorm", "LayerNorm", "make_norm", "rotate_half", "apply_rotary", "Attention", "MLP", "Block"]


class RMSNorm(nn.Module):
    """Llama RMSNorm (computed in fp32, as transformers does). [.., M] -> [.., M]."""

    def __init__(self, d_model: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.eps = eps
        self.hook_normalized = HookPoint()  # [B, L, M]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The norm without firing ``hook_normalized`` (used for audio tokens read by LAL)."""
        dtype = x.dtype
        x32 = x.to(torch.float32)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)

    @staticmethod
    def normalize_stacked(norms: list[RMSNorm], x: torch.Tensor) -> torch.Tensor:
        """Norm i on x[i] (or every norm on x[0] when x has one slice): x [1 or n, R, M] -> [n, R, M], the values
        of ``norms[i].normalize(x[i])`` (the rescaling is computed once per slice of x; LAL's batched K/V)."""
        dtype = x.dtype
        x32 = x.to(torch.float32)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + norms[0].eps)
        weight = torch.stack([n.weight for n in norms])[:, None, :]
        return weight * x32.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_normalized(self.normalize(x))


class LayerNorm(nn.Module):
    """GPT-2 LayerNorm. [.., M] -> [.., M]."""

    def __init__(self, d_model: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.eps = eps
        self.hook_normalized = HookPoint()  # [B, L, M]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The norm without firing ``hook_normalized`` (used for audio tokens read by LAL)."""
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)

    @staticmethod
    def normalize_stacked(norms: list[LayerNorm], x: torch.Tensor) -> torch.Tensor:
        """Norm i on x[i] (or on x[0]): x [1 or n, R, M] -> [n, R, M] (see `RMSNorm.normalize_stacked`)."""
        return torch.stack([n.normalize(x[i if x.shape[0] > 1 else 0]) for i, n in enumerate(norms)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_normalized(self.normalize(x))


def make_norm(cfg: DecoderConfig) -> nn.Module:
    return RMSNorm(cfg.d_model, cfg.norm_eps) if cfg.arch == "llama" else LayerNorm(cfg.d_model, cfg.norm_eps)


class Attention(nn.Module):
    """Causal multi-head / grouped-query self-attention that also reads extra (audio) keys/values.

    Hooks: hook_q [B, L, H, D]; hook_k, hook_v [B, L, G, D] (this call's text, before RoPE for q/k);
    hook_rot_q / hook_rot_k (after RoPE, llama only); hook_audio_k / hook_audio_v [B, N, G, D] (extra
    entries, when given); hook_attn_scores, hook_pattern [B, H, L, N + P + L] (key axis
    [extra ; past ; current]); hook_z [B, L, H, D].
    """

    # made by the setattr loop in __init__ (one HookPoint per name)
    hook_q: HookPoint
    hook_k: HookPoint
    hook_v: HookPoint
    hook_rot_q: HookPoint
    hook_rot_k: HookPoint
    hook_audio_k: HookPoint
    hook_audio_v: HookPoint
    hook_attn_scores: HookPoint
    hook_pattern: HookPoint
    hook_z: HookPoint

    def __init__(self, cfg: DecoderConfig, layer: int):
        super().__init__()
        self.cfg = cfg
        self.layer = layer
        H, G, D, M = cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_model
        self.q_proj = nn.Linear(M, H * D, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(M, G * D, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(M, G * D, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(H * D, M, bias=cfg.o_bias)
        self.scale = 1.0 / math.sqrt(D) / ((layer + 1) if cfg.attn_scale_by_layer else 1.0)
        if cfg.attn_scale is not None:
            self.scale = cfg.attn_scale
        for name in ("q", "k", "v", "rot_q", "rot_k", "audio_k", "audio_v", "attn_scores", "pattern", "z"):
            setattr(self, f"hook_{name}", HookPoint())
        #: "eager" materialises scores/pattern (every hook fires); "sdpa" uses the fused kernel
        #: (flash / memory-efficient on GPU) unless a hook is attached to the scores or pattern.
        self.implementation = "eager"

    def _needs_pattern(self) -> bool:
        if self.implementation == "eager":
            return True
        return bool(
            self.hook_attn_scores._forward_hooks
            or self.hook_pattern._forward_hooks
            or self.hook_attn_scores._backward_hooks
            or self.hook_pattern._backward_hooks
        )

    def forward(
        self,
        x: torch.Tensor,
        allowed: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        extra: ExtraKV | None,
        past_kv: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x [B, L, M] (normed); allowed [B, L, N + P + L] bool. Returns (z·W_O [B, L, M], (k, v) of this call
        after RoPE, [B, L, G, D] each, for the KV cache)."""
        B, L, _ = x.shape
        H, D = self.cfg.n_heads, self.cfg.d_head
        q, k, v = self._project_qkv(x, rope)
        k_all, v_all = self._all_keys_values(k, v, extra, past_kv)
        bias = gate_bias(extra, B, H, k_all.shape[1], q.dtype)  # [B, H, 1, K]: the LAL gate on the audio keys
        if self._needs_pattern():
            z = self._attend_eager(q, k_all, v_all, allowed, bias)
        else:
            z = self._attend_sdpa(q, k_all, v_all, allowed, bias)
        z = self.hook_z(z.transpose(1, 2))  # [B, L, H, D]
        return self.o_proj(z.reshape(B, L, H * D)), (k, v)

    def _project_qkv(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, L, M] -> q [B, L, H, D], k, v [B, L, G, D] (q and k after RoPE when ``rope`` is given)."""
        B, L, _ = x.shape
        H, G, D = self.cfg.n_heads, self.cfg.n_kv_heads, self.cfg.d_head
        q = self.hook_q(self.q_proj(x).view(B, L, H, D))
        k = self.hook_k(self.k_proj(x).view(B, L, G, D))
        v = self.hook_v(self.v_proj(x).view(B, L, G, D))
        if rope is not None:
            cos, sin = rope
            q = self.hook_rot_q(apply_rotary(q, cos, sin))
            k = self.hook_rot_k(apply_rotary(k, cos, sin))
        return q, k, v

    def _all_keys_values(
        self, k: torch.Tensor, v: torch.Tensor, extra: ExtraKV | None, past_kv: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This call's k, v [B, L, G, D] behind the extra (audio) entries and the cached past: the key axis
        [extra ; past ; current], [B, N + P + L, G, D] each."""
        keys, values = [], []
        if extra is not None:
            keys.append(self.hook_audio_k(extra.k.to(k.dtype)))
            values.append(self.hook_audio_v(extra.v.to(v.dtype)))
        if past_kv is not None:
            keys.append(past_kv[0])
            values.append(past_kv[1])
        keys.append(k)
        values.append(v)
        k_all = torch.cat(keys, dim=1) if len(keys) > 1 else k
        v_all = torch.cat(values, dim=1) if len(values) > 1 else v
        return k_all, v_all

    def _attend_eager(
        self,
        q: torch.Tensor,
        k_all: torch.Tensor,
        v_all: torch.Tensor,
        allowed: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """Scores and pattern materialised (``hook_attn_scores``, ``hook_pattern`` fire): q [B, L, H, D], k_all,
        v_all [B, K, G, D], allowed [B, L, K], bias [B, H, 1, K] or None -> z [B, H, L, D]."""
        B, L, H, D = q.shape
        G, R, K = self.cfg.n_kv_heads, self.cfg.n_kv_groups, k_all.shape[1]
        # Grouped-query attention without copying K/V: query heads viewed as [G, R] (head h reads
        # K/V head h // R, as transformers' repeat_kv does).
        qh = q.transpose(1, 2).reshape(B, G, R, L, D)
        kh = k_all.transpose(1, 2)[:, :, None]  # [B, G, 1, K, D]
        vh = v_all.transpose(1, 2)[:, :, None]
        mask = allowed[:, None, None]  # [B, 1, 1, L, K]
        scores = torch.matmul(qh, kh.transpose(-1, -2)) * self.scale
        if bias is not None:
            scores = scores + bias.view(B, G, R, 1, K)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        scores = self.hook_attn_scores(scores.view(B, H, L, K))
        pattern = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        pattern = self.hook_pattern(pattern)
        return torch.matmul(pattern.view(B, G, R, L, K), vh).view(B, H, L, D)

    def _attend_sdpa(
        self,
        q: torch.Tensor,
        k_all: torch.Tensor,
        v_all: torch.Tensor,
        allowed: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """The fused kernel (no scores or pattern hooks); same arguments and result as `_attend_eager`."""
        attn_mask = allowed[:, None]
        if bias is not None:
            attn_mask = bias.masked_fill(~attn_mask, float("-inf"))
        return F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k_all.transpose(1, 2),
            v_all.transpose(1, 2),
            attn_mask=attn_mask,
            scale=self.scale,
            enable_gqa=self.cfg.n_kv_groups > 1,
        )


class MLP(nn.Module):
    """SwiGLU (llama: down(act(gate x) * up x)) or GELU MLP (gpt2: down(act(up x))).

    Hooks: hook_pre [B, L, F] (gate pre-activation, or up for gpt2), hook_pre_linear [B, L, F]
    (up projection, gated only), hook_post [B, L, F] (input of the down projection).
    """

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.gated = cfg.gated_mlp
        if self.gated:
            self.gate_proj = nn.Linear(cfg.d_model, cfg.d_mlp, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(cfg.d_model, cfg.d_mlp, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.d_mlp, cfg.d_model, bias=cfg.mlp_bias)
        self.act = ACT2FN[cfg.act_fn]
        self.hook_pre = HookPoint()
        self.hook_pre_linear = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            pre = self.hook_pre(self.gate_proj(x))
            post = self.act(pre) * self.hook_pre_linear(self.up_proj(x))
        else:
            post = self.act(self.hook_pre(self.up_proj(x)))
        return self.down_proj(self.hook_post(post))


class Block(nn.Module):
    """Pre-norm transformer block. Hooks: hook_resid_pre/mid/post [B, L, M], hook_attn_out and
    hook_mlp_out [B, L, M], hook_audio_in [B, N, M] (audio placed in the residual here, PLITS).

    ``write`` (index [B, N] long, tokens [B, N, M]): tokens written into the residual at those positions
    before the block runs (PLITS audio entering at this layer; passes ``hook_audio_in``).
    ``live`` [B, L] bool: positions that are live in this layer; elsewhere attention and FFN
    outputs are zero (audio slots before their insertion layer stay exactly zero).
    ``mlp_position_mask`` [B, L] bool: positions where the FFN runs; elsewhere its output is zero (the
    FFN-on-audio ablation).
    """

    # made by the setattr loop in __init__ (one HookPoint per name)
    hook_resid_pre: HookPoint
    hook_resid_mid: HookPoint
    hook_resid_post: HookPoint
    hook_attn_out: HookPoint
    hook_mlp_out: HookPoint
    hook_audio_in: HookPoint

    def __init__(self, cfg: DecoderConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.ln1 = make_norm(cfg)
        self.attn = Attention(cfg, layer)
        self.ln2 = make_norm(cfg)
        self.mlp = MLP(cfg)
        for name in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "audio_in"):
            setattr(self, f"hook_{name}", HookPoint())

    def forward(self, resid, allowed, rope, extra=None, past_kv=None, mlp_position_mask=None, write=None, live=None):
        """resid [B, S, M]; allowed [B, S, K] bool; rope (cos, sin) or None; extra: LAL entries (`ExtraKV`);
        past_kv: cached (k, v); write: PLITS tokens entering here (`plits.write_slots`); live [B, S] bool or None:
        positions live in this layer (`plits.only_live`). Returns (resid [B, S, M], this call's (k, v))."""
        if write is not None:
            resid = plits.write_slots(resid, write, self.hook_audio_in)
        resid = self.hook_resid_pre(resid)
        attn_out, new_kv = self.attn(self.ln1(resid), allowed, rope, extra, past_kv)
        resid = self.hook_resid_mid(resid + self.hook_attn_out(plits.only_live(attn_out, live)))
        mlp_out = self.mlp(self.ln2(resid))
        if live is not None:
            mlp_position_mask = live if mlp_position_mask is None else (live & mlp_position_mask)
        resid = self.hook_resid_post(resid + self.hook_mlp_out(plits.only_live(mlp_out, mlp_position_mask)))
        return resid, new_kv
