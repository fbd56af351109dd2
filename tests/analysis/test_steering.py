"""Audio-silence steering: alpha = 0 is a no-op bit for bit, the direction is the mean audio - silence difference,
the protocol chooses alpha on validation and reports a paired test gain; bad alphas name the fix."""

import math

import pytest
import torch

from tests.analysis.planted import OPTION_IDS, OPTIONS, fake_dataset
from tests.analysis.tiny_pal import model
from workbench.analysis.audio_conditions import AudioAnalysisError
from workbench.analysis.core import run_with_interventions
from workbench.analysis.steering import head_steering_vectors, steer, steering_interventions, steering_vector


@pytest.mark.parametrize("variant", ["baseline", "lal"])
def test_alpha_zero_is_a_no_op_bit_for_bit(variant):
    m, ds = model(variant), fake_dataset()
    v = steering_vector(m, ds, silence="zeros")
    hv = head_steering_vectors(m, ds, [(1, 0), (1, 3)], silence="zeros")
    batch = ds.collate_fn([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        plain = m(batch)
    for kw in ({"vector": v}, {"head_vectors": hv}):
        for backend in ("transformer_lens", "nnsight"):
            same = run_with_interventions(m, batch, steering_interventions(m, batch, 0.0, **kw), backend=backend)
            assert torch.equal(same, plain)
        moved = run_with_interventions(m, batch, steering_interventions(m, batch, 1.0, **kw))
        assert not torch.equal(moved, plain)


def test_direction_is_the_mean_audio_minus_silence_residual():
    from workbench.analysis.audio_conditions import last_prompt_residual_index, make_silence
    from workbench.analysis.core import collect

    m, ds = model("baseline"), fake_dataset()
    v = steering_vector(m, ds, silence="zeros", batch_size=4)  # two batches
    sil = make_silence(m, ds, "zeros")
    a = ds.collate_fn([ds[i] for i in range(len(ds))])
    s = ds.collate_fn([sil(ds[i]) for i in range(len(ds))])
    name = f"blocks.{m.cfg.n_layers - 1}.hook_resid_post"
    pos = last_prompt_residual_index(m, a)
    ar = torch.arange(len(ds))
    ref = (collect(m, a, [name])[1][name][ar, pos] - collect(m, s, [name])[1][name][ar, pos]).mean(0)
    torch.testing.assert_close(v, ref, rtol=1e-5, atol=1e-6)
    assert v.norm() > 0


def test_protocol_chooses_alpha_on_validation_and_reports_a_paired_gain():
    m = model("lal")
    val, test = fake_dataset(n=6, seed=0), fake_dataset(n=6, seed=1)
    t = steer(
        m,
        val,
        test,
        OPTIONS,
        alphas=[-1, 1],
        modes=("resid", "heads"),
        heads=[(1, 2)],
        silence="zeros",
        option_ids=OPTION_IDS,
        resamples=200,
    )
    for mode in ("resid", "heads"):
        v = t[(t["mode"] == mode) & (t["split"] == "val")]
        assert sorted(v["alpha"]) == [-1, 0, 1]  # alpha 0 is always a candidate
        chosen = v[v["chosen"]]
        assert len(chosen) == 1 and float(chosen["accuracy"].iloc[0]) == v["accuracy"].max()
        g = t[(t["mode"] == mode) & (t["split"] == "gain")].set_index("metric")
        te = t[(t["mode"] == mode) & (t["split"] == "test")].set_index("alpha")
        a = float(g.loc["accuracy", "alpha"])
        assert g.loc["accuracy", "gain"] == pytest.approx(te.loc[a, "accuracy"] - te.loc[0.0, "accuracy"])
        assert g.loc["accuracy", "ci_low"] <= g.loc["accuracy", "gain"] <= g.loc["accuracy", "ci_high"]
        if a == 0:
            assert g.loc["accuracy", "gain"] == 0 and g.loc["right_logprob", "gain"] == 0


@pytest.mark.parametrize("alpha", [math.nan, math.inf, "big"])
def test_non_finite_alpha_names_the_fix(alpha):
    m, ds = model("lal"), fake_dataset(n=2)
    batch = ds.collate_fn([ds[0], ds[1]])
    with pytest.raises(AudioAnalysisError, match="alpha must be a finite number.*--alphas"):
        steering_interventions(m, batch, alpha, vector=torch.zeros(m.cfg.d_model))
    with pytest.raises(AudioAnalysisError, match="finite"):
        steer(m, ds, ds, OPTIONS, alphas=[1, alpha], silence="zeros", option_ids=OPTION_IDS)


def test_model_without_audio_names_the_fix():
    with pytest.raises(AudioAnalysisError, match="needs a model with audio.*--checkpoint"):
        steering_vector(torch.nn.Module(), fake_dataset(n=2))
