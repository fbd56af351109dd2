"""Attention to audio: zero where audio is cut, equal to the uniform reference where attention is uniform,
equal to a direct reading of the pattern, same numbers through both backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.analysis.tiny_pal import PROMPT_LEN, fresh_model, make_qa_batch, model
from workbench.analysis import attention as A


def test_cut_audio_gets_zero_mass():
    # no audio tokens at all
    df = A.attention_to_audio(model("baseline", n_tokens=0), make_qa_batch("baseline"))
    assert len(df) == 2 * 8 and (df.mass == 0).all() and (df.uniform_mass == 0).all() and df.ratio.isna().all()
    # LAL whose audio is all padding (mask False): keys invisible, no mass
    batch = make_qa_batch("lal")
    batch["audio_token_mask"]["mel"][:] = False
    df = A.attention_to_audio(model("lal"), batch)
    assert (df.mass == 0).all() and (df.uniform_mass == 0).all()
    # delayed PLITS: nothing visible at layer 0, real mass from layer 1 on
    df = A.attention_to_audio(model("delayed"), make_qa_batch("delayed"))
    assert (df[df.layer == 0].mass == 0).all() and df[df.layer == 0].ratio.isna().all()
    assert (df[df.layer == 1].mass > 0).all()


@pytest.mark.parametrize("variant", ["baseline", "delayed"])
def test_uniform_attention_equals_the_uniform_reference(variant):
    m = fresh_model(variant)
    with torch.no_grad():
        for block in m.blocks:
            block.attn.q_proj.weight.zero_()  # q = 0: every visible key gets the same score -> uniform attention
    batch = make_qa_batch(variant, lengths=(9, 7))
    for qs in A.QUERY_SETS:
        df = A.attention_to_audio(m, batch, qs)
        assert np.allclose(df.mass, df.uniform_mass, atol=1e-6), qs
        assert np.allclose(df[df.layer == 1].ratio, 1.0, atol=1e-5)
    # by hand: slot 4, 3 audio tokens; text query t >= 4 sees 4 text before the slot + 3 audio + (t - 3) text
    last = A.attention_to_audio(m, batch, "last_prompt")
    assert np.allclose(last[last.layer == 1].uniform_mass, 3 / (PROMPT_LEN - 1 + 4))
    after = A.attention_to_audio(m, batch, "after_slot")
    expected = (np.mean([3 / (t + 4) for t in range(4, 9)]) + np.mean([3 / (t + 4) for t in range(4, 7)])) / 2
    assert np.allclose(after[after.layer == 1].uniform_mass, expected)
    ans = A.attention_to_audio(m, batch, "answer")  # queries predicting answer tokens: t = 5..7 / 5..5
    expected = (np.mean([3 / (t + 4) for t in range(5, 8)]) + 3 / 9) / 2
    assert np.allclose(ans[ans.layer == 1].uniform_mass, expected)


def test_mass_equals_a_direct_reading_and_backends_agree():
    m = model("ensemble")
    batch = make_qa_batch("ensemble")
    df = A.attention_to_audio(m, batch, "last_prompt")
    nn = A.attention_to_audio(m, batch, "last_prompt", backend="nnsight")
    assert df.equals(nn)
    _, cache = m.run_with_cache(batch)
    layout = m.token_layout(batch)
    q = layout.text_index[:, PROMPT_LEN - 1]
    for layer in range(2):
        pat = cache[f"blocks.{layer}.attn.hook_pattern"]
        for enc in ("mel", "whisper"):
            idx = layout.audio_key_index(layer, enc)
            direct = torch.stack([pat[b, :, q[b]][:, idx[b]].sum(-1) for b in range(2)]).mean(0)
            got = df[(df.layer == layer) & (df.encoder == enc)].sort_values("head").mass.to_numpy()
            assert np.allclose(got, direct.numpy(), atol=1e-6), (layer, enc)
    assert (df.n == 2).all() and df.ratio.gt(0).all()


def test_per_token_view_and_figures():
    m = model("ensemble")
    batch = make_qa_batch("ensemble", lengths=(9, 7))
    tok = A.attention_tokens(m, batch, layer=1, head=3, example=1)
    assert set(tok.key_kind) == {"text", "mel", "whisper"}
    assert tok["query"].nunique() == 7  # padding queries left out
    assert np.allclose(tok.groupby("query").weight.sum(), 1.0, atol=1e-5)  # all visible keys listed
    assert "<mel:0>" in set(tok.key_token) and m.tokenizer.decode(batch["input_ids"][1, 0]) in set(tok.query_token)
    df = A.attention_to_audio(m, batch)
    for fig in (A.fig_heatmap(df), A.fig_layers(df), A.fig_tokens(tok)):
        assert fig.layout.title.text
    assert "layer" in A.fig_layers(df).layout.xaxis.title.text
    assert A.fig_heatmap(df).layout.yaxis.title.text == "layer (index)"


def test_bad_inputs():
    m = model("lal")
    batch = make_qa_batch("lal")
    with pytest.raises(IndexError, match="out of range"):
        A.attention_to_audio(m, batch, layers=[2])
    with pytest.raises(KeyError, match=r"unknown encoder\(s\) \['yamnet'\]"):
        A.attention_to_audio(m, batch, encoders=["yamnet"])
    with pytest.raises(ValueError, match="unknown query set 'everything'"):
        A.attention_to_audio(m, batch, "everything")
    with pytest.raises(IndexError, match="head 8 is out of range"):
        A.attention_tokens(m, batch, layer=0, head=8)
