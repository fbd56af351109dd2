"""`ReleasedPALModel`: a released audio-LLM (Qwen2-Audio, Voxtral, Audio Flamingo 3, GLM-ASR) as a PAL model.

One encoder, named after the architecture (``qwen2_audio``, ``voxtral``, ``audioflamingo3``, ``glmasr``):
its tower is hooked inside ``encoders.{key}.`` (`tower.HookedTower`), its projector is
``connectors.{key}``, and the text model is the `HookedDecoder` itself. As released the audio enters as
PLITS@0 at the placeholder slot; ``integration={"mode": "plits"|"lal", "layer": L}`` retrofits it, untrained.

Batches are those of `prompts.ReleasedTaskDataset` (any `AudioTaskDataset` batch in waveform mode works):
``input_ids`` hold the text without the placeholder tokens, ``audio_slot`` where they stood, and ``waves`` /
``wave_lengths`` the clips (or ``input_features`` [B, n_mel, F] + ``feature_mask`` [B, F] directly). The slot
always holds one tower window of tokens (``n_audio_slots``), those past a clip's own count masked, and the
text after the slot counts positions from the clip's own count: so logits, positions and generation equal
transformers' with its expanded placeholders, and every batch has the same layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from workbench.model.layout import TokenLayout, build_layout
from workbench.model.pal import PALModel
from workbench.model.pal_config import ConfigError, ConnectorConfig, EncoderSpec, IntegrationConfig, PALConfig
from workbench.model.released.registry import Architecture, ReleasedModelError, conv_frames
from workbench.model.released.tower import HookedTower


class AudioTooLongError(ReleasedModelError):
    """A clip longer than the tower's window."""


