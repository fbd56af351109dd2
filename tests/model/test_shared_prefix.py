"""Running the prompt prefix every row shares once gives the plain forward's loss, gradients and answers."""

from __future__ import annotations

import pytest
import torch

from tests.model.test_pal import VARIANTS
from tests.model.tiny_models import D_MEL, build, make_batch
from workbench.model.kv_cache import KVCache
from workbench.model.shared_prefix import forward_shared_prefix, pads_after_prefix, shared_prefix_len


def _dims(variant):
    return {s["name"]: s["dim"] for s in VARIANTS[variant]}


def _training_batch(variant, prefix=5, slot=6):
    """Right-padded rows sharing their first ``prefix`` tokens, audio slot at ``slot``, answers at the end."""
    batch = make_batch(B=3, Lt=12, slot=slot, frames=(7, 5, 6), dims=_dims(variant), lengths=(12, 10, 11), seed=3)
    batch["input_ids"][:, :prefix] = batch["input_ids"][0, :prefix]
    labels = torch.full_like(batch["input_ids"], -100)
    for b, n in enumerate((12, 10, 11)):
        labels[b, n - 3 : n] = batch["input_ids"][b, n - 3 : n]
    batch["labels"] = labels
    return batch


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_loss_and_gradients_equal_the_plain_forward(tiny_llama_dir, tok, variant):
    model = build(tiny_llama_dir, tok, *VARIANTS[variant])
    model.enable_lora(rank=2, alpha=4, targets=["q_proj", "v_proj"])
    with torch.no_grad():  # LoRA B starts at 0: make it matter, so the prefix's own gradient is tested
        for name, p in model.named_parameters():
            if "lora" in name:
                p.normal_(0, 0.1)
    model.set_trainable(["connectors", "adapters", "lora"])
    batch = _training_batch(variant)
    assert shared_prefix_len(batch) == 5
    grads = {}
    for share in (False, True):
        model.zero_grad(set_to_none=True)
        loss = model.loss(batch, share_prefix=share)
        loss.backward()
        grads[share] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    (l0, g0), (l1, g1) = grads[False], grads[True]
    assert torch.allclose(l0, l1, atol=1e-5, rtol=1e-5)
    assert g0.keys() == g1.keys() and any("lora" in n for n in g0)
    for n in g0:
        assert torch.allclose(g0[n], g1[n], atol=1e-6, rtol=1e-4), n


def test_prefix_stops_at_the_audio_slot_and_at_padding(tiny_llama_dir, tok):
    batch = _training_batch("baseline", prefix=8, slot=6)
    assert shared_prefix_len(batch) == 6  # never past the slot: the prefix is text only
    batch["attention_mask"][1, 2] = 0
    assert shared_prefix_len(batch) == 2  # nor past a padded column
    one = {k: (v[:1] if torch.is_tensor(v) else v) for k, v in batch.items()}
    assert shared_prefix_len(one) == 0
    model = build(tiny_llama_dir, tok, *VARIANTS["baseline"])
    with pytest.raises(ValueError, match="inside the shared prefix"):
        forward_shared_prefix(model, _training_batch("baseline"), 5, torch.ones(3, 12, dtype=torch.bool))


def test_broadcast_only_takes_a_batch_one_cache():
    cache = KVCache(1)
    cache.append(0, torch.zeros(2, 3, 1, 4), torch.zeros(2, 3, 1, 4))
    with pytest.raises(ValueError, match="batch-1 cache"):
        cache.broadcast(4)


def _prompt_batch(variant):
    """Left-padded prompts whose real tokens share their first 5 (pads before them, as prompt_collate_fn makes)."""
    lengths = (9, 7, 8)
    batch = make_batch(B=3, Lt=9, slot=0, frames=(7, 5, 6), dims=_dims(variant), seed=5)
    shared = batch["input_ids"][0, :5].clone()
    for b, n in enumerate(lengths):
        pad = 9 - n
        batch["attention_mask"][b, :pad] = 0
        batch["input_ids"][b, :pad] = 0
        batch["input_ids"][b, pad : pad + 5] = shared
        batch["audio_slot"][b] = pad + 6
    batch.pop("labels")
    return batch


def test_pads_move_behind_the_prefix_without_changing_real_outputs(tiny_llama_dir, tok):
    batch = _prompt_batch("baseline")
    moved, P = pads_after_prefix(batch)
    assert P == 5
    assert torch.equal(moved["attention_mask"][:, :5], torch.ones(3, 5, dtype=torch.long))
    assert torch.equal(moved["audio_slot"], batch["audio_slot"])
    model = build(tiny_llama_dir, tok, *VARIANTS["delayed"])
    assert torch.allclose(model(moved)[:, -1], model(batch)[:, -1], atol=1e-5)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_generation_with_a_shared_prefix_gives_the_same_tokens(tiny_llama_dir, tok, variant):
    model = build(tiny_llama_dir, tok, *VARIANTS[variant])
    batch = _prompt_batch(variant)
    plain = model.generate_ids(batch, max_new_tokens=6)
    shared = model.generate_ids(batch, max_new_tokens=6, share_prefix=True)
    assert torch.equal(plain, shared)
    assert D_MEL in _dims(variant).values()
