"""Frozen audio encoders behind one protocol (see ``base.AudioEncoder``) and a by-name registry.

>>> enc = load_encoder("mel")                  # or "whisper", "yamnet", "crepe"
>>> tokens, mask = enc(waves, lengths)          # waves [B, S] @ enc.sample_rate -> [B, T, enc.dim], [B, T]
"""

from __future__ import annotations

import importlib
import importlib.util

from workbench.encoders.base import AudioEncoder, EncoderInputError

__all__ = [
    "AudioEncoder",
    "EncoderInputError",
    "load_encoder",
    "available_encoders",
    "register_encoder",
    "encoders_for",
    "canonical_encoder_name",
    "ENCODER_ALIASES",
]

# name -> "module:Class", imported lazily so a missing optional module only fails when asked for. Encoders are
# named after the model they run (the name is in hook names, token-cache folders and tables).
_REGISTRY: dict[str, str] = {
    "whisper": "workbench.encoders.whisper:WhisperEncoder",
    "mel": "workbench.encoders.mel:MelEncoder",
    "yamnet": "workbench.encoders.yamnet:YamnetEncoder",
    "crepe": "workbench.encoders.crepe:CrepeEncoder",
}

#: names used before the encoders were named by model (role names); still accepted everywhere a name is read
#: (configs, checkpoints, ``load_encoder``) and mapped to the model name
ENCODER_ALIASES: dict[str, str] = {"general": "yamnet", "pitch": "crepe"}


def canonical_encoder_name(name: str) -> str:
    """The registry name for ``name`` (an old role name such as ``general`` maps to ``yamnet``)."""
    return ENCODER_ALIASES.get(name, name)


def register_encoder(name: str, target: str) -> None:
    """Register ``name`` -> ``"package.module:ClassName"`` (a subclass of ``AudioEncoder``)."""
    if ":" not in target:
        raise ValueError(f"target must look like 'package.module:ClassName', got {target!r}")
    _REGISTRY[name] = target


def available_encoders() -> list[str]:
    """Registered encoder names whose module can be imported here (sorted)."""
    names = []
    for name, target in sorted(_REGISTRY.items()):
        if importlib.util.find_spec(target.split(":")[0]) is not None:
            names.append(name)
    return names


def load_encoder(name: str, **kw) -> AudioEncoder:
    """Build the encoder registered as ``name`` (or an old alias of it) with constructor kwargs ``kw`` (frozen,
    eval mode)."""
    name = canonical_encoder_name(name)
    if name not in _REGISTRY:
        raise KeyError(f"unknown encoder {name!r}; known encoders: {', '.join(sorted(_REGISTRY))}")
    mod_name, cls_name = _REGISTRY[name].split(":")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if e.name == mod_name:
            raise ImportError(f"encoder {name!r} is registered as {mod_name} but that module does not exist") from e
        raise
    return getattr(mod, cls_name)(**kw)


def encoders_for(specs) -> list[AudioEncoder]:
    """The encoders a model or config names, each built with its own options, once per (name, options):
    ``specs`` holds names, ``(name, options)`` pairs, or objects with ``.name`` / ``.options`` (``EncoderSpec``).
    The one way the trainer, evaluation, analyses and the demo turn "which encoders" into encoders to fill the
    token cache with (``workbench.encoders.cache.encode_dataset``)."""
    import json

    built: dict[tuple[str, str], AudioEncoder] = {}
    for s in specs:
        if isinstance(s, str):
            name, options = s, {}
        elif isinstance(s, tuple):
            name, options = s[0], dict(s[1] or {})
        else:
            name, options = s.name, dict(getattr(s, "options", None) or {})
        name = canonical_encoder_name(name)
        key = (name, json.dumps(options, sort_keys=True, default=str))
        if key not in built:
            built[key] = load_encoder(name, **options)
    return list(built.values())
