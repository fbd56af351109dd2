"""What ``workbench.study`` will cost, from the configs alone (no weights read): parameters, tokens per item,
weight memory and activation memory at a batch size.

    cost = estimate_cost("results/checkpoints/pal/final", "data/synth-tiny/test", batch_size=8, dtype="float32")
    print(format_cost(cost))

Parameters: the model built on PyTorch's meta device from its config (a released folder: the transformers
class of its ``config.json``; a PAL checkpoint: its LLM's config plus the trained parts listed in the
safetensors header), counted exactly; the frozen encoders of a PAL checkpoint are not counted (they run once,
on the CPU, into the token cache). Tokens per item T = audio tokens (a released model: one tower window,
``2 * max_source_positions`` mel frames through the architecture's convolution / pooling / stacking; a PAL
checkpoint: the connectors' token counts) + text tokens (the longest question + answer of the first 200 task
rows, tokenized, plus ``TEMPLATE_TOKENS`` for the chat template's system turn and role markers).

Activation memory at batch B, with b bytes per element (the dtype), d = d_model, f = the MLP width, H heads,
L layers, kv = KV heads x head size, V = vocabulary (eager attention: every score is materialised):

* forward-only steps (attention, lenses, ablations, answers): one layer in flight,
  ``B T (4 d + 3 f + 2 H T) b``, plus the residual cached at every layer ``L B T d b`` (lenses), plus the KV cache
  of generation ``2 L B T kv b``, plus the logits ``B T V (b + 4)`` (a float32 log-softmax beside them);
* attribution patching (``atp-heads``), which back-propagates through every layer: autograd keeps
  ``B T (8 d + 2 kv + 3 f + 2 H T) b`` per layer for all L layers, plus the logits;
* a released model's tower (one window of F = conv frames, width d_a, MLP f_a, H_a heads), one layer in flight:
  ``B F (4 d_a + f_a + 2 H_a F) b``.

The estimate is the largest of the three plus the weights. It leaves out the process itself (Python, PyTorch,
the libraries: about 1 GB of host memory on a CPU) and allocator slack; ``workbench.study`` prints it beside
the measured peak where it can measure one.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["TEMPLATE_TOKENS", "model_config", "text_tokens", "estimate_cost", "format_cost", "largest_batch"]

TEMPLATE_TOKENS = 40
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def _meta_count(module) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, p in module.named_parameters():
        counts[name] = p.numel()
    return counts


def _released_config(source: str) -> dict:
    import torch
    import transformers
    from transformers import AutoConfig

    from workbench.model.decoder_config import DecoderConfig
    from workbench.model.released.loading import resolve_folder
    from workbench.model.released.registry import ARCHITECTURES, architecture_of, conv_frames

    folder = resolve_folder(source)
    arch = architecture_of(json.loads((folder / "config.json").read_text()), source)
    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        hf = getattr(transformers, next(a.cls for a in ARCHITECTURES.values() if a.key == arch.key))(config)
    counts = _meta_count(hf)
    parts = {"tower": 0, "projector": 0, "text": 0}
    for name, n in counts.items():
        part = "tower" if "audio_tower" in name else "projector" if "multi_modal_projector" in name else "text"
        parts[part] += n
    audio = config.audio_config
    positions = getattr(audio, "max_source_positions", None) or audio.max_position_embeddings
    mel = 2 * int(positions)
    frames = int(conv_frames(mel))
    tower = {
        "frames": frames,
        "d": int(audio.hidden_size),
        "f": int(getattr(audio, "intermediate_size", None) or audio.encoder_ffn_dim),
        "heads": int(audio.num_attention_heads),
        "layers": int(getattr(audio, "num_hidden_layers", None) or audio.encoder_layers),
    }
    dec = DecoderConfig.from_hf_config(config.text_config)
    return {
        "kind": "released",
        "folder": str(folder),
        "params": parts,
        "text": _text(dec),
        "audio_tokens": int(arch.n_tokens(mel, frames)),
        "tower": tower,
    }


def _text(dec) -> dict:
    return {
        "n_layers": dec.n_layers,
        "d_model": dec.d_model,
        "n_heads": dec.n_heads,
        "kv": dec.n_kv_heads * dec.d_head,
        "d_mlp": dec.d_mlp,
        "vocab": dec.d_vocab,
    }


def _checkpoint_config(source: str) -> dict:
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    from workbench.model.decoder_config import DecoderConfig
    from workbench.model.llm import resolve

    ckpt = Path(source)
    meta = json.loads((ckpt / "config.json").read_text())
    llm = resolve(meta["pal"]["llm"])
    config = AutoConfig.from_pretrained(llm)
    with torch.device("meta"):
        n_llm = sum(_meta_count(AutoModelForCausalLM.from_config(config)).values())
    with safe_open(str(ckpt / "model.safetensors"), "pt") as f:
        trained = sum(int(torch.Size(f.get_slice(k).get_shape()).numel()) for k in f.keys())
    dec = DecoderConfig.from_hf_config(config)
    tokens = sum(int(e["connector"]["n_tokens"]) for e in meta["pal"]["encoders"])
    return {
        "kind": "pal",
        "llm": str(llm),
        "params": {"llm": n_llm, "trained": trained},
        "text": _text(dec),
        "audio_tokens": tokens,
        "tower": None,
    }


def model_config(source: str) -> dict:
    """Sizes of the model at ``source`` from its config files (see the module docstring)."""
    from workbench.model.released import is_released_source

    return _released_config(source) if is_released_source(source) else _checkpoint_config(source)


def text_tokens(source: str, cfg: dict, data: str | Path, rows: int = 200) -> tuple[int, str]:
    """(text tokens per item, how it was obtained): the longest question + answer of the first ``rows`` task rows
    of ``data`` tokenized with the model's tokenizer, plus `TEMPLATE_TOKENS`."""
    path = Path(data) / "tasks.jsonl"
    if not path.is_file():
        return 96, f"assumed (no {path})"
    lines = [json.loads(x) for x in path.read_text().splitlines()[:rows] if x.strip()]
    if cfg["kind"] == "released":
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(cfg["folder"])
    else:
        from workbench.model.llm import load_tokenizer

        tok = load_tokenizer(json.loads((Path(source) / "config.json").read_text())["pal"]["llm"])
    longest = max(len(tok(f"{r.get('question', '')} {r.get('answer', '')}")["input_ids"]) for r in lines)
    return longest + TEMPLATE_TOKENS, f"longest question + answer of {len(lines)} rows + {TEMPLATE_TOKENS} template"


