"""`PALConfig`: which LLM, which encoders, and for each encoder its connector and its integration.

Saved as JSON beside the trainable weights; read from the ``model:`` section of ``configs/*.yaml``.

    llm: smollm2                        # alias, local checkpoint folder or hub id
    insertion: after_system             # audio slot: after the system prompt (paper), or "prefix": before it,
                                        # at the very start (datasets: AudioTaskDataset(slot=insertion))
    encoders:
      - name: whisper                   # a workbench.encoders registry name (whisper, yamnet, mel, crepe; the
                                        # old names general/pitch are read as yamnet/crepe)
        dim: 512                        # token width (checked against the encoder when it is loaded)
        options: {}                     # keyword arguments for load_encoder
        connector: {type: mlp, n_tokens: 8, hidden: 512}      # or {type: qformer, n_tokens, hidden, layers, heads}
        integration: {mode: plits, layer: 0}                  # or {mode: lal, layer: 8, adapter: true, gate: true}

PLITS at layer 0 with one encoder is the Pengi/LLaVA baseline; LAL at layer L is the paper's delayed,
attention-only integration; several encoders make an ensemble; mixed modes make the v3 hybrid.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench.common.errors import ConfigError  # noqa: F401 (re-exported: workbench.model.pal_config.ConfigError)

CONNECTOR_TYPES = ("mlp", "qformer")
MODES = ("plits", "lal")
INSERTIONS = ("after_system", "prefix")
AUDIO_ROPE = ("slot", "none")


def _fields(cls, data: dict, where: str) -> dict:
    known = set(cls.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(known)}")
    return data


@dataclass
class ConnectorConfig:
    """type "mlp": masked temporal pooling to n_tokens, then LayerNorm-MLP; type "qformer": n_tokens learned
    queries cross-attending to the encoder frames (layers x heads), then a projection."""

    type: str = "mlp"
    n_tokens: int = 8
    hidden: int = 512
    layers: int = 1
    heads: int = 4

    def validate(self, where: str) -> None:
        if self.type not in CONNECTOR_TYPES:
            raise ConfigError(f"{where}: unknown connector type {self.type!r}; use one of {CONNECTOR_TYPES}")
        if self.n_tokens < 0:
            raise ConfigError(f"{where}: n_tokens must be >= 0, got {self.n_tokens}")
        if self.type == "qformer" and self.hidden % self.heads:
            raise ConfigError(f"{where}: qformer hidden {self.hidden} is not divisible by heads {self.heads}")


@dataclass
class IntegrationConfig:
    """mode "plits": tokens enter the residual stream at ``layer`` and pass attention and FFN from there;
    mode "lal": from ``layer`` on, every layer reads the tokens as keys/values only (its own norm, W_K,
    W_V; plus an optional low-rank ``adapter`` per layer and a per-head ``gate`` on the audio logits).
    ``audio_rope``: "slot" rotates LAL audio keys at their reserved slot positions, "none" leaves them
    unrotated."""

    mode: str = "plits"
    layer: int = 0
    adapter: bool = False
    adapter_rank: int = 16
    gate: bool = False
    audio_rope: str = "slot"

    def validate(self, where: str, n_layers: int | None = None) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"{where}: unknown integration mode {self.mode!r}; use one of {MODES}")
        if self.audio_rope not in AUDIO_ROPE:
            raise ConfigError(f"{where}: audio_rope must be one of {AUDIO_ROPE}, got {self.audio_rope!r}")
        if self.layer < 0 or (n_layers is not None and self.layer >= n_layers):
            top = f"0..{n_layers - 1}" if n_layers is not None else ">= 0"
            raise ConfigError(
                f"{where}: injection layer {self.layer} is out of range for an LLM with "
                f"{n_layers} layers (valid: {top})"
            )
        if self.mode == "plits" and (self.adapter or self.gate):
            raise ConfigError(f"{where}: adapter/gate apply to mode 'lal' only")


@dataclass
class EncoderSpec:
    name: str
    dim: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)
    integration: IntegrationConfig = field(default_factory=IntegrationConfig)

    def __post_init__(self):
        from workbench.encoders import canonical_encoder_name

        self.name = canonical_encoder_name(self.name)  # old role names (general, pitch) -> model names

    @property
    def key(self) -> str:
        """Module-dict key (encoder names are identifiers already)."""
        return self.name


@dataclass
class PALConfig:
    llm: str = "smollm2"
    insertion: str = "after_system"
    encoders: list[EncoderSpec] = field(default_factory=list)

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def from_dict(cls, data: dict) -> PALConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a mapping, got {type(data).__name__}")
        data = dict(_fields(cls, dict(data), "model"))
        encoders = []
        for i, enc in enumerate(data.pop("encoders", []) or []):
            where = f"model.encoders[{i}]"
            if not isinstance(enc, dict) or "name" not in enc:
                raise ConfigError(f"{where}: each encoder needs at least a 'name'")
            enc = dict(_fields(EncoderSpec, dict(enc), where))
            conn = ConnectorConfig(**_fields(ConnectorConfig, enc.pop("connector", {}) or {}, f"{where}.connector"))
            integ = IntegrationConfig(
                **_fields(IntegrationConfig, enc.pop("integration", {}) or {}, f"{where}.integration")
            )
            encoders.append(EncoderSpec(connector=conn, integration=integ, **enc))
        cfg = cls(encoders=encoders, **data)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> PALConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    # ------------------------------------------------------------------ checks
    def validate(self, n_layers: int | None = None) -> None:
        """Raise `ConfigError` for anything that cannot work; with n_layers also check injection layers."""
        if self.insertion not in INSERTIONS:
            raise ConfigError(f"model.insertion must be one of {INSERTIONS}, got {self.insertion!r}")
        from workbench.encoders import _REGISTRY  # the registry of known encoder names

        seen = set()
        for i, enc in enumerate(self.encoders):
            where = f"model.encoders[{i}] ({enc.name})"
            if enc.name not in _REGISTRY:
                raise ConfigError(f"{where}: unknown encoder {enc.name!r}; known: {sorted(_REGISTRY)}")
            if enc.name in seen:
                raise ConfigError(f"{where}: encoder listed twice")
            seen.add(enc.name)
            enc.connector.validate(where + ".connector")
            enc.integration.validate(where + ".integration", n_layers)

    @property
    def encoder_names(self) -> list[str]:
        return [e.name for e in self.encoders]
