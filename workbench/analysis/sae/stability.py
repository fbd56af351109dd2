"""Stability across SAE seeds, as AudioSAE (arXiv 2602.05027) reports it: train two SAEs on the same activations
with different seeds; a feature of the first is *matched* when some feature of the second has a decoder direction
with cosine > 0.7 to it.

    df = stability(sae_a, sae_b)        # one row: share matched, mean max cosine, widths
    cos = max_decoder_cosine(a_dirs, b_dirs)   # [n_a]: each a-row's best cosine over the b-rows
"""

from __future__ import annotations

import pandas as pd
import torch

__all__ = ["MATCH_COSINE", "match_features", "max_decoder_cosine", "stability"]

MATCH_COSINE = 0.7


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)


@torch.no_grad()
def max_decoder_cosine(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """For every row of ``a`` [n_a, d] its largest cosine with a row of ``b`` [n_b, d] and that row's index
    (both [n_a]). Chunked so a 16k x 16k comparison does not hold the whole matrix."""
    a, b = _unit(a), _unit(b)
    best, arg = [], []
    for i in range(0, a.shape[0], chunk):
        c = a[i : i + chunk] @ b.T
        v, j = c.max(1)
        best.append(v)
        arg.append(j)
    return torch.cat(best), torch.cat(arg)


def match_features(sae_a, sae_b, threshold: float = MATCH_COSINE) -> pd.DataFrame:
    """One row per feature of ``sae_a``: feature, best cosine with ``sae_b``, its index there, matched."""
    cos, idx = max_decoder_cosine(sae_a.W_dec.detach(), sae_b.W_dec.detach())
    return pd.DataFrame(
        {
            "feature": range(len(cos)),
            "max_cosine": cos.numpy(),
            "match": idx.numpy(),
            "matched": (cos > threshold).numpy(),
        }
    )


def stability(sae_a, sae_b, threshold: float = MATCH_COSINE, alive_a: torch.Tensor | None = None) -> dict:
    """Share of ``sae_a``'s features matched in ``sae_b`` (over all features, and over the ``alive_a`` ones when
    given: a dead feature's direction is its initialisation), and the mean max cosine."""
    m = match_features(sae_a, sae_b, threshold)
    out = {
        "width_a": len(m),
        "width_b": int(sae_b.d_sae),
        "threshold": threshold,
        "share_matched": float(m["matched"].mean()),
        "mean_max_cosine": float(m["max_cosine"].mean()),
    }
    if alive_a is not None:
        alive = torch.as_tensor(alive_a, dtype=torch.bool).numpy()
        out["alive_a"] = int(alive.sum())
        out["share_matched_alive"] = float(m["matched"][alive].mean()) if alive.any() else float("nan")
    return out
