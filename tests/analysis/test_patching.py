"""Activation patching on tiny random PAL models: full patches restore exactly 1, empty ones 0."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tests.analysis.fakes import D_MEL, FakeDataset, build, enc_spec, fake_batch_pair
from workbench.analysis.patching import (
    PatchingError,
    make_pairs,
    patch_batch,
    patch_dataset,
    patching_figure,
    summarize_patching,
)

LAL1 = enc_spec(mode="lal", layer=1, adapter=True, gate=True)
PLITS0 = enc_spec(mode="plits", layer=0)
WHISPER_LAL0 = enc_spec(name="whisper", dim=8, mode="lal", layer=0, connector="qformer")
DIMS = {"mel": D_MEL, "whisper": 8}


@pytest.fixture(scope="module")
def models(tiny_dir, tok):
    return {
        "lal1": build(tiny_dir, tok, LAL1),
        "plits0": build(tiny_dir, tok, PLITS0),
        "hybrid": build(tiny_dir, tok, PLITS0, WHISPER_LAL0),
    }


def _summary(model, sites, backend="transformer_lens", dims=None):
    dims = dims or {e: DIMS[e] for e in model.encoder_names}
    clean, corr = fake_batch_pair(dims)
    items = patch_batch(model, clean, corr, torch.tensor([5, 6]), torch.tensor([7, 8]), sites, backend=backend)
    return items, summarize_patching(items).set_index(["site", "layer", "head", "encoder"])["restored"]


def test_full_patches_restore_exactly_one_and_text_before_audio_restores_zero(models):
    _, s = _summary(models["lal1"], "audio_kv,head_out,connector")
    assert s[("connector", -1, -1, "mel")] == 1.0
    assert s[("audio_kv", -1, -1, "mel")] == 1.0 and s[("audio_kv", 1, -1, "mel")] == 1.0  # only layer 1 reads audio
    layer0 = s.xs(("head_out", 0), level=["site", "layer"])
    assert (layer0 == 0).all()  # before the audio arrives, clean and corrupted heads are the same
    assert (s.xs(("head_out", 1), level=["site", "layer"]).abs() > 1e-3).any()


def test_plits_residual_at_the_insertion_layer_restores_one(models):
    _, s = _summary(models["plits0"], "resid_audio,connector")
    assert s[("resid_audio", 0, -1, "mel")] == 1.0 and s[("connector", -1, -1, "mel")] == 1.0
    assert s[("resid_audio", 1, -1, "mel")] != pytest.approx(1.0)


def test_ensemble_connectors_all_restore_one_and_backends_agree(models):
    items_tl, s = _summary(models["hybrid"], "audio_kv,resid_audio,connector")
    assert s[("connector", -1, -1, "all")] == 1.0
    assert s[("connector", -1, -1, "mel")] != pytest.approx(1.0)
    items_nn, _ = _summary(models["hybrid"], "audio_kv,resid_audio,connector", backend="nnsight")
    pd.testing.assert_frame_equal(items_tl, items_nn)


def test_make_pairs_and_patch_dataset(models, tok, tmp_path, monkeypatch):
    import workbench.analysis.patch_pairs as P  # make_pairs reads the answer token there

    monkeypatch.setattr(P, "_first_answer_token", lambda ds, row: 10 + len(row["answer"]))
    ds = FakeDataset(tok, tmp_path, n=12)
    pairs = make_pairs(
        ds, "pitch_class", answer_options={"pitch_class": ["low", "medium", "high"], "category": ["tone", "noise"]}
    )
    assert len(pairs) >= 3
    for p in pairs.itertuples():
        a, b = ds.rows[p.clean], ds.rows[p.corrupted]
        assert a["question"] == b["question"] and a["answer"] != b["answer"] and p.clean_token != p.corrupted_token
    assert len(set(pairs["clean"]) | set(pairs["corrupted"])) == 2 * len(pairs)
    items = patch_dataset(models["lal1"], ds, pairs, "connector,head_out", batch_size=4)
    s = summarize_patching(items)
    assert (s[s["site"] == "connector"]["restored"] == 1.0).all() and s["n_pairs"].eq(len(pairs)).all()
    assert len(patching_figure(s).data) >= 1
    with pytest.raises(PatchingError, match="attributes in this data"):
        make_pairs(ds, "tempo_class", answer_options={})


def test_bad_requests_name_the_fix(models):
    clean, corr = fake_batch_pair({"mel": D_MEL})
    m = models["plits0"]
    with pytest.raises(PatchingError, match="unknown patching site.*audio_kv"):
        patch_batch(m, clean, corr, 1, 2, "attn_everything")
    with pytest.raises(PatchingError, match="needs a LAL encoder"):
        patch_batch(m, clean, corr, 1, 2, "audio_kv")
    with pytest.raises(PatchingError, match="encoders are \\['mel'\\]"):
        patch_batch(m, clean, corr, 1, 2, "connector", encoders="clap")
    other = dict(corr, input_ids=corr["input_ids"].roll(1, 1))
    with pytest.raises(PatchingError, match="same prompt"):
        patch_batch(m, clean, other, 1, 2, "connector")
    with pytest.raises(IndexError, match="out of range"):
        patch_batch(m, clean, corr, 1, 2, "resid_audio", layers=[5])


def test_cli(models, tok, tmp_path, monkeypatch, capsys):
    import workbench.analysis.patch_pairs as P  # make_pairs reads the answer token there
    import workbench.analysis.patching_command as PC
    import workbench.patch as cli

    monkeypatch.setattr(P, "_first_answer_token", lambda ds, row: 10 + len(row["answer"]))
    ds = FakeDataset(tok, tmp_path, n=8)
    monkeypatch.setattr(PC, "load_for_analysis", lambda *a, **k: (models["lal1"], ds))  # run_patch_command's
    out = tmp_path / "out"
    assert cli.main(["--attribute", "pitch_class", "--sites", "audio_kv,connector", "--out-dir", str(out)]) == 0
    df = pd.read_csv(out / "patching_pitch_class.csv")
    assert (df[df["site"] == "connector"]["restored"] == 1.0).all()
    assert (out / "patching_pitch_class_items.csv").is_file() and (out / "patching_pitch_class.html").is_file()
    assert cli.main(["--sites", "resid_audio", "--out-dir", str(out)]) == 2
    assert "needs a PLITS encoder" in capsys.readouterr().err


def test_grouped_patched_runs_give_the_numbers_of_one_run_per_site(models):
    clean, corr = fake_batch_pair(DIMS)
    m, ids = models["hybrid"], (torch.tensor([5, 6]), torch.tensor([7, 8]))
    sites = "audio_kv,resid_audio,head_out,connector"
    one = patch_batch(m, clean, corr, *ids, sites, group=1)
    assert len(one) == 2 * (
        2 + 2 + 16 + 2 + 3
    )  # 2 pairs x (audio_kv 2 layers + all, resid 2 + all, 16 heads, connectors)
    for backend, group in (("transformer_lens", 7), ("transformer_lens", 100), ("nnsight", 3)):
        many = patch_batch(m, clean, corr, *ids, sites, backend=backend, group=group)
        pd.testing.assert_frame_equal(one, many, check_exact=False, rtol=1e-5, atol=1e-6)
    with pytest.raises(PatchingError, match="group must be >= 1"):
        patch_batch(m, clean, corr, *ids, sites, group=0)
