"""`PALModel`: frozen audio encoders -> one trainable connector per encoder -> PLITS / LAL integration ->
the pretrained LLM (`HookedDecoder`), every intermediate behind a hook name.

PALModel *is* a HookedDecoder (same ``blocks.{l}...`` hook names) with audio modules added:
``encoders.{name}.hook_out`` [B, T, D_enc] (frame tokens, from the encoder or the token cache) and
``encoders.{name}.hook_mask`` [B, T] bool (real frames), ``connectors.{name}.hook_out`` [B, N, d_model] and
``connectors.{name}.hook_mask`` [B, N] bool, ``blocks.{l}.hook_audio_in`` [B, N, d_model] (PLITS
insertion), ``blocks.{l}.attn.hook_audio_k/v`` [B, N, kv_heads, d_head] (LAL layers).

Call it on a batch from ``workbench.data.AudioTaskDataset`` (token mode: ``audio_tokens`` /
``audio_token_mask``; waveform mode: ``waves`` / ``wave_lengths``): ``logits = model(batch)`` [B, Lt, V],
aligned with ``batch["input_ids"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn

from workbench.common.constants import TRAINABLE_PARTS
from workbench.model.audio.lal import add_lal_modules
from workbench.model.audio.plan import AudioPlan, plan_batch
from workbench.model.audio_modules import EncoderSlot
from workbench.model.connectors import make_connector
from workbench.model.decoder import HookedDecoder
from workbench.model.decoder_config import DecoderConfig
from workbench.model.generate import greedy_generate
from workbench.model.kv_cache import KVCache
from workbench.model.layout import TokenLayout, build_layout
from workbench.model.pal_checkpoint import CHECKPOINT_FORMAT, CheckpointMismatchError, PALCheckpointMixin  # noqa: F401 (re-exported)
from workbench.model.pal_config import ConfigError, EncoderSpec, PALConfig
from workbench.model.shared_prefix import MIN_SHARED_PREFIX, forward_shared_prefix, pads_after_prefix, shared_prefix_len
from workbench.model.weights import convert_state_dict

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

__all__ = ["PALModel", "PALConfig", "CheckpointMismatchError", "CHECKPOINT_FORMAT"]


# Deliberate mismatch (ignored below): from_pretrained is the mixin's (a PAL checkpoint folder, + tokenizer),
# not HookedDecoder's (an LLM name, + dtype): a PALModel is built from its checkpoint, a bare LLM by HookedDecoder.
class PALModel(PALCheckpointMixin, HookedDecoder):  # type: ignore[misc]
    """See the module docstring. Build with `PALModel.from_config` or `PALModel.from_pretrained`."""

    def __init__(self, pal_cfg: PALConfig, dec_cfg: DecoderConfig):
        super().__init__(dec_cfg)
        self.pal_cfg = pal_cfg
        self.tokenizer: PreTrainedTokenizerBase | None = None  # set by from_config / from_pretrained
        self.lora_cfg: dict | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, pal_cfg: PALConfig | dict, tokenizer=None, seed: int = 0) -> PALModel:
        """Load the LLM (offline default: SmolLM2) and build fresh connectors/adapters with ``seed``."""
        from workbench.model.llm import load_state, load_tokenizer

        if isinstance(pal_cfg, dict):
            pal_cfg = PALConfig.from_dict(pal_cfg)
        hf_config, state, source = load_state(pal_cfg.llm)
        dec_cfg = DecoderConfig.from_hf_config(hf_config)
        pal_cfg.validate(dec_cfg.n_layers)
        with torch.device("meta"):
            model = cls(pal_cfg, dec_cfg)
        model.load_decoder_weights(convert_state_dict(state, dec_cfg, source), source)
        model.requires_grad_(False)
        model.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(pal_cfg.llm)
        model._build_audio_modules(seed)
        return model.eval()

    def _build_audio_modules(self, seed: int) -> None:
        dev = self.embed.weight.device
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            self.encoders = nn.ModuleDict()
            self.connectors = nn.ModuleDict()
            self.lal_adapters = nn.ModuleDict()
            self.lal_gates = nn.ParameterDict()
            for spec in self.pal_cfg.encoders:
                dim = spec.dim if spec.dim is not None else EncoderSlot(spec).encoder().dim
                spec.dim = dim
                self.encoders[spec.key] = EncoderSlot(spec)
                conn = make_connector(dim, self.cfg.d_model, spec.connector).to(dev)
                integ = spec.integration
                if integ.mode == "plits":
                    with torch.no_grad():
                        conn.norm_out.gain.fill_(self._residual_rms(integ.layer))
                self.connectors[spec.key] = conn
                if integ.mode == "lal":
                    add_lal_modules(self, spec, dev)
        finally:
            torch.random.set_rng_state(gen_state)
        self.requires_grad_(False)
        self.setup()

    @torch.no_grad()
    def _residual_rms(self, layer: int) -> float:
        """RMS of the text residual stream entering ``layer`` on a fixed neutral prompt (connector gain init)."""
        ids = (torch.arange(100, 132, device=self.embed.weight.device) % self.cfg.d_vocab)[None]
        resid = self.decode(ids, stop_at_layer=layer)
        return float(resid[0, 1:].pow(2).mean().sqrt())

    # ------------------------------------------------------------------ what data loading and analyses read
    @property
    def encoder_names(self) -> list[str]:
        return self.pal_cfg.encoder_names

    @property
    def encoder_specs(self) -> list[EncoderSpec]:
        """Each encoder's spec (name, dim, load options, connector, integration), in config order."""
        return list(self.pal_cfg.encoders)

    @property
    def insertion(self) -> str:
        """Where the audio slot sits in the prompt: "after_system" or "prefix" (datasets take it as ``slot``)."""
        return self.pal_cfg.insertion

    @property
    def integration(self) -> dict[str, tuple[str, int]]:
        """{encoder: (mode "plits"/"lal", first layer that sees its tokens)}: what an analysis checks before a run
        (per batch, `token_layout` says where each token sits)."""
        return {s.name: (s.integration.mode, s.integration.layer) for s in self.pal_cfg.encoders}

    def encoders_in_mode(self, mode: str) -> list[str]:
        """Names of the encoders integrated by ``mode`` ("plits" or "lal"), in config order."""
        return [name for name, (m, _) in self.integration.items() if m == mode]

    def task_dataset(self, root, *, cache_dir=None, fill_cache: bool = True, progress: bool = False, **kw):
        """`AudioTaskDataset` over the audiofolder ``root`` for this model (its encoders, its audio slot), reading
        the token cache ``cache_dir`` (default `workbench.common.constants.TOKEN_CACHE`), which is first filled with every
        clip this model's encoders have not encoded yet (``fill_cache``). ``kw``: tasks, with_answer, ..."""
        from workbench.common.constants import TOKEN_CACHE
        from workbench.data.dataset import AudioTaskDataset

        cache_dir = TOKEN_CACHE if cache_dir is None else cache_dir
        if fill_cache and self.pal_cfg.encoders:
            from workbench.encoders import encoders_for
            from workbench.encoders.cache import encode_dataset

            encode_dataset(root, encoders_for(self.pal_cfg.encoders), cache_dir, progress=progress)
        return AudioTaskDataset(
            root, self.tokenizer, encoders=self.encoder_names, cache_dir=cache_dir, slot=self.insertion, **kw
        )

    def check_encoders(self, encoders: str | Iterable[str] | None, error: type[Exception] = KeyError) -> list[str]:
        """The named encoders (all when None), or ``error`` naming the unknown ones and the valid names."""
        names = list(self.encoder_names)
        if encoders is None:
            return names
        chosen = [encoders] if isinstance(encoders, str) else list(encoders)
        unknown = [e for e in chosen if e not in names]
        if unknown:
            raise error(
                f"unknown encoder(s) {unknown}: this model's encoders are {names}; name one of them "
                "(e.g. --encoder NAME) or leave it out for all"
            )
        return chosen

    # ------------------------------------------------------------------ audio
    def encode_audio(self, batch: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{encoder: (connector tokens [B, N, d_model], mask [B, N])} from cached tokens or waveforms."""
        out = {}
        for spec in self.pal_cfg.encoders:
            slot = cast(EncoderSlot, self.encoders[spec.key])  # built by _build_audio_modules: only these
            if "audio_tokens" in batch and spec.name in batch["audio_tokens"]:
                frames = batch["audio_tokens"][spec.name]
                fmask = batch["audio_token_mask"][spec.name]
            elif "waves" in batch:
                enc = slot.encoder()
                waves, lengths = batch["waves"], batch["wave_lengths"]
                rate = batch.get("sample_rate", 16000)
                if rate != enc.sample_rate:
                    raise ValueError(
                        f"batch audio is {rate} Hz but encoder {spec.name!r} needs {enc.sample_rate} Hz; "
                        f"build the dataset with sample_rate={enc.sample_rate}"
                    )
                with torch.no_grad():
                    frames, fmask = enc(waves.to(torch.float32).cpu(), lengths.cpu())
            else:
                raise KeyError(
                    f"batch has no audio for encoder {spec.name!r}: expected audio_tokens[{spec.name!r}] "
                    "(token-cache mode) or waves + wave_lengths"
                )
            dev = self.embed.weight.device
            frames, fmask = frames.to(dev, self.dtype), fmask.to(dev)
            if frames.shape[-1] != spec.dim:
                raise ValueError(
                    f"encoder {spec.name!r} tokens are {frames.shape[-1]}-d but its connector expects "
                    f"{spec.dim}-d: was the token cache made with another encoder?"
                )
            frames, fmask = slot(frames, fmask)
            out[spec.name] = self.connectors[spec.key](frames, fmask)
        return out

    def check_audio_slot(self, batch: dict) -> None:
        """Raise ValueError unless ``batch["audio_slot"]`` agrees with ``pal_cfg.insertion``: "prefix" puts the
        audio before the first real token (before the system prompt), "after_system" after the system prompt."""
        first_real = batch["attention_mask"].long().argmax(1).to(batch["audio_slot"].device)
        at_start = batch["audio_slot"] == first_real
        prefix = self.pal_cfg.insertion == "prefix"
        if bool((at_start != prefix).any()):
            where = "at the start of the prompt" if not prefix else "after the system prompt"
            raise ValueError(
                f"this model's insertion is {self.pal_cfg.insertion!r} but the batch puts the audio "
                f"slot {where}: build the dataset with slot=model.pal_cfg.insertion "
                f"(AudioTaskDataset(..., slot={self.pal_cfg.insertion!r}))"
            )

    def token_layout(self, batch: dict, audio: dict | None = None) -> TokenLayout:
        """Where each text and audio token sits (residual, key axis, position ids) for this batch."""
        self.check_audio_slot(batch)
        if audio is None:
            masks = {}
            for spec in self.pal_cfg.encoders:
                if "audio_token_mask" in batch and spec.name in batch["audio_token_mask"]:
                    has = batch["audio_token_mask"][spec.name].any(1)
                else:
                    has = batch["wave_lengths"] > 0
                masks[spec.name] = has[:, None].expand(-1, spec.connector.n_tokens)
        else:
            masks = {name: m for name, (_, m) in audio.items()}
        dev = batch["input_ids"].device
        encs = [(s.name, s.integration.mode, s.integration.layer, s.connector.n_tokens) for s in self.pal_cfg.encoders]
        return build_layout(
            batch["attention_mask"].to(dev), batch["audio_slot"].to(dev), encs, {k: v.to(dev) for k, v in masks.items()}
        )

    def audio_plan(self, batch: dict) -> AudioPlan:
        """What this batch's audio does to the decoder (`workbench.model.audio.plan`): encoders -> connectors ->
        layout -> PLITS writes per layer and the LAL K/V of every LAL layer, computed once."""
        audio = self.encode_audio(batch)
        return plan_batch(self, self.token_layout(batch, audio), audio)

    # ------------------------------------------------------------------ forward, loss, generation
    # Deliberate override mismatch (ignored below): a PALModel is called on a batch dict (audio + text); its
    # text-only entry with HookedDecoder's arguments is `decode` (what greedy_generate calls on any decoder).
    def forward(  # type: ignore[override]
        self,
        batch: dict,
        *,
        past: KVCache | None = None,
        mlp_position_mask: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """batch (see the module docstring) -> logits [B, Lt, V] aligned with batch["input_ids"].

        mlp_position_mask: [B, S] bool in the residual layout (``token_layout(batch)``); logits_at [B, Lt]
        bool: return only those positions' logits, [n, V].
        """
        if not isinstance(batch, dict):
            raise TypeError(
                "PALModel takes a batch dict from AudioTaskDataset.collate_fn; for text only, "
                "use model.decode(input_ids, ...)"
            )
        return self.decode(
            batch["input_ids"].to(self.embed.weight.device),
            plan=self.audio_plan(batch),
            past=past,
            mlp_position_mask=mlp_position_mask,
            logits_at=logits_at,
        )

    def loss(self, batch: dict, share_prefix: bool = True) -> torch.Tensor:
        """Mean next-token cross-entropy over the answer tokens (labels != -100).

        Only the positions that predict an answer token are projected onto the vocabulary, and the prompt
        prefix that every row shares (the system turn) runs once for the batch (``share_prefix``; see
        :mod:`workbench.model.shared_prefix`: same loss and gradients up to float rounding)."""
        labels = batch["labels"].to(self.embed.weight.device)
        targets = labels[:, 1:]
        predicts = F.pad(targets != -100, (0, 1), value=False)  # position t predicts token t + 1
        P = shared_prefix_len(batch) if share_prefix else 0
        if P >= MIN_SHARED_PREFIX and not bool(predicts[:, :P].any()):
            logits = forward_shared_prefix(self, batch, P, predicts)
        else:
            logits = self(batch, logits_at=predicts)
        return F.cross_entropy(logits.float(), targets[targets != -100])

    @torch.no_grad()
    def generate_ids(self, batch: dict, max_new_tokens: int = 16, share_prefix: bool = False) -> torch.Tensor:
        """Greedy continuation of a left-padded prompt batch -> new token ids [B, T].

        ``share_prefix``: run the prompt prefix every row shares once and project only the last prompt position
        (evaluation speed; same answers up to float rounding of near-ties). Off by default, so hooked analyses
        see every row's full prompt."""
        ids = batch["input_ids"].to(self.embed.weight.device)
        prefill = lambda cache: self(batch, past=cache)  # noqa: E731
        if share_prefix:
            moved, P = pads_after_prefix(batch)
            if P >= MIN_SHARED_PREFIX:
                last = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
                last[:, -1] = True
                prefill = lambda cache: forward_shared_prefix(self, moved, P, last, past=cache)[:, None]  # noqa: E731
        out = greedy_generate(
            self,
            ids,
            batch["attention_mask"].to(ids.device),
            max_new_tokens=max_new_tokens,
            eos_token_id=self._tokenizer().eos_token_id,
            pad_token_id=self._tokenizer().pad_token_id,
            prefill=prefill,
        )
        return out[:, ids.shape[1] :]

    def generate_answers(self, batch: dict, max_new_tokens: int = 16, share_prefix: bool = False) -> list[str]:
        """Greedy answers (decoded, stripped) for a prompt batch from ``AudioTaskDataset.prompt_collate_fn()``."""
        if batch["attention_mask"][:, -1].min() == 0:
            raise ValueError("generation needs a left-padded prompt batch: use dataset.prompt_collate_fn()")
        new = self.generate_ids(batch, max_new_tokens, share_prefix=share_prefix)
        return [t.strip() for t in self._tokenizer().batch_decode(new, skip_special_tokens=True)]

    def _tokenizer(self) -> PreTrainedTokenizerBase:
        if self.tokenizer is None:
            raise ValueError(
                "this PALModel has no tokenizer: build it with PALModel.from_config/from_pretrained "
                "or set model.tokenizer"
            )
        return self.tokenizer

    def ask(self, audio, question: str, **kw) -> str:
        """Greedy answer to ``question`` about ``audio`` (a file path of any rate and channel count, or a waveform
        with ``sample_rate=``); see `workbench.model.inference.ask`. To see why, ``workbench.analysis.explain.
        explain(model, audio, question)`` (or ``python -m workbench.ask --explain``)."""
        from workbench.model.inference import ask

        return ask(self, audio, question, **kw)

    # ------------------------------------------------------------------ trainable parts
    def enable_lora(
        self, rank: int = 8, alpha: float = 16, dropout: float = 0.0, targets: Iterable[str] = ("q_proj", "v_proj")
    ) -> None:
        """Add LoRA (peft) to the LLM's linears named in ``targets`` (frozen until set_trainable(["lora"]))."""
        from peft import LoraConfig, inject_adapter_in_model

        if self.lora_cfg is not None:
            raise RuntimeError("LoRA is already enabled on this model")
        targets = list(targets)
        valid = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
        if not set(targets) <= valid:
            raise ConfigError(f"unknown LoRA target(s) {sorted(set(targets) - valid)}; choose from {sorted(valid)}")
        # peft annotates lora_alpha as int but only uses it in the scaling alpha / rank: float alphas (16.0) work.
        lora = LoraConfig(
            r=rank,
            lora_alpha=alpha,  # type: ignore[arg-type]
            lora_dropout=dropout,
            target_modules=targets,
        )
        inject_adapter_in_model(lora, self.blocks)
        self.lora_cfg = {"rank": rank, "alpha": alpha, "dropout": dropout, "targets": targets}
        for n, p in self.blocks.named_parameters():
            if "lora_" in n:
                p.requires_grad_(False)
        self.setup()

    def _part_of(self, name: str) -> str | None:
        if name.startswith("connectors."):
            return "connectors"
        if name.startswith(("lal_adapters.", "lal_gates.")):
            return "adapters"
        if "lora_" in name:
            return "lora"
        return None

    def set_trainable(self, parts: Iterable[str]) -> list[str]:
        """Train exactly ``parts`` (among connectors, adapters, lora); freeze everything else. Returns the
        names of the trainable parameters."""
        parts = set(parts)
        unknown = parts - set(TRAINABLE_PARTS)
        if unknown:
            raise ConfigError(f"unknown trainable part(s) {sorted(unknown)}; choose from {TRAINABLE_PARTS}")
        if "lora" in parts and self.lora_cfg is None:
            raise ConfigError("'lora' is trainable but LoRA is not enabled: call enable_lora() first")
        names = []
        for name, p in self.named_parameters():
            on = self._part_of(name) in parts
            p.requires_grad_(on)
            if on:
                names.append(name)
        return names
