"""Connectors: encoder frames [B, T, D_enc] (+ mask [B, T]) -> a fixed number of LLM-width tokens [B, N, d_model].

Every connector ends in an RMS normalisation with a learned per-channel gain, initialised to the scale of
the residual stream where its tokens enter, so PLITS at a late layer does not start with vanishing tokens.
The output passes ``hook_out`` (``connectors.{name}.hook_out``).
"""

from __future__ import annotations

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from workbench.model.pal_config import ConnectorConfig


def adaptive_pool_weights(mask: torch.Tensor, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[B, n, T] weights of `masked_adaptive_pool`: row j averages output token j's frames (rows sum to 1; an
    item without valid frames gives zero rows). mask [B, T] bool."""
    B, T = mask.shape
    length = mask.long().sum(1).to(dtype)  # [B]
    seg = torch.arange(n, device=mask.device, dtype=dtype)
    start = torch.floor(seg[None] * length[:, None] / n)  # [B, n]
    end = torch.maximum(torch.ceil((seg[None] + 1) * length[:, None] / n), start + 1)
    end = torch.minimum(end, length[:, None].clamp(min=1))
    t = torch.arange(T, device=mask.device, dtype=dtype)
    weights = ((t[None, None] >= start[..., None]) & (t[None, None] < end[..., None])).to(dtype)
    weights = weights * (length[:, None, None] > 0)
    return weights / weights.sum(-1, keepdim=True).clamp(min=1)


def masked_adaptive_pool(frames: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    """Average each item's valid frames into n equal segments. frames [B, T, D], mask [B, T] -> [B, n, D].

    Valid frames are the first ``mask.sum(1)`` ones; with fewer valid frames than n, segments reuse frames;
    an item without valid frames gives zeros.
    """
    return adaptive_pool_weights(mask.to(frames.device), n, frames.dtype) @ frames


class _GainNorm(nn.Module):
    """RMS-normalise then scale by a learned per-channel gain. [.., M] -> [.., M]."""

    def __init__(self, d_model: int, init_gain: float = 1.0):
        super().__init__()
        self.gain = nn.Parameter(torch.full((d_model,), float(init_gain)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        return x * self.gain


class MLPConnector(nn.Module):
    """Masked temporal pooling to n_tokens, LayerNorm, Linear-GELU-Linear, gain norm."""

    def __init__(self, d_in: int, d_model: int, cfg: ConnectorConfig):
        super().__init__()
        self.n_tokens = cfg.n_tokens
        self.norm_in = nn.LayerNorm(d_in)
        self.fc1 = nn.Linear(d_in, cfg.hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(cfg.hidden, d_model)
        self.norm_out = _GainNorm(d_model)
        self.hook_out = HookPoint()  # [B, N, d_model]
        self.hook_mask = HookPoint()  # [B, N] bool: which tokens are real (rows without audio have none)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [B, T, D_enc], mask [B, T] -> tokens [B, N, d_model], token mask [B, N]."""
        pooled = masked_adaptive_pool(frames, mask, self.n_tokens)
        tokens = self.norm_out(self.fc2(self.act(self.fc1(self.norm_in(pooled)))))
        out_mask = mask.any(1, keepdim=True).expand(-1, self.n_tokens)
        return self.hook_out(tokens), self.hook_mask(out_mask)

    @torch.no_grad()
    def frame_weights(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, N, T]: how much of each frame each output token averages (its pooling segment; rows sum to 1)."""
        return adaptive_pool_weights(mask.to(frames.device), self.n_tokens, frames.dtype)


def _key_padding(mask: torch.Tensor) -> torch.Tensor:
    """[B, T] True on padding frames; an item without frames attends to its (zero) first frame."""
    pad = ~mask.bool()
    pad[:, 0] = pad[:, 0] & mask.any(1)
    return pad


class QFormerLayer(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.ln_cross = nn.LayerNorm(hidden)
        self.cross = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.ln_self = nn.LayerNorm(hidden)
        self.self_attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.ln_mlp = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))

    def forward(
        self, q: torch.Tensor, frames: torch.Tensor, pad: torch.Tensor, weights: list | None = None
    ) -> torch.Tensor:
        """q [B, N, H], frames [B, T, H], pad [B, T] bool (True = padding) -> q [B, N, H]. With a list as
        ``weights``, the cross-attention pattern over frames (mean over heads, [B, N, T]) is appended to it."""
        h = self.ln_cross(q)
        if weights is None:
            q = q + self.cross(h, frames, frames, key_padding_mask=pad, need_weights=False)[0]
        else:
            out, w = self.cross(h, frames, frames, key_padding_mask=pad, need_weights=True, average_attn_weights=True)
            q = q + out
            weights.append(w)
        h = self.ln_self(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        return q + self.mlp(self.ln_mlp(q))


class QFormerConnector(nn.Module):
    """n_tokens learned queries cross-attending to the encoder frames (Perceiver-resampler / Q-Former style)."""

    def __init__(self, d_in: int, d_model: int, cfg: ConnectorConfig):
        super().__init__()
        self.n_tokens = cfg.n_tokens
        self.proj_in = nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, cfg.hidden))
        self.queries = nn.Parameter(torch.randn(cfg.n_tokens, cfg.hidden) * 0.02)
        self.layers = nn.ModuleList(QFormerLayer(cfg.hidden, cfg.heads) for _ in range(cfg.layers))
        self.ln_out = nn.LayerNorm(cfg.hidden)
        self.proj_out = nn.Linear(cfg.hidden, d_model)
        self.norm_out = _GainNorm(d_model)
        self.hook_out = HookPoint()  # [B, N, d_model]
        self.hook_mask = HookPoint()  # [B, N] bool: which tokens are real (rows without audio have none)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [B, T, D_enc], mask [B, T] -> tokens [B, N, d_model], token mask [B, N]."""
        B = frames.shape[0]
        has_audio = mask.any(1)
        pad = _key_padding(mask)
        x = self.proj_in(frames)
        q = self.queries[None].expand(B, -1, -1)
        for layer in self.layers:
            q = layer(q, x, pad)
        tokens = self.norm_out(self.proj_out(self.ln_out(q)))
        return self.hook_out(tokens), self.hook_mask(has_audio[:, None].expand(-1, self.n_tokens))

    @torch.no_grad()
    def frame_weights(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, N, T]: each latent query's cross-attention over the frames, averaged over heads and layers (rows
        sum to 1 over the real frames)."""
        x, pad = self.proj_in(frames), _key_padding(mask)
        q = self.queries[None].expand(frames.shape[0], -1, -1)
        weights: list[torch.Tensor] = []
        for layer in self.layers:
            q = layer(q, x, pad, weights)
        return torch.stack(weights).mean(0)


def make_connector(d_in: int, d_model: int, cfg: ConnectorConfig) -> MLPConnector | QFormerConnector:
    kinds: dict[str, type[MLPConnector] | type[QFormerConnector]] = {"mlp": MLPConnector, "qformer": QFormerConnector}
    return kinds[cfg.type](d_in, d_model, cfg)
