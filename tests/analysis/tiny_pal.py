"""Tiny random PAL models and batches for the analysis tests (built once per test session, cached)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch

from tests.model.tiny_models import D_MEL, build, enc_spec, make_batch, tiny_llama_checkpoint

VARIANTS = {
    "baseline": [enc_spec(mode="plits", layer=0)],
    "delayed": [enc_spec(mode="plits", layer=1)],
    "lal": [enc_spec(mode="lal", layer=1, adapter=True, gate=True)],
    "ensemble": [
        enc_spec(mode="plits", layer=0),
        enc_spec(name="whisper", dim=8, mode="lal", layer=0, connector="qformer"),
    ],
}
DIMS = {"mel": D_MEL, "whisper": 8}
PROMPT_LEN = 6  # make_qa_batch: tokens 0..5 are the prompt, 6..8 the answer


@functools.cache
def tokenizer():
    from workbench.model.llm import load_tokenizer

    return load_tokenizer("smollm2")


@functools.cache
def tiny_llama():
    folder = Path(tempfile.mkdtemp(prefix="pal-analysis-tiny-llama-"))
    return tiny_llama_checkpoint(folder)


@functools.cache
def model(variant: str, n_tokens: int | None = None):
    specs = VARIANTS[variant]
    if n_tokens is not None:
        specs = [dict(s, connector=dict(s["connector"], n_tokens=n_tokens)) for s in specs]
    return build(tiny_llama(), tokenizer(), *specs)


def make_qa_batch(variant: str = "baseline", B: int = 2, lengths=None, frames=(7, 5), seed: int = 0) -> dict:
    """make_batch with a prompt/answer split: labels -100 on the prompt (first PROMPT_LEN tokens) and padding."""
    dims = {s["name"]: DIMS[s["name"]] for s in VARIANTS[variant]}
    batch = make_batch(B=B, Lt=9, slot=4, frames=frames[:B], dims=dims, seed=seed, lengths=lengths)
    labels = batch["input_ids"].clone()
    labels[:, :PROMPT_LEN] = -100
    labels[batch["attention_mask"] == 0] = -100
    batch["labels"] = labels
    batch["prompt_len"] = torch.full((B,), PROMPT_LEN)
    return batch


def fresh_model(variant: str, n_tokens: int | None = None):
    """An uncached model (for tests that edit weights)."""
    return model.__wrapped__(variant, n_tokens)
