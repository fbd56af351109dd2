"""The sparse autoencoder: TopK (Gao et al. 2024) and BatchTopK (Bussmann et al. 2024) training, with the
inference maths of SAELens's ``TopKSAE`` / ``JumpReLUSAE`` so a saved SAE means the same thing there.

    sae = SparseAutoencoder(d_in=576, d_sae=4096, k=32, architecture="topk")
    feats = sae.encode(x)        # x [..., d_in] -> [..., d_sae] (k non-zero per row for TopK)
    x_hat = sae.decode(feats)    # [..., d_in]

Parameters (SAELens's names and shapes): ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_in],
``b_dec`` [d_in], and for the JumpReLU form ``threshold`` [d_sae]. Encoding subtracts ``b_dec`` first
(``apply_b_dec_to_input``), as SAELens does.

- ``topk``: keep the k largest pre-activations of each row, ReLU them (SAELens ``TopK``: top-k, then ReLU).
- ``batchtopk``: during training keep the ``k * rows`` largest pre-activations of the whole batch (ReLU'd), so
  rows may use more or fewer than k features; a running threshold (the mean over batches of the smallest kept
  activation) turns it into a JumpReLU at inference (``relu(pre) * (pre > threshold)``), which is how SAELens
  saves BatchTopK SAEs (architecture ``jumprelu``).

Training care (see `workbench.analysis.sae.train`): unit-norm decoder rows (re-projected after every step, the
gradient's component along each row removed before it), the AuxK loss of Gao et al. (dead features reconstruct
the residual error with their own top-k), decoder initialised from the encoder's transpose, ``b_dec`` from the
data mean.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "SparseAutoencoder"]

ARCHITECTURES = ("topk", "batchtopk")


class SparseAutoencoder(nn.Module):
    """TopK / BatchTopK SAE on ``d_in``-wide activations with ``d_sae`` features, ``k`` active per row (on
    average for BatchTopK). ``hook_name`` / ``model_name`` are metadata written beside the weights."""

    # buffers (register_buffer): JumpReLU threshold [d_sae] and the number of batches averaged into it []
    threshold: torch.Tensor
    threshold_count: torch.Tensor
    # workbench.json's contents, set by `load_sae` only (read with getattr(sae, "extra", {}))
    extra: dict[str, Any]

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        k: int,
        architecture: str = "topk",
        *,
        seed: int = 0,
        hook_name: str = "",
        model_name: str = "",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if not 0 < k <= d_sae:
            raise ValueError(f"k must be in 1..d_sae={d_sae}, got {k}")
        self.d_in, self.d_sae, self.k, self.architecture = int(d_in), int(d_sae), int(k), architecture
        self.hook_name, self.model_name = hook_name, model_name
        g = torch.Generator().manual_seed(int(seed))
        w_dec = torch.randn(d_sae, d_in, generator=g, dtype=dtype)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.T.clone().contiguous())
        self.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d_in, dtype=dtype))
        # JumpReLU threshold at inference (BatchTopK); +inf until estimated means "use batch top-k"
        self.register_buffer("threshold", torch.full((d_sae,), math.inf, dtype=dtype))
        self.register_buffer("threshold_count", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------------------------------ encode/decode
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_in] -> [..., d_sae]: ``(x - b_dec) @ W_enc + b_enc``."""
        return (x.to(self.W_enc.dtype) - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor, *, batch_topk: bool = False) -> torch.Tensor:
        """Sparse feature activations from pre-activations [..., d_sae]."""
        if self.architecture == "topk":
            vals, idx = pre.topk(self.k, dim=-1, sorted=False)
            return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())
        if batch_topk or not bool(torch.isfinite(self.threshold).all()):
            flat = pre.reshape(-1)
            n_keep = min(flat.numel(), self.k * max(1, flat.numel() // self.d_sae))
            vals, idx = flat.topk(n_keep, sorted=False)
            return torch.zeros_like(flat).scatter_(0, idx, vals.relu()).reshape(pre.shape)
        return pre.relu() * (pre > self.threshold).to(pre.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_in] -> feature activations [..., d_sae] (inference form)."""
        return self.activate(self.pre_activations(x))

    def decode(self, feats: torch.Tensor) -> torch.Tensor:
        """[..., d_sae] -> reconstruction [..., d_in]: ``feats @ W_dec + b_dec``."""
        return feats @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    # ------------------------------------------------------------------------------------------ training helpers
    @torch.no_grad()
    def update_threshold(self, feats: torch.Tensor) -> None:
        """Running mean over training batches of the smallest positive activation kept by BatchTopK."""
        pos = feats[feats > 0]
        if not pos.numel():
            return
        m = pos.min()
        n = int(self.threshold_count)
        cur = torch.zeros_like(self.threshold) if n == 0 else self.threshold
        self.threshold.copy_((cur * n + m) / (n + 1))
        self.threshold_count += 1

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Project every decoder row back onto the unit sphere."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8))

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Remove the component of ``W_dec.grad`` along each (unit) decoder row, so a step moves the row along
        the sphere (Gao et al. 2024, appendix)."""
        if self.W_dec.grad is None:
            return
        g, w = self.W_dec.grad, self.W_dec
        g -= (g * w).sum(1, keepdim=True) * w

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        """The SAE was trained on ``x * scale``; rewrite it to take ``x`` itself (SAELens's
        ``fold_activation_norm_scaling_factor``): W_enc *= scale, W_dec /= scale, b_dec /= scale. Encoding picks the
        same features with the same activations; decoding returns the unscaled reconstruction."""
        self.W_enc.mul_(scale)
        self.W_dec.div_(scale)
        self.b_dec.div_(scale)

    def decoder_directions(self) -> torch.Tensor:
        """[d_sae, d_in] unit decoder rows (for cosine matching and steering)."""
        return self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8)

    def extra_repr(self) -> str:
        return f"{self.architecture}, d_in={self.d_in}, d_sae={self.d_sae}, k={self.k}, hook={self.hook_name!r}"
