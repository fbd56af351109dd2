"""Probe suites (``probes/*.yaml``) and the sites they select on a model (see `workbench.analysis.probes`)."""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

POSITIONS = ("last_prompt", "slot_after", "mean_after_slot", "before_slot")
DEFAULT_QUESTION = "What do you hear?"
_RESID_HOOKS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")
_SUITE_KEYS = {
    "name",
    "attribute",
    "task",
    "question",
    "sites",
    "estimator",
    "folds",
    "seed",
    "control",
    "bootstrap",
    "storage_dtype",
    "batch_size",
    "description",
}
_SITE_KEYS = {"encoders", "connectors", "resid", "audio_kv", "hooks"}
_DTYPES: dict[str, type[np.floating]] = {"float32": np.float32, "float16": np.float16}


class ProbeError(ValueError):
    """A probe suite, site, attribute or activation store that cannot be used (the message says why)."""


@dataclass
class ProbeSuite:
    """A probe suite (see ``probes/README`` in the yaml files' header and :func:`load_suite`)."""

    name: str
    attribute: str
    sites: dict[str, Any] = field(
        default_factory=lambda: {
            "encoders": "all",
            "connectors": "all",
            "resid": {"layers": "all", "positions": ["last_prompt"]},
            "audio_kv": {"layers": "all", "which": ["k", "v"]},
        }
    )
    task: str = "auto"  # auto | classification | regression
    question: str = DEFAULT_QUESTION
    estimator: dict[str, Any] = field(default_factory=dict)
    folds: int = 5
    seed: int = 0
    control: dict[str, Any] = field(default_factory=lambda: {"type": "random_identity", "identity": "file_name"})
    bootstrap: int = 1000
    storage_dtype: str = "float32"
    batch_size: int = 8
    description: str = ""
    source: str = "<dict>"

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> ProbeSuite:
        if not isinstance(data, dict):
            raise ProbeError(f"{source}: a probe suite is a mapping, got {type(data).__name__}")
        unknown = set(data) - _SUITE_KEYS
        if unknown:
            raise ProbeError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_SUITE_KEYS)}")
        if "attribute" not in data:
            raise ProbeError(f"{source}: missing 'attribute' (the metadata column to probe, e.g. pitch_class)")
        kw = dict(data)
        kw.setdefault("name", Path(source).stem if source != "<dict>" else str(data["attribute"]))
        if isinstance(kw.get("control"), str):
            kw["control"] = {"type": kw["control"]}
        suite = cls(**kw, source=source)
        suite.validate()
        return suite

    def validate(self) -> None:
        src = self.source
        if self.task not in ("auto", "classification", "regression"):
            raise ProbeError(f"{src}: task must be auto, classification or regression, got {self.task!r}")
        if not isinstance(self.folds, int) or self.folds < 2:
            raise ProbeError(f"{src}: folds must be an integer >= 2, got {self.folds!r}")
        if not isinstance(self.bootstrap, int) or self.bootstrap < 0:
            raise ProbeError(f"{src}: bootstrap must be an integer >= 0, got {self.bootstrap!r}")
        if self.storage_dtype not in _DTYPES:
            raise ProbeError(f"{src}: storage_dtype must be one of {sorted(_DTYPES)}, got {self.storage_dtype!r}")
        ctl = {"type": "random_identity", "identity": "file_name", **(self.control or {})}
        if ctl["type"] not in ("random_identity", "shuffle"):
            raise ProbeError(f"{src}: control.type must be random_identity or shuffle, got {ctl['type']!r}")
        self.control = ctl
        if not isinstance(self.sites, dict) or not self.sites:
            raise ProbeError(f"{src}: 'sites' must be a non-empty mapping with keys from {sorted(_SITE_KEYS)}")
        unknown = set(self.sites) - _SITE_KEYS
        if unknown:
            raise ProbeError(f"{src}: unknown site group(s) {sorted(unknown)}; allowed: {sorted(_SITE_KEYS)}")
        est_keys = {"classification", "regression"}
        if set(self.estimator) - est_keys:
            raise ProbeError(f"{src}: estimator keys must be among {sorted(est_keys)}, got {sorted(self.estimator)}")


