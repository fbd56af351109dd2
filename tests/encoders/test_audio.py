"""workbench.common.audio_io: loading, resampling, mono-mixing, padding, and clear errors that name the file."""

import shutil
import subprocess
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from workbench.common.audio_io import (
    AudioError,
    TruncatedAudioWarning,
    header_frames,
    load_audio,
    pad_batch,
    resample,
    to_mono,
)


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


# ---------------------------------------------------------------- truncated files (header declares more frames)
def _cut(src, dst, n_bytes: int = 3000):
    dst.write_bytes(src.read_bytes()[:n_bytes])  # what an interrupted download or copy leaves
    return dst


def _loads_silently(path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedAudioWarning)
        return load_audio(path)[0]


def test_truncated_real_recording_warns_with_frame_counts(speech_wav, tmp_path):
    full = _loads_silently(speech_wav)  # the complete espeak-ng recording: no warning
    declared = sf.info(str(speech_wav)).frames
    cut = _cut(speech_wav, tmp_path / "cut.wav")
    with pytest.warns(TruncatedAudioWarning) as rec:
        w, sr = load_audio(cut)
    msg = str(rec[0].message)
    assert len(rec) == 1 and 0 < len(w) < declared // 10 and sr == 22050
    np.testing.assert_array_equal(w, full[: len(w)])  # what the file holds is returned
    assert str(cut) in msg and f"declares {declared} frames" in msg and f"only {len(w)} could be read" in msg, msg
    assert header_frames(cut) == (declared, len(w)) and header_frames(speech_wav) == (declared, declared)


def test_truncated_aiff_warns_and_streaming_headers_do_not(speech_wav, tmp_path):
    sox = shutil.which("sox")
    if sox is None:
        pytest.skip("sox is not installed (apt-get install sox)")
    aiff = tmp_path / "speech.aiff"
    subprocess.run([sox, str(speech_wav), str(aiff)], check=True, capture_output=True)
    declared = len(_loads_silently(aiff))
    with pytest.warns(TruncatedAudioWarning, match=rf"cut\.aiff.*declares {declared} frames"):
        load_audio(_cut(aiff, tmp_path / "cut.aiff"))
    # a writer that cannot seek back (sox into a pipe, from raw samples of unknown length) leaves a placeholder
    # length in the header; that is not a truncation
    raw = subprocess.run([sox, str(speech_wav), "-t", "raw", "-"], check=True, capture_output=True).stdout
    for fmt in ("wav", "aiff"):
        out = subprocess.run(
            [sox, "-t", "raw", "-r", "22050", "-e", "signed", "-b", "16", "-c", "1", "-", "-t", fmt, "-"],
            input=raw,
            check=True,
            capture_output=True,
        ).stdout
        path = tmp_path / f"streamed.{fmt}"
        path.write_bytes(out)
        assert header_frames(path) is None and len(_loads_silently(path)) == len(raw) // 2, fmt
