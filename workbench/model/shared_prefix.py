"""Run the prompt prefix that every row of a batch shares once, not once per row (training and evaluation).

Every task prompt of a corpus starts with the same chat-template system turn (26 of about 50 tokens for the
tiny corpus), and the audio slot opens after it. Causal attention makes that prefix's keys/values independent of
everything after it, so they can be computed with batch size 1 and broadcast to the batch as a KV cache; the
rest of the sequence (audio slot, user turn, answer) then runs as a continuation of that cache. The numbers are
those of the plain forward up to float rounding (batch-1 vs batch-B matrix products), gradients included: the
broadcast prefix sums its gradient over the batch, as the B copies would.

This is a compute path for :meth:`PALModel.loss` and (opt-in) generation only. The hooked forward that analyses
use is unchanged: hooks on the prefix would fire with batch size 1 here.
"""

from __future__ import annotations

import torch

from workbench.model.kv_cache import KVCache

__all__ = ["shared_prefix_len", "pads_after_prefix", "forward_shared_prefix", "MIN_SHARED_PREFIX"]

#: below this many shared tokens (or rows) the plain forward is used
MIN_SHARED_PREFIX = 4


def shared_prefix_len(batch: dict) -> int:
    """P: the number of leading text columns that are real (unpadded) and identical in every row, capped at
    the earliest audio slot, so that the prefix holds text only. 0 when the batch has one row."""
    ids, mask = batch["input_ids"], batch["attention_mask"].bool()
    if ids.shape[0] < 2 or ids.shape[1] == 0:
        return 0
    same = (ids == ids[:1]).all(0) & mask.all(0)
    P = int(same.long().cumprod(0).sum())
    return min(P, int(batch["audio_slot"].min()))


def pads_after_prefix(batch: dict) -> tuple[dict, int]:
    """A left-padded prompt batch -> (the same batch with each row's padding moved behind the prefix that all
    rows' real tokens share, P). Pads are masked keys and position ids count real tokens, so the model's
    outputs at real positions are unchanged; the prefix now starts every row at column 0. ``audio_slot`` and
    ``prompt_len`` (text indices after the prefix) keep their values; [B, L] tensors are permuted alike."""
    ids, mask = batch["input_ids"], batch["attention_mask"].bool()
    B, L = ids.shape
    n_pad = (~mask).long().sum(1)  # left padding: pads are the first n_pad columns
    cols = torch.arange(L, device=ids.device)[None].expand(B, -1)
    real_start = n_pad[:, None]
    # the real tokens' first columns, compared across rows
    max_p = int((L - n_pad).min())
    first = torch.gather(ids, 1, (real_start + torch.arange(max_p, device=ids.device)[None]).clamp(max=L - 1))
    same = (first == first[:1]).all(0)
    P = int(same.long().cumprod(0).sum()) if B > 1 else 0
    slot = batch["audio_slot"] - n_pad  # slot in real-token coordinates
    P = min(P, int(slot.min()))
    # new column c holds old column: c < P -> n_pad + c; P <= c < P + n_pad -> a pad (c - P); else c
    src = torch.where(cols < P, cols + real_start, torch.where(cols < P + real_start, cols - P, cols))
    out = dict(batch)
    for key in ("input_ids", "attention_mask", "labels"):
        if key in batch and torch.is_tensor(batch[key]) and batch[key].shape == (B, L):
            out[key] = torch.gather(batch[key], 1, src)
    return out, P


def forward_shared_prefix(
    model, batch: dict, prefix_len: int, logits_at: torch.Tensor, past: KVCache | None = None
) -> torch.Tensor:
    """``model(batch, logits_at=logits_at, past=past)`` with the first ``prefix_len`` text columns (shared by
    every row, see :func:`shared_prefix_len`) run once. logits_at [B, Lt] bool must be False on the prefix;
    returns [n_selected, V] in the plain forward's order. ``past`` (empty) receives the whole sequence's cache."""
    P = int(prefix_len)
    if bool(logits_at[:, :P].any()):
        raise ValueError("forward_shared_prefix: logits requested inside the shared prefix")
    dev = model.embed.weight.device
    ids = batch["input_ids"].to(dev)
    B = ids.shape[0]
    plan = model.audio_plan(batch)
    if not bool((plan.text_index[:, :P] == torch.arange(P, device=dev)).all()):
        raise ValueError("forward_shared_prefix: the prefix must sit before every audio slot")
    cache = past if past is not None else KVCache(model.cfg.n_layers)
    model.decode(
        ids[:1, :P],
        attention_mask=plan.attention_mask[:1, :P],
        position_ids=plan.position_ids[:1, :P],
        past=cache,
        logits_at=torch.zeros(1, P, dtype=torch.bool, device=dev),
    )
    cache.broadcast(B)
    return model.decode(ids[:, P:], plan=plan.after_prefix(P), past=cache, logits_at=logits_at[:, P:].to(dev))