def load_suite(path: str | os.PathLike) -> ProbeSuite:
    """Read a probe suite YAML (format: see any file in ``probes/``)."""
    import yaml

    path = Path(path)
    if not path.exists():
        have = sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.exists() else []
        raise FileNotFoundError(f"no probe suite {path}" + (f"; suites there: {', '.join(have)}" if have else ""))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ProbeError(f"{path}: invalid YAML: {e}") from e
    return ProbeSuite.from_dict(data, source=str(path))


@dataclass(frozen=True)
class Site:
    """One probed representation. name: unique id (``hook`` or ``hook@position``); kind: encoder | connector
    | audio_in | resid | audio_k | audio_v; layer: block index (None for encoder/connector)."""

    name: str
    hook: str
    kind: str
    layer: int | None = None
    position: str | None = None
    encoder: str | None = None


def _layers(model, spec, what: str) -> list[int]:
    n = model.cfg.n_layers
    if spec in (None, "all"):
        return list(range(n))
    if isinstance(spec, int):
        spec = [spec]
    if not isinstance(spec, (list, tuple)):
        raise ProbeError(f"{what}: layers must be 'all' or a list of integers, got {spec!r}")
    for layer in spec:
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < n:
            raise ProbeError(f"{what}: layer {layer!r} is out of range: this model has {n} layers, valid 0..{n - 1}")
    return list(dict.fromkeys(spec))


def _names(spec, have: list[str], what: str) -> list[str]:
    if spec in (None, False, "none"):
        return []
    if spec in (True, "all"):
        return list(have)
    if isinstance(spec, str):
        spec = [spec]
    bad = [s for s in spec if s not in have]
    if bad:
        raise ProbeError(f"{what}: unknown encoder(s) {bad}; this model's encoders: {have}")
    return list(spec)


def _lal_layers(model) -> dict[int, list[str]]:
    """{layer: LAL encoder names whose keys are visible there}."""
    out: dict[int, list[str]] = {}
    for name, (mode, first) in model.integration.items():
        if mode == "lal":
            for layer in range(first, model.cfg.n_layers):
                out.setdefault(layer, []).append(name)
    return out


def _site_from_hook(model, text: str) -> Site:
    """A site from an explicit ``hook`` or ``hook@position`` string (checked against the model)."""
    hook, _, pos = text.partition("@")
    try:
        model.check_hook_name(hook)
    except (KeyError, IndexError) as e:
        raise ProbeError(f"sites.hooks: {e.args[0]}") from e
    m = re.fullmatch(r"encoders\.(\w+)\.hook_out", hook)
    if m:
        return Site(hook, hook, "encoder", encoder=m.group(1))
    m = re.fullmatch(r"connectors\.(\w+)\.hook_out", hook)
    if m:
        return Site(hook, hook, "connector", encoder=m.group(1))
    m = re.fullmatch(r"blocks\.(\d+)\.attn\.hook_audio_([kv])", hook)
    if m:
        layer = int(m.group(1))
        if layer not in _lal_layers(model):
            raise ProbeError(
                f"sites.hooks: {hook} never fires: no LAL audio at layer {layer} "
                f"(LAL layers: {sorted(_lal_layers(model)) or 'none'})"
            )
        return Site(hook, hook, f"audio_{m.group(2)}", layer)
    m = re.fullmatch(r"blocks\.(\d+)\.hook_audio_in", hook)
    if m:
        return Site(hook, hook, "audio_in", int(m.group(1)))
    m = re.fullmatch(r"blocks\.(\d+)\.(\w+)", hook)
    if m and m.group(2) in _RESID_HOOKS:
        pos = pos or "last_prompt"
        if pos not in POSITIONS:
            raise ProbeError(f"sites.hooks: unknown position {pos!r} in {text!r}; choose from {POSITIONS}")
        return Site(f"{hook}@{pos}", hook, "resid", int(m.group(1)), pos)
    raise ProbeError(
        f"sites.hooks: {hook!r} cannot be probed (supported: encoders.X.hook_out, connectors.X.hook_out, "
        f"blocks.L.{{{','.join(_RESID_HOOKS)}}}[@position], blocks.L.attn.hook_audio_k/v, "
        "blocks.L.hook_audio_in)"
    )


