"""Logit lens: the last layer reads the model's own output; 'no_audio' is the bare LLM; backends agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.analysis.tiny_pal import PROMPT_LEN, make_qa_batch, model
from workbench.analysis import logit_lens as LL


def _answer_is_top1(m, variant):
    """A batch whose first answer token is, by construction, the model's top-1 prediction."""
    batch = make_qa_batch(variant)
    top = m(batch)[:, PROMPT_LEN - 1].argmax(-1)
    batch["input_ids"][:, PROMPT_LEN] = top
    batch["labels"][:, PROMPT_LEN] = top
    return batch


@pytest.mark.parametrize("variant", ["delayed", "ensemble"])
def test_last_layer_is_the_output_and_no_audio_is_the_bare_llm(variant):
    m = model(variant)
    batch = _answer_is_top1(m, variant)
    df = LL.logit_lens(m, batch)
    assert len(df) == 2 * 2 * 2  # examples x layers x conditions
    last = df[(df.layer == 1) & (df.condition == "audio")]
    assert (last["rank"] == 0).all()
    probs = m(batch)[:, PROMPT_LEN - 1].softmax(-1)[torch.arange(2), batch["input_ids"][:, PROMPT_LEN]]
    assert np.allclose(last.prob, probs.numpy(), atol=1e-5)
    # no_audio = the bare LLM on the text with the layout's position ids, at every layer
    layout = m.token_layout(batch)
    pos = layout.position_ids.gather(1, layout.text_index)
    ans = batch["input_ids"][:, PROMPT_LEN]
    for layer in range(2):
        if layer == 1:
            resid = m.decode(batch["input_ids"], position_ids=pos)[:, PROMPT_LEN - 1]
            p = resid.softmax(-1)[torch.arange(2), ans]
        else:
            resid = m.decode(batch["input_ids"], position_ids=pos, stop_at_layer=1)[:, PROMPT_LEN - 1]
            p = m.unembed(m.ln_final(resid)).softmax(-1)[torch.arange(2), ans]
        got = df[(df.layer == layer) & (df.condition == "no_audio")].prob.to_numpy()
        assert np.allclose(got, p.numpy(), atol=1e-5), layer
    # the audio matters in these random models: the two conditions differ at the last layer
    assert not np.allclose(last.prob, df[(df.layer == 1) & (df.condition == "no_audio")].prob, atol=1e-4)


def test_backends_agree_summary_and_figure():
    m = model("lal")
    batches = [make_qa_batch("lal", seed=0), make_qa_batch("lal", seed=1)]
    df = LL.logit_lens(m, batches)
    assert sorted(df.example.unique()) == [0, 1, 2, 3]
    assert df.equals(LL.logit_lens(m, batches, backend="nnsight"))
    s = LL.summarize(df)
    assert len(s) == 4 and (s.n == 4).all()
    # LAL starts at layer 1: at layer 0 the text has not seen audio, so both conditions are identical
    l0 = df[df.layer == 0].pivot(index="example", columns="condition", values="prob")
    assert np.allclose(l0.audio, l0.no_audio, atol=1e-6)
    fig = LL.fig_logit_lens(df)
    assert fig.layout.title.text and "layer" in fig.layout.xaxis.title.text


def test_bad_inputs():
    m = model("lal")
    batch = make_qa_batch("lal")
    with pytest.raises(IndexError, match="out of range"):
        LL.logit_lens(m, batch, layers=[5])
    with pytest.raises(ValueError, match="unknown condition 'silence'"):
        LL.logit_lens(m, batch, conditions=("silence",))
    no_answer = dict(batch, labels=torch.full_like(batch["labels"], -100))
    no_answer.pop("prompt_len")
    with pytest.raises(ValueError, match="no answer tokens"):
        LL.logit_lens(m, no_answer)
