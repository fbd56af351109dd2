"""PLITS: audio tokens placed in the residual stream at layer L, then processed like text by every layer >= L.

Everything about it lives here, in the order a batch meets it:

1. slot reservation (`reserve_slots`, `slot_index`): the audio slot opens at a text index; the residual sequence
   keeps N_plits positions there for the PLITS tokens (LAL tokens reserve position ids only, see
   `workbench.model.layout`), so every layer sees one residual layout;
2. the plan's writes (`plits_writes`): {layer: (residual index [B, N], tokens [B, N, M])}, the encoders that
   enter at the same layer written together in config order;
3. staging (`live_from`, `staged_mask`, `only_live`): a slot is dead until its layer, i.e. it is no key for any
   query and the attention and FFN outputs at it are held at exactly zero;
4. the write at layer L (`write_slots`): the tokens pass ``blocks.{L}.hook_audio_in`` and overwrite their slots
   before block L runs.

Shape letters: B batch, Lt text tokens, S residual positions (text + PLITS slots), N audio tokens, M d_model.
"""

from __future__ import annotations

import torch

__all__ = [
    "reserve_slots",
    "slot_index",
    "plits_writes",
    "place_text",
    "gather_text",
    "live_from",
    "staged_mask",
    "only_live",
    "write_slots",
]

Write = tuple[torch.Tensor, torch.Tensor]  # (residual index [B, N] long, tokens [B, N, M])


# ---------------------------------------------------------------------------------------------- 1. slots
def reserve_slots(audio_slot: torch.Tensor, Lt: int, n_plits: int) -> tuple[torch.Tensor, int]:
    """(text_index [B, Lt]: the residual index of every text token, S = Lt + n_plits): text from the audio slot
    on (text index >= audio_slot [B]) moves n_plits positions right."""
    t = torch.arange(Lt, device=audio_slot.device)[None].expand(audio_slot.shape[0], -1)
    return t + (t >= audio_slot[:, None]).long() * n_plits, Lt + n_plits


def slot_index(audio_slot: torch.Tensor, offset: int, n: int) -> torch.Tensor:
    """[B, n] residual indices of an encoder's n tokens, ``offset`` PLITS tokens into the slot."""
    return audio_slot[:, None] + offset + torch.arange(n, device=audio_slot.device)[None]


def place_text(text: torch.Tensor, text_index: torch.Tensor | None, seq_len: int) -> torch.Tensor:
    """Text embeddings [B, Lt, M] -> the residual stream [B, S, M], PLITS slots zero (None index: text only)."""
    if text_index is None:
        return text
    B, _, M = text.shape
    return text.new_zeros(B, seq_len, M).scatter(1, text_index[..., None].expand(-1, -1, M), text)


def gather_text(resid: torch.Tensor, text_index: torch.Tensor | None) -> torch.Tensor:
    """The residual stream [B, S, M] -> its text positions [B, Lt, M] (None index: unchanged)."""
    if text_index is None:
        return resid
    return resid.gather(1, text_index[..., None].expand(-1, -1, resid.shape[-1]))


# ---------------------------------------------------------------------------------------------- 2. writes
def plits_writes(layout, audio: dict, skip: int = 0) -> dict[int, Write]:
    """{layer: (residual index [B, N], tokens [B, N, M])} of a batch's PLITS encoders (none: {}).

    audio: {encoder: (connector tokens [B, N, M], mask [B, N])}; ``skip``: residual positions dropped from the
    front (a shared prefix run before), subtracted from the indices."""
    groups: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for name, a in layout.audio.items():
        if a.mode == "plits":
            groups.setdefault(a.layer, []).append((a.residual_index - skip, audio[name][0]))
    return {layer: (torch.cat([i for i, _ in g], 1), torch.cat([t for _, t in g], 1)) for layer, g in groups.items()}


# ---------------------------------------------------------------------------------------------- 3. staging
def live_from(writes: dict[int, Write], B: int, S: int, device) -> torch.Tensor:
    """[B, S] long: the first layer at which each residual position is live (0 for text, L for a slot written
    at layer L)."""
    first = torch.zeros(B, S, dtype=torch.long, device=device)
    for layer, (index, _) in writes.items():
        first.scatter_(1, index, layer)
    return first


def staged_mask(causal: torch.Tensor, self_key: torch.Tensor, keys_live_from: torch.Tensor, layer: int) -> torch.Tensor:
    """[B, L, K] bool: the causal mask [B, L, K] without the keys not yet live at ``layer`` (keys_live_from
    [B, K]), plus each query's own key (self_key [1, L, K]: a dead query's softmax stays defined)."""
    return (causal & (keys_live_from <= layer)[:, None, :]) | self_key


def only_live(out: torch.Tensor, live: torch.Tensor | None) -> torch.Tensor:
    """A block's attention or FFN output [B, S, M] held at zero where ``live`` [B, S] is False (None: unchanged)."""
    return out if live is None else out * live[..., None].to(out.dtype)


# ---------------------------------------------------------------------------------------------- 4. the write
def write_slots(resid: torch.Tensor, write: Write, hook) -> torch.Tensor:
    """The residual [B, S, M] with the PLITS tokens written at their slots; the tokens pass ``hook``
    (``blocks.{L}.hook_audio_in``, [B, N, M]) first."""
    index, tokens = write
    tokens = hook(tokens.to(resid.dtype))
    return resid.scatter(1, index[..., None].expand(-1, -1, resid.shape[-1]), tokens)
