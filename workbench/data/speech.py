"""Speech rendering with the espeak-ng command-line tool (Debian package `espeak-ng`).

:func:`speak` returns float32 mono ``[S]`` at the requested rate, with leading/trailing silence trimmed,
so that the spoken span is the whole array (onsets in metadata are then exact).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile

import numpy as np
import soundfile as sf

from workbench.common.audio_io import resample

__all__ = ["SpeechError", "espeak_available", "speak", "trim_silence"]


class SpeechError(RuntimeError):
    """espeak-ng is missing or failed."""


def espeak_available() -> bool:
    """True when the `espeak-ng` binary is on PATH."""
    return shutil.which("espeak-ng") is not None


def trim_silence(x: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    """Drop leading/trailing samples whose absolute value is below ``threshold`` (``[S]`` -> ``[S']``)."""
    idx = np.flatnonzero(np.abs(x) >= threshold)
    if idx.size == 0:
        return x[:0]
    return x[idx[0] : idx[-1] + 1]


@functools.lru_cache(maxsize=512)
def _speak_cached(text: str, voice: str, rate_wpm: int, pitch: int, sr: int) -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechError("espeak-ng not found: install it (`apt-get install espeak-ng`).")
    fd, path = tempfile.mkstemp(suffix=".wav", prefix="pal-espeak-")
    os.close(fd)
    try:
        cmd = [exe, "-v", voice, "-s", str(int(rate_wpm)), "-p", str(int(pitch)), "-w", path, text]
        r = subprocess.run(cmd, capture_output=True, timeout=60)
        if r.returncode != 0:
            raise SpeechError(f"espeak-ng failed ({' '.join(cmd)}): {r.stderr.decode(errors='replace')}")
        x, sr_in = sf.read(path, dtype="float32", always_2d=True)
    finally:
        os.unlink(path)
    x = resample(x.mean(axis=1), sr_in, sr)
    x = trim_silence(x)
    if x.size == 0:
        raise SpeechError(f"espeak-ng produced silence for {text!r} (voice {voice})")
    x.setflags(write=False)
    return x


def speak(text: str, voice: str, rate_wpm: int, pitch: int, sr: int) -> np.ndarray:
    """Render ``text`` with espeak-ng voice ``voice`` (e.g. 'en-us+f2') at ``rate_wpm`` words/minute and
    espeak pitch ``pitch`` (0-99); resampled to ``sr``; silence trimmed. Returns a new float32 ``[S]``."""
    return np.array(_speak_cached(text, voice, int(rate_wpm), int(pitch), int(sr)), copy=True)
