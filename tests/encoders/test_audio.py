"""workbench.audio: loading, resampling, mono-mixing, padding, and clear errors that name the file."""

import numpy as np
import pytest
import soundfile as sf
import torch

from workbench.audio import AudioError, load_audio, pad_batch, resample, to_mono


def test_load_resample_and_mono(multi_rate_files):
    for path, secs in multi_rate_files:
        w, sr = load_audio(path, target_sr=16000)
        assert sr == 16000 and w.ndim == 1 and w.dtype == np.float32
        assert abs(len(w) - secs * 16000) <= 2
        multi, sr0 = load_audio(path, mono=False)
        assert multi.ndim == 2 and multi.shape[0] == sf.info(str(path)).channels


def test_resample_preserves_tone_frequency():
    sr = 44100
    t = np.arange(sr) / sr
    w = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    out = resample(w, sr, 16000)
    assert out.shape == (16000,)
    spec = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spec) - 1000) <= 1  # 1 Hz bins


def test_to_mono_and_pad_batch():
    st = np.stack([np.ones(5, np.float32), np.zeros(5, np.float32)])
    assert np.allclose(to_mono(st), 0.5)
    batch, lengths = pad_batch([np.ones(3, np.float32), np.ones(5, np.float32)])
    assert batch.shape == (2, 5) and lengths.tolist() == [3, 5]
    assert batch.dtype == torch.float32 and lengths.dtype == torch.long
    assert batch[0, 3:].abs().sum() == 0


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "garbage.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 3)
    with pytest.raises(AudioError, match="garbage.wav"):
        load_audio(bad)
    with pytest.raises(AudioError, match="not_there.wav.*not found"):
        load_audio(tmp_path / "not_there.wav")


def test_zero_length_audio(tmp_path):
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty\.wav.*zero-length"):
        load_audio(p)


def test_nan_samples(tmp_path):
    p = tmp_path / "nan.wav"
    w = np.zeros(1600, np.float32)
    w[100] = np.nan
    sf.write(p, w, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav.*NaN"):
        load_audio(p)


def test_too_long(tmp_path):
    p = tmp_path / "long.wav"
    sf.write(p, np.zeros(16000 * 3, np.float32), 16000)
    with pytest.raises(AudioError, match=r"long\.wav.*longer than the configured maximum of 2 s"):
        load_audio(p, max_seconds=2)
    w, _ = load_audio(p, max_seconds=3.5)
    assert len(w) == 48000
