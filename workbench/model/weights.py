"""Map a `transformers` causal-LM state dict onto `HookedDecoder`'s parameter names."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from workbench.model.decoder_config import DecoderConfig


class MissingWeightsError(KeyError):
    """A checkpoint lacks tensors the architecture needs."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


def _strip_prefix(sd: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in sd.items():
        for p in prefixes:
            if name.startswith(p):
                name = name[len(p) :]
                break
        out[name] = tensor
    return out


def _take(sd: dict, name: str, missing: list[str]) -> torch.Tensor | None:
    if name not in sd:
        missing.append(name)
        return None
    return sd[name]


def convert_llama(sd: Mapping[str, torch.Tensor], cfg: DecoderConfig) -> tuple[dict, list[str]]:
    """HF Llama/Qwen2 names (``model.layers.{i}.self_attn.q_proj.weight`` ...) -> ours."""
    sd = _strip_prefix(sd, ("model.",))
    out: dict[str, torch.Tensor | None] = {}
    missing: list[str] = []
    out["embed.weight"] = _take(sd, "embed_tokens.weight", missing)
    for i in range(cfg.n_layers):
        src, dst = f"layers.{i}.", f"blocks.{i}."
        out[dst + "ln1.weight"] = _take(sd, src + "input_layernorm.weight", missing)
        out[dst + "ln2.weight"] = _take(sd, src + "post_attention_layernorm.weight", missing)
        for p in ("q", "k", "v", "o"):
            out[dst + f"attn.{p}_proj.weight"] = _take(sd, src + f"self_attn.{p}_proj.weight", missing)
            bias = cfg.qkv_bias if p != "o" else cfg.o_bias
            if bias:
                out[dst + f"attn.{p}_proj.bias"] = _take(sd, src + f"self_attn.{p}_proj.bias", missing)
        for p in ("gate", "up", "down"):
            out[dst + f"mlp.{p}_proj.weight"] = _take(sd, src + f"mlp.{p}_proj.weight", missing)
            if cfg.mlp_bias:
                out[dst + f"mlp.{p}_proj.bias"] = _take(sd, src + f"mlp.{p}_proj.bias", missing)
    out["ln_final.weight"] = _take(sd, "norm.weight", missing)
    if not cfg.tie_embeddings:
        out["unembed.weight"] = _take(sd, "lm_head.weight", missing)
    return out, missing


def convert_gpt2(sd: Mapping[str, torch.Tensor], cfg: DecoderConfig) -> tuple[dict, list[str]]:
    """HF GPT-2 names (Conv1D weights stored [in, out], fused c_attn) -> ours ([out, in], split q/k/v)."""
    sd = _strip_prefix(sd, ("transformer.",))
    out: dict[str, torch.Tensor | None] = {}
    missing: list[str] = []
    M = cfg.d_model
    out["embed.weight"] = _take(sd, "wte.weight", missing)
    out["pos_embed.weight"] = _take(sd, "wpe.weight", missing)
    for i in range(cfg.n_layers):
        src, dst = f"h.{i}.", f"blocks.{i}."
        for a, b in (("ln_1", "ln1"), ("ln_2", "ln2")):
            out[dst + f"{b}.weight"] = _take(sd, src + f"{a}.weight", missing)
            out[dst + f"{b}.bias"] = _take(sd, src + f"{a}.bias", missing)
        w = _take(sd, src + "attn.c_attn.weight", missing)
        bias = _take(sd, src + "attn.c_attn.bias", missing)
        if w is not None and bias is not None:
            for j, p in enumerate("qkv"):
                out[dst + f"attn.{p}_proj.weight"] = w[:, j * M : (j + 1) * M].t().contiguous()
                out[dst + f"attn.{p}_proj.bias"] = bias[j * M : (j + 1) * M].contiguous()
        for src_name, dst_name in (
            ("attn.c_proj", "attn.o_proj"),
            ("mlp.c_fc", "mlp.up_proj"),
            ("mlp.c_proj", "mlp.down_proj"),
        ):
            w = _take(sd, src + f"{src_name}.weight", missing)
            if w is not None:
                out[dst + f"{dst_name}.weight"] = w.t().contiguous()
            out[dst + f"{dst_name}.bias"] = _take(sd, src + f"{src_name}.bias", missing)
    out["ln_final.weight"] = _take(sd, "ln_f.weight", missing)
    out["ln_final.bias"] = _take(sd, "ln_f.bias", missing)
    if not cfg.tie_embeddings:
        out["unembed.weight"] = _take(sd, "lm_head.weight", missing)
    return out, missing


def convert_state_dict(sd: Mapping[str, torch.Tensor], cfg: DecoderConfig, source: str = "state dict") -> dict:
    """Convert and check completeness; raises `MissingWeightsError` listing what ``source`` lacks."""
    convert = convert_gpt2 if cfg.arch == "gpt2" else convert_llama
    out, missing = convert(sd, cfg)
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise MissingWeightsError(
            f"{source} is missing {len(missing)} tensor(s) that a {cfg.model_type} model with "
            f"{cfg.n_layers} layers needs: {shown}. Is the checkpoint complete (all shards present) and "
            "does its config.json match its weights?"
        )
    return out