class ReleasedPALModel(PALModel):
    """See the module docstring. Build with ``PALModel.from_pretrained(folder_or_hub_id)``."""

    is_released = True

    # Set by `build`, `attach_audio` and `set_preprocessing` (transformers' config and processors are untyped).
    arch: Architecture
    hf_config: Any
    audio_token_id: int
    tokenizer: Any
    feature_extractor: Any
    chat_template: str | None
    sample_rate: int
    window_samples: int
    window_frames: int
    n_audio_slots: int
    eos_token_ids: list[int]

    @classmethod
    def build(cls, arch: Architecture, hf_config, dec_cfg, source: str, integration: dict | None) -> ReleasedPALModel:
        """An empty model on the meta device (weights come from `loading.load_released`)."""
        keys = dict(integration or {})
        if keys.get("adapter") or keys.get("gate"):
            raise ConfigError("retrofitting adds no trained parts: integration adapter/gate must be off")
        try:
            integ = IntegrationConfig(**keys)
        except TypeError as e:
            raise ConfigError(f"integration: {e}; allowed keys: mode, layer, audio_rope") from e
        integ.validate("integration", dec_cfg.n_layers)
        audio = hf_config.audio_config
        spec = EncoderSpec(
            name=arch.key,
            dim=audio.hidden_size,
            integration=integ,
            connector=ConnectorConfig(type=f"{arch.key}_projector", n_tokens=0, hidden=0),
        )
        pal_cfg = PALConfig(llm=source, insertion="after_system", encoders=[spec])
        with torch.device("meta"):
            model = cls(pal_cfg, dec_cfg)
        model.arch, model.hf_config = arch, hf_config
        model.audio_token_id = int(getattr(hf_config, "audio_token_id", None) or hf_config.audio_token_index)
        return model

    def attach_audio(self, tower: nn.Module, connector: nn.Module) -> None:
        key = self.arch.key
        self.encoders = nn.ModuleDict({key: tower})
        self.connectors = nn.ModuleDict({key: connector})
        self.lal_adapters, self.lal_gates = nn.ModuleDict(), nn.ParameterDict()
        self.requires_grad_(False)
        self.setup()

    def set_preprocessing(self, tokenizer, feature_extractor, chat_template: str | None, folder: Path) -> None:
        self.tokenizer, self.feature_extractor, self.chat_template = tokenizer, feature_extractor, chat_template
        fe = feature_extractor
        self.sample_rate = int(fe.sampling_rate)
        self.window_samples = int(fe.n_samples)
        tower = cast(HookedTower, self.encoders[self.arch.key])  # from attach_audio (Granite overrides this method)
        window = tower.window_frames
        if window is not None and window != fe.nb_max_frames:
            raise ReleasedModelError(
                f"{folder}: the feature extractor gives {fe.nb_max_frames} mel frames per window "
                f"but the tower reads {window}; preprocessor_config.json does not fit config.json"
            )
        self.window_frames = int(fe.nb_max_frames)
        tower.set_mel_rate(fe.sampling_rate / fe.hop_length)
        self.n_audio_slots = int(self.arch.n_tokens(torch.tensor(self.window_frames), conv_frames(self.window_frames)))
        self.pal_cfg.encoders[0].connector.n_tokens = self.n_audio_slots
        self.eos_token_ids = eos_token_ids(folder, self.hf_config, tokenizer)

    # ------------------------------------------------------------------ audio
    def audio_inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(features [B, n_mel, F], feature mask [B, F]) from the batch's features or its waveforms, through the
        model's own feature extractor (one window, padded to its length)."""
        if "input_features" in batch:
            return batch["input_features"], batch["feature_mask"]
        if "waves" not in batch:
            raise KeyError("batch has no audio: expected waves + wave_lengths (or input_features + feature_mask)")
        rate = batch.get("sample_rate", 16000)
        if rate != self.sample_rate:
            raise ValueError(
                f"batch audio is {rate} Hz but {self.arch.cls} needs {self.sample_rate} Hz; build the "
                f"dataset with sample_rate={self.sample_rate}"
            )
        lengths = batch["wave_lengths"].tolist()
        longest = max(lengths)
        if longest > self.window_samples:
            raise AudioTooLongError(
                f"a clip of {longest / rate:.2f} s is longer than the {self.window_samples / rate:g} s the "
                f"{self.arch.cls} tower reads in one window; cut the audio into clips of at most "
                f"{self.window_samples / rate:g} s (e.g. `sox in.wav out.wav trim 0 {self.window_samples / rate:g}`)"
            )
        waves = [np.asarray(w[:n].float().cpu().numpy()) for w, n in zip(batch["waves"], lengths)]
        out = self.feature_extractor(
            waves, sampling_rate=self.sample_rate, padding="max_length", return_attention_mask=True, return_tensors="pt"
        )
        return out["input_features"], out["attention_mask"]

    def encode_audio(self, batch: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{key: (projected tokens [B, n_audio_slots, d_model], mask [B, n_audio_slots])}."""
        feats, fmask = self.audio_inputs(batch)
        dev = self.embed.weight.device
        key = self.arch.key
        frames, frame_mask = self.encoders[key](feats.to(dev), fmask.to(dev))
        tokens, mask = self.connectors[key](frames, frame_mask)
        return {key: (tokens.to(self.dtype), mask)}

    def n_audio_tokens(self, batch: dict) -> torch.Tensor:
        """[B] audio tokens of each clip (the processor's placeholder count), without running the tower."""
        _, fmask = self.audio_inputs(batch)
        return self.arch.n_tokens(fmask.long().sum(-1), conv_frames(self.window_frames))

    def token_layout(self, batch: dict, audio: dict | None = None) -> TokenLayout:
        """Where each text and audio token sits; see the module docstring for the audio slot."""
        key, N = self.arch.key, self.n_audio_slots
        dev = batch["input_ids"].device
        if audio is not None:
            mask = audio[key][1].to(dev)
        else:
            n = self.n_audio_tokens(batch).to(dev)
            mask = torch.arange(N, device=dev)[None] < n[:, None]
        spec = self.pal_cfg.encoders[0]
        layout = build_layout(
            batch["attention_mask"].to(dev),
            batch["audio_slot"].to(dev),
            [(key, spec.integration.mode, spec.integration.layer, N)],
            {key: mask},
        )
        short = N - mask.long().sum(1)  # [B] unused slots: text after the slot counts from the clip's own count
        t = torch.arange(layout.text_index.shape[1], device=dev)[None]
        after = (t >= layout.audio_slot[:, None]).long()
        pos = layout.position_ids.gather(1, layout.text_index) - after * short[:, None]
        layout.position_ids = layout.position_ids.scatter(1, layout.text_index, pos)
        return layout

    # ------------------------------------------------------------------ generation, datasets
    @torch.no_grad()
    def generate_ids(self, batch: dict, max_new_tokens: int = 16, share_prefix: bool = False) -> torch.Tensor:
        """Greedy continuation (stops at the model's own end-of-turn / EOS ids) -> new ids [B, T].

        ``share_prefix`` is accepted for `PALModel`'s signature and ignored: released models prefill every row."""
        from workbench.model.generate import greedy_generate

        ids = batch["input_ids"].to(self.embed.weight.device)
        out = greedy_generate(
            self,
            ids,
            batch["attention_mask"].to(ids.device),
            max_new_tokens=max_new_tokens,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            prefill=lambda cache: self(batch, past=cache),
        )
        return out[:, ids.shape[1] :]

    def task_dataset(self, root, *, cache_dir=None, fill_cache: bool = True, progress: bool = False, **kw):
        """`prompts.ReleasedTaskDataset` over an audiofolder, in this model's chat template (waveforms: its own audio
        tower encodes them, so ``cache_dir`` / ``fill_cache`` / ``progress`` have nothing to do; they keep the
        signature of `PALModel.task_dataset`)."""
        from workbench.model.released.prompts import ReleasedTaskDataset

        return ReleasedTaskDataset(root, self, **kw)

    def text_forward(self, input_ids: torch.Tensor, **kw) -> torch.Tensor:
        """The text model alone (no audio): logits [B, L, V]."""
        return self.decode(input_ids, **kw)

    # ------------------------------------------------------------------ not for released models
    def save_pretrained(self, directory, extra=None):
        raise NotImplementedError(
            f"{self.arch.cls} is loaded from its own folder ({self.pal_cfg.llm}); there are no trained parts to save"
        )

    def enable_lora(self, *a, **k):
        raise NotImplementedError("training a released model is not supported by the workbench")


def eos_token_ids(folder: Path, hf_config, tokenizer) -> list[int]:
    """The ids that end an answer: ``generation_config.json``'s ``eos_token_id`` (else the text config's), plus the
    tokenizer's own end-of-sequence id."""
    gen = Path(folder) / "generation_config.json"
    eos = json.loads(gen.read_text()).get("eos_token_id") if gen.exists() else None
    eos = eos if eos is not None else getattr(hf_config.text_config, "eos_token_id", None)
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
