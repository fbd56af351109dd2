"""Qwen2.5-Omni's thinker (audio in, text out) as a hooked PAL model.

    model = PALModel.from_pretrained("path/to/Qwen2.5-Omni-7B")    # the full model's folder, or a thinker-only one

The thinker is Qwen2-Audio's recipe with two changes, both reproduced here and tested against transformers:
- **The audio tower works in chunks** of ``2 * n_window`` mel frames (2 s for the released checkpoints): each chunk
  passes the two convolutions on its own (zero padded at its edges), gets the sinusoidal positions from 0 again, and
  attends only inside itself (block-diagonal attention); the frames of a clip are then average-pooled in pairs over
  the whole clip, normed (``ln_post``) and projected to the LLM width (``proj``). `OmniTower` runs the window of the
  feature extractor (30 s) as ``n_chunks`` chunks side by side, so ``hook_pattern`` is [B, H, T, T] with zeros
  outside each chunk's block.
- **The text model's RoPE is multimodal (M-RoPE)**: three position axes (time, height, width) over sections of the
  rotary dimensions. For audio and text alone transformers gives all three axes the same position (``get_rope_index``
  takes its text-only branch when there is no image or video), so M-RoPE equals the plain 1-D RoPE of `HookedDecoder`
  at the usual positions; the tests check the logits. Images and video (which need the 3-D positions) are not
  supported: the vision tower's weights are not loaded, and the talker / token2wav (speech output) are ignored.

Hook names (see `tower.py`): ``encoders.qwen2_5_omni.*`` (tower; ``hook_out`` [B, T', d_audio] after pool + ln_post),
``connectors.qwen2_5_omni.hook_out`` [B, N, d_model] (the ``proj`` output, the tokens at the placeholder slot), and
the decoder's ``blocks.{l}.*``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from workbench.model.released.registry import ReleasedModelError, architecture_of, conv_frames, require_parts
from workbench.model.released.tower import HookedTower

KEY = "qwen2_5_omni"
#: checkpoint key prefixes that carry nothing the thinker's audio path reads
_SKIPPED = ("talker.", "token2wav.", "visual.", "model.visual.")


class OmniTower(HookedTower):
    """Qwen2.5-Omni's chunked audio tower, run layer by layer with hooks (see the module docstring).

    ``forward(features [B, n_mel, F], feature_mask [B, F])`` -> (frames [B, T', D], frame mask [B, T']) with
    T' = n_chunks * n_window // 2 (pooled), the clip's real frames first.
    """

    def __init__(self, hf_tower, arch):
        super().__init__(hf_tower, arch)
        self.n_window = int(hf_tower.config.n_window)
        self.window_frames = None  # any window of the feature extractor: it is cut into chunks

    def _attend(self, hooks, q, k, v, mask, scale: float) -> torch.Tensor:
        """As `HookedTower._attend`, with ``mask`` [B, T, T] (query, key) allowed pairs."""
        q, k, v = hooks.hook_q(q), hooks.hook_k(k), hooks.hook_v(v)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
        scores = scores.masked_fill(~mask[:, None], torch.finfo(scores.dtype).min)
        scores = hooks.hook_attn_scores(scores)
        pattern = hooks.hook_pattern(scores.float().softmax(-1).to(q.dtype))
        return hooks.hook_z(torch.einsum("bhqk,bkhd->bqhd", pattern, v))

    def _chunk_embed(self, features: torch.Tensor, n_mel: torch.Tensor) -> torch.Tensor:
        """Features [B, n_mel_bins, F] -> conv front end + per-chunk positions [B, n_chunks * C // 2, D]."""
        t = self.tower
        C = 2 * self.n_window
        B, n_bins, F = features.shape
        n_chunks = math.ceil(F / C)
        real = torch.arange(n_chunks * C, device=features.device)[None] < n_mel[:, None]  # [B, n_chunks * C]
        x = nn.functional.pad(features, (0, n_chunks * C - F)) * real[:, None]  # transformers pads chunks with 0
        x = x.view(B, n_bins, n_chunks, C).permute(0, 2, 1, 3).reshape(B * n_chunks, n_bins, C)
        x = nn.functional.gelu(t.conv1(x)) * real.view(B * n_chunks, 1, C).to(x.dtype)
        x = nn.functional.gelu(t.conv2(x)).transpose(1, 2)  # [B * n_chunks, C // 2, D]
        x = x + t.positional_embedding.positional_embedding[: x.shape[1]].to(x.dtype)
        return x.reshape(B, -1, x.shape[-1])

    def forward(self, features: torch.Tensor, feature_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.tower
        features = features.to(t.conv1.weight.dtype)
        n_mel = feature_mask.long().sum(-1).to(features.device)
        x = self.hook_embed(self._chunk_embed(features, n_mel))
        T = x.shape[1]
        frame = torch.arange(T, device=x.device)
        chunk = frame // self.n_window  # a chunk of 2 * n_window mel frames gives n_window frames
        valid = frame[None] < conv_frames(n_mel)[:, None]  # [B, T]
        mask = (chunk[:, None] == chunk[None, :])[None] & valid[:, None, :]  # [B, T, T]
        for layer, hooks in zip(t.layers, self.block_hooks()):
            x = hooks.hook_resid_pre(x)
            x = hooks.hook_resid_post(self._whisper_layer(layer, hooks, x, mask))
        x = t.ln_post(t.avg_pooler(x.transpose(1, 2)).transpose(1, 2))
        frames = self.arch.valid_frames(n_mel, x.shape[1])
        out_mask = torch.arange(x.shape[1], device=x.device)[None] < frames[:, None]
        return self.hook_out(x), self.hook_mask(out_mask)


class OmniConnector(nn.Module):
    """The tower's final ``proj`` (d_audio -> d_model), as the connector.

    ``forward(frames [B, T, D], frame mask [B, T])`` -> (tokens [B, T, d_model], the same mask)."""

    def __init__(self, proj: nn.Linear):
        super().__init__()
        self.proj = proj
        self.hook_out = HookPoint()
        self.hook_mask = HookPoint()  # [B, N] bool: real tokens

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.hook_out(self.proj(frames)), self.hook_mask(mask)


def thinker_config(config):
    """The thinker's config from a full Qwen2.5-Omni config (``thinker_config``) or a thinker-only one."""
    return getattr(config, "thinker_config", None) or config


def split_state(state: dict[str, torch.Tensor], source: str) -> dict[str, dict[str, torch.Tensor]]:
    """{"tower": ..., "text": ... (``model.*`` and ``lm_head.*``)} from the hub's keys (``thinker.model.layers.*``,
    ``thinker.audio_tower.*``, ``thinker.lm_head.*``) or a thinker's in-memory ones (``model.language_model.*``,
    ``model.audio_tower.*``, ``lm_head.*``). Vision, talker and token2wav tensors are dropped."""
    parts: dict[str, dict[str, torch.Tensor]] = {"tower": {}, "text": {}}
    for key, tensor in state.items():
        k = key.removeprefix("thinker.")
        if k.startswith(_SKIPPED):
            continue
        for prefix in ("model.audio_tower.", "audio_tower."):
            if k.startswith(prefix):
                parts["tower"][k[len(prefix) :]] = tensor
                break
        else:
            if k.startswith("lm_head."):
                parts["text"][k] = tensor
            elif k.startswith("model.language_model."):
                parts["text"]["model." + k[len("model.language_model.") :]] = tensor
            elif k.startswith("model."):
                parts["text"][k] = tensor
    return require_parts(parts, state, source, " of the Qwen2.5-Omni thinker")


def decoder_config(text_cfg):
    """`DecoderConfig` of the thinker's text model: a Qwen2 decoder whose M-RoPE reduces to 1-D RoPE for audio + text."""
    from workbench.model.decoder_config import DecoderConfig

    cfg = text_cfg.to_dict()
    if cfg.get("use_sliding_window"):
        raise ReleasedModelError(
            "Qwen2.5-Omni thinker with use_sliding_window=true: HookedDecoder has no sliding window"
        )
    rope = dict(cfg.get("rope_parameters") or {})
    rope.pop("mrope_section", None)
    cfg.update(model_type="qwen2", rope_parameters=rope)
    for key in ("layer_types", "sliding_window", "max_window_layers", "use_sliding_window"):
        cfg.pop(key, None)
    return DecoderConfig.from_hf_config(cfg)


def load(folder: Path, source: str, *, integration=None, tokenizer=None, dtype=None, device=None):
    """`ReleasedPALModel` from a Qwen2.5-Omni folder (see `loading.load_released` for the arguments)."""
    from transformers import AutoConfig
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    from workbench.model.llm import _read_safetensors_folder
    from workbench.model.released.loading import _dtype, _load_module
    from workbench.model.released.model import ReleasedPALModel
    from workbench.model.released.prompts import load_preprocessing
    from workbench.model.weights import convert_state_dict

    dtype = _dtype(dtype)
    arch = architecture_of(json.loads((folder / "config.json").read_text()), source)
    config = thinker_config(AutoConfig.from_pretrained(folder))
    try:
        parts = split_state(_read_safetensors_folder(folder), source)
    except FileNotFoundError as e:
        raise ReleasedModelError(str(e)) from e
    dec_cfg = decoder_config(config.text_config)
    text_state = parts["text"]
    if "lm_head.weight" not in text_state and getattr(config.text_config, "tie_word_embeddings", False):
        text_state["lm_head.weight"] = text_state["model.embed_tokens.weight"]
    dec_cfg.tie_embeddings = False  # the unembedding is loaded explicitly (tied or not)

    with torch.device("meta"):
        tower: Any = Qwen2_5OmniAudioEncoder._from_config(config.audio_config)  # parts replaced by name below
    tower.positional_embedding = type(tower.positional_embedding)(
        tower.max_source_positions, config.audio_config.d_model
    )
    if "audio_bos_eos_token.weight" not in parts["tower"]:  # unused by the thinker's forward
        tower.audio_bos_eos_token = None
    tower = _load_module(tower, parts["tower"], "audio tower", source, dtype)
    proj = cast(nn.Linear, tower.proj)  # transformers' Qwen2_5OmniAudioEncoder.proj is an nn.Linear
    tower.proj = None  # the connector owns it

    model = ReleasedPALModel.build(arch, config, dec_cfg, source, integration)
    model.load_decoder_weights(convert_state_dict(text_state, dec_cfg, source), source, dtype)
    model.attach_audio(OmniTower(tower, arch), OmniConnector(proj))
    tok, fe, template = load_preprocessing(folder, tokenizer)
    if not getattr(tok, "chat_template", None):  # the hub keeps it in chat_template.json: code that renders with the
        tok.chat_template = template  # tokenizer alone (patching's first answer token) needs it there
    model.set_preprocessing(tok, fe, template, folder)
    if device is not None:
        model.to(device)
    return model.eval()
