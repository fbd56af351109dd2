"""Rotary position embedding applied to query/key heads (transformers' rotate-half convention).

The cos/sin tables come from transformers' own rotary module (`HookedDecoder.rope`); these two functions
only apply them, so the decoder's text keys and LAL's audio keys rotate the same way.
"""

from __future__ import annotations

import torch

__all__ = ["rotate_half", "apply_rotary"]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., B, L, heads, D] with cos/sin [B, L, D] (leading axes of x broadcast)."""
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    return x * cos + rotate_half(x) * sin
