"""nnsight reads a trace's body from source, so the traces live in this file (imported by the test)."""

from __future__ import annotations

import torch
from nnsight import NNsight


def read_activations(model, ids: torch.Tensor, layer: int):
    """Save resid_post, attention pattern and z of one layer, and the logits, through nnsight."""
    wrapped = NNsight(model)
    with wrapped.trace(ids):
        pattern = wrapped.blocks[layer].attn.hook_pattern.output.save()
        z = wrapped.blocks[layer].attn.hook_z.output.clone().save()
        resid = wrapped.blocks[layer].hook_resid_post.output.save()
        logits = wrapped.output.save()
    return {"pattern": pattern, "z": z, "resid_post": resid, "logits": logits}


def zero_head(model, ids: torch.Tensor, layer: int, head: int) -> torch.Tensor:
    """Logits with one head's output (hook_z) set to zero, through nnsight."""
    wrapped = NNsight(model)
    with wrapped.trace(ids):
        wrapped.blocks[layer].attn.hook_z.output[:, :, head] = 0
        logits = wrapped.output.save()
    return logits
