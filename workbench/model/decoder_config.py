"""`DecoderConfig`: the handful of numbers `HookedDecoder` needs, read from a `transformers` config."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: transformers ``model_type`` values whose weights `HookedDecoder` knows how to read.
SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "gpt2")


class UnsupportedArchitectureError(ValueError):
    """The checkpoint's architecture is not one `HookedDecoder` implements."""


@dataclass
class DecoderConfig:
    """Shape and flavour of a decoder-only LM.

    ``arch`` is ``"llama"`` (RMSNorm, RoPE, grouped-query attention, SwiGLU; covers Llama 2/3.x,
    SmolLM2 and Qwen2/2.5 with ``qkv_bias``) or ``"gpt2"`` (LayerNorm, learned positions, GELU MLP).
    """

    arch: str
    model_type: str
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    norm_eps: float
    act_fn: str
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    tie_embeddings: bool = False
    attn_scale_by_layer: bool = False
    attn_scale: float | None = None  # replaces 1/sqrt(d_head) when set (Granite's attention_multiplier)
    hf_config: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def gated_mlp(self) -> bool:
        return self.arch == "llama"

    @property
    def n_kv_groups(self) -> int:
        return self.n_heads // self.n_kv_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_hf_config(cls, hf_config: Any) -> DecoderConfig:
        """Build from a ``transformers.PretrainedConfig`` (or its ``to_dict()``).

        Raises `UnsupportedArchitectureError` naming the supported ``model_type`` values.
        """
        cfg = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
        model_type = cfg.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedArchitectureError(
                f"model_type {model_type!r} is not supported by HookedDecoder; supported: "
                f"{', '.join(SUPPORTED_MODEL_TYPES)} (Llama-architecture checkpoints such as SmolLM2, "
                "Llama 3.x and Qwen2/2.5, and GPT-2). Convert the checkpoint to one of these or add its "
                "weight mapping to workbench/model/weights.py."
            )
        if model_type == "gpt2":
            d_model = cfg["n_embd"]
            n_heads = cfg["n_head"]
            return cls(
                arch="gpt2",
                model_type=model_type,
                d_model=d_model,
                n_layers=cfg["n_layer"],
                n_heads=n_heads,
                n_kv_heads=n_heads,
                d_head=d_model // n_heads,
                d_mlp=cfg.get("n_inner") or 4 * d_model,
                d_vocab=cfg["vocab_size"],
                n_ctx=cfg["n_positions"],
                norm_eps=cfg["layer_norm_epsilon"],
                act_fn=cfg["activation_function"],
                qkv_bias=True,
                o_bias=True,
                mlp_bias=True,
                tie_embeddings=cfg.get("tie_word_embeddings", True),
                attn_scale_by_layer=bool(cfg.get("scale_attn_by_inverse_layer_idx", False)),
                hf_config=cfg,
            )
        d_model = cfg["hidden_size"]
        n_heads = cfg["num_attention_heads"]
        attention_bias = bool(cfg.get("attention_bias", False))
        qkv_bias = attention_bias or model_type == "qwen2"
        return cls(
            arch="llama",
            model_type=model_type,
            d_model=d_model,
            n_layers=cfg["num_hidden_layers"],
            n_heads=n_heads,
            n_kv_heads=cfg.get("num_key_value_heads") or n_heads,
            d_head=cfg.get("head_dim") or d_model // n_heads,
            d_mlp=cfg["intermediate_size"],
            d_vocab=cfg["vocab_size"],
            n_ctx=cfg["max_position_embeddings"],
            norm_eps=cfg["rms_norm_eps"],
            act_fn=cfg.get("hidden_act", "silu"),
            qkv_bias=qkv_bias,
            o_bias=attention_bias,
            mlp_bias=bool(cfg.get("mlp_bias", False)),
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            hf_config=cfg,
        )
