"""HookedDecoder reproduces the transformers model's logits (fp32; SmolLM2 max abs diff <= 1e-3, tiny <= 1e-4)."""

from __future__ import annotations

import pytest
import torch

TOL = 1e-4  # tiny random models (logits ~1, 2 layers)
# SmolLM2: two correct fp32 computations that sum in another order (another implementation, a padded batch
# = other matrix shapes, another CPU's kernels) drift apart through 30 layers by about
# eps * sqrt(n_layers * d_ff) = 1.2e-7 * sqrt(30 * 1536) = 2.6e-5 of the logit scale (~40 here): ~1e-3.
# Measured max |diff|: 0 to 7.3e-5 with AVX-512 kernels, 8.2e-5 to 1.06e-4 with AVX2 kernels and 2 threads
# (which failed the former bound 1e-4). A wrong mask, position id or weight moves logits by far more.
SMOLLM2_TOL = 1e-3
PROMPTS = [
    "Hi",
    "What is the capital of France?",
    "Describe, in three careful sentences, the sound of rain falling on a tin roof at night. " * 3,
]


def chat_ids(tok, text):
    return tok.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, return_tensors="pt"
    )["input_ids"]


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_smollm2_logits_match_transformers(smollm2, hf_smollm2, implementation):
    model, tok = smollm2
    model.set_attention_implementation(implementation)
    hf_smollm2.set_attn_implementation(implementation)  # same kernel on both sides: bit-identical here
    try:
        for text in PROMPTS:
            ids = chat_ids(tok, text)
            with torch.no_grad():
                ours = model(ids)
                ref = hf_smollm2(ids).logits
            assert ours.shape == ref.shape == (1, ids.shape[1], 49152)
            assert (ours - ref).abs().max().item() <= SMOLLM2_TOL, text
    finally:
        model.set_attention_implementation("eager")
        hf_smollm2.set_attn_implementation("sdpa")


@pytest.mark.parametrize("side", ["right", "left"])
def test_smollm2_padded_batch_matches_transformers_and_unpadded(smollm2, hf_smollm2, side):
    model, tok = smollm2
    texts = [
        tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False)
        for t in PROMPTS
    ]
    tok.padding_side = side
    enc = tok(texts, return_tensors="pt", padding=True)
    pos = model.default_position_ids(enc.attention_mask)
    with torch.no_grad():
        ours = model(enc.input_ids, attention_mask=enc.attention_mask)
        ref = hf_smollm2(enc.input_ids, attention_mask=enc.attention_mask, position_ids=pos).logits
        real = enc.attention_mask.bool()
        assert (ours - ref)[real].abs().max().item() <= SMOLLM2_TOL
        for i, text in enumerate(PROMPTS):  # each item equals its unpadded run
            alone = model(chat_ids(tok, text))[0]
            assert (ours[i][real[i]] - alone).abs().max().item() <= SMOLLM2_TOL
        if side == "left":  # the bound is not vacuous: ignoring the padding mask moves logits far beyond it
            assert (model(enc.input_ids) - ours)[real].abs().max().item() > 100 * SMOLLM2_TOL


def test_tiny_random_models_match_transformers(tiny_pair):
    name, hf, model = tiny_pair
    torch.manual_seed(1)
    ids = torch.randint(0, 97, (3, 40))
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0  # right padding on one item
    pos = model.default_position_ids(mask)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask)
        ref = hf(ids, attention_mask=mask, position_ids=pos).logits
    diff = (ours - ref)[mask.bool()].abs().max().item()
    assert diff <= TOL, f"{name}: {diff}"
    # the comparison is sensitive: a perturbed weight breaks it
    with torch.no_grad():
        model.blocks[1].attn.k_proj.weight[0, 0] += 0.5
        assert (model(ids, attention_mask=mask) - ref)[mask.bool()].abs().max().item() > TOL
