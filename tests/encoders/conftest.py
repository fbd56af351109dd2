"""Fixtures for the encoder tests: real espeak-ng speech, numpy tones and noise, shared encoders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from workbench.common.audio_io import load_audio

# Voices x (pitch, words/min): the held-out-voice folds of the word probe use these voice groups.
VOICES = [
    "en-us",
    "en-gb+f3",
    "en-gb-scotland+m2",
    "en-gb-x-rp+f2",
    "en-029+m4",
    "en-us+f4",
    "en-gb-x-gbclan+m7",
    "en-us+klatt",
    "en-gb+croak",
    "en-us+f5",
]
SETTINGS = [(30, 140), (50, 165), (70, 190)]


def espeak(text: str, path: Path, voice: str = "en-us", pitch: int = 50, speed: int = 175) -> Path:
    """Synthesize ``text`` to a 22.05 kHz mono wav with espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run(
        ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(path), text],
        check=True,
        capture_output=True,
    )
    return path


def tone(freq: float, seconds: float, sr: int = 16000, amp: float = 0.3, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def noise_burst(seconds: float, rng: np.random.Generator, sr: int = 16000, amp: float = 0.3) -> np.ndarray:
    w = rng.standard_normal(int(seconds * sr)).astype(np.float32)
    return (amp * w / np.sqrt((w**2).mean())).astype(np.float32)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """About 3 s of real (synthetic) English speech at 22.05 kHz."""
    d = tmp_path_factory.mktemp("speech")
    return espeak("hello world, this is a test of the audio encoder", d / "hello.wav")


@pytest.fixture(scope="session")
def word_clips(tmp_path_factory):
    """The words "cat" vs "tack" (same phonemes, opposite order), 10 voices x 3 pitch/rate settings each.

    Each clip is RMS-normalised and placed at the start of a fixed 1.2 s window, so loudness and length
    carry no label information. Returns ``(waves [N] list of [19200] float32 @16 kHz, labels [N], voice [N])``.
    """
    d = tmp_path_factory.mktemp("words")
    waves, labels, groups = [], [], []
    for label, word in enumerate(["cat", "tack"]):
        for vi, voice in enumerate(VOICES):
            for pitch, speed in SETTINGS:
                p = espeak(word, d / f"{word}_{vi}_{pitch}.wav", voice, pitch, speed)
                w, _ = load_audio(p, target_sr=16000)
                w = w / (np.sqrt((w**2).mean()) + 1e-9) * 0.05
                buf = np.zeros(int(1.2 * 16000), np.float32)
                n = min(len(w), len(buf))
                buf[:n] = w[:n]
                waves.append(buf)
                labels.append(label)
                groups.append(vi)
    return waves, np.array(labels), np.array(groups)


@pytest.fixture(scope="session")
def sound_classes():
    """Two sound classes, 12 random variants each: pure tones (200-2000 Hz) vs white-noise bursts.

    Durations 0.5-1.5 s and levels 0.05-0.5 are drawn independently of the class.
    Returns ``(waves list of [S_i] float32 @16 kHz, labels [24])``.
    """
    rng = np.random.default_rng(0)
    waves, labels = [], []
    for i in range(24):
        dur, amp = rng.uniform(0.5, 1.5), rng.uniform(0.05, 0.5)
        if i % 2 == 0:
            waves.append(tone(rng.uniform(200, 2000), dur, amp=amp, phase=rng.uniform(0, 6.28)))
        else:
            waves.append(noise_burst(dur, rng, amp=amp))
        labels.append(i % 2)
    return waves, np.array(labels)


@pytest.fixture(scope="session")
def multi_rate_files(tmp_path_factory, speech_wav):
    """Files at 8, 16, 44.1 and 48 kHz, mono and stereo, of different lengths.

    Returns a list of ``(path, seconds)``.
    """
    d = tmp_path_factory.mktemp("rates")
    speech, sr = load_audio(speech_wav)
    out = []
    specs = [(8000, 1, 0.7), (16000, 2, 1.3), (44100, 1, 2.1), (48000, 2, 0.4), (22050, 1, None)]
    for rate, ch, secs in specs:
        if secs is None:
            w, secs = speech, len(speech) / sr
            rate = sr
        else:
            w = tone(440.0, secs, sr=rate)
        data = np.stack([w, 0.5 * w], axis=1) if ch == 2 else w
        p = d / f"clip_{rate}_{ch}ch.wav"
        sf.write(p, data, rate, subtype="PCM_16" if ch == 1 else "FLOAT")
        out.append((p, secs))
    return out


@pytest.fixture(scope="session")
def whisper():
    from workbench.encoders import load_encoder

    return load_encoder("whisper")


@pytest.fixture(scope="session")
def mel():
    from workbench.encoders import load_encoder

    return load_encoder("mel")


def _mean_pool(tokens, mask) -> np.ndarray:
    """Time-average ``tokens [B, T, D]`` over ``mask [B, T]`` -> ``[B, D]``."""
    m = mask[..., None].float()
    return ((tokens * m).sum(1) / m.sum(1)).numpy()


@pytest.fixture(scope="session")
def mean_pool():
    return _mean_pool


@pytest.fixture(scope="session")
def probe_accuracy():
    """``f(X [N, D], y [N], groups=None) -> mean CV accuracy`` of a standardised logistic regression.

    With ``groups``, folds hold out whole groups (e.g. voices); otherwise stratified 4-fold.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def f(X, y, groups=None):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
        cv = GroupKFold(5) if groups is not None else StratifiedKFold(4, shuffle=True, random_state=0)
        return float(cross_val_score(clf, X, y, groups=groups, cv=cv).mean())

    return f