def _activations(cfg: dict, tokens: int, batch: int, b: int) -> dict[str, float]:
    t = cfg["text"]
    d, f, H, L, kv, V = t["d_model"], t["d_mlp"], t["n_heads"], t["n_layers"], t["kv"], t["vocab"]
    B, T = batch, tokens
    logits = B * T * V * (b + 4)
    out = {
        "forward": B * T * (4 * d + 3 * f + 2 * H * T) * b + L * B * T * d * b + 2 * L * B * T * kv * b + logits,
        "atp": L * B * T * (8 * d + 2 * kv + 3 * f + 2 * H * T) * b + logits,
        "tower": 0.0,
    }
    tw = cfg.get("tower")
    if tw:
        F = tw["frames"]
        out["tower"] = B * F * (4 * tw["d"] + tw["f"] + 2 * tw["heads"] * F) * b
    return {k: float(v) for k, v in out.items()}


def estimate_cost(source: str, data: str | Path, batch_size: int, dtype: str) -> dict:
    """Parameters, tokens per item, weight and activation bytes at ``batch_size`` (module docstring)."""
    cfg = model_config(source)
    text, how = text_tokens(source, cfg, data)
    b = BYTES[dtype]
    n_params = sum(cfg["params"].values())
    tokens = cfg["audio_tokens"] + text
    act = _activations(cfg, tokens, batch_size, b)
    peak_step = max(act, key=lambda step: act[step])
    return {
        "config": cfg,
        "params": n_params,
        "audio_tokens": cfg["audio_tokens"],
        "text_tokens": text,
        "text_how": how,
        "tokens": tokens,
        "batch_size": batch_size,
        "dtype": dtype,
        "weights": n_params * b,
        "activations": act,
        "peak_step": peak_step,
        "total": n_params * b + act[peak_step],
    }


def largest_batch(cost: dict, budget_bytes: float) -> int:
    """The largest batch size whose estimate fits ``budget_bytes`` (0: not even batch 1)."""
    b = BYTES[cost["dtype"]]
    best = 0
    for batch in (1, 2, 4, 8, 16, 32, 64):
        act = _activations(cost["config"], cost["tokens"], batch, b)
        if cost["weights"] + max(act.values()) <= budget_bytes:
            best = batch
    return best


def _gb(x: float) -> str:
    return f"{x / 1e9:.3g} GB"


def format_cost(cost: dict) -> str:
    """The lines ``workbench.study`` prints before it starts."""
    c = cost["config"]
    parts = ", ".join(f"{k} {v / 1e6:.4g} M" for k, v in c["params"].items())
    t = c["text"]
    a = cost["activations"]
    lines = [
        "cost estimate (from the config files; workbench.model.cost):",
        f"  parameters: {cost['params'] / 1e9:.4g} B ({parts}); LLM: {t['n_layers']} layers, d_model {t['d_model']}, "
        f"{t['n_heads']} heads, MLP {t['d_mlp']}, vocabulary {t['vocab']}",
        f"  tokens per item: {cost['tokens']} = {cost['audio_tokens']} audio + {cost['text_tokens']} text "
        f"({cost['text_how']})",
        f"  weights in {cost['dtype']}: {_gb(cost['weights'])}",
        f"  activations at batch {cost['batch_size']}: forward-only steps {_gb(a['forward'])}, attribution "
        f"patching {_gb(a['atp'])}" + (f", audio tower {_gb(a['tower'])}" if a["tower"] else ""),
        f"  estimated peak: {_gb(cost['total'])} (step {cost['peak_step']}; plus the process itself, about 1 GB "
        "of host memory)",
    ]
    return "\n".join(lines)
