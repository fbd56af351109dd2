"""Planted features: activations built from known sparse directions plus noise. A TopK SAE must recover the
directions (each planted direction matched by a decoder row with cosine > 0.9), and the ground-truth scorer must
find the feature of the planted attribute (its best single feature is the one aligned with the attribute's
direction, AUROC near 1). The oracle is the construction itself, not our code."""

import numpy as np
import torch

from workbench.analysis.sae.scores import auroc_columns, best_feature_scores, sparse_probe, splitting_absorption
from workbench.analysis.sae.stability import max_decoder_cosine, stability
from workbench.analysis.sae.train import TrainConfig, train_sae

D_IN, N_TRUE, ACTIVE, N_ROWS = 32, 48, 3, 6000


def planted(seed=0):
    """rows [n, D_IN] = sum of ACTIVE random unit directions (of N_TRUE) with magnitudes in [1, 3] + noise 0.02,
    plus a clip attribute: rows whose direction 0 is active are 'on', the rest 'off'."""
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((N_TRUE, D_IN))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    codes = np.zeros((N_ROWS, N_TRUE))
    for i in range(N_ROWS):
        codes[i, rng.choice(N_TRUE, ACTIVE, replace=False)] = rng.uniform(1, 3, ACTIVE)
    x = codes @ dirs + 0.02 * rng.standard_normal((N_ROWS, D_IN)) + 0.5  # an offset for b_dec to find
    label = np.where(codes[:, 0] > 0, "on", "off").astype(object)
    return x.astype(np.float32), dirs, label


def test_topk_sae_recovers_planted_directions_and_the_scorer_finds_the_attribute(tmp_path):
    x, dirs, label = planted()
    cfg = TrainConfig(
        width=64,
        k=ACTIVE,
        batch_size=256,
        steps=1500,
        lr=3e-3,
        warmup_steps=50,
        dead_after=2000,
        seed=0,
        checkpoint_every=10_000,
    )
    torch.set_num_threads(1)
    sae, log = train_sae(x, cfg, tmp_path / "sae", progress=False)
    cos, _ = max_decoder_cosine(torch.as_tensor(dirs), sae.W_dec.detach())
    assert float(cos.min()) > 0.9, f"planted directions recovered: min cosine {float(cos.min()):.3f}"
    with torch.no_grad():
        feats = sae.encode(torch.as_tensor(x)).numpy()
        x_hat = sae.decode(torch.as_tensor(feats)).numpy()
    ev = 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert ev > 0.95 and log["l0"].iloc[-1] <= ACTIVE
    # the scorer: the best feature for "on" is the decoder row closest to planted direction 0
    df, _oof = best_feature_scores(feats[:1000], label[:1000], attribute="planted", folds=3)
    on = df.set_index("value").loc["on"]
    aligned = int(np.argmax(sae.decoder_directions().detach().numpy() @ dirs[0]))
    assert on["feature"] == aligned and on["auroc_cv"] > 0.97 and on["f1_cv"] > 0.9
    # k-sparse probing with one feature is enough; absorption: one precise feature, nothing absorbed
    assert sparse_probe(feats[:1000], label[:1000], 1, folds=3).mean() > 0.95
    sa = splitting_absorption(feats[:1000], label[:1000]).set_index("value").loc["on"]
    assert sa["main"] == aligned and sa["absorption"] < 0.05


def test_batchtopk_trains_a_jumprelu_threshold_and_seeds_agree(tmp_path):
    x, dirs, _ = planted(1)
    cfgs = [
        TrainConfig(
            width=64,
            k=ACTIVE,
            architecture="batchtopk",
            batch_size=256,
            steps=1200,
            lr=3e-3,
            warmup_steps=50,
            dead_after=2000,
            seed=s,
        )
        for s in (0, 1)
    ]
    torch.set_num_threads(1)
    a, _ = train_sae(x, cfgs[0], progress=False)
    b, _ = train_sae(x, cfgs[1], progress=False)
    assert bool(torch.isfinite(a.threshold).all()) and float(a.threshold.min()) > 0
    with torch.no_grad():
        l0 = float((a.encode(torch.as_tensor(x)) > 0).sum(1).float().mean())  # JumpReLU inference
    assert 0.5 * ACTIVE < l0 < 2 * ACTIVE
    cos, _ = max_decoder_cosine(torch.as_tensor(dirs), a.W_dec.detach())
    assert float(cos.min()) > 0.9
    # two seeds: every planted direction is found by both, so the planted features match across seeds
    both = stability(a, b)
    assert both["share_matched"] >= N_TRUE / 64 - 0.05


def test_auroc_columns_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    F = rng.integers(0, 4, (50, 5)).astype(float)  # ties on purpose
    y = rng.random(50) < 0.4
    ours = auroc_columns(F, y)
    assert np.allclose(ours, [roc_auc_score(y, F[:, j]) for j in range(5)])


def test_training_is_deterministic_and_resumes_exactly(tmp_path):
    x, _, _ = planted(2)
    cfg = TrainConfig(width=32, k=3, batch_size=128, steps=60, lr=3e-3, warmup_steps=10, checkpoint_every=20, seed=3)
    torch.set_num_threads(1)
    full, _ = train_sae(x, cfg, progress=False)
    # interrupted after 40 steps (state saved at 20 and 40), then resumed from the folder
    import workbench.analysis.sae.train as tr

    calls = {"n": 0}
    real = tr._losses

    def stop_after_40(*a, **k):
        calls["n"] += 1
        if calls["n"] > 40:
            raise KeyboardInterrupt
        return real(*a, **k)

    tr._losses = stop_after_40
    try:
        try:
            train_sae(x, cfg, tmp_path / "r", progress=False)
        except KeyboardInterrupt:
            pass
    finally:
        tr._losses = real
    assert (tmp_path / "r" / "train_state.pt").is_file()
    resumed, _ = train_sae(x, cfg, tmp_path / "r", progress=False)
    for n in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(full, n), getattr(resumed, n)), n
    assert not (tmp_path / "r" / "train_state.pt").exists()
