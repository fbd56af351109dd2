"""Loading an LLM or a whole model by name or folder.

* :func:`load_llm`: the hooked decoder and its tokenizer from ``"smollm2"`` (offline default), a local transformers
  checkpoint folder or a hub id (needs network);
* :func:`load_model`: a PAL checkpoint folder (``config.json`` + ``model.safetensors``) or a released audio-LLM's
  transformers folder / hub id (`workbench.model.released`), the same call for both.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from workbench.model.decoder import HookedDecoder
from workbench.model.llm import DEFAULT_LLM, load_tokenizer
from workbench.model.pal import PALModel

__all__ = ["load_llm", "load_model"]


def load_llm(name_or_path: str | Path = DEFAULT_LLM, dtype=torch.float32):
    """(HookedDecoder, tokenizer): the usual entry point for text-only work."""
    return HookedDecoder.from_pretrained(name_or_path, dtype=dtype), load_tokenizer(name_or_path)


def load_model(checkpoint: str | os.PathLike, **options) -> PALModel:
    """A trained PAL checkpoint or a released audio-LLM (``options``: ``integration``, ``dtype``, ``device`` for
    released models), as ``PALModel.from_pretrained`` opens it."""
    return PALModel.from_pretrained(checkpoint, **options)
