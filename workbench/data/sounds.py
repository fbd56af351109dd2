"""Procedural sound events: numpy float32 mono waves ``[S]`` at ``sr`` Hz, roughly unit scale.

Loudness is set later (see :func:`rms_dbfs` and ``synth``), so the shapes here only care about content.
Every random choice comes from the ``rng`` passed in (a ``numpy.random.Generator``): same rng state,
same samples.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fade", "tone", "chirp", "noise", "click_train", "buzz", "rms_dbfs", "spans_mask"]


def _t(n: int, sr: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / sr


def fade(x: np.ndarray, sr: int, ms: float = 10.0) -> np.ndarray:
    """Apply raised-cosine fade-in and fade-out of ``ms`` milliseconds (in place safe copy) to ``[S]``."""
    x = np.array(x, dtype=np.float32, copy=True)
    n = min(int(sr * ms / 1000), len(x) // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)).astype(np.float32)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def tone(
    freq: float, dur: float, sr: int, modulation: str = "none", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Sine tone at ``freq`` Hz for ``dur`` s.

    ``modulation``: 'none'; 'am' (amplitude modulated at 4-8 Hz, depth 0.8); 'fm' (vibrato at 4-8 Hz,
    +-3 % frequency deviation, mean frequency stays ``freq``). Returns ``[round(dur*sr)]`` float32.
    """
    n = int(round(dur * sr))
    t = _t(n, sr)
    rate = 6.0 if rng is None else float(rng.uniform(4.0, 8.0))
    if modulation == "fm":
        dev = 0.03 * freq
        phase = 2 * np.pi * freq * t + (dev / rate) * np.sin(2 * np.pi * rate * t)
        x = np.sin(phase)
    else:
        x = np.sin(2 * np.pi * freq * t)
        if modulation == "am":
            x = x * (1.0 + 0.8 * np.sin(2 * np.pi * rate * t)) / 1.8
        elif modulation != "none":
            raise ValueError(f"unknown modulation {modulation!r}; expected none, am or fm")
    return fade(x.astype(np.float32), sr)


def chirp(f0: float, f1: float, dur: float, sr: int) -> np.ndarray:
    """Exponential (log-frequency) sweep from ``f0`` to ``f1`` Hz over ``dur`` s; ``[S]`` float32."""
    n = int(round(dur * sr))
    t = _t(n, sr)
    k = np.log(f1 / f0) / dur
    phase = 2 * np.pi * f0 * (np.exp(k * t) - 1.0) / k if abs(k) > 1e-9 else 2 * np.pi * f0 * t
    return fade(np.sin(phase).astype(np.float32), sr)


def noise(color: str, dur: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise burst shaped in the frequency domain: 'white' (flat), 'pink' (1/f power),
    'brown' (1/f^2 power, high-passed at 20 Hz). Unit RMS, ``[S]`` float32."""
    n = int(round(dur * sr))
    w = rng.standard_normal(n)
    if color != "white":
        spec = np.fft.rfft(w)
        f = np.fft.rfftfreq(n, 1.0 / sr)
        f[0] = f[1] if n > 1 else 1.0
        f = np.maximum(f, 20.0)
        if color == "pink":
            spec = spec / np.sqrt(f)
        elif color == "brown":
            spec = spec / f
        else:
            raise ValueError(f"unknown noise color {color!r}; expected white, pink or brown")
        w = np.fft.irfft(spec, n)
    w = w / (np.sqrt(np.mean(w**2)) + 1e-12)
    return fade(w.astype(np.float32), sr, ms=5.0)


CLICK_SECONDS = 0.01


def click(sr: int) -> np.ndarray:
    """One click: a 2 kHz sine with a 1.5 ms exponential decay, ``CLICK_SECONDS`` long."""
    t = _t(int(round(CLICK_SECONDS * sr)), sr)
    return (np.sin(2 * np.pi * 2000.0 * t) * np.exp(-t / 0.0015)).astype(np.float32)


def click_train(count: int, rate_hz: float, sr: int) -> tuple[np.ndarray, list[float]]:
    """``count`` clicks at ``rate_hz`` per second.

    Returns ``(wave [S], onsets_s)`` where ``S`` spans from the first click to the end of the last,
    and ``onsets_s`` are each click's start in seconds from the wave's start.
    """
    c = click(sr)
    period = int(round(sr / rate_hz))
    out = np.zeros(period * (count - 1) + len(c), dtype=np.float32)
    onsets = []
    for i in range(count):
        out[i * period : i * period + len(c)] += c
        onsets.append(i * period / sr)
    return out, onsets


def buzz(freq: float, dur: float, sr: int, n_harmonics: int = 12) -> np.ndarray:
    """Harmonic buzz: harmonics k = 1..n of ``freq`` with amplitude 1/k (below Nyquist); ``[S]`` float32."""
    n = int(round(dur * sr))
    t = _t(n, sr)
    x = np.zeros(n)
    for k in range(1, n_harmonics + 1):
        if k * freq >= sr / 2 * 0.95:
            break
        x += np.sin(2 * np.pi * k * freq * t) / k
    return fade(x.astype(np.float32), sr)


def spans_mask(n: int, sr: int, spans: list[tuple[float, float]]) -> np.ndarray:
    """Boolean ``[n]`` mask that is True inside any of the ``(onset_s, offset_s)`` spans."""
    m = np.zeros(n, dtype=bool)
    for a, b in spans:
        m[max(0, int(round(a * sr))) : min(n, int(round(b * sr)))] = True
    return m


def rms_dbfs(x: np.ndarray, mask: np.ndarray | None = None) -> float:
    """RMS level in dBFS (full scale = 1.0) of ``x`` (``[S]``), over ``mask`` samples if given."""
    x = np.asarray(x, dtype=np.float64)
    if mask is not None:
        x = x[mask]
    if x.size == 0:
        return float("-inf")
    return float(20.0 * np.log10(np.sqrt(np.mean(x**2)) + 1e-12))
