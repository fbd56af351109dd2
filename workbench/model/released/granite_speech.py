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
from typing import cast

import torch
from torch import nn

from workbench.model.released.granite_speech_tower import ConformerBlockHooks as ConformerBlockHooks
from workbench.model.released.granite_speech_tower import GraniteConnector as GraniteConnector
from workbench.model.released.granite_speech_tower import GraniteTower as GraniteTower
from workbench.model.released.granite_speech_tower import _attention_dists as _attention_dists
from workbench.model.released.granite_speech_tower import frames_for as frames_for
from workbench.model.released.granite_speech_tower import tokens_for as tokens_for
from workbench.model.released.model import AudioTooLongError, ReleasedPALModel, eos_token_ids
from workbench.model.released.registry import ReleasedModelError, architecture_of, require_parts

KEY = "granite_speech"
WINDOW_SECONDS = 30  # one slot of audio tokens per clip, as for the other classes


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
        self.eos_token_ids = eos_token_ids(folder, self.hf_config, tokenizer)

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
    return require_parts(parts, state, source, " of Granite Speech")


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
