"""`TokenLayout`: where every text token and every audio token sits, so no analysis hard-codes offsets.

Three coordinate systems:
* text index t in ``input_ids`` [B, Lt];
* residual index in the model's sequence [B, S]: text plus the PLITS audio tokens (LAL audio is never in
  the residual stream);
* key index on the key axis of ``blocks.{l}.attn.hook_pattern`` at layer l: [LAL audio keys live at l,
  in config order ; the residual sequence].
Position ids (RoPE) reserve the whole audio slot, PLITS and LAL alike, so a text token has the same
position id in every variant with the same token counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.model.audio.plits import reserve_slots, slot_index


@dataclass
class AudioPlacement:
    """One encoder's tokens. positions [B, N]: their position ids; residual_index [B, N] (PLITS only);
    mask [B, N] bool (real tokens); mode "plits"/"lal"; layer: first layer that sees them."""

    name: str
    mode: str
    layer: int
    n_tokens: int
    positions: torch.Tensor
    mask: torch.Tensor
    residual_index: torch.Tensor | None = None


@dataclass
class TokenLayout:
    """text_index [B, Lt]: residual index of each text token; text_mask [B, Lt]; audio_slot [B] (text index
    of the first token after the slot); attention_mask, position_ids [B, S]; audio: {encoder: AudioPlacement}."""

    seq_len: int
    text_index: torch.Tensor
    text_mask: torch.Tensor
    audio_slot: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    audio: dict[str, AudioPlacement]

    def lal_at(self, layer: int) -> list[AudioPlacement]:
        """LAL encoders whose keys are on the key axis at ``layer``, in key-axis order."""
        return [a for a in self.audio.values() if a.mode == "lal" and layer >= a.layer]

    def n_extra_keys(self, layer: int) -> int:
        return sum(a.n_tokens for a in self.lal_at(layer))

    def audio_key_index(self, layer: int, name: str) -> torch.Tensor | None:
        """[B, N] indices of encoder ``name``'s tokens on the key axis of layer ``layer`` (None if it is not
        visible there)."""
        a = self.audio[name]
        if layer < a.layer:
            return None
        B = self.text_index.shape[0]
        if a.mode == "lal":
            offset = self._lal_offset(layer, name)
            idx = torch.arange(offset, offset + a.n_tokens, device=self.text_index.device)
            return idx[None].expand(B, -1)
        return self.audio_residual_index(name) + self.n_extra_keys(layer)

    def _lal_offset(self, layer: int, name: str) -> int:
        """Key-axis index of LAL encoder ``name``'s first key at ``layer`` (the keys of the LAL encoders before
        it in config order come first)."""
        offset = 0
        for other in self.lal_at(layer):
            if other.name == name:
                break
            offset += other.n_tokens
        return offset

    def audio_key_slice(self, layer: int, name: str) -> slice:
        """Encoder ``name``'s keys on the key axis of ``layer`` as a slice, for a LAL encoder (the same for every row:
        LAL keys come first, in config order); ``act[:, layout.audio_key_slice(l, e)]`` selects them from
        ``blocks.{l}.attn.hook_audio_k/v`` [B, N_all, G, D]. Raises ValueError for PLITS encoders (their keys sit
        at per-row residual positions: use :meth:`audio_key_index`) and where the encoder is not visible yet."""
        a = self.audio[name]
        if a.mode != "lal":
            raise ValueError(
                f"encoder {name!r} is integrated by PLITS: its keys are residual positions "
                "(audio_key_index gives them per row)"
            )
        if layer < a.layer:
            raise ValueError(f"encoder {name!r} enters at layer {a.layer}: no audio keys at layer {layer}")
        off = self._lal_offset(layer, name) if a.n_tokens else 0
        return slice(off, off + a.n_tokens)

    def text_positions(self, device: torch.device | str | None = None) -> torch.Tensor:
        """[B, S] bool in the residual layout: True at every text slot (padding slots included, as in
        ``text_index``), False at PLITS audio slots. The query rows an audio intervention may touch."""
        dev = self.text_index.device if device is None else device
        out = torch.zeros(self.text_index.shape[0], self.seq_len, dtype=torch.bool, device=dev)
        return out.scatter_(1, self.text_index.to(dev), True)

    def text_key_index(self, layer: int) -> torch.Tensor:
        """[B, Lt] indices of the text tokens on the key axis of layer ``layer``."""
        return self.text_index + self.n_extra_keys(layer)

    def audio_residual_index(self, name: str) -> torch.Tensor:
        a = self.audio[name]
        if a.residual_index is None:
            raise ValueError(f"encoder {name!r} is integrated by LAL: its tokens are never in the residual stream")
        return a.residual_index


def build_layout(
    attention_mask: torch.Tensor,
    audio_slot: torch.Tensor,
    encoders: list[tuple[str, str, int, int]],
    audio_masks: dict[str, torch.Tensor],
) -> TokenLayout:
    """Lay out a batch. attention_mask [B, Lt] (text), audio_slot [B] (text index where the audio slot
    opens), encoders: (name, mode, layer, n_tokens) in config order, audio_masks {name: [B, N]}."""
    B, Lt = attention_mask.shape
    dev = attention_mask.device
    text_mask = attention_mask.bool()
    n_all = sum(n for *_, n in encoders)
    n_plits = sum(n for _, mode, _, n in encoders if mode == "plits")
    t = torch.arange(Lt, device=dev)[None].expand(B, -1)
    after = t >= audio_slot[:, None]
    text_index, S = reserve_slots(audio_slot, Lt, n_plits)  # PLITS slots: residual positions in the slot
    text_pos = (text_mask.long().cumsum(1) - 1).clamp(min=0) + after.long() * n_all
    # position id where the slot opens: number of real text tokens before it
    slot_pos = (text_mask & ~after).long().sum(1)  # [B]
    full_mask = torch.zeros(B, S, dtype=torch.bool, device=dev).scatter(1, text_index, text_mask)
    full_pos = torch.zeros(B, S, dtype=torch.long, device=dev).scatter(1, text_index, text_pos)
    audio = {}
    pos_off, res_off = 0, 0
    for name, mode, layer, n in encoders:
        j = torch.arange(n, device=dev)[None]
        positions = slot_pos[:, None] + pos_off + j
        mask = audio_masks[name].bool() if n else torch.zeros(B, 0, dtype=torch.bool, device=dev)
        placement = AudioPlacement(name, mode, layer, n, positions, mask)
        if mode == "plits":
            placement.residual_index = slot_index(audio_slot, res_off, n)
            full_mask = full_mask.scatter(1, placement.residual_index, mask)
            full_pos = full_pos.scatter(1, placement.residual_index, positions)
            res_off += n
        audio[name] = placement
        pos_off += n
    return TokenLayout(S, text_index, text_mask, audio_slot, full_mask, full_pos, audio)
