"""Shared audio I/O: load, resample, mono-mix and pad waveforms.

Every function here works on float32 numpy arrays (``[S]`` mono or ``[C, S]`` multi-channel)
except :func:`pad_batch`, which returns torch tensors ready for an encoder.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import soxr
import torch

__all__ = [
    "AudioError",
    "TruncatedAudioWarning",
    "HeaderFrames",
    "header_frames",
    "truncation_message",
    "check_complete",
    "load_audio",
    "resample",
    "to_mono",
    "pad_batch",
]


class AudioError(ValueError):
    """An audio file or waveform that cannot be used; the message names the file and the fix."""


class TruncatedAudioWarning(UserWarning):
    """An audio file holds fewer frames than its header declares (cut-off download or copy); it was loaded anyway."""


class HeaderFrames(NamedTuple):
    declared: int  # frames the header promises
    present: int  # whole frames the file's bytes hold (what a decoder can read)


# Declared data sizes at or above this are placeholders of writers that could not seek back to fill in the
# length (sox streaming WAV 0x7ffff000, AIFF 0x3f800000 frames x 2 bytes; ffmpeg 0xffffffff): length unknown.
_UNKNOWN_LENGTH = 0x7F000000


def _chunks(f, size: int, start: int, endian: str):
    """``(chunk id, data offset, declared data size)`` of the RIFF/IFF chunks from byte ``start`` on."""
    pos = start
    while pos + 8 <= size:
        f.seek(pos)
        cid, csize = struct.unpack(endian + "4sI", f.read(8))
        yield cid, pos + 8, csize
        pos += 8 + csize + (csize & 1)


def _wav_frames(f, size: int, rf64: bool) -> HeaderFrames | None:
    align, big = None, None
    for cid, off, csize in _chunks(f, size, 12, "<"):
        if cid == b"ds64" and rf64:
            f.seek(off + 8)
            (big,) = struct.unpack("<Q", f.read(8))  # 64-bit data size
        elif cid == b"fmt ":
            f.seek(off + 12)
            (align,) = struct.unpack("<H", f.read(2))  # block align = bytes per frame
        elif cid == b"data":
            if rf64 and csize == 0xFFFFFFFF:
                csize = big
            if not align or not csize or (not rf64 and csize >= _UNKNOWN_LENGTH):  # streaming: length unknown
                return None
            return HeaderFrames(csize // align, max(0, size - off) // align)
    return None


def _aiff_frames(f, size: int, aifc: bool) -> HeaderFrames | None:
    frames, bytes_per_frame = None, None
    for cid, off, _ in _chunks(f, size, 12, ">"):
        if cid == b"COMM":
            f.seek(off)
            channels, frames, bits = struct.unpack(">hIh", f.read(8))
            f.seek(off + 18)
            if aifc and f.read(4) not in (b"NONE", b"sowt"):
                return None  # compressed AIFF-C: bytes per frame not fixed
            bytes_per_frame = channels * ((bits + 7) // 8)
        elif cid == b"SSND":
            if not frames or not bytes_per_frame or frames * bytes_per_frame >= _UNKNOWN_LENGTH:
                return None
            f.seek(off)
            (skip,) = struct.unpack(">I", f.read(4))  # SSND offset field, then block size, then the samples
            return HeaderFrames(frames, max(0, size - off - 8 - skip) // bytes_per_frame)
    return None


def header_frames(path: str | os.PathLike) -> HeaderFrames | None:
    """Declared vs present frame counts of a WAV (RIFF, RF64) or AIFF/AIFF-C (uncompressed) file.

    From the header and the file size only (no decoding). ``None`` for other formats, streaming headers
    (length unknown) and headers that cannot be parsed (decoding reports those).
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(12)
            if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
                return _wav_frames(f, size, head[:4] == b"RF64")
            if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                return _aiff_frames(f, size, head[8:12] == b"AIFC")
    except (OSError, struct.error):
        return None
    return None


def truncation_message(path: str | os.PathLike, declared: int, read: int, sr: int | None = None) -> str:
    """``"{path}: truncated audio file: the header declares N frames but only M ..."`` (+ seconds, the fix)."""
    secs = f" ({read / sr:.3f} s of {declared / sr:.3f} s)" if sr else ""
    return (
        f"{path}: truncated audio file: the header declares {declared} frames but only {read} could be read{secs}. "
        f"Re-download or re-export the file; `python -m workbench.data.validate DATASET --skip-bad` lists "
        f"such files as bad rows."
    )


def check_complete(path: str | os.PathLike) -> None:
    """Raise :class:`AudioError` (:func:`truncation_message`) if the file holds fewer frames than its header
    declares. Header and file size only; formats :func:`header_frames` does not parse pass."""
    hf = header_frames(path)
    if hf is not None and hf.present < hf.declared:
        try:
            sr = sf.info(str(path)).samplerate
        except Exception:
            sr = None
        raise AudioError(truncation_message(path, hf.declared, hf.present, sr))


def _read_samples(p: Path, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """(samples [S, C] float32, rate) of the file ``p``; AudioError if it is missing, unreadable or (by its
    header) longer than ``max_seconds``."""
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
    return data, sr


def _check_samples(p: Path, data: np.ndarray, sr: int, max_seconds: float | None) -> None:
    """AudioError if ``data`` [S, C] is empty, holds NaN/inf, or is longer than ``max_seconds``."""
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


def load_audio(
    path: str | os.PathLike, target_sr: int | None = None, mono: bool = True, max_seconds: float | None = None
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

    Warns:
        TruncatedAudioWarning: a WAV/AIFF that holds fewer frames than its header declares (what it holds
            is returned); the message names the file and both frame counts.
    """
    p = Path(path)
    data, sr = _read_samples(p, max_seconds)
    _check_samples(p, data, sr, max_seconds)
    hf = header_frames(p)
    if hf is not None and data.shape[0] < hf.declared:
        warnings.warn(truncation_message(p, hf.declared, data.shape[0], sr), TruncatedAudioWarning, stacklevel=2)
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
