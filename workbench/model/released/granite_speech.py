"""IBM Granite Speech (``GraniteSpeechForConditionalGeneration``) as a hooked PAL model.

    model = PALModel.from_pretrained("path/to/granite-speech-3.3-2b")

What differs from the Whisper-tower classes, and how it is reproduced (tested against transformers):
- **Tower: a Conformer** (`GraniteTower`). Input: stacked log-mel pairs [B, T, 160] at 50 frames/s. Each block is
  ``x + ½ FF1(x)`` -> block-local self-attention with Shaw relative positions (blocks of ``context_size`` = 200
  frames, attention never crosses a block) -> depthwise-conv module -> ``x + ½ FF2(x)`` -> LayerNorm. After the
  middle block the tower adds its own CTC self-conditioning (``hook_ctc_logits``: the mid-layer CTC logits).
  Like transformers, the tower sees a batch's padded frames as real (it has no padding mask), so a clip's frames
  depend on the longest clip of its batch, exactly as with transformers' processor + model.
- **Connector: a windowed Q-Former** (transformers' own `GraniteSpeechEncoderProjector`): every window of 15 tower
  frames is read by 3 learned queries, then projected to the LLM width: tokens = ceil(frames / 15) * 3.
- **Text model: Granite**, a Llama decoder with four scalars. They are folded into the weights they multiply, so
  every hook sees the tensors transformers computes: ``embedding_multiplier`` into the token embeddings and the
  connector's output projection (transformers scales the merged embeddings, audio included),
  ``residual_multiplier`` into ``o_proj`` and ``down_proj`` (``hook_attn_out`` / ``hook_mlp_out`` are the terms
  added to the residual); ``attention_multiplier`` is the attention scale (`DecoderConfig.attn_scale`).
  ``logits_scaling`` is not applied, as in transformers 5's `GraniteSpeechForConditionalGeneration` (its own
  ``lm_head``; transformers 4's wrapped `GraniteForCausalLM` divided the logits by it: same argmax, a softmax
  temperature of ``logits_scaling``).
- **LoRA**: the released checkpoints ship a PEFT adapter (``adapter_config.json`` + ``adapter_model.safetensors``)
  that transformers enables whenever audio is present. It is merged into the text weights at load (the workbench
  always runs with audio); ``WORKBENCH_GRANITE_LORA=0`` loads without it.
- **Features need torchaudio**: `GraniteSpeechFeatureExtractor` computes its log-mel with torchaudio. Without it the
  model still loads, and batches must carry ``input_features`` [B, T, 160] + ``audio_lengths`` [B] (samples).

Hook names, inside ``encoders.granite_speech.``: ``hook_embed`` [B, T, D] (input_linear), per block ``blocks.{i}.``
``hook_resid_pre``, ``hook_ff1_out`` (½ FF1 as added), ``attn.hook_q/k/v`` [B, T', H, d] (T' = T padded to whole
attention blocks), ``attn.hook_attn_scores`` / ``attn.hook_pattern`` [B, H, n_blocks, C, C] (block-local: query and
key inside the same block of C frames), ``attn.hook_z`` [B, T', H, d], ``hook_attn_out``, ``hook_resid_mid`` (after
attention), ``hook_conv_out``, ``hook_mlp_out`` (½ FF2 as added), ``hook_resid_post`` (after the block's LayerNorm);
``hook_ctc_logits`` [B, T, n_ctc]; ``hook_out`` [B, T, D], ``hook_mask`` [B, T]. ``connectors.granite_speech.hook_out``
[B, N, d_model].
"""

from __future__ import annotations

import json
import math
import os
import types
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from workbench.model.released.model import AudioTooLongError, ReleasedPALModel
from workbench.model.released.registry import ReleasedModelError, architecture_of

KEY = "granite_speech"
WINDOW_SECONDS = 30  # one slot of audio tokens per clip, as for the other classes
_HOOKS = (
    "hook_resid_pre",
    "hook_ff1_out",
    "hook_attn_out",
    "hook_resid_mid",
    "hook_conv_out",
    "hook_mlp_out",
    "hook_resid_post",
)


class _AttnHooks(nn.Module):
    hook_q: HookPoint
    hook_k: HookPoint
    hook_v: HookPoint
    hook_attn_scores: HookPoint
    hook_pattern: HookPoint
    hook_z: HookPoint

    def __init__(self):
        super().__init__()
        for name in ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z"):
            setattr(self, name, HookPoint())


