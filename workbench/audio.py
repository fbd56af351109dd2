"""Shared audio I/O: load, resample, mono-mix and pad waveforms.

Every function here works on float32 numpy arrays (``[S]`` mono or ``[C, S]`` multi-channel)
except :func:`pad_batch`, which returns torch tensors ready for an encoder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

__all__ = ["AudioError", "load_audio", "resample", "to_mono", "pad_batch"]


class AudioError(ValueError):
    """An audio file or waveform that cannot be used; the message names the file and the fix."""


def load_audio(
    path: str | os.PathLike,
    target_sr: int | None = None,
    mono: bool = True,
    max_seconds: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read an audio file with soundfile.

    Args:
        path: any format libsndfile reads (wav, flac, ogg, mp3 with libsndfile >= 1.1, ...).
        target_sr: resample to this rate (soxr, high quality); ``None`` keeps the file's rate.
        mono: average the channels to ``[S]``; with ``False`` the result is ``[C, S]``.
        max_seconds: refuse files longer than this (checked on the file's own duration).

    Returns:
        ``(wave, sr)``: float32 ``[S]`` (or ``[C, S]`` if ``mono=False``) in [-1, 1] for PCM input, and its rate.

    Raises:
        AudioError: missing/unreadable/corrupt/unsupported file, zero-length audio, NaN or inf samples,
            or a clip longer than ``max_seconds``. The message names the file.
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: file not found. Check the path (relative paths resolve against {Path.cwd()}).")
    try:
        info = sf.info(str(p))
        if max_seconds is not None and info.frames > 0 and info.frames / info.samplerate > max_seconds:
            raise AudioError(
                f"{p}: {info.frames / info.samplerate:.2f} s is longer than the configured maximum of "
                f"{max_seconds:g} s. Trim the clip (e.g. `sox in.wav out.wav trim 0 {max_seconds:g}`) "
                f"or raise max_seconds."
            )
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)  # [S, C]
    except AudioError:
        raise
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(
            f"{p}: cannot read audio ({type(e).__name__}: {e}). The file is corrupt or in an unsupported "
            f"format; re-encode it as WAV/FLAC (e.g. `sox in.xxx out.wav` or `ffmpeg -i in.xxx out.wav`)."
        ) from e
    if data.shape[0] == 0:
        raise AudioError(f"{p}: zero-length audio (no samples). Remove this file or re-export it with content.")
    if not np.isfinite(data).all():
        n_bad = int((~np.isfinite(data)).sum())
        raise AudioError(
            f"{p}: {n_bad} NaN/inf samples. Re-export the file (float WAVs can store NaN) or clean it "
            f"with np.nan_to_num before saving."
        )
    if max_seconds is not None and data.shape[0] / sr > max_seconds:
        raise AudioError(
            f"{p}: {data.shape[0] / sr:.2f} s is longer than the configured maximum of {max_seconds:g} s. "
            f"Trim the clip or raise max_seconds."
        )
    wave = np.ascontiguousarray(data.T)  # [C, S]
    if mono:
        wave = to_mono(wave)
    if target_sr is not None and target_sr != sr:
        wave = resample(wave, sr, target_sr)
        sr = int(target_sr)
    return wave.astype(np.float32, copy=False), int(sr)


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``[S]`` or ``[C, S]`` float audio from ``sr_in`` to ``sr_out`` Hz with soxr (HQ).

    Returns float32 of the same rank; the time axis becomes ``round(S * sr_out / sr_in)`` long.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if sr_in <= 0 or sr_out <= 0:
        raise AudioError(f"sample rates must be positive, got sr_in={sr_in}, sr_out={sr_out}")
    if sr_in == sr_out:
        return wave
    if wave.ndim == 1:
        return soxr.resample(wave, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)
    if wave.ndim == 2:  # soxr wants [S, C]
        out = soxr.resample(np.ascontiguousarray(wave.T), sr_in, sr_out, quality="HQ")
        return np.ascontiguousarray(out.T).astype(np.float32, copy=False)
    raise AudioError(f"resample expects [S] or [C, S], got shape {wave.shape}")


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Average channels: ``[C, S]`` -> ``[S]``; ``[S]`` is returned unchanged (as float32)."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        return wave
    if wave.ndim == 2:
        return wave.mean(axis=0, dtype=np.float32)
    raise AudioError(f"to_mono expects [S] or [C, S], got shape {wave.shape}")


def pad_batch(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad mono waves with zeros.

    Args:
        waves: list of B arrays ``[S_i]``.

    Returns:
        ``(batch, lengths)``: float32 ``[B, S_max]`` and int64 ``[B]`` with each ``S_i``.
    """
    if len(waves) == 0:
        raise AudioError("pad_batch got an empty list of waves")
    arrs = [np.asarray(w, dtype=np.float32) for w in waves]
    for i, a in enumerate(arrs):
        if a.ndim != 1:
            raise AudioError(f"pad_batch: wave {i} has shape {a.shape}; expected mono [S] (use to_mono first)")
    lengths = torch.tensor([a.shape[0] for a in arrs], dtype=torch.long)
    batch = torch.zeros(len(arrs), int(lengths.max()), dtype=torch.float32)
    for i, a in enumerate(arrs):
        batch[i, : a.shape[0]] = torch.from_numpy(a)
    return batch, lengths
