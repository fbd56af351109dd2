"""The same activations and interventions through nnsight and through TransformerLens hooks."""

from __future__ import annotations

import torch

from tests.model import nnsight_trace


def test_nnsight_reads_the_cached_activations(smollm2):
    model, tok = smollm2
    ids = tok(["Listen to the sound of the sea"], return_tensors="pt").input_ids
    logits, cache = model.run_with_cache(ids)
    got = nnsight_trace.read_activations(model, ids, layer=9)
    assert torch.equal(got["pattern"], cache["blocks.9.attn.hook_pattern"])
    assert torch.equal(got["z"], cache["blocks.9.attn.hook_z"])
    assert torch.equal(got["resid_post"], cache["blocks.9.hook_resid_post"])
    assert torch.equal(got["logits"], logits)


def test_nnsight_head_ablation_equals_hook_ablation(smollm2):
    model, tok = smollm2
    ids = tok(["Listen to the sound of the sea"], return_tensors="pt").input_ids

    def zero(z, hook):
        z[:, :, 3] = 0
        return z

    by_hooks = model.run_with_hooks(ids, fwd_hooks=[("blocks.6.attn.hook_z", zero)])
    by_nnsight = nnsight_trace.zero_head(model, ids, layer=6, head=3)
    assert torch.equal(by_nnsight, by_hooks)
    assert (by_hooks - model(ids)).abs().max() > 1e-3
