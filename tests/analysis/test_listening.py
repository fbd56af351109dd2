"""Listening heads: heads planted to copy audio rank first, a head that never sees audio scores exactly 0, both
backends agree; the ablation's bookkeeping is checked where the answer is known (k = every head: the random
draws are the top set)."""

import numpy as np
import pytest
import torch

from tests.analysis.planted import OPTION_IDS, OPTIONS, fake_dataset
from tests.analysis.tiny_pal import fresh_model, model
from workbench.analysis.audio_conditions import AudioAnalysisError
from workbench.analysis.listening import listening_ablation, listening_scores, top_heads

PLANTED = [(1, 2), (1, 5)]


@pytest.fixture(scope="module")
def planted():
    """LAL@1: layer 1's audio gate is +20 for heads 2 and 5 (they read the audio), -20 for the others."""
    m = fresh_model("lal")
    with torch.no_grad():
        gate = m.lal_gates["mel_L1"]
        gate.fill_(-20.0)
        for _, h in PLANTED:
            gate[h] = 20.0
    return m


def test_planted_heads_rank_first_and_deaf_heads_score_zero(planted):
    s = listening_scores(planted, fake_dataset(), silence="zeros")
    assert sorted(top_heads(s, 2)) == PLANTED
    layer0 = s[s.layer == 0]
    assert (layer0["score"] == 0).all() and (layer0["delta_norm"] == 0).all()  # audio enters at layer 1
    assert (layer0["audio_mass"] == 0).all()
    l1 = s[s.layer == 1].set_index("head")
    assert (l1.loc[[h for _, h in PLANTED], "audio_mass"] > 0.99).all()
    assert l1.drop(index=[h for _, h in PLANTED])["audio_mass"].max() < 1e-6
    top_score = l1.loc[[h for _, h in PLANTED], "score"].min()
    assert l1.drop(index=[h for _, h in PLANTED])["score"].max() < 1e-3 * top_score


@pytest.mark.parametrize("variant", ["baseline", "ensemble"])
def test_backends_give_the_same_scores(variant):
    ds = fake_dataset() if variant == "baseline" else None
    if ds is None:
        import tempfile
        from pathlib import Path

        from tests.analysis.fakes import FakeDataset, shared_tokenizer
        from tests.analysis.tiny_pal import DIMS

        ds = FakeDataset(shared_tokenizer(), Path(tempfile.gettempdir()), n=4, dims=DIMS)
    a = listening_scores(model(variant), ds, silence="zeros")
    b = listening_scores(model(variant), ds, silence="zeros", backend="nnsight")
    assert a[["layer", "head", "rank"]].equals(b[["layer", "head", "rank"]])
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a["audio_mass"], b["audio_mass"], rtol=1e-5, atol=1e-7)
    assert (a["score"] > 0).any()


def test_ablation_of_every_head_matches_its_random_draws(planted):
    ds = fake_dataset()
    s = listening_scores(planted, ds, silence="zeros")
    n = len(s)
    t = listening_ablation(
        planted, ds, s, k=n, draws=2, answer_options=OPTIONS, option_ids=OPTION_IDS, resamples=200
    ).set_index(["condition", "metric"])
    for metric in ("answer_logprob", "option_accuracy"):
        assert t.loc[("top-k", metric), "delta"] == pytest.approx(t.loc[("random", metric), "delta"], abs=1e-9)
        assert t.loc[("top_minus_random", metric), "delta"] == pytest.approx(0, abs=1e-9)
    assert t.loc[("top-k", "answer_logprob"), "delta"] != 0  # ablating every head changes the answers
    t2 = listening_ablation(
        planted, ds, s, k=2, draws=3, answer_options=OPTIONS, option_ids=OPTION_IDS, resamples=200
    ).set_index(["condition", "metric"])
    assert sorted(t2.loc[("top-k", "answer_logprob"), "heads"].split(";")) == ["L1H2", "L1H5"]
    lo, hi = t2.loc[("top-k", "answer_logprob"), ["ci_low", "ci_high"]]
    assert lo <= t2.loc[("top-k", "answer_logprob"), "delta"] <= hi


def test_bad_input_names_the_fix(planted):
    s = listening_scores(planted, fake_dataset(n=2), silence="zeros")
    with pytest.raises(
        AudioAnalysisError, match="k=17 heads requested but the model has 16 heads.*--k between 1 and 16"
    ):
        listening_ablation(planted, fake_dataset(n=2), s, k=17)
    with pytest.raises(AudioAnalysisError, match="needs a model with audio"):
        listening_scores(torch.nn.Module(), fake_dataset(n=2))
    with pytest.raises(AudioAnalysisError, match="unknown silence"):
        listening_scores(planted, fake_dataset(n=2), silence="quiet")
