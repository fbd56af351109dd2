"""Greedy decoding for `HookedDecoder`, with or without a KV cache."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from workbench.model.kv_cache import KVCache
from workbench.model.layers import ExtraKV


@torch.no_grad()
def greedy_generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    max_new_tokens: int = 20,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    use_cache: bool = True,
    position_ids: torch.Tensor | None = None,
    extra_kv: Mapping[int, ExtraKV] | None = None,
    prefill: Callable[[KVCache], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Greedy continuation of a left-padded batch. input_ids, attention_mask [B, L] -> [B, L + T], T <= max_new_tokens.

    Like ``transformers``' ``generate(do_sample=False)``: a sequence that emitted EOS is padded with
    ``pad_token_id`` (default: the first EOS id) and decoding stops once every sequence is done.
    ``extra_kv`` (audio keys/values per layer) is given with the prompt and kept in the cache, so every
    generated token reads the same audio. ``use_cache=False`` recomputes the whole sequence each step
    (slow; for checking the cache). ``prefill(cache) -> logits [B, L, V]`` replaces the first (prompt) forward,
    e.g. a PAL model's forward with its audio plan (whose LAL K/V the cache keeps); later steps are text steps.
    """
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, seq], got {tuple(input_ids.shape)}")
    attention_mask = (torch.ones_like(input_ids) if attention_mask is None else attention_mask).long()
    if position_ids is None:
        position_ids = model.default_position_ids(attention_mask)
    eos, pad = _eos_and_pad(eos_token_id, pad_token_id)
    eos_t = torch.tensor(eos, device=input_ids.device, dtype=torch.long)
    seq = _Sequences.start(input_ids, attention_mask, position_ids)
    cache = KVCache(model.cfg.n_layers) if use_cache else None
    for i in range(max_new_tokens):
        logits = _step_logits(model, seq, i, cache, extra_kv, prefill)
        if cache is not None:
            extra_kv = None  # kept by the cache from now on
        nxt = logits[:, -1].argmax(-1)
        nxt = torch.where(seq.done, torch.full_like(nxt, pad), nxt)
        seq.append(nxt)
        if eos:
            seq.done = seq.done | torch.isin(nxt, eos_t)
            if bool(seq.done.all()):
                break
    return seq.ids


@dataclass
class _Sequences:
    """The batch being continued: ids, mask, pos [B, L + t] (everything so far); the next step's inputs
    step_ids, step_mask, step_pos ([B, L] the prompt at step 0, then [B, 1] the last token); done [B] bool."""

    ids: torch.Tensor
    mask: torch.Tensor
    pos: torch.Tensor
    step_ids: torch.Tensor
    step_mask: torch.Tensor
    step_pos: torch.Tensor
    done: torch.Tensor

    @classmethod
    def start(cls, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> _Sequences:
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        return cls(ids, mask, pos, ids, mask, pos, done)

    def append(self, nxt: torch.Tensor) -> None:
        """Append the tokens nxt [B] (one per row) and make them the next step's input."""
        self.ids = torch.cat([self.ids, nxt[:, None]], 1)
        self.step_mask = torch.ones(nxt.shape[0], 1, dtype=self.mask.dtype, device=self.mask.device)
        self.mask = torch.cat([self.mask, self.step_mask], 1)
        self.step_pos = self.pos[:, -1:] + 1
        self.pos = torch.cat([self.pos, self.step_pos], 1)
        self.step_ids = nxt[:, None]


def _step_logits(
    model,
    seq: _Sequences,
    i: int,
    cache: KVCache | None,
    extra_kv: Mapping[int, ExtraKV] | None,
    prefill: Callable[[KVCache], torch.Tensor] | None,
) -> torch.Tensor:
    """Logits [B, L', V] of step ``i``: with a cache, the prompt (or ``prefill``) at step 0 and then the last
    token; without one, the whole sequence again. ``model.decode`` is the text-only entry, also for subclasses
    whose forward takes other inputs."""
    if cache is None:
        if prefill is not None:
            raise ValueError("prefill needs use_cache=True")
        return model.decode(seq.ids, attention_mask=seq.mask, position_ids=seq.pos, extra_kv=extra_kv)
    if i == 0 and prefill is not None:
        return prefill(cache)
    return model.decode(
        seq.step_ids,
        attention_mask=seq.step_mask,
        position_ids=None if i else seq.step_pos,
        extra_kv=extra_kv,
        past=cache,
    )


def _eos_and_pad(eos_token_id, pad_token_id) -> tuple[list[int], int]:
    """(EOS ids as a list, the pad id: given, else the first EOS id, else 0)."""
    eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
    return eos, pad_token_id if pad_token_id is not None else (eos[0] if eos else 0)
