"""Load a released audio-LLM (a transformers folder or hub id) as a `ReleasedPALModel`.

    model = PALModel.from_pretrained("path/to/Qwen2-Audio-7B-Instruct")              # PLITS@0, as released
    model = PALModel.from_pretrained(path, integration={"mode": "lal", "layer": 8})   # retrofitted, untrained

Weights are read from the folder's safetensors (sharded or not; legacy key names such as
``language_model.model.*`` and current ones such as ``model.language_model.*`` alike): the text model goes
into `HookedDecoder` (Qwen2 with q/k/v biases, Llama for Voxtral and GLM-ASR), the tower and projector are
transformers' own modules with their weights, wrapped with hooks (`tower.py`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TypeVar

import torch

from workbench.model.released.registry import ReleasedModelError, architecture_of, require_parts

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

#: (pattern, replacement) applied in order to every state-dict key: -> tower.* / projector.* / text.* / lm_head.*
_KEY_RULES = (
    (re.compile(r"^(model\.)?language_model\.lm_head\."), "lm_head."),
    (re.compile(r"^(model\.)?language_model\.(model\.)?"), "text."),
    (re.compile(r"^(model\.)?audio_tower\."), "tower."),
    (re.compile(r"^(model\.)?multi_modal_projector\."), "projector."),
)


def is_hub_id(name: str | os.PathLike) -> bool:
    """``org/name`` that is not a local path (nor under an existing local folder ``org``)."""
    text = str(name)
    path = Path(text).expanduser()
    return bool(_HUB_ID.match(text)) and not path.exists() and not Path(path.parts[0]).is_dir()


def is_released_source(name: str | os.PathLike) -> bool:
    """True for a hub id, or a folder whose config.json is a transformers config (has ``architectures``) rather
    than a workbench checkpoint."""
    if is_hub_id(name):
        return True
    cfg = Path(name).expanduser() / "config.json"
    if not cfg.is_file():
        return False
    try:
        meta = json.loads(cfg.read_text())
    except json.JSONDecodeError:
        return False
    return "format" not in meta and "architectures" in meta


def resolve_folder(name: str | os.PathLike) -> Path:
    """A local folder as is; a hub id through the local hub cache, downloading only when a network is allowed."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if not is_hub_id(name):
        raise FileNotFoundError(f"{name}: no such folder (and not a hub id like 'Qwen/Qwen2-Audio-7B-Instruct')")
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    patterns = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]
    try:
        return Path(snapshot_download(str(name), allow_patterns=patterns, local_files_only=offline))
    except Exception as e:  # LocalEntryNotFoundError, connection errors, gated repos ...
        raise ReleasedModelError(
            f"the weights of {name!r} are not on this machine (no local folder of that name either) and could "
            "not be downloaded "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}). Where there is a network, "
            f"download them with `hf download {name} --local-dir DIR` (about 2 bytes per parameter in bf16), copy DIR "
            "here and pass the folder instead: PALModel.from_pretrained('DIR') or --checkpoint DIR"
        ) from e


def normalized_state(state: dict[str, torch.Tensor], source: str) -> dict[str, dict[str, torch.Tensor]]:
    """{"tower": ..., "projector": ..., "text": ... (with ``model.`` prefix for the LLM converter)}."""
    parts: dict[str, dict[str, torch.Tensor]] = {"tower": {}, "projector": {}, "text": {}}
    for key, tensor in state.items():
        for pattern, repl in _KEY_RULES:
            new = pattern.sub(repl, key, count=1)
            if new != key:
                break
        part, _, rest = new.partition(".")
        if part == "lm_head":
            parts["text"]["lm_head." + rest] = tensor
        elif part in parts:
            parts[part][("model." + rest) if part == "text" else rest] = tensor
    return require_parts(parts, state, source)


