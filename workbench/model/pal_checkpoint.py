"""Saving and loading a `PALModel`'s trained parts: ``config.json`` (the `PALConfig`, LoRA settings and the LLM it
was trained on) + ``model.safetensors`` (connectors, adapters, gates, LoRA; never the frozen LLM or encoders).

Checkpoints written before the encoders were named by model (``general``, ``pitch``) load unchanged: their config
is read with the model names (`workbench.encoders.ENCODER_ALIASES`) and their weight keys renamed to match.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import torch
from safetensors.torch import load_file, save_file

from workbench.common.paths import replace_dir
from workbench.model.pal_config import PALConfig

#: kinds of checkpoint other than PAL's own that ``PALModel.from_pretrained`` opens: name -> (is_source(path) -> bool,
#: load(path, tokenizer=None, **options) -> model). `workbench.model.released` registers released audio-LLMs here when
#: `workbench.model` is imported, so the PAL model needs no import of the modules built on it.
CHECKPOINT_KINDS: dict[str, tuple[Callable[[str | os.PathLike], bool], Callable[..., Any]]] = {}


def register_checkpoint_kind(
    name: str, is_source: Callable[[str | os.PathLike], bool], load: Callable[..., Any]
) -> None:
    """Let ``PALModel.from_pretrained`` open another kind of checkpoint (see :data:`CHECKPOINT_KINDS`)."""
    CHECKPOINT_KINDS[name] = (is_source, load)


__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointMismatchError",
    "PALCheckpointMixin",
    "legacy_encoder_names",
    "rename_encoder_keys",
]

CHECKPOINT_FORMAT = "pal-workbench/1"


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights or config do not fit the model it is loaded into."""


def legacy_encoder_names(pal_dict: dict) -> dict[str, str]:
    """{old name: model name} for the encoders of a saved ``pal`` config that use an old role name."""
    from workbench.encoders import canonical_encoder_name

    names = [e.get("name") for e in pal_dict.get("encoders", []) if isinstance(e, dict)]
    return {n: canonical_encoder_name(n) for n in names if isinstance(n, str) and canonical_encoder_name(n) != n}


def rename_encoder_keys(state: dict[str, torch.Tensor], renamed: dict[str, str]) -> dict[str, torch.Tensor]:
    """``state`` with each encoder name in ``renamed`` replaced in its keys: a key part equal to the name
    (``connectors.general.proj.weight``) or the name plus ``_L{layer}`` (``lal_adapters.general_L8.up.weight``)."""
    if not renamed:
        return state
    pattern = re.compile(r"^(" + "|".join(map(re.escape, renamed)) + r")(_L\d+)?$")

    def part(p: str) -> str:
        m = pattern.match(p)
        return renamed[m.group(1)] + (m.group(2) or "") if m else p

    return {".".join(part(p) for p in k.split(".")): v for k, v in state.items()}


class PALCheckpointMixin:
    """The checkpoint half of `PALModel` (needs ``pal_cfg``, ``cfg``, ``lora_cfg``, ``_part_of`` and
    ``from_config``)."""

    if TYPE_CHECKING:  # provided by `PALModel` (an nn.Module)
        pal_cfg: PALConfig
        cfg: Any
        lora_cfg: dict | None

        def named_parameters(
            self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
        ) -> Iterator[tuple[str, torch.nn.Parameter]]: ...

        def _part_of(self, name: str) -> str | None: ...

        def enable_lora(
            self, rank: int = 8, alpha: float = 16, dropout: float = 0.0, targets: Iterable[str] = ("q_proj", "v_proj")
        ) -> None: ...

        @classmethod
        def from_config(cls, pal_cfg: PALConfig | dict, tokenizer: Any = None, seed: int = 0) -> Self: ...

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Every parameter of the trainable parts (connectors, adapters, gates, LoRA), trained now or not."""
        return {n: p.detach() for n, p in self.named_parameters() if self._part_of(n) is not None}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        own = self.trainable_state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise CheckpointMismatchError(
                f"{source} does not fit this model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}. Load it with the config it was "
                "trained with (PALModel.from_pretrained(dir) reads it from the checkpoint)."
            )
        for name, tensor in state.items():
            if own[name].shape != tensor.shape:
                raise CheckpointMismatchError(
                    f"{source}: {name} has shape {tuple(tensor.shape)}, the model expects {tuple(own[name].shape)}"
                )
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, tensor in state.items():
                params[name].copy_(tensor.to(params[name].dtype))

    def checkpoint_meta(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "pal": self.pal_cfg.to_dict(),
            "lora": self.lora_cfg,
            "llm": {
                "name": self.pal_cfg.llm,
                "model_type": self.cfg.model_type,
                "n_layers": self.cfg.n_layers,
                "d_model": self.cfg.d_model,
                "d_vocab": self.cfg.d_vocab,
            },
        }

    def save_pretrained(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (trainable parts only) atomically into ``directory``."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
        try:
            meta = self.checkpoint_meta() | ({"extra": extra} if extra else {})
            (tmp / "config.json").write_text(json.dumps(meta, indent=2))
            state = {k: v.contiguous().cpu() for k, v in self.trainable_state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            replace_dir(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, tokenizer=None, **released) -> Self:
        """Rebuild the frozen parts from their packages and load the trained parts from ``directory``.

        Another registered kind of checkpoint (:data:`CHECKPOINT_KINDS`: a released audio-LLM's transformers folder
        or hub id, which `workbench.model.released` registers) loads through that kind's loader; ``released`` then
        takes ``integration``, ``dtype``, ``device`` (`workbench.model.released.load_released`)."""
        for is_source, load in CHECKPOINT_KINDS.values():
            if is_source(directory):
                return load(directory, tokenizer=tokenizer, **released)
        if released:
            raise TypeError(f"{sorted(released)} apply to released transformers models only, not to {directory}")
        directory = Path(directory)
        cfg_file, weights = directory / "config.json", directory / "model.safetensors"
        if not cfg_file.exists() or not weights.exists():
            raise FileNotFoundError(
                f"{directory} is not a PAL checkpoint (needs config.json and model.safetensors); "
                "train one with `python -m workbench.train` or use results/checkpoints/<variant>"
            )
        meta = json.loads(cfg_file.read_text())
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointMismatchError(
                f"{cfg_file}: not a {CHECKPOINT_FORMAT} checkpoint (format {meta.get('format')!r})"
            )
        model = cls.from_config(PALConfig.from_dict(meta["pal"]), tokenizer=tokenizer)
        want = meta.get("llm", {})
        have = model.checkpoint_meta()["llm"]
        diff = {k: (want.get(k), have[k]) for k in have if k in want and want[k] != have[k]}
        if diff:
            raise CheckpointMismatchError(f"{directory} was trained on another LLM: {diff} (checkpoint vs loaded)")
        if meta.get("lora"):
            model.enable_lora(**meta["lora"])
        state = rename_encoder_keys(load_file(str(weights)), legacy_encoder_names(meta["pal"]))
        model.load_trainable_state_dict(state, source=str(directory))
        return model
