"""The parameter-free log-mel encoder: the "raw acoustics" reference for probes.

16 kHz audio, 25 ms Hann window (400 samples), 10 ms hop (160 samples), ``n_mels`` HTK-style mel bands
(Slaney-normalised triangles from ``transformers.audio_utils.mel_filter_bank``), ``log(power + 1e-6)``.
``k`` consecutive frames are stacked into one token, so ``frames_per_second = 100 / k`` and
``dim = n_mels * k`` (defaults: 64 bands x 4 frames -> 256-d tokens at 25 tokens/s).

Frame ``f`` is centred on sample ``f * 160`` with zeros outside the clip, so a clip's tokens do not depend
on how much the batch is padded; a clip of ``S`` samples gives ``ceil(S / (160 k))`` tokens.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers.audio_utils import mel_filter_bank

from workbench.encoders.base import AudioEncoder

__all__ = ["MelEncoder"]

N_FFT = 400
HOP = 160


class MelEncoder(AudioEncoder):
    """Log-mel patches. ``__call__(waves [B, S], lengths [B]) -> (tokens [B, T, n_mels*k], mask [B, T])``."""

    name = "mel"
    sample_rate = 16000

    def __init__(
        self, n_mels: int = 64, k: int = 4, f_min: float = 0.0, f_max: float = 8000.0, max_seconds: float | None = None
    ) -> None:
        super().__init__()
        if n_mels <= 0 or k <= 0:
            raise ValueError(f"mel: n_mels and k must be positive, got n_mels={n_mels}, k={k}")
        self.n_mels, self.k, self.f_min, self.f_max = int(n_mels), int(k), float(f_min), float(f_max)
        self.dim = self.n_mels * self.k
        self.frames_per_second = 100.0 / self.k
        self.max_seconds = max_seconds
        fb = mel_filter_bank(
            num_frequency_bins=N_FFT // 2 + 1,
            num_mel_filters=self.n_mels,
            min_frequency=self.f_min,
            max_frequency=self.f_max,
            sampling_rate=self.sample_rate,
            norm="slaney",
            mel_scale="htk",
        )  # [201, n_mels]
        self.register_buffer("mel_fb", torch.from_numpy(np.asarray(fb, dtype=np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.freeze()

    def config(self) -> dict:
        return {
            "name": self.name,
            "n_mels": self.n_mels,
            "k": self.k,
            "f_min": self.f_min,
            "f_max": self.f_max,
            "n_fft": N_FFT,
            "hop": HOP,
            "version": 1,
        }

    def _encode(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = waves.shape[0]
        n_tok = self.n_tokens(lengths)  # [B]
        T = int(n_tok.max())
        n_frames = T * self.k
        # zero out anything past each clip's end, so padding never leaks into a clip's frames
        idx = torch.arange(waves.shape[1])
        waves = waves * (idx[None, :] < lengths[:, None])
        need = (n_frames - 1) * HOP + N_FFT  # samples incl. a half-window of zeros on the left
        padded = torch.zeros(B, need, dtype=waves.dtype)
        m = min(waves.shape[1], need - N_FFT // 2)
        padded[:, N_FFT // 2 : N_FFT // 2 + m] = waves[:, :m]
        spec = torch.stft(padded, N_FFT, HOP, window=self.window, center=False, return_complex=True)
        power = spec.abs().pow(2)[:, :, :n_frames]  # [B, 201, F]
        logmel = torch.log(torch.einsum("bfn,fm->bnm", power, self.mel_fb) + 1e-6)  # [B, F, n_mels]
        tokens = logmel.reshape(B, T, self.k * self.n_mels)  # k frames stacked, frame-major
        mask = torch.arange(T)[None, :] < n_tok[:, None]
        return tokens * mask[..., None], mask