def _resid_sites(model, resid) -> list[Site]:
    """``sites.resid`` ({layers, positions, hook}) -> one residual site per position and layer."""
    sites: list[Site] = []
    if not resid:
        return sites
    if not isinstance(resid, dict):
        raise ProbeError(f"sites.resid must be a mapping (layers, positions, hook), got {resid!r}")
    extra = set(resid) - {"layers", "positions", "hook"}
    if extra:
        raise ProbeError(f"sites.resid: unknown key(s) {sorted(extra)}; allowed: layers, positions, hook")
    hook = resid.get("hook", "hook_resid_post")
    if hook not in _RESID_HOOKS:
        raise ProbeError(f"sites.resid.hook: unknown hook {hook!r}; choose from {_RESID_HOOKS}")
    positions = resid.get("positions", ["last_prompt"])
    positions = [positions] if isinstance(positions, str) else list(positions)
    bad = [p for p in positions if p not in POSITIONS]
    if bad:
        raise ProbeError(f"sites.resid.positions: unknown position(s) {bad}; choose from {POSITIONS}")
    for pos in positions:
        for layer in _layers(model, resid.get("layers", "all"), "sites.resid"):
            h = f"blocks.{layer}.{hook}"
            sites.append(Site(f"{h}@{pos}", h, "resid", layer, pos))
    return sites


def _audio_kv_sites(model, kv) -> list[Site]:
    """``sites.audio_kv`` ({layers, which}) -> the LAL audio key / value sites (none for a model without LAL)."""
    sites: list[Site] = []
    if not kv:
        return sites
    if not isinstance(kv, dict):
        raise ProbeError(f"sites.audio_kv must be a mapping (layers, which), got {kv!r}")
    extra = set(kv) - {"layers", "which"}
    if extra:
        raise ProbeError(f"sites.audio_kv: unknown key(s) {sorted(extra)}; allowed: layers, which")
    lal = _lal_layers(model)
    which = kv.get("which", ["k", "v"])
    which = [which] if isinstance(which, str) else list(which)
    if set(which) - {"k", "v"}:
        raise ProbeError(f"sites.audio_kv.which must list k and/or v, got {which}")
    if kv.get("layers", "all") == "all":
        layers = sorted(lal)
        if not layers:
            log.info("sites.audio_kv: this model has no LAL encoder, no audio K/V sites")
    else:
        layers = _layers(model, kv["layers"], "sites.audio_kv")
        off = [layer for layer in layers if layer not in lal]
        if off:
            raise ProbeError(
                f"sites.audio_kv: layer(s) {off} have no LAL audio keys/values "
                f"(LAL layers of this model: {sorted(lal) or 'none'})"
            )
    for w in which:
        for layer in layers:
            h = f"blocks.{layer}.attn.hook_audio_{w}"
            sites.append(Site(h, h, f"audio_{w}", layer))
    return sites


def resolve_sites(suite: ProbeSuite | dict, model) -> list[Site]:
    """The suite's ``sites`` section -> [Site], validated against ``model`` (a PALModel)."""
    spec = suite.sites if isinstance(suite, ProbeSuite) else suite
    unknown = set(spec) - _SITE_KEYS
    if unknown:
        raise ProbeError(f"unknown site group(s) {sorted(unknown)}; allowed: {sorted(_SITE_KEYS)}")
    have = list(model.encoder_names)
    sites: list[Site] = []
    for name in _names(spec.get("encoders"), have, "sites.encoders"):
        sites.append(Site(f"encoders.{name}.hook_out", f"encoders.{name}.hook_out", "encoder", encoder=name))
    for name in _names(spec.get("connectors"), have, "sites.connectors"):
        sites.append(Site(f"connectors.{name}.hook_out", f"connectors.{name}.hook_out", "connector", encoder=name))
    sites += _resid_sites(model, spec.get("resid"))
    sites += _audio_kv_sites(model, spec.get("audio_kv"))
    for text in spec.get("hooks") or []:
        sites.append(_site_from_hook(model, str(text)))
    names = [s.name for s in sites]
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        raise ProbeError(f"site(s) listed twice: {dup}")
    if not sites:
        raise ProbeError("the suite selects no site for this model")
    return sites
