"""Save / load a `SparseAutoencoder` in SAELens's on-disk format, so ``SAE.load_from_disk(folder)`` of SAELens 6.x
reads it unchanged (SAELens itself does not install beside transformer-lens 4; see tests/analysis/sae/test_format.py
for the version and source files matched).

    save_sae(sae, "results/sae/baseline/connector")     # -> cfg.json + sae_weights.safetensors (+ workbench.json)
    sae = load_sae("results/sae/baseline/connector")

Folder contents:
- ``sae_weights.safetensors``: exactly the tensors SAELens's ``load_state_dict(strict)`` expects:
  ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_in], ``b_dec`` [d_in], plus ``threshold``
  [d_sae] for ``jumprelu`` (our BatchTopK at inference).
- ``cfg.json``: SAELens's ``SAEConfig.to_dict()``: ``architecture`` (``topk`` / ``jumprelu``), ``d_in``,
  ``d_sae``, ``dtype``, ``device``, ``apply_b_dec_to_input``, ``normalize_activations`` ("none": the input scale
  is folded into the weights), ``reshape_activations`` ("none"), ``k`` and ``rescale_acts_by_decoder_norm``
  (topk only), and ``metadata`` with ``sae_lens_version`` >= 6 (so the pre-6 renaming is skipped),
  ``hook_name``, ``model_name``, ``hook_head_index``, ``prepend_bos``, ``context_size``, ``dataset_path``.
- ``workbench.json``: what SAELens has no field for (our architecture name, training k, positions, seed,
  scale folded, training summary). Optional for loading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from workbench.analysis.sae.model import SparseAutoencoder

__all__ = ["CFG_FILENAME", "SAELENS_VERSION", "WEIGHTS_FILENAME", "load_sae", "saelens_cfg", "save_sae"]

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
EXTRA_FILENAME = "workbench.json"
SAELENS_VERSION = "6.54.12"  # the loader version whose fields we write (metadata.sae_lens_version)
_DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float64: "float64",
}


def saelens_cfg(sae: SparseAutoencoder, metadata: dict | None = None) -> dict:
    """The ``cfg.json`` dict SAELens's ``SAEConfig.from_dict`` reads for this SAE."""
    arch = "topk" if sae.architecture == "topk" else "jumprelu"
    cfg = {
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": _DTYPE_NAMES[sae.W_enc.dtype],
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
    }
    if arch == "topk":
        cfg.update(k=sae.k, rescale_acts_by_decoder_norm=False)
    meta = {
        "sae_lens_version": SAELENS_VERSION,
        "sae_lens_training_version": SAELENS_VERSION,
        "model_name": sae.model_name,
        "hook_name": sae.hook_name,
        "hook_head_index": None,
        "prepend_bos": True,
        "context_size": None,
        "dataset_path": None,
        "model_class_name": "PALModel",
    }
    meta.update(metadata or {})
    cfg["metadata"] = meta
    cfg["architecture"] = arch
    return cfg


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_sae(
    sae: SparseAutoencoder, folder: str | os.PathLike, *, metadata: dict | None = None, extra: dict | None = None
) -> Path:
    """Write ``cfg.json`` + ``sae_weights.safetensors`` (+ ``workbench.json`` with ``extra``) into ``folder``
    (atomic per file). A BatchTopK SAE needs its threshold estimated (trained) first."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {n: getattr(sae, n).detach().contiguous().clone() for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if sae.architecture == "batchtopk":
        if not bool(torch.isfinite(sae.threshold).all()):
            raise ValueError(
                "this BatchTopK SAE has no threshold yet (train it first): SAELens would load it as a "
                "JumpReLU SAE with an infinite threshold"
            )
        tensors["threshold"] = sae.threshold.detach().clone()
    _atomic(out / WEIGHTS_FILENAME, lambda p: save_file(tensors, str(p)))
    cfg = saelens_cfg(sae, metadata)
    _atomic(out / CFG_FILENAME, lambda p: p.write_text(json.dumps(cfg, indent=1)))
    info = {"architecture": sae.architecture, "k": sae.k, **(extra or {})}
    _atomic(out / EXTRA_FILENAME, lambda p: p.write_text(json.dumps(info, indent=1, default=str)))
    return out


def load_sae(folder: str | os.PathLike) -> SparseAutoencoder:
    """Read a folder written by :func:`save_sae` (or by SAELens for a ``topk`` / ``jumprelu`` SAE)."""
    src = Path(folder)
    for name in (CFG_FILENAME, WEIGHTS_FILENAME):
        if not (src / name).is_file():
            raise FileNotFoundError(
                f"{src / name} is missing: an SAE folder holds {CFG_FILENAME} and "
                f"{WEIGHTS_FILENAME} (train one: python -m workbench.sae train ...)"
            )
    cfg = json.loads((src / CFG_FILENAME).read_text())
    extra = json.loads((src / EXTRA_FILENAME).read_text()) if (src / EXTRA_FILENAME).is_file() else {}
    arch = cfg.get("architecture")
    if arch not in ("topk", "jumprelu"):
        raise ValueError(f"{src / CFG_FILENAME}: architecture {arch!r} is not supported here (topk or jumprelu)")
    if cfg.get("normalize_activations", "none") != "none" or not cfg.get("apply_b_dec_to_input", True):
        raise ValueError(
            f"{src / CFG_FILENAME}: only normalize_activations 'none' with apply_b_dec_to_input true is supported"
        )
    tensors = load_file(str(src / WEIGHTS_FILENAME))
    meta = cfg.get("metadata", {})
    ours = "topk" if arch == "topk" else "batchtopk"
    k = int(cfg.get("k", extra.get("k", 1)))
    sae = SparseAutoencoder(
        int(cfg["d_in"]),
        int(cfg["d_sae"]),
        k,
        ours,
        hook_name=meta.get("hook_name") or "",
        model_name=meta.get("model_name") or "",
    )
    want = {"W_enc", "b_enc", "W_dec", "b_dec"} | ({"threshold"} if arch == "jumprelu" else set())
    if set(tensors) != want:
        raise ValueError(f"{src / WEIGHTS_FILENAME}: tensors {sorted(tensors)}, expected {sorted(want)}")
    with torch.no_grad():
        for n in ("W_enc", "b_enc", "W_dec", "b_dec"):
            p = getattr(sae, n)
            if tuple(tensors[n].shape) != tuple(p.shape):
                raise ValueError(
                    f"{src / WEIGHTS_FILENAME}: {n} has shape {tuple(tensors[n].shape)}, expected {tuple(p.shape)}"
                )
            p.copy_(tensors[n])
        if arch == "jumprelu":
            sae.threshold.copy_(tensors["threshold"])
            sae.threshold_count.fill_(1)
    sae.extra = extra
    return sae
