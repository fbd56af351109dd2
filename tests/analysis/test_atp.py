"""Attribution patching: on a model where every effect is linear AtP equals exact patching to float precision
(every site kind, every layer, all layers at once); on a saturated softmax the QK fix recovers the effect of the
audio keys that plain AtP misses; agreement statistics and bad input."""

import numpy as np
import pandas as pd
import pytest
import torch

from tests.analysis.fakes import fake_batch_pair
from tests.analysis.planted import linearize, saturated_lal_model
from tests.analysis.tiny_pal import DIMS, VARIANTS, fresh_model, model
from workbench.analysis.atp import agreement, atp_batch, summarize_atp
from workbench.analysis.patching import PatchingError, patch_batch

KEYS = ["site", "layer", "head", "encoder", "pair"]
IDS = (torch.tensor([5, 6]), torch.tensor([7, 8]))


def _pair(variant):
    return fake_batch_pair({s["name"]: DIMS[s["name"]] for s in VARIANTS[variant]})


def _both(m, clean, corr, sites):
    est = atp_batch(m, clean, corr, *IDS, sites)
    exact = patch_batch(m, clean, corr, *IDS, sites)
    both = est.merge(exact.assign(effect=exact["patched_ld"] - exact["corrupted_ld"]), on=KEYS, suffixes=("", "_exact"))
    return est, exact, both


@pytest.mark.parametrize(
    "variant,sites",
    [
        ("lal", "audio_kv,head_out,connector"),
        ("baseline", "resid_audio,head_out,connector"),
        ("ensemble", "audio_kv,resid_audio,head_out,connector"),
    ],
)
def test_atp_equals_exact_patching_when_every_effect_is_linear(variant, sites):
    torch.manual_seed(0)  # build() draws adapters and gates from the global generator
    m = linearize(fresh_model(variant))
    clean, corr = _pair(variant)
    est, exact, both = _both(m, clean, corr, sites)
    assert len(both) == len(est) and set(both["site"]) == set(sites.split(","))  # every estimate has its exact
    joint = ((exact["layer"] == -1) & exact["site"].isin(["audio_kv", "resid_audio"])) | (
        (exact["site"] == "connector") & (exact["encoder"] == "all")
    )
    single = set(map(tuple, exact.loc[~joint, KEYS].to_numpy()))
    assert single <= set(map(tuple, est[KEYS].to_numpy()))  # and every single site patched exactly has its estimate
    scale = both["effect"].abs().max()
    assert scale > 1e-4  # the sites matter
    np.testing.assert_allclose(both["atp"], both["effect"], rtol=0, atol=2e-4 * scale)
    np.testing.assert_allclose(both["atp_qk"], both["effect"], rtol=0, atol=2e-4 * scale)
    np.testing.assert_allclose(both["clean_ld"], both["clean_ld_exact"], rtol=1e-6, atol=1e-6)
    all_layers = (both["layer"] == -1) & both["site"].isin(["audio_kv", "resid_audio"])
    assert all_layers.any() == ("audio_kv" in sites)  # all LAL layers at once: the sum of the estimates


def test_qk_fix_recovers_the_saturated_audio_keys():
    clean, corr = _pair("lal")
    m = saturated_lal_model(clean, corr)
    _, _, both = _both(m, clean, corr, "audio_kv")
    row = both[both["layer"] == 1]
    exact, plain, fixed = row["effect"].to_numpy(), row["atp"].to_numpy(), row["atp_qk"].to_numpy()
    ld_gap = (row["clean_ld"] - row["corrupted_ld"]).to_numpy()
    np.testing.assert_allclose(exact, ld_gap, rtol=1e-4)  # the only LAL layer's K/V carry all of the audio
    err = lambda est: np.abs(est - exact).sum() / np.abs(exact).sum()  # noqa: E731
    assert err(fixed) < 1e-3  # the pattern recomputed exactly, the rest is linear: exact up to float error
    assert err(plain) > 0.3  # the saturated softmax hides the keys from the gradient


def test_agreement_reports_spearman_and_top_overlap():
    m = model("ensemble")
    clean, corr = _pair("ensemble")
    est, exact, _ = _both(m, clean, corr, "audio_kv,resid_audio,head_out")
    s = summarize_atp(est, exact)
    a = agreement(s, top=5).set_index(["method", "sites"])
    assert set(a.index.get_level_values("sites")) == {"all", "head_out", "audio"}
    assert ((a["spearman"] >= -1) & (a["spearman"] <= 1)).all() and (
        (a["top_overlap"] >= 0) & (a["top_overlap"] <= 1)
    ).all()
    # with the exact effects as the "estimate" the agreement is perfect
    perfect = agreement(s.assign(atp=s["exact"]), top=5).set_index(["method", "sites"])
    assert np.allclose(perfect.xs("atp")["spearman"], 1.0) and (perfect.xs("atp")["top_overlap"] == 1).all()


def test_atp_needs_transformer_lens_hooks():
    clean, corr = _pair("lal")
    with pytest.raises(PatchingError, match="--backend transformer_lens"):
        atp_batch(model("lal"), clean, corr, *IDS, "head_out", backend="nnsight")
    with pytest.raises(PatchingError, match="unknown patching site"):
        atp_batch(model("lal"), clean, corr, *IDS, "heads")


def test_cli_method_atp(tok, tmp_path, monkeypatch, capsys):
    import workbench.analysis.patch_pairs as P  # make_pairs reads the answer token there
    import workbench.analysis.patching_command as PC
    import workbench.patch as cli
    from tests.analysis.fakes import FakeDataset

    monkeypatch.setattr(P, "_first_answer_token", lambda ds, row: 10 + len(row["answer"]))
    ds = FakeDataset(tok, tmp_path, n=8)
    monkeypatch.setattr(PC, "load_for_analysis", lambda *a, **k: (model("lal"), ds))  # run_patch_command's
    out = tmp_path / "out"
    assert cli.main(["--method", "atp", "--sites", "audio_kv,head_out", "--out-dir", str(out)]) == 0
    s = pd.read_csv(out / "atp.csv")
    assert {"atp", "atp_qk", "exact", "restored_exact"} <= set(s.columns) and len(s[s.site == "head_out"]) == 16
    a = pd.read_csv(out / "atp_agreement.csv")
    assert set(a["method"]) == {"atp", "atp_qk"} and (a["atp_seconds"] > 0).all() and (out / "atp.html").is_file()
    assert "spearman" in capsys.readouterr().out
    assert cli.main(["--method", "atp", "--backend", "nnsight", "--out-dir", str(out)]) == 2
    assert "--backend transformer_lens" in capsys.readouterr().err