def _load_module(module: ModuleT, state: dict, what: str, source: str, dtype) -> ModuleT:
    """Assign ``state`` to a module built on the meta device; missing tensors are an error naming them."""
    from workbench.model.weights import MissingWeightsError

    want = set(module.state_dict())
    missing = sorted(want - set(state))
    if missing:
        raise MissingWeightsError(
            f"{source} is missing {len(missing)} {what} tensor(s): {', '.join(missing[:6])}"
            f"{' ...' if len(missing) > 6 else ''}. Is the checkpoint complete (all shards)?"
        )
    module.load_state_dict({k: state[k].to(dtype) for k in want}, strict=True, assign=True)
    return module.eval().requires_grad_(False)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _dtype(dtype) -> torch.dtype:
    if dtype is None:
        dtype = os.environ.get("WORKBENCH_DTYPE", "float32")
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} (WORKBENCH_DTYPE?) is not one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def _audio_parts(arch, config, parts: dict, source: str, dtype: torch.dtype):
    """(audio tower, projector): transformers' own modules for ``arch``, built on the meta device and given the
    checkpoint's tensors ``parts["tower"]`` / ``parts["projector"]`` in ``dtype``."""
    import transformers

    modeling = getattr(transformers.models, arch.tower_module)
    modeling = getattr(modeling, f"modeling_{arch.tower_module}")
    audio_cfg = config.audio_config
    with torch.device("meta"):
        tower = transformers.AutoModel.from_config(audio_cfg)
        projector = getattr(modeling, arch.projector)(config)
    tower = _load_module(tower, parts["tower"], "audio tower", source, dtype)
    if hasattr(tower, "rotary_emb"):  # its inverse frequencies are a buffer, not in the state dict
        tower.rotary_emb = type(tower.rotary_emb)(config=audio_cfg)
    projector = _load_module(projector, parts["projector"], "projector", source, dtype)
    return tower, projector


def load_released(
    name: str | os.PathLike,
    *,
    integration: dict | None = None,
    tokenizer=None,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
):
    """`ReleasedPALModel` from a transformers folder or hub id (see the module docstring).

    integration: ``{"mode": "plits"|"lal", "layer": L}`` (default PLITS@0, the model as released).
    dtype / device: default from the environment variables ``WORKBENCH_DTYPE`` (float32 | bfloat16 | float16;
    default float32) and ``WORKBENCH_DEVICE`` (e.g. cuda; default cpu), so the analysis CLIs can put a 7B
    model on a GPU: ``WORKBENCH_DEVICE=cuda WORKBENCH_DTYPE=bfloat16 python -m workbench.ablate --checkpoint DIR``.
    """
    dtype = _dtype(dtype)
    device = device if device is not None else os.environ.get("WORKBENCH_DEVICE") or None
    from transformers import AutoConfig

    from workbench.model.decoder_config import DecoderConfig
    from workbench.model.llm import _read_safetensors_folder
    from workbench.model.released.model import ReleasedPALModel
    from workbench.model.released.prompts import load_preprocessing
    from workbench.model.released.tower import HookedTower, ReleasedConnector
    from workbench.model.weights import convert_state_dict

    folder = resolve_folder(name)
    source = str(name)
    arch = architecture_of(json.loads((folder / "config.json").read_text()), source)
    if arch.loader:  # a class with a module of its own (Qwen2.5-Omni, Granite Speech)
        import importlib

        return importlib.import_module(arch.loader).load(
            folder, source, integration=integration, tokenizer=tokenizer, dtype=dtype, device=device
        )
    config = AutoConfig.from_pretrained(folder)
    try:
        state = _read_safetensors_folder(folder)
    except FileNotFoundError as e:
        raise ReleasedModelError(str(e)) from e
    parts = normalized_state(state, source)

    text_cfg = config.text_config
    dec_cfg = DecoderConfig.from_hf_config(text_cfg)
    text_state = parts["text"]
    if "lm_head.weight" not in text_state and getattr(config, "tie_word_embeddings", False):
        text_state["lm_head.weight"] = text_state["model.embed_tokens.weight"]
    dec_cfg.tie_embeddings = False  # the unembedding is loaded explicitly (tied or not)

    tower, projector = _audio_parts(arch, config, parts, source, dtype)

    model = ReleasedPALModel.build(arch, config, dec_cfg, source, integration)
    model.load_decoder_weights(convert_state_dict(text_state, dec_cfg, source), source, dtype)
    model.attach_audio(HookedTower(tower, arch), ReleasedConnector(projector, arch))
    tok, fe, template = load_preprocessing(folder, tokenizer)
    model.set_preprocessing(tok, fe, template, folder)
    if device is not None:
        model.to(device)
    return model.eval()
