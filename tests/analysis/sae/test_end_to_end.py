"""End to end on the committed tiny baseline checkpoint (results/checkpoints/baseline/final, PLITS@0) and a few
clips of data/synth-tiny/val: collect connector rows by token role (checked against `run_with_cache` directly),
resume a cut collection, train a small SAE, save it in SAELens's format, measure it (the splice plumbing checked
against a direct zeroing of the hook and an identity "SAE"), score it against the clips' attributes, and write
feature pages that render in headless Chromium."""

import numpy as np
import pytest
import torch

from workbench.analysis.core import load_for_analysis
from workbench.analysis.sae.activations import RowStore, clip_view, collect_rows
from workbench.analysis.sae.metrics import answer_loss, loss_recovered, reconstruction_metrics, splice
from workbench.analysis.sae.saelens_format import load_sae
from workbench.analysis.sae.study import clip_features, score_attributes
from workbench.analysis.sae.train import TrainConfig, train_sae

HOOK = "connectors.whisper.hook_out"
N_CLIPS = 16


@pytest.fixture(scope="module")
def baseline():
    torch.set_num_threads(1)
    model, ds = load_for_analysis("results/checkpoints/baseline/final")
    keep = list(dict.fromkeys(r["file_name"] for r in ds.rows))[:N_CLIPS]
    ds.rows = [r for r in ds.rows if r["file_name"] in set(keep)]
    return model, ds


def test_collect_train_measure_score(baseline, tmp_path):
    model, ds = baseline
    n_tok = model.pal_cfg.encoders[0].connector.n_tokens
    # a collection cut after one batch, then resumed, equals the hook's output read directly
    part = collect_rows(model, ds, HOOK, "audio", tmp_path / "acts", batch_size=8, progress=False, max_batches=1)
    assert not part.complete and len(part) == 8 * n_tok
    store = collect_rows(model, ds, HOOK, "audio", tmp_path / "acts", batch_size=8, progress=False)
    assert store.complete and len(store) == N_CLIPS * n_tok and len(store.manifest["shards"]) == 2
    view = clip_view(ds)
    batch = view.collate_fn([view[i] for i in range(N_CLIPS)])
    _, cache = model.run_with_cache(batch, names_filter=[HOOK])
    X, meta = store.matrix(), store.meta
    assert np.allclose(X, cache[HOOK].reshape(-1, cache[HOOK].shape[-1]).numpy(), atol=1e-5)
    assert list(meta["token"][:n_tok]) == list(range(n_tok)) and meta["t1"].iloc[n_tok - 1] == pytest.approx(
        ds.rows[0]["duration_s"]
    )
    # answer positions: one row per clip, the last prompt token
    ans = collect_rows(model, ds, "blocks.2.hook_resid_post", "answer", tmp_path / "ans", progress=False)
    assert len(ans) == N_CLIPS

    sae, _log = train_sae(
        X,
        TrainConfig(width=64, k=4, batch_size=64, steps=60, warmup_steps=5),
        tmp_path / "sae",
        hook_name=HOOK,
        model_name="baseline",
        progress=False,
    )
    back = load_sae(tmp_path / "sae")
    assert back.hook_name == HOOK and torch.equal(back.W_dec, sae.W_dec)
    rec = reconstruction_metrics(sae, X)
    assert 0 < rec["explained_variance"] < 1 and rec["l0"] <= 4 and 0 <= rec["dead"] < 1

    # splice plumbing: zeroing the audio rows = zeroing the hook (every clip has audio); identity keeps the loss
    loss_rows = ds
    loss_rows.rows = ds.rows[:8]
    zero_direct = answer_loss(model, loss_rows, lambda bt: [(HOOK, torch.zeros_like)])
    zero_splice = answer_loss(model, loss_rows, lambda bt: [splice(model, sae, HOOK, "audio", bt, "zero")])
    assert zero_splice == pytest.approx(zero_direct, rel=1e-6)

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    lr = loss_recovered(model, Identity(), loss_rows, HOOK, "audio")
    assert lr["loss_sae"] == pytest.approx(lr["loss_clean"], rel=1e-6) and lr["loss_recovered"] == pytest.approx(1.0)
    assert lr["loss_zero"] > lr["loss_clean"]  # the trained baseline uses its audio

    _clips, F, Xc, first = clip_features(sae, X, meta)
    res = score_attributes("baseline", F, Xc, [meta.iloc[i].to_dict() for i in first], folds=3, bootstrap=20, ks=(1, 2))
    assert "category" in set(res.scores["attribute"])
    s = res.scores.set_index("attribute").loc["category"]
    assert 0 <= s["macro_auroc"] <= 1 and 0 <= s["sparse_k1"] <= 1 and 0 <= s["dense_accuracy"] <= 1


def test_feature_pages_render_in_chromium(baseline, tmp_path):
    from workbench.analysis.sae.pages import write_pages
    from workbench.reporting.browser_check import check_report

    model, ds = baseline
    store = collect_rows(model, ds, HOOK, "audio", tmp_path / "acts", progress=False)
    sae, _ = train_sae(
        store.matrix(),
        TrainConfig(width=32, k=4, batch_size=64, steps=30, warmup_steps=5),
        hook_name=HOOK,
        model_name="baseline",
        progress=False,
    )
    index = write_pages(model, sae, store, ds.root, tmp_path / "pages", n_features=2, top_clips=2)
    pages = sorted(index.parent.glob("feature_*.html"))
    assert len(pages) == 2 and "feature_" in index.read_text()
    report = check_report(pages[0])
    assert report["ok"], report
    assert report["figures_rendered"] == report["figures_expected"] >= 2
    assert "data:audio/wav;base64," in pages[0].read_text()


def test_cli_names_the_missing_file(tmp_path, capsys):
    from workbench.sae import main

    assert main(["score", "--sae", str(tmp_path / "nope")]) == 2
    assert "cfg.json" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="collect them first"):
        RowStore(tmp_path).matrix()
