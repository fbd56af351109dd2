"""The audio-encoder protocol and the base class that implements its shared pieces once.

Every encoder is a frozen ``torch.nn.Module`` with

* ``name`` (str), ``sample_rate`` (Hz the waves must have), ``dim`` (token width D),
  ``frames_per_second`` (tokens per second of audio), ``max_seconds`` (longest clip, or None);
* ``__call__(waves [B, S] float32 at sample_rate, lengths [B] int64) -> (tokens [B, T, D] float32,
  token_mask [B, T] bool)``, where ``token_mask`` marks tokens that cover real (unpadded) audio and
  padded tokens are zero;
* ``hook_out``: a TransformerLens ``HookPoint`` on the tokens (``encoders.{name}.hook_out`` once mounted);
* ``fingerprint()``: a short hex string naming the exact computation (config + weights identity),
  used as part of cache keys.

Subclasses implement ``_encode(waves, lengths)`` and ``config()``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from workbench.common.audio_io import AudioError, load_audio, pad_batch, resample, to_mono

__all__ = ["AudioEncoder", "EncoderInputError"]


class EncoderInputError(ValueError):
    """Waves given to an encoder have the wrong shape, dtype or content; the message says the fix."""


class AudioEncoder(nn.Module):
    """Base class: input validation, resampling/padding helpers, the output hook, freezing."""

    name: str = "encoder"
    sample_rate: int = 16000
    dim: int = 0
    frames_per_second: float = 0.0
    max_seconds: float | None = None

    def __init__(self) -> None:
        super().__init__()
        self.hook_out = HookPoint()

    # ---- to implement -------------------------------------------------------------------------
    def _encode(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``waves [B, S]`` float32 at ``sample_rate``, ``lengths [B]`` -> ``(tokens [B, T, D], mask [B, T])``."""
        raise NotImplementedError

    def config(self) -> dict:
        """JSON-serialisable description of everything that changes the output (for the fingerprint)."""
        return {"name": self.name, "sample_rate": self.sample_rate, "dim": self.dim}

    # ---- shared ---------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """16 hex chars of sha256 over ``config()``: equal fingerprints mean equal outputs."""
        blob = json.dumps(self.config(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def freeze(self) -> AudioEncoder:
        """Turn off gradients of every parameter and put the module in eval mode (done by subclasses)."""
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> AudioEncoder:
        """Encoders are frozen: they stay in eval mode (no dropout) whatever ``mode`` says."""
        return super().train(False)

    def n_tokens(self, lengths: torch.Tensor) -> torch.Tensor:
        """Number of valid tokens for each clip: ``lengths [B]`` samples -> ``[B]`` int64."""
        hop = self.sample_rate / self.frames_per_second
        return torch.ceil(lengths.double() / hop).long().clamp(min=1)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch.

        Args:
            waves: float32 ``[B, S]`` at ``self.sample_rate`` (``[S]`` is taken as B=1).
            lengths: int64 ``[B]`` valid samples per row; ``None`` means every row is ``S`` long.

        Returns:
            ``tokens [B, T, dim]`` float32 (zero where masked) and ``token_mask [B, T]`` bool.
        """
        waves, lengths = self._validate(waves, lengths)
        tokens, mask = self._encode(waves, lengths)
        tokens = self.hook_out(tokens)
        return tokens, mask

    def _validate(self, waves, lengths) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(waves, np.ndarray):
            waves = torch.from_numpy(waves)
        if not isinstance(waves, torch.Tensor):
            raise EncoderInputError(
                f"{self.name}: waves must be a torch.Tensor [B, S], got {type(waves).__name__}. "
                f"Use encoder.prepare(list_of_arrays, sample_rates) or workbench.common.audio_io.pad_batch."
            )
        if waves.ndim == 1:
            waves = waves[None]
        if waves.ndim != 2:
            raise EncoderInputError(
                f"{self.name}: waves must be mono [B, S], got shape {tuple(waves.shape)}. "
                f"Mix channels down first (workbench.common.audio_io.to_mono) or use encoder.prepare(...)."
            )
        if not waves.is_floating_point():
            raise EncoderInputError(
                f"{self.name}: waves must be float (samples in [-1, 1]), got {waves.dtype}; divide int16 PCM by 32768."
            )
        waves = waves.float()
        B, S = waves.shape
        if S == 0 or B == 0:
            raise EncoderInputError(f"{self.name}: empty batch, waves shape {tuple(waves.shape)}.")
        if lengths is None:
            lengths = torch.full((B,), S, dtype=torch.long)
        lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1)
        if lengths.shape[0] != B:
            raise EncoderInputError(f"{self.name}: lengths has {lengths.shape[0]} entries for a batch of {B}.")
        if (lengths <= 0).any():
            bad = torch.nonzero(lengths <= 0).flatten().tolist()
            raise EncoderInputError(f"{self.name}: zero-length audio in batch rows {bad}; drop these clips.")
        if (lengths > S).any():
            raise EncoderInputError(f"{self.name}: lengths {lengths.tolist()} exceed the padded length {S}.")
        if not torch.isfinite(waves).all():
            rows = torch.nonzero(~torch.isfinite(waves).all(dim=1)).flatten().tolist()
            raise EncoderInputError(f"{self.name}: NaN/inf samples in batch rows {rows}; clean the audio.")
        if self.max_seconds is not None and int(lengths.max()) > self.max_seconds * self.sample_rate:
            raise EncoderInputError(
                f"{self.name}: a clip of {int(lengths.max()) / self.sample_rate:.2f} s exceeds this encoder's "
                f"maximum of {self.max_seconds:g} s; split it into shorter chunks."
            )
        return waves, lengths

    def prepare(
        self, waves_list: Sequence[np.ndarray], sample_rates: Sequence[int] | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mono-mix, resample to ``self.sample_rate`` and pad a list of clips.

        Args:
            waves_list: B arrays, each ``[S_i]`` or ``[C_i, S_i]``, any rate.
            sample_rates: one rate for all or one per clip.

        Returns:
            ``(waves [B, S_max] float32, lengths [B] int64)`` ready for ``__call__``.
        """
        if isinstance(sample_rates, (int, np.integer)):
            sample_rates = [int(sample_rates)] * len(waves_list)
        if len(sample_rates) != len(waves_list):
            raise EncoderInputError(f"{len(waves_list)} waves but {len(sample_rates)} sample rates")
        out = []
        for i, (w, sr) in enumerate(zip(waves_list, sample_rates)):
            w = to_mono(np.asarray(w, dtype=np.float32))
            if w.shape[0] == 0:
                raise EncoderInputError(f"{self.name}: clip {i} is zero-length; drop it.")
            out.append(resample(w, int(sr), self.sample_rate))
        return pad_batch(out)

    def encode_files(
        self, paths: Sequence[str | os.PathLike], max_seconds: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Load files (any rate, mono or multi-channel), prepare and encode them as one batch.

        Returns ``(tokens [B, T, dim], token_mask [B, T])``. Bad files raise ``AudioError`` naming the file.
        """
        limit = max_seconds if max_seconds is not None else self.max_seconds
        waves = []
        for p in paths:
            w, _ = load_audio(p, target_sr=self.sample_rate, mono=True, max_seconds=limit)
            waves.append(w)
        batch, lengths = pad_batch(waves)
        with torch.no_grad():
            return self(batch, lengths)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, sample_rate={self.sample_rate}, dim={self.dim}, fps={self.frames_per_second}"


# re-exported so callers can catch both kinds of input errors from one place
AudioError = AudioError
