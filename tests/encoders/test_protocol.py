"""The encoder protocol, registry, batching across sample rates, and input validation."""

import numpy as np
import pytest
import torch
from transformer_lens.hook_points import HookPoint

from workbench.common.audio_io import AudioError
from workbench.encoders import AudioEncoder, EncoderInputError, available_encoders, load_encoder


def test_registry():
    names = available_encoders()
    assert {"whisper", "mel", "yamnet", "crepe"} <= set(names)
    with pytest.raises(KeyError, match="known encoders: crepe, mel, whisper, yamnet"):
        load_encoder("wav2vec-nonexistent")


def test_old_role_names_are_read_as_model_names(tmp_path):
    """``general``/``pitch`` (the names before encoders were named by model) still work wherever a name is read:
    the registry, a config's encoder list, a dataset's encoder list and the token cache."""
    from workbench.encoders import canonical_encoder_name
    from workbench.encoders.cache import TokenCache
    from workbench.model.pal_config import PALConfig

    assert canonical_encoder_name("general") == "yamnet" and canonical_encoder_name("pitch") == "crepe"
    assert canonical_encoder_name("whisper") == "whisper"
    cfg = PALConfig.from_dict({"encoders": [{"name": "general"}, {"name": "whisper"}]})
    assert cfg.encoder_names == ["yamnet", "whisper"]
    from workbench.encoders import ENCODER_ALIASES

    assert set(ENCODER_ALIASES.values()) <= set(available_encoders())
    with pytest.raises(KeyError, match="'yamnet'"):  # a name-only lookup of the old name reads the new folder
        TokenCache(tmp_path).entry_path(tmp_path / "x.wav", "general")


@pytest.mark.parametrize("name", ["whisper", "mel"])
def test_shapes_and_masks_multi_rate(name, multi_rate_files, whisper, mel):
    enc = {"whisper": whisper, "mel": mel}[name]
    assert isinstance(enc, AudioEncoder) and isinstance(enc.hook_out, HookPoint)
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training
    paths = [p for p, _ in multi_rate_files]
    tokens, mask = enc.encode_files(paths)
    B = len(paths)
    assert tokens.ndim == 3 and tokens.shape[0] == B and tokens.shape[2] == enc.dim
    assert mask.shape == tokens.shape[:2] and mask.dtype == torch.bool
    for i, (_, secs) in enumerate(multi_rate_files):
        n = int(mask[i].sum())
        assert abs(n - secs * enc.frames_per_second) <= 1.01, (paths[i], n, secs)
        assert mask[i, :n].all() and not mask[i, n:].any()  # valid tokens come first
        assert tokens[i, n:].abs().sum() == 0
        assert tokens[i, :n].abs().sum() > 0
    assert tokens.shape[1] == int(mask.sum(1).max())
    assert torch.isfinite(tokens).all()


@pytest.mark.parametrize("name", ["whisper", "mel"])
def test_batch_invariance(name, speech_wav, whisper, mel):
    """A clip's tokens do not depend on how long its batch-mates are."""
    enc = {"whisper": whisper, "mel": mel}[name]
    alone, m1 = enc.encode_files([speech_wav])
    long_noise = np.random.default_rng(0).standard_normal(16000 * 5).astype(np.float32) * 0.1
    from workbench.common.audio_io import load_audio

    w, _ = load_audio(speech_wav, 16000)
    waves, lengths = enc.prepare([w, long_noise], 16000)
    together, m2 = enc(waves, lengths)
    n = int(m1[0].sum())
    assert int(m2[0].sum()) == n and together.shape[1] > n
    # Other padded lengths run other conv/attention shapes, so fp32 sums differ in order (per CPU kernel):
    # measured max |diff| 0.8-1.3e-4 on whisper tokens of size ~15 (AVX-512 and AVX2 kernels, 1-2 threads).
    # Padding that leaked into the clip would move its tokens by > 1e-1.
    torch.testing.assert_close(together[0, :n], alone[0, :n], atol=1e-3, rtol=1e-4)


def test_hook_out_fires(mel):
    seen = {}

    def record(t, hook):
        seen["shape"] = tuple(t.shape)  # returns None: observe, don't replace

    mel.hook_out.add_hook(record)
    try:
        tokens, _ = mel(torch.zeros(2, 8000) + 0.1, torch.tensor([8000, 4000]))
    finally:
        mel.hook_out.remove_hooks()
    assert seen["shape"] == tuple(tokens.shape) == (2, 13, 256)


def test_bad_waves_are_rejected(mel):
    with pytest.raises(EncoderInputError, match="mono"):
        mel(torch.zeros(2, 2, 100))
    with pytest.raises(EncoderInputError, match="NaN"):
        w = torch.zeros(2, 100)
        w[1, 5] = float("nan")
        mel(w)
    with pytest.raises(EncoderInputError, match="zero-length"):
        mel(torch.zeros(2, 100), torch.tensor([100, 0]))
    with pytest.raises(EncoderInputError, match="float"):
        mel(torch.zeros(1, 100, dtype=torch.int16))


def test_whisper_refuses_over_30s(whisper):
    with pytest.raises(EncoderInputError, match="30 s"):
        whisper(torch.zeros(1, 16000 * 31))


def test_encode_files_errors_name_the_file(tmp_path, whisper):
    import soundfile as sf

    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"fLaC" + b"\x00" * 40)
    with pytest.raises(AudioError, match="broken.flac"):
        whisper.encode_files([bad])
    long = tmp_path / "too_long.wav"
    sf.write(long, np.zeros(16000 * 31, np.float32), 16000)
    with pytest.raises(AudioError, match="too_long.wav.*30 s"):
        whisper.encode_files([long])


def test_encoders_for_builds_each_name_and_options_once():
    from types import SimpleNamespace

    from workbench.encoders import encoders_for

    built = encoders_for(
        ["mel", ("mel", {}), SimpleNamespace(name="mel", options={"n_mels": 32}), ("mel", {"n_mels": 32})]
    )
    assert [e.name for e in built] == ["mel", "mel"] and [e.n_mels for e in built] == [64, 32]
    with pytest.raises(Exception, match="n_mels"):
        encoders_for([("mel", {"n_mels": 0})])
