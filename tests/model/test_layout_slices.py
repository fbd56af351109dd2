"""What the analyses read from `TokenLayout`: LAL key slices and the text positions of the residual layout."""

from __future__ import annotations

import pytest
import torch

from tests.model.test_pal import VARIANTS
from tests.model.tiny_models import D_MEL, build, make_batch


def test_lal_key_slices_and_text_positions(tiny_llama_dir, tok):
    model = build(tiny_llama_dir, tok, *VARIANTS["ensemble_hybrid"])  # mel: PLITS@0, whisper: LAL@0
    batch = make_batch(B=2, frames=(6, 4), dims={"mel": D_MEL, "whisper": 8}, lengths=(9, 7))
    layout = model.token_layout(batch)
    keys = layout.audio_key_slice(1, "whisper")
    assert keys == slice(0, layout.audio["whisper"].n_tokens)
    assert torch.equal(layout.audio_key_index(1, "whisper"), torch.arange(keys.start, keys.stop).expand(2, -1))
    _, cache = model.run_with_cache(batch, names_filter="blocks.1.attn.hook_audio_k")
    assert cache["blocks.1.attn.hook_audio_k"][:, keys].shape[1] == keys.stop - keys.start
    with pytest.raises(ValueError, match="PLITS"):
        layout.audio_key_slice(1, "mel")
    text = layout.text_positions()
    assert text.shape == (2, layout.seq_len) and int(text.sum()) == 2 * batch["input_ids"].shape[1]
    audio = layout.audio_residual_index("mel")
    assert not text.gather(1, audio).any()  # PLITS audio slots are not text
    assert text.gather(1, layout.text_index).all()


def test_a_lal_encoder_has_no_keys_before_its_layer(tiny_llama_dir, tok):
    model = build(tiny_llama_dir, tok, *VARIANTS["lal"])  # mel: LAL@1
    layout = model.token_layout(make_batch(B=1, frames=(7,)))
    with pytest.raises(ValueError, match="enters at layer 1"):
        layout.audio_key_slice(0, "mel")
    assert layout.audio_key_slice(1, "mel") == slice(0, 3)
