"""Attribute lens: a planted model whose attribute becomes decodable at layer k gives critical layer k; both
backends give the same numbers; bad input names the fix."""

import numpy as np
import pytest

from tests.analysis.planted import OPTION_IDS, OPTIONS, fake_dataset, planted_lens_model
from tests.analysis.tiny_pal import model
from workbench.analysis.attribute_lens import attribute_lens, critical_layers, summarize_lens
from workbench.analysis.audio_conditions import AudioAnalysisError


@pytest.mark.parametrize("k", [1, 2])
def test_planted_attribute_gives_critical_layer_k(k):
    ds = fake_dataset()
    m = planted_lens_model(k, ds)
    df = attribute_lens(m, ds, OPTIONS, silence="zeros", option_ids=OPTION_IDS, conditions=("audio", "blocked"))
    audio = df[(df.condition == "audio") & (df.position == "last_prompt")]
    assert len(audio) == len(ds) * 3
    assert (audio.groupby("example")["critical_layer"].first() == k).all()
    assert not audio[audio.layer < k]["correct"].any() and audio[audio.layer >= k]["correct"].all()
    assert np.allclose(audio[audio.layer < k]["prob"], 1 / 3)  # zero residual: all options tie
    assert audio["final_correct"].all()
    s = summarize_lens(df)
    row = s[(s.condition == "audio") & (s.split == "all") & (s.layer == k)]
    assert float(row["accuracy"].iloc[0]) == 1.0 and float(row["critical_median"].iloc[0]) == k
    assert set(s["split"]) == {"all", "right"}  # no row answered wrong


def test_critical_layer_needs_the_right_option_to_stay_top1():
    import pandas as pd

    rows = []
    for ex, pattern in enumerate([[0, 1, 0, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [0, 0, 0, 0, 0]]):
        rows += [
            {"example": ex, "condition": "audio", "position": "last_prompt", "layer": l, "correct": bool(c)}
            for l, c in enumerate(pattern)
        ]
    crit = critical_layers(pd.DataFrame(rows)).set_index("example")["critical_layer"]
    assert crit[0] == 3 and crit[1] == 0 and np.isnan(crit[2]) and np.isnan(crit[3])


@pytest.mark.parametrize("variant", ["baseline", "lal"])
def test_backends_give_the_same_lens(variant):
    ds = fake_dataset()
    m = model(variant)
    kw = dict(silence="zeros", option_ids=OPTION_IDS)
    a = attribute_lens(m, ds, OPTIONS, **kw)
    b = attribute_lens(m, ds, OPTIONS, backend="nnsight", **kw)
    assert set(a["condition"]) == {"audio", "silence", "blocked"}
    assert (variant == "baseline") == ("audio:mel" in set(a["position"]))  # PLITS audio positions
    assert a[["example", "condition", "position", "layer", "correct", "critical_layer"]].equals(
        b[["example", "condition", "position", "layer", "correct", "critical_layer"]]
    )
    np.testing.assert_allclose(a["prob"], b["prob"], rtol=1e-6, atol=1e-7)


def test_bad_input_names_the_fix():
    ds = fake_dataset()
    with pytest.raises(AudioAnalysisError, match="unknown attribute 'colour'.*pitch_class"):
        attribute_lens(model("lal"), ds, OPTIONS, "colour", option_ids=OPTION_IDS)
    with pytest.raises(AudioAnalysisError, match="unknown condition"):
        attribute_lens(model("lal"), ds, OPTIONS, conditions=("loud",), option_ids=OPTION_IDS)
    from tests.model.tiny_models import make_tiny

    text_only = make_tiny("llama_gqa_llama3_rope")[1]  # a HookedDecoder: no encoders
    with pytest.raises(AudioAnalysisError, match="needs a model with audio.*--checkpoint"):
        attribute_lens(text_only, ds, OPTIONS, option_ids=OPTION_IDS)
