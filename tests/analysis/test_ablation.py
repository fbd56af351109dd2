"""Audio ablations on tiny random PAL models, where the right answer is known by construction."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from tests.analysis.fakes import D_MEL, FakeDataset, build, enc_spec, fake_batch_pair
from workbench.analysis.ablation import (
    AblationError,
    ablate,
    ablation_interventions,
    ablation_sweep,
    audio_means,
    item_metrics,
    sweep_figure,
)
from workbench.analysis.core import run_with_interventions

LAL1 = enc_spec(mode="lal", layer=1, adapter=True, gate=True)
PLITS0 = enc_spec(mode="plits", layer=0)
PLITS1 = enc_spec(mode="plits", layer=1)


@pytest.fixture(scope="module")
def models(tiny_dir, tok):
    return {
        "lal1": build(tiny_dir, tok, LAL1),
        "plits0": build(tiny_dir, tok, PLITS0),
        "plits1": build(tiny_dir, tok, PLITS1),
    }


def _logits(model, batch, layers, mode, **kw):
    return run_with_interventions(model, batch, ablation_interventions(model, batch, layers, mode, **kw))


@pytest.mark.parametrize("name", ["lal1", "plits0", "plits1"])
@pytest.mark.parametrize("mode", ["block", "zero"])
def test_cutting_audio_at_every_layer_makes_the_output_independent_of_audio(models, name, mode):
    model = models[name]
    a, b = fake_batch_pair({"mel": D_MEL})
    assert (model(a) - model(b)).abs().max() > 1e-2  # the audio matters without the ablation
    la, lb = _logits(model, a, [0, 1], mode), _logits(model, b, [0, 1], mode)
    assert torch.allclose(la, lb, atol=1e-6)
    assert (la - model(a)).abs().max() > 1e-2


def test_ablation_at_the_only_audio_layer_changes_the_output_and_before_it_does_nothing(models):
    model = models["lal1"]  # 2 layers; audio is read at layer 1 only
    a, _ = fake_batch_pair({"mel": D_MEL})
    assert ablation_interventions(model, a, [0], "block") == []
    for mode in ("block", "zero"):
        assert (_logits(model, a, [1], mode) - model(a)).abs().max() > 1e-2


def test_ffn_ablation_equals_the_models_own_mlp_position_mask(models):
    model = models["plits0"]
    a, _ = fake_batch_pair({"mel": D_MEL})
    layout = model.token_layout(a)
    keep = torch.ones(2, layout.seq_len, dtype=torch.bool).scatter(1, layout.audio_residual_index("mel"), False)
    ref = model(a, mlp_position_mask=keep)
    assert torch.allclose(_logits(model, a, [0, 1], "ffn"), ref, atol=1e-6)
    assert (ref - model(a)).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["lal1", "plits1"])
def test_mean_ablation_over_one_example_is_a_no_op(models, name):
    model = models[name]
    a, _ = fake_batch_pair({"mel": D_MEL})
    one = {
        k: (v[:1] if torch.is_tensor(v) else {n: t[:1] for n, t in v.items()} if isinstance(v, dict) else v)
        for k, v in a.items()
    }
    means = audio_means(model, [one], [0, 1], ["mel"])
    assert means
    assert torch.allclose(_logits(model, one, [0, 1], "mean", means=means), model(one), atol=1e-5)
    zero = _logits(model, one, [0, 1], "zero")
    assert (zero - model(one)).abs().max() > 1e-3


def test_zero_audio_tokens_show_no_ablation_effect(tiny_dir, tok, tmp_path):
    spec = dict(LAL1, connector=dict(LAL1["connector"], n_tokens=0))
    model = build(tiny_dir, tok, spec)
    ds = FakeDataset(tok, tmp_path, n=4)
    table, _ = ablate(model, ds, [0, 1], "block", batch_size=4, max_new_tokens=2)
    assert len(table) and (table["delta"] == 0).all()


def test_tl_and_nnsight_give_identical_log_probabilities_and_generation_sees_the_hooks(models, tok, tmp_path):
    model = models["lal1"]
    ds = FakeDataset(tok, tmp_path, n=4)
    kw = dict(batch_size=4, max_new_tokens=3)
    tl, items_tl = ablate(model, ds, [1], "zero", **kw)
    nn, items_nn = ablate(model, ds, [1], "zero", backend="nnsight", **kw)

    def lp(t):
        return t[t["metric"] == "answer_logprob"].reset_index(drop=True)

    pd.testing.assert_frame_equal(lp(tl), lp(nn))
    assert (lp(tl)["delta"].abs() > 1e-4).any()
    assert items_nn["prediction"].isna().all() and items_tl["prediction"].notna().all()

    # generation under a full block is blind to audio: the same answers with the audio of other rows
    def blind(d):
        return item_metrics(model, d, lambda b: ablation_interventions(model, b, [0, 1], "block"), **kw)

    other = FakeDataset(tok, tmp_path, n=4, seed=0)
    for it, src in zip(other.items, reversed(ds.items)):
        it["audio_tokens"] = src["audio_tokens"]
    assert list(blind(ds)["prediction"]) == list(blind(other)["prediction"])


def test_sweep_table_and_figure(models, tok, tmp_path):
    model = models["plits1"]
    ds = FakeDataset(tok, tmp_path, n=4)
    t = ablation_sweep(model, ds, "zero", batch_size=4, accuracy=False)
    allrows = t[(t["task"] == "all") & (t["metric"] == "answer_logprob")].sort_values("layer_start")
    assert list(allrows["layer_start"]) == [0, 1] and list(allrows["layer_end"]) == [1, 1]
    # from layer 0 and from layer 1 cut the same audio (it enters at layer 1)
    assert allrows["delta"].iloc[0] == pytest.approx(allrows["delta"].iloc[1], abs=1e-6)
    fig = sweep_figure(t)
    assert fig.layout.xaxis2.title.text.endswith("(layer index)")  # the shared x axis, under the lower panel
    assert any(list(tr.x) == [0, 1] for tr in fig.data)  # one point per first ablated layer


def test_bad_requests_name_the_fix(models):
    model = models["lal1"]
    a, _ = fake_batch_pair({"mel": D_MEL})
    with pytest.raises(AblationError, match="out of range.*0..1"):
        ablation_interventions(model, a, [2], "block")
    with pytest.raises(AblationError, match="unknown encoder.*\\['mel'\\]"):
        ablation_interventions(model, a, [1], "block", encoders="whisper")
    with pytest.raises(AblationError, match="unknown ablation mode.*block"):
        ablation_interventions(model, a, [1], "silence")
    with pytest.raises(AblationError, match="ffn.*LAL"):
        ablation_interventions(model, a, [1], "ffn")
    with pytest.raises(AblationError, match="audio_means"):
        ablation_interventions(model, a, [1], "mean")


def test_cli_runs_and_reports_errors(models, tok, tmp_path, monkeypatch, capsys):
    import workbench.ablate as cli
    import workbench.analysis.ablation as ablation_lib

    ds = FakeDataset(tok, tmp_path, n=4)
    monkeypatch.setattr(
        ablation_lib, "load_for_analysis", lambda *a, **k: (models["plits1"], ds)
    )  # run_ablate_command's
    out = tmp_path / "out"
    assert cli.main(["--layer", "1", "--mode", "zero", "--out-dir", str(out), "--max-new-tokens", "2"]) == 0
    df = pd.read_csv(out / "ablation_zero_L1-1.csv")
    assert set(df["metric"]) == {"answer_logprob", "accuracy"} and (out / "ablation_zero_L1-1.html").is_file()
    assert cli.main(["--sweep", "--mode", "ffn", "--no-accuracy", "--out-dir", str(out)]) == 0
    assert (out / "ablation_sweep_ffn_from.csv").is_file()
    assert cli.main(["--layer", "7", "--out-dir", str(out)]) == 2
    assert "out of range" in capsys.readouterr().err
    assert cli.main(["--layer", "1", "--mode", "nope", "--out-dir", str(out)]) == 2
    assert cli.main(["--layer", "1", "--encoder", "clap", "--out-dir", str(out)]) == 2
    assert "this model's encoders are ['mel']" in capsys.readouterr().err


def test_cli_rejects_a_checkpoint_of_another_model(models, tiny_dir, tmp_path, capsys):
    import workbench.ablate as cli

    ckpt = models["lal1"].save_pretrained(tmp_path / "ckpt")
    meta = json.loads((ckpt / "config.json").read_text())
    meta["llm"]["n_layers"] = 30  # trained on another LLM
    (ckpt / "config.json").write_text(json.dumps(meta))
    assert cli.main(["--layer", "1", "--checkpoint", str(ckpt), "--data", str(tmp_path / "nodata")]) == 2
    assert "another LLM" in capsys.readouterr().err
    assert cli.main(["--layer", "1", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "python -m workbench.train" in capsys.readouterr().err