class ConformerBlockHooks(nn.Module):
    hook_resid_pre: HookPoint
    hook_ff1_out: HookPoint
    hook_resid_mid: HookPoint
    hook_attn_out: HookPoint
    hook_conv_out: HookPoint
    hook_mlp_out: HookPoint
    hook_resid_post: HookPoint

    def __init__(self):
        super().__init__()
        self.attn = _AttnHooks()
        for name in _HOOKS:
            setattr(self, name, HookPoint())


class GraniteTower(nn.Module):
    """transformers' Conformer encoder run block by block with hooks (see the module docstring).

    ``forward(features [B, T, 160], frame_lengths [B])`` -> (frames [B, T, D], frame mask [B, T])."""

    def __init__(self, encoder: Any):
        super().__init__()
        self.tower: Any = encoder  # transformers' GraniteSpeechCTCEncoder: its parts are looked up by name
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList(ConformerBlockHooks() for _ in encoder.layers)
        self.hook_ctc_logits = HookPoint()
        self.hook_out = HookPoint()
        self.hook_mask = HookPoint()
        self.dim = encoder.config.hidden_dim
        self.window_frames = None

    def _attention(self, at, hooks: _AttnHooks, x: torch.Tensor, dists: torch.Tensor) -> torch.Tensor:
        """Block-local attention with Shaw relative positions, as `GraniteSpeechConformerAttention`."""
        h = at.pre_norm(x)
        B, T, _ = h.shape
        C, H = at.context_size, at.num_heads
        nb = math.ceil(T / C)
        rem = T % C
        h = nn.functional.pad(h, (0, 0, 0, nb * C - T))
        k, v = at.to_kv(h).chunk(2, dim=-1)
        q = hooks.hook_q(at.to_q(h).view(B, nb * C, H, -1))
        k, v = hooks.hook_k(k.reshape(B, nb * C, H, -1)), hooks.hook_v(v.reshape(B, nb * C, H, -1))
        qb, kb, vb = (t.reshape(B, nb, C, H, -1).permute(0, 3, 1, 2, 4) for t in (q, k, v))  # [B, H, nb, C, d]
        rel = at.rel_pos_emb(dists)  # [C, C, d]
        scores = (torch.einsum("bhncd,bhnkd->bhnck", qb, kb) + torch.einsum("bhncd,ckd->bhnck", qb, rel)) * at.scale
        if rem:
            keep = torch.zeros(C, C, dtype=torch.bool, device=x.device)
            keep[:rem, :rem] = True
            scores[:, :, -1] = scores[:, :, -1].masked_fill(~keep, -torch.finfo(scores.dtype).max)
        scores = hooks.hook_attn_scores(scores)
        pattern = hooks.hook_pattern(scores.float().softmax(-1).to(qb.dtype))
        z = torch.einsum("bhnck,bhnkd->bhncd", pattern, vb).permute(0, 2, 3, 1, 4).reshape(B, nb * C, H, -1)
        z = hooks.hook_z(z)
        return at.to_out(z.flatten(2)[:, :T])

    def forward(self, features: torch.Tensor, frame_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.tower
        x = self.hook_embed(t.input_linear(features.to(t.input_linear.weight.dtype)))
        block_hooks = cast(list[ConformerBlockHooks], list(self.blocks))  # built in __init__: only these
        for idx, (layer, hooks) in enumerate(zip(t.layers, block_hooks), start=1):
            x = hooks.hook_resid_pre(x)
            x = x + hooks.hook_ff1_out(0.5 * layer.ff1(x))
            x = hooks.hook_resid_mid(
                x + hooks.hook_attn_out(self._attention(layer.attn, hooks.attn, x, t.attention_dists))
            )
            x = x + hooks.hook_conv_out(layer.conv(x))
            x = x + hooks.hook_mlp_out(0.5 * layer.ff2(x))
            x = hooks.hook_resid_post(layer.post_norm(x))
            if idx == t.num_layers // 2:  # CTC self-conditioning
                x = x + t.out_mid(self.hook_ctc_logits(t.out(x)).softmax(-1))
        mask = torch.arange(x.shape[1], device=x.device)[None] < frame_lengths.to(x.device)[:, None]
        return self.hook_out(x), self.hook_mask(mask)


class GraniteConnector(nn.Module):
    """transformers' windowed Q-Former projector. ``forward(frames [B, T, D], frame mask [B, T])`` ->
    (tokens [B, ceil(T / window) * queries, d_model], token mask)."""

    def __init__(self, projector: Any):
        super().__init__()
        self.projector: Any = projector  # transformers' GraniteSpeechEncoderProjector
        self.n_slots: int | None = None  # set by the model: tokens are padded / cut to its audio slot
        self.hook_out = HookPoint()
        self.hook_mask = HookPoint()

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.projector
        tokens = p(frames)
        N = self.n_slots or tokens.shape[1]
        tokens = nn.functional.pad(tokens, (0, 0, 0, max(0, N - tokens.shape[1])))[:, :N]
        n = -(-mask.long().sum(1) // p.window_size) * p.num_queries  # ceil(frames / window) * queries
        out_mask = torch.arange(N, device=frames.device)[None] < n[:, None]
        return self.hook_out(tokens), self.hook_mask(out_mask)


def frames_for(samples, hop: int = 160):
    """Tower frames for a clip of ``samples`` raw samples (the feature extractor's count)."""
    return (samples // hop + 1) // 2


def tokens_for(samples, window: int = 15, queries: int = 3, hop: int = 160):
    """Audio tokens (placeholder count) for a clip of ``samples`` raw samples: ceil(frames / window) * queries."""
    return -(-frames_for(samples, hop) // window) * queries


class GraniteSpeechPALModel(ReleasedPALModel):
    """`ReleasedPALModel` whose audio counts come from the clip's samples (Granite has no frame mask)."""

    def set_preprocessing(self, tokenizer, feature_extractor, chat_template, folder: Path) -> None:
        self.tokenizer, self.feature_extractor, self.chat_template = tokenizer, feature_extractor, chat_template
        self.sample_rate = 16000
        self.hop = int(feature_extractor.melspec_kwargs["hop_length"]) if feature_extractor is not None else 160
        self.window_samples = WINDOW_SECONDS * self.sample_rate
        self.n_audio_slots = int(self._tokens(self.window_samples))
        cast(GraniteConnector, self.connectors[KEY]).n_slots = self.n_audio_slots  # attached by load_granite_speech
        self.pal_cfg.encoders[0].connector.n_tokens = self.n_audio_slots
        gen = Path(folder) / "generation_config.json"
        eos = json.loads(gen.read_text()).get("eos_token_id") if gen.exists() else None
        eos = eos if eos is not None else getattr(self.hf_config.text_config, "eos_token_id", None)
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
            ids.append(tokenizer.eos_token_id)
        self.eos_token_ids = ids

    def _tokens(self, samples):
        p = self.connectors[KEY].projector
        return tokens_for(samples, p.window_size, p.num_queries, self.hop)

    def _samples(self, batch: dict) -> torch.Tensor:
        samples = batch["audio_lengths"] if "input_features" in batch else batch["wave_lengths"]
        longest = int(samples.max())
        if longest > self.window_samples:
            raise AudioTooLongError(
                f"a clip of {longest / self.sample_rate:.2f} s is longer than the {WINDOW_SECONDS} s "
                "audio slot of the workbench's Granite Speech model; cut the audio into clips"
            )
        return samples

    def audio_inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(features [B, T, 160], tower frames per clip [B]); from ``input_features`` + ``audio_lengths`` or
        from ``waves`` + ``wave_lengths`` through the folder's feature extractor (as the processor calls it)."""
        samples = self._samples(batch)
        if "input_features" in batch:
            return batch["input_features"], frames_for(samples, self.hop)
        if self.feature_extractor is None:
            raise ReleasedModelError(
                "Granite Speech's feature extractor needs torchaudio (`pip install torchaudio` "
                "built for your torch); without it pass input_features + audio_lengths"
            )
        waves = [w[:n].float().cpu() for w, n in zip(batch["waves"], samples.tolist())]
        return self.feature_extractor(waves)["input_features"], frames_for(samples, self.hop)

    def n_audio_tokens(self, batch: dict) -> torch.Tensor:
        return self._tokens(self._samples(batch))

    def encode_audio(self, batch: dict) -> dict:
        feats, frames = self.audio_inputs(batch)
        dev = self.embed.weight.device
        out, frame_mask = self.encoders[KEY](feats.to(dev), frames.to(dev))
        tokens, mask = self.connectors[KEY](out, frame_mask)
        return {KEY: (tokens.to(self.dtype), mask)}


def split_state(state: dict[str, torch.Tensor], source: str) -> dict[str, dict[str, torch.Tensor]]:
    """{"tower", "projector", "text" (``model.*``, ``lm_head.*``)} from saved (``encoder.*``, ``projector.*``,
    ``language_model.model.*``, ``language_model.lm_head.*``) or in-memory (``model.encoder.*`` ...) keys."""
    parts: dict[str, dict[str, torch.Tensor]] = {"tower": {}, "projector": {}, "text": {}}
    for key, tensor in state.items():
        k = (
            key[len("model.") :]
            if key.startswith(("model.encoder.", "model.projector.", "model.language_model."))
            else key
        )
        if k.startswith("encoder."):
            parts["tower"][k[len("encoder.") :]] = tensor
        elif k.startswith("projector."):
            parts["projector"][k[len("projector.") :]] = tensor
        elif k.startswith(("language_model.lm_head.", "lm_head.")):
            parts["text"]["lm_head." + k.split("lm_head.", 1)[1]] = tensor
        elif k.startswith("language_model."):
            rest = k[len("language_model.") :]
            parts["text"]["model." + (rest.removeprefix("model."))] = tensor
    for part, got in parts.items():
        if not got:
            raise ReleasedModelError(
                f"{source}: no {part} weights of Granite Speech in the safetensors files "
                f"(keys seen: {sorted(state)[:4]}...). Is the download complete?"
            )
    return parts


def merge_lora(text: dict[str, torch.Tensor], folder: Path) -> bool:
    """Merge the folder's PEFT adapter (``adapter_config.json`` + ``adapter_model.safetensors``) into the text
    weights: W += (alpha / r) B A (alpha / sqrt(r) with rsLoRA). Returns whether there was one."""
    cfg_file, weights = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if not cfg_file.exists():
        return False
    from safetensors.torch import load_file

    cfg = json.loads(cfg_file.read_text())
    if cfg.get("use_dora") or cfg.get("peft_type", "LORA") != "LORA":
        raise ReleasedModelError(
            f"{cfg_file}: only plain LoRA adapters merge here (got peft_type "
            f"{cfg.get('peft_type')!r}, use_dora={cfg.get('use_dora')})"
        )
    r, alpha = cfg["r"], cfg.get("lora_alpha", cfg["r"])
    scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    lora = load_file(str(weights))
    merged = 0
    for key, a in lora.items():
        if ".lora_A." not in key:
            continue
        b = lora[key.replace(".lora_A.", ".lora_B.")]
        module = key.split(".lora_A.")[0]
        module = module[module.index("layers.") :]  # base_model.model.[model.]language_model.layers.N.self_attn.q_proj
        target = "model." + module + ".weight"
        if target not in text:
            raise ReleasedModelError(f"{weights}: LoRA for {module}, which the text model does not have")
        text[target] = text[target] + scale * (b.float() @ a.float()).to(text[target].dtype)
        merged += 1
    if not merged:
        raise ReleasedModelError(f"{weights}: no lora_A/lora_B tensors")
    return True


def fold_multipliers(
    text: dict[str, torch.Tensor], projector: dict[str, torch.Tensor], text_cfg, n_layers: int
) -> None:
    """Granite's embedding / residual multipliers folded into the weights they scale (``logits_scaling`` is not
    applied: transformers 5's GraniteSpeechForConditionalGeneration runs its own ``lm_head`` without it)."""
    m_emb = float(getattr(text_cfg, "embedding_multiplier", 1.0))
    m_res = float(getattr(text_cfg, "residual_multiplier", 1.0))
    text["model.embed_tokens.weight"] = text["model.embed_tokens.weight"] * m_emb
    for i in range(n_layers):
        for name in (f"model.layers.{i}.self_attn.o_proj.weight", f"model.layers.{i}.mlp.down_proj.weight"):
            text[name] = text[name] * m_res
    for name in ("linear.weight", "linear.bias"):
        projector[name] = projector[name] * m_emb


def _preprocessing(folder: Path, tokenizer):
    """(tokenizer, feature extractor or None without torchaudio, chat template)."""
    from transformers import AutoTokenizer

    tok = tokenizer or AutoTokenizer.from_pretrained(folder)
    if not any((folder / n).exists() for n in ("preprocessor_config.json", "processor_config.json")):
        raise ReleasedModelError(
            f"{folder}: no preprocessor_config.json (Granite Speech's feature extractor); copy the "
            "complete model folder, not only its weights"
        )
    fe = None
    try:
        from transformers import GraniteSpeechFeatureExtractor

        fe = GraniteSpeechFeatureExtractor.from_pretrained(folder)
    except ImportError:  # torchaudio missing: features must come with the batch
        pass
    template = None
    for name in ("chat_template.jinja", "chat_template.json"):
        if (folder / name).exists():
            text = (folder / name).read_text()
            template = json.loads(text)["chat_template"] if name.endswith(".json") else text
            break
    template = template or getattr(tok, "chat_template", None)
    if not template:
        raise ReleasedModelError(f"{folder}: no chat template (chat_template.jinja/.json or the tokenizer's)")
    return tok, fe, template


def load(folder: Path, source: str, *, integration=None, tokenizer=None, dtype=None, device=None):
    """Granite Speech as a hooked PAL model (see the module docstring and `loading.load_released`)."""
    from transformers import AutoConfig
    from transformers.models.granite_speech.modeling_granite_speech import (
        GraniteSpeechCTCEncoder,
        GraniteSpeechEncoderProjector,
    )

    from workbench.model.decoder_config import DecoderConfig
    from workbench.model.llm import _read_safetensors_folder
    from workbench.model.released.loading import _dtype, _load_module
    from workbench.model.weights import convert_state_dict

    dtype = _dtype(dtype)
    arch = architecture_of(json.loads((folder / "config.json").read_text()), source)
    config = AutoConfig.from_pretrained(folder)
    try:
        parts = split_state(_read_safetensors_folder(folder), source)
    except FileNotFoundError as e:
        raise ReleasedModelError(str(e)) from e
    text_cfg = config.text_config
    cfg = text_cfg.to_dict()
    cfg["model_type"] = "llama"
    dec_cfg = DecoderConfig.from_hf_config(cfg)
    dec_cfg.attn_scale = float(text_cfg.attention_multiplier)
    text = parts["text"]
    if "lm_head.weight" not in text:
        text["lm_head.weight"] = text["model.embed_tokens.weight"]
    dec_cfg.tie_embeddings = False
    if os.environ.get("WORKBENCH_GRANITE_LORA", "1") != "0":
        merge_lora(text, folder)
    fold_multipliers(text, parts["projector"], text_cfg, dec_cfg.n_layers)

    with torch.device("meta"):
        encoder = GraniteSpeechCTCEncoder(config.encoder_config)
        projector = GraniteSpeechEncoderProjector(config)
    encoder.attention_dists = nn.Buffer(_attention_dists(config.encoder_config), persistent=False)
    encoder = _load_module(encoder, parts["tower"], "audio tower", source, dtype)
    projector = _load_module(projector, parts["projector"], "projector", source, dtype)

    shim = types.SimpleNamespace(
        audio_config=types.SimpleNamespace(hidden_size=config.encoder_config.hidden_dim),
        audio_token_index=config.audio_token_index,
        text_config=text_cfg,
    )
    model = GraniteSpeechPALModel.build(arch, shim, dec_cfg, source, integration)
    model.hf_config = config
    model.load_decoder_weights(convert_state_dict(text, dec_cfg, source), source, dtype)
    model.attach_audio(GraniteTower(encoder), GraniteConnector(projector))
    tok, fe, template = _preprocessing(folder, tokenizer)
    if not getattr(tok, "chat_template", None):  # the hub keeps it in chat_template.json: code that renders with the
        tok.chat_template = template  # tokenizer alone (patching's first answer token) needs it there
    model.set_preprocessing(tok, fe, template, folder)
    if device is not None:
        model.to(device)
    return model.eval()


def _attention_dists(enc_cfg) -> torch.Tensor:
    """The encoder's relative-distance index buffer (not in the state dict), [C, C] long."""
    seq = torch.arange(enc_cfg.context_size)
    rel = seq.view(-1, 1) - seq.view(1, -1)
    return torch.clamp(rel, -enc_cfg.context_size, enc_cfg.context_size) + enc_cfg.max_pos_emb
