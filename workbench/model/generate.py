"""Greedy decoding for `HookedDecoder`, with or without a KV cache."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

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
    step = model.decode  # the text-only entry, also for subclasses whose forward takes other inputs
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, seq], got {tuple(input_ids.shape)}")
    B, L = input_ids.shape
    attention_mask = (torch.ones_like(input_ids) if attention_mask is None else attention_mask).long()
    if position_ids is None:
        position_ids = model.default_position_ids(attention_mask)
    eos, pad = _eos_and_pad(eos_token_id, pad_token_id)
    eos_t = torch.tensor(eos, device=input_ids.device, dtype=torch.long)
    ids, mask, pos = input_ids, attention_mask, position_ids
    cache = KVCache(model.cfg.n_layers) if use_cache else None
    step_ids, step_mask, step_pos = ids, mask, pos
    done = torch.zeros(B, dtype=torch.bool, device=ids.device)
    for i in range(max_new_tokens):
        if cache is not None:  # use_cache
            if i == 0 and prefill is not None:
                logits = prefill(cache)
            else:
                logits = step(
                    step_ids,
                    attention_mask=step_mask,
                    position_ids=None if i else step_pos,
                    extra_kv=extra_kv,
                    past=cache,
                )
            extra_kv = None  # kept by the cache from now on
        else:
            if prefill is not None:
                raise ValueError("prefill needs use_cache=True")
            logits = step(ids, attention_mask=mask, position_ids=pos, extra_kv=extra_kv)
        nxt = logits[:, -1].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        ids = torch.cat([ids, nxt[:, None]], 1)
        step_mask = torch.ones(B, 1, dtype=mask.dtype, device=mask.device)
        mask = torch.cat([mask, step_mask], 1)
        step_pos = pos[:, -1:] + 1
        pos = torch.cat([pos, step_pos], 1)
        step_ids = nxt[:, None]
        if eos:
            done = done | torch.isin(nxt, eos_t)
            if bool(done.all()):
                break
    return ids


def _eos_and_pad(eos_token_id, pad_token_id) -> tuple[list[int], int]:
    """(EOS ids as a list, the pad id: given, else the first EOS id, else 0)."""
    eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
    return eos, pad_token_id if pad_token_id is not None else (eos[0] if eos else 0)
