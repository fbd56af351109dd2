"""Linear probes on time-averaged tokens separate tones from noise bursts for every encoder here."""

import pytest
import torch


@pytest.mark.parametrize("name", ["whisper", "mel"])
def test_tone_vs_noise(name, sound_classes, whisper, mel, mean_pool, probe_accuracy):
    import numpy as np

    enc = {"whisper": whisper, "mel": mel}[name]
    waves, y = sound_classes
    batch, lengths = enc.prepare(waves, 16000)
    with torch.no_grad():
        X = mean_pool(*enc(batch, lengths))
    acc = probe_accuracy(X, y)
    assert acc >= 0.9, f"{name}: {acc}"
    # the probe can fail: shuffled labels give chance-level accuracy
    acc_shuf = probe_accuracy(X, np.random.default_rng(1).permutation(y))
    assert acc_shuf < 0.8
