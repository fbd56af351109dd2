"""`HookedDecoder`: a decoder-only LM whose every intermediate is a TransformerLens `HookPoint`.

It loads the weights of a `transformers` causal LM (Llama family: SmolLM2, Llama 3.x, Qwen2/2.5; and
GPT-2) and reproduces its logits. Beyond a plain LM it reads an `AudioPlan` (`workbench.model.audio`: PLITS
slots written at their layer, LAL keys/values per layer, made once per batch), explicit position ids and
masks, a KV cache, and a per-position FFN mask, so the audio integrations plug in without touching the
attention code.

Hook names follow TransformerLens: ``hook_embed``, ``hook_pos_embed`` (GPT-2),
``blocks.{l}.hook_resid_pre/mid/post``, ``blocks.{l}.ln1.hook_normalized``,
``blocks.{l}.attn.hook_q/k/v/attn_scores/pattern/z``, ``blocks.{l}.hook_attn_out``,
``blocks.{l}.mlp.hook_pre/post``, ``blocks.{l}.hook_mlp_out``, ``ln_final.hook_normalized``; plus the
audio hooks ``blocks.{l}.attn.hook_audio_k/v`` and ``blocks.{l}.hook_audio_in``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import torch
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from workbench.model.audio import plits
from workbench.model.audio.plan import AudioPlan, LayerMasks, text_plan
from workbench.model.decoder_config import DecoderConfig
from workbench.model.kv_cache import KVCache
from workbench.model.layers import Block, ExtraKV, make_norm
from workbench.model.weights import MissingWeightsError, convert_state_dict

_LAYER_RE = re.compile(r"^blocks\.(\d+)\.")


class HookedDecoder(HookedRootModule):
    """Decoder-only LM with TransformerLens hook points. Call it like a function:

    ``logits = model(input_ids [B, L], attention_mask=[B, L], position_ids=[B, L], extra_kv={l: ExtraKV},
    past=KVCache, mlp_position_mask=[B, L])`` (or ``plan=AudioPlan`` instead of the mask, positions and extra_kv) -> logits [B, L, V] (fp32 for fp32 weights). ``model.decode(...)``
    takes the same arguments on every subclass (a `PALModel` is called on a batch dict instead).
    """

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.d_vocab, cfg.d_model)
        self.hook_embed = HookPoint()  # [B, L, M]
        if cfg.arch == "gpt2":
            self.pos_embed = nn.Embedding(cfg.n_ctx, cfg.d_model)
            self.hook_pos_embed = HookPoint()  # [B, L, M]
            self.rotary = None
        else:
            self.rotary = _make_rotary(cfg)
        self.blocks = nn.ModuleList(Block(cfg, layer) for layer in range(cfg.n_layers))
        self.ln_final = make_norm(cfg)
        self.unembed = nn.Linear(cfg.d_model, cfg.d_vocab, bias=False)
        if cfg.tie_embeddings:
            self.unembed.weight = self.embed.weight
        self.setup()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_hf_config_and_state_dict(
        cls, hf_config, state_dict: Mapping[str, torch.Tensor], source: str = "state dict", dtype=torch.float32
    ) -> HookedDecoder:
        cfg = DecoderConfig.from_hf_config(hf_config)
        with torch.device("meta"):
            model = cls(cfg)
        model.load_decoder_weights(convert_state_dict(state_dict, cfg, source), source, dtype)
        return model.eval().requires_grad_(False)

    def load_decoder_weights(self, ours: Mapping[str, torch.Tensor], source: str, dtype=torch.float32) -> None:
        """Assign converted LLM weights (our names) to a model built on the meta device."""
        self.load_state_dict({k: v.to(dtype) for k, v in ours.items()}, strict=False, assign=True)
        if self.cfg.tie_embeddings:
            self.unembed.weight = self.embed.weight
        if self.rotary is not None:  # buffers are not in the state dict: rebuild them off the meta device
            self.rotary = _make_rotary(self.cfg)
        leftover = [n for n, p in self.named_parameters() if p.is_meta]
        if leftover:
            raise MissingWeightsError(f"{source}: no value for {', '.join(leftover[:8])}")

    @classmethod
    def from_hf_model(cls, hf_model) -> HookedDecoder:
        """From a loaded ``transformers`` causal LM (weights are copied by reference where possible)."""
        dtype = next(hf_model.parameters()).dtype
        return cls.from_hf_config_and_state_dict(hf_model.config, hf_model.state_dict(), type(hf_model).__name__, dtype)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = "smollm2", dtype=torch.float32) -> HookedDecoder:
        """From ``"smollm2"`` (the offline default), a local checkpoint folder, or a hub id (needs network)."""
        from workbench.model.llm import load_state

        hf_config, state_dict, source = load_state(name_or_path)
        return cls.from_hf_config_and_state_dict(hf_config, state_dict, source, dtype)

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.weight.dtype

    def check_layer(self, layer: int, what: str = "layer") -> int:
        """Raise a clear IndexError unless 0 <= layer < n_layers."""
        if not isinstance(layer, int) or not 0 <= layer < self.cfg.n_layers:
            raise IndexError(
                f"{what} {layer!r} is out of range: this model has {self.cfg.n_layers} layers, "
                f"valid indices are 0..{self.cfg.n_layers - 1}"
            )
        return layer

    def check_hook_name(self, name: str) -> str:
        """Raise a KeyError naming close matches unless ``name`` is one of this model's hook points."""
        if name in self.hook_dict:
            return name
        m = _LAYER_RE.match(name)
        if m:
            self.check_layer(int(m.group(1)), f"layer in hook name {name!r}")
        suffix = name.split(".")[-1]
        close = sorted({re.sub(r"^blocks\.\d+\.", "blocks.{l}.", n) for n in self.hook_dict if n.endswith(suffix)})
        raise KeyError(
            f"unknown hook name {name!r}"
            + (f"; hooks ending in {suffix!r}: {', '.join(close)}" if close else "")
            + ". `model.hook_dict` lists every hook name."
        )

    def rope(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """cos, sin [B, L, D] for position ids [B, L]; None for models without RoPE (GPT-2)."""
        if self.rotary is None:
            return None
        probe = torch.empty((), dtype=self.dtype, device=self.device)
        return self.rotary(probe, position_ids)

    @staticmethod
    def default_position_ids(attention_mask: torch.Tensor, start: torch.Tensor | int = 0) -> torch.Tensor:
        """Positions counting only real tokens: cumsum(mask) - 1 (+ start), as transformers' generate does.
        attention_mask [B, L] -> [B, L] long; padding positions get the neighbouring value."""
        pos = attention_mask.long().cumsum(-1) - 1
        pos = pos.clamp(min=0)
        if not isinstance(start, int):
            start = start[:, None]
        return pos + start

    # ------------------------------------------------------------------ forward
    def forward(self, input_ids: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """``model(input_ids, ...)``: the text-only entry, `decode` (subclasses such as `PALModel` change what
        ``forward`` takes and call `decode` themselves)."""
        return self.decode(input_ids, **kwargs)

    def decode(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        extra_kv: Mapping[int, ExtraKV] | None = None,
        plan: AudioPlan | None = None,
        past: KVCache | None = None,
        mlp_position_mask: torch.Tensor | None = None,
        stop_at_layer: int | None = None,
        logits_at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the LM (the one decoder entry: ``forward`` of this class and of `PALModel` both call it).

        Text: input_ids [B, Lt] (or inputs_embeds [B, Lt, M]); attention_mask [B, Lt] (1 real, 0 pad);
        position_ids [B, Lt] (default: counting real tokens); extra_kv {layer: ExtraKV}: keys/values that never
        form queries. Audio: ``plan``, an `AudioPlan` made once per batch (`PALModel.audio_plan`), replaces
        those three: where the text sits among the PLITS slots, the slots' writes per layer, the LAL K/V per
        layer; attention_mask, position_ids and mlp_position_mask are then in its residual layout [B, S].
        past: a `KVCache` this call extends in place.

        Returns logits [B, Lt, V] in the text layout (aligned with input_ids), or with
        ``stop_at_layer=l`` the residual stream entering block l in the residual layout [B, S, M].
        ``logits_at`` [B, Lt] bool: only unembed those positions, returning [n_selected, V] (training: the
        vocabulary projection of every position is the largest single matmul of a small LM).
        """
        text = self._embed(input_ids, inputs_embeds)
        plan = self._plan(text, plan, attention_mask, position_ids, extra_kv, past)
        resid = plits.place_text(text, plan.text_index, plan.seq_len)  # [B, S, M]
        if self.cfg.arch == "gpt2":
            resid = resid + self.hook_pos_embed(self.pos_embed(plan.position_ids))
        rope = self.rope(plan.position_ids)
        masks = LayerMasks(plan, past)
        n_layers = self.cfg.n_layers if stop_at_layer is None else self.check_layer(stop_at_layer, "stop_at_layer")
        for layer, block in enumerate(self.blocks[:n_layers]):
            extra = plan.lal.get(layer)
            allowed, live = masks.at(layer, extra)
            past_kv = past.layers[layer] if past is not None else None
            resid, new_kv = block(resid, allowed, rope, extra, past_kv, mlp_position_mask, plan.plits.get(layer), live)
            if past is not None:
                past.append(layer, *new_kv)
        if stop_at_layer is not None:
            return resid
        if past is not None:
            past.extend_positions(plan.attention_mask, plan.position_ids, masks.live_from)
            past.extra = dict(plan.lal)
        normed = self.ln_final(plits.gather_text(resid, plan.text_index))
        if logits_at is not None:
            return self.unembed(normed[logits_at.bool()])
        return self.unembed(normed)

    def _plan(self, text, plan, attention_mask, position_ids, extra_kv, past) -> AudioPlan:
        """The given plan (checked against the text and the context length) or a text-only one."""
        B, Lt, _ = text.shape
        if plan is None:
            plan = text_plan(self, B, Lt, text.device, attention_mask, position_ids, extra_kv, past)
        elif attention_mask is not None or position_ids is not None or extra_kv is not None:
            raise ValueError(
                "pass either plan (audio batches) or attention_mask/position_ids/extra_kv (text), not both"
            )
        S = plan.seq_len
        if plan.attention_mask.shape != (B, S) or plan.position_ids.shape != (B, S):
            raise ValueError(
                f"the plan's masks are {tuple(plan.attention_mask.shape)} / {tuple(plan.position_ids.shape)}, "
                f"expected {(B, S)} for {Lt} text tokens"
            )
        for layer in (*plan.plits, *plan.lal):
            self.check_layer(layer, "audio plan layer")
        longest = int(plan.position_ids.max()) + 1 if plan.position_ids.numel() else 0
        if longest > self.cfg.n_ctx:
            P = past.length if past is not None else 0
            raise ValueError(
                f"sequence needs position {longest - 1} but the model's context is {self.cfg.n_ctx} positions "
                f"({S} positions in this call, {P} cached); shorten the prompt or audio"
            )
        return plan

    def _embed(self, input_ids, inputs_embeds) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids [B, L] or inputs_embeds [B, L, d_model]")
        if input_ids is not None:
            if input_ids.ndim != 2:
                raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
            if input_ids.numel() and (int(input_ids.max()) >= self.cfg.d_vocab or int(input_ids.min()) < 0):
                raise ValueError(f"input_ids contain ids outside the vocabulary 0..{self.cfg.d_vocab - 1}")
            inputs_embeds = self.embed(input_ids)
        elif inputs_embeds.ndim != 3 or inputs_embeds.shape[-1] != self.cfg.d_model:
            raise ValueError(
                f"inputs_embeds must be [batch, seq, {self.cfg.d_model}], got {tuple(inputs_embeds.shape)}"
            )
        return self.hook_embed(inputs_embeds)

    # ------------------------------------------------------------------ TransformerLens entry points
    def run_with_hooks(self, *args, fwd_hooks=(), bwd_hooks=(), **kwargs):
        for name, _ in list(fwd_hooks) + list(bwd_hooks):
            if isinstance(name, str):
                self.check_hook_name(name)
        return super().run_with_hooks(*args, fwd_hooks=fwd_hooks, bwd_hooks=bwd_hooks, **kwargs)

    def run_with_cache(self, *args, names_filter=None, **kwargs):
        names = [names_filter] if isinstance(names_filter, str) else names_filter
        if isinstance(names, (list, tuple)):
            for name in names:
                self.check_hook_name(name)
        return super().run_with_cache(*args, names_filter=names_filter, **kwargs)

    def set_attention_implementation(self, implementation: str) -> None:
        """ "eager" (default: scores and pattern materialised, every hook live) or "sdpa" (fused kernel;
        flash attention on GPU; falls back to eager in a layer whose scores/pattern hooks are in use)."""
        if implementation not in ("eager", "sdpa"):
            raise ValueError(f"attention implementation must be 'eager' or 'sdpa', got {implementation!r}")
        for block in cast(list[Block], list(self.blocks)):  # built in __init__: only Blocks
            block.attn.implementation = implementation


def _make_rotary(cfg: DecoderConfig):
    """transformers' own rotary embedding (default, linear, dynamic, llama3, yarn ... scaling)."""
    from transformers import AutoConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    hf = dict(cfg.hf_config)
    model_type = hf.pop("model_type")
    # Llama's rotary class on the config of any Llama-family model_type (Qwen2Config, ...): it reads only the
    # rope fields every such config has, so the LlamaConfig annotation is narrower than what it accepts.
    return LlamaRotaryEmbedding(AutoConfig.for_model(model_type, **hf))  # type: ignore[arg-type]
