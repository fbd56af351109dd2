"""`KVCache`: per-layer keys/values of past text positions, plus the extra (audio) K/V of the prompt."""

from __future__ import annotations

import torch

from workbench.model.layers import ExtraKV


class KVCache:
    """What generation carries from one step to the next.

    layers[l]: (k, v) [B, P, G, D] of every text position seen so far (after RoPE);
    key_mask: [B, P] bool, False at padding; last_position: [B] long, position id of the last token;
    extra: {layer: ExtraKV}, the audio keys/values given with the prompt, reused at every step so that
    generated tokens read the same audio.
    """

    def __init__(self, n_layers: int):
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layers
        self.key_mask: torch.Tensor | None = None
        self.last_position: torch.Tensor | None = None
        self.active_from: torch.Tensor | None = None  # [B, P] first layer at which each position is live
        self.extra: dict[int, ExtraKV] = {}

    @property
    def length(self) -> int:
        """P, the number of cached text positions."""
        return 0 if self.key_mask is None else self.key_mask.shape[1]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        old = self.layers[layer]
        self.layers[layer] = (k, v) if old is None else (torch.cat([old[0], k], 1), torch.cat([old[1], v], 1))

    def broadcast(self, batch_size: int) -> None:
        """Expand a batch-1 cache to ``batch_size`` rows (views, no copy; gradients sum over the rows)."""

        def grow(t):
            if t is None or t.shape[0] == batch_size:
                return t
            if t.shape[0] != 1:
                raise ValueError(f"can only broadcast a batch-1 cache, this one has {t.shape[0]} rows")
            return t.expand(batch_size, *t.shape[1:])

        self.layers = [None if kv is None else (grow(kv[0]), grow(kv[1])) for kv in self.layers]
        self.key_mask, self.active_from, self.last_position = map(
            grow, (self.key_mask, self.active_from, self.last_position)
        )
        if self.extra:
            raise ValueError("broadcast: the cache holds audio keys/values; only a text prefix can be broadcast")

    def extend_positions(self, key_mask: torch.Tensor, position_ids: torch.Tensor, active_from: torch.Tensor) -> None:
        """Record this call's key mask, position ids and active-from layers [B, L] once every layer appended."""
        self.key_mask = key_mask if self.key_mask is None else torch.cat([self.key_mask, key_mask], 1)
        self.active_from = active_from if self.active_from is None else torch.cat([self.active_from, active_from], 1)
        self.last_position = position_ids[:, -1]
