"""Linear probes: how linearly decodable is a clip attribute (pitch class, category, ...) at each site of a PAL
model: encoder outputs, connector outputs, the residual stream per layer at chosen text positions, and the
audio keys/values of LAL layers.

    suite = load_suite("probes/pitch.yaml")
    df, fig = run_suite(suite, model, dataset, out_dir="results/pal")

Pipeline (each step is a function of its own, so notebooks can reuse them):

1. :func:`prepare_clips`: one row per clip (dedupe by ``file_name``), the attribute as label (clips where
   it is null are dropped), every clip asked the *same* question (default "What do you hear?"), so the
   text is identical across clips and only the audio can carry the label.
2. :func:`resolve_sites`: the suite's ``sites`` section -> a list of :class:`Site` (checked against the
   model: unknown encoder / hook, layer out of range, K/V at a layer without LAL audio -> clear errors).
3. :func:`collect_activations`: one :func:`workbench.analysis.core.collect` call per batch with every hook
   name at once; each site is pooled to one vector per clip and appended to its own raw file in a run
   folder (:class:`ActivationStore`), so memory holds one batch of activations, never all layers x all clips.
4. :func:`fit_probes`: one site at a time read back from disk; a standardised scikit-learn probe
   (LogisticRegression for classes, Ridge for numbers), out-of-fold predictions over (Stratified)KFold;
   accuracy (or R^2) with a bootstrap 95% CI over clips; the majority-class (or mean) baseline through the
   same folds; a Hewitt & Liang control task (each distinct input identity, by default the clip, gets a
   random label, the identities' real labels permuted among them; or shuffled rows) fitted the same way;
   selectivity = metric - control.
5. :func:`probe_figure`: metric per layer with CI bands, encoder/connector sites as markers on the left,
   majority and control as reference lines.

Pooling per site kind: ``encoder`` mean over the encoder's valid frames; ``connector`` / ``audio_in``
mean over the valid audio tokens; ``audio_k`` / ``audio_v`` mean over the valid audio keys of that layer
(all LAL encoders visible there), heads flattened; ``resid`` (``blocks.{l}.hook_resid_pre/mid/post``,
``hook_attn_out``, ``hook_mlp_out``) at a text position: ``last_prompt`` (last token before the answer),
``slot_after`` (first text token after the audio slot), ``mean_after_slot`` (mean over the prompt's text
tokens from the slot on), ``before_slot`` (last text token before the slot: causally blind to the audio, a
built-in negative control).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
import shutil
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin

log = logging.getLogger(__name__)

__all__ = [
    "ProbeError", "ProbeSuite", "Site", "ClipSet", "ActivationStore", "POSITIONS", "load_suite", "resolve_sites",
    "prepare_clips", "collect_activations", "fit_probes", "probe_figure", "run_suite", "control_labels",
    "NearConstantFilter",
]

POSITIONS = ("last_prompt", "slot_after", "mean_after_slot", "before_slot")
DEFAULT_QUESTION = "What do you hear?"
_RESID_HOOKS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")
_SUITE_KEYS = {"name", "attribute", "task", "question", "sites", "estimator", "folds", "seed", "control",
               "bootstrap", "storage_dtype", "batch_size", "description"}
_SITE_KEYS = {"encoders", "connectors", "resid", "audio_kv", "hooks"}
_DTYPES = {"float32": np.float32, "float16": np.float16}


class ProbeError(ValueError):
    """A probe suite, site, attribute or activation store that cannot be used (the message says why)."""


# ---------------------------------------------------------------------------------------------- suites
@dataclass
class ProbeSuite:
    """A probe suite (see ``probes/README`` in the yaml files' header and :func:`load_suite`)."""

    name: str
    attribute: str
    sites: dict[str, Any] = field(default_factory=lambda: {"encoders": "all", "connectors": "all",
                                                           "resid": {"layers": "all", "positions": ["last_prompt"]},
                                                           "audio_kv": {"layers": "all", "which": ["k", "v"]}})
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
    def from_dict(cls, data: dict, source: str = "<dict>") -> "ProbeSuite":
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


# ---------------------------------------------------------------------------------------------- sites
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
    for s in model.pal_cfg.encoders:
        if s.integration.mode == "lal":
            for layer in range(s.integration.layer, model.cfg.n_layers):
                out.setdefault(layer, []).append(s.name)
    return out


def _site_from_hook(model, text: str) -> Site:
    """A site from an explicit ``hook`` or ``hook@position`` string (checked against the model)."""
    hook, _, pos = text.partition("@")
    pos = pos or None
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
            raise ProbeError(f"sites.hooks: {hook} never fires: no LAL audio at layer {layer} "
                             f"(LAL layers: {sorted(_lal_layers(model)) or 'none'})")
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
    raise ProbeError(f"sites.hooks: {hook!r} cannot be probed (supported: encoders.X.hook_out, connectors.X.hook_out, "
                     f"blocks.L.{{{','.join(_RESID_HOOKS)}}}[@position], blocks.L.attn.hook_audio_k/v, "
                     "blocks.L.hook_audio_in)")


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
    resid = spec.get("resid")
    if resid:
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
    kv = spec.get("audio_kv")
    if kv:
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
                raise ProbeError(f"sites.audio_kv: layer(s) {off} have no LAL audio keys/values "
                                 f"(LAL layers of this model: {sorted(lal) or 'none'})")
        for w in which:
            for layer in layers:
                h = f"blocks.{layer}.attn.hook_audio_{w}"
                sites.append(Site(h, h, f"audio_{w}", layer))
    for text in spec.get("hooks") or []:
        sites.append(_site_from_hook(model, str(text)))
    names = [s.name for s in sites]
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        raise ProbeError(f"site(s) listed twice: {dup}")
    if not sites:
        raise ProbeError("the suite selects no site for this model")
    return sites


# ---------------------------------------------------------------------------------------------- clips
class _ClipView(torch.utils.data.Dataset):
    """Items of ``base`` at ``indices`` with the prompt replaced by one fixed question (no answer)."""

    def __init__(self, base, indices: list[int], question: str):
        from workbench.data.dataset import DEFAULT_SYSTEM_PROMPT, build_prompt

        self.base, self.indices, self.question = base, list(indices), question
        mode = getattr(base, "slot", "after_system")
        ids, slot = build_prompt(base.tokenizer, question, getattr(base, "system_prompt", DEFAULT_SYSTEM_PROMPT),
                                 mode if isinstance(mode, str) else "after_system")
        self.ids, self.slot = torch.tensor(ids, dtype=torch.long), slot

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[self.indices[i]])
        item.update(input_ids=self.ids.clone(), labels=torch.full_like(self.ids, -100), audio_slot=self.slot,
                    prompt_len=len(self.ids))
        return item

    def collate_fn(self, items):
        return self.base.collate_fn(items)


@dataclass
class ClipSet:
    """One row per clip: ``dataset`` (items with the fixed question), ``labels`` (str for classes, float for
    numbers), ``identities`` (the control's identity column), ``file_names``, ``task``."""

    dataset: Any
    labels: np.ndarray
    identities: np.ndarray
    file_names: list[str]
    task: str
    attribute: str
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.file_names)


def _columns(dataset) -> list[str]:
    report = getattr(dataset, "report", None)
    clips = getattr(report, "clips", None)
    rows = clips if clips else getattr(dataset, "rows", [])
    cols: dict[str, None] = {}
    for r in rows[:200]:
        cols.update(dict.fromkeys(k for k in r if not k.startswith("_")))
    return list(cols)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def prepare_clips(dataset, attribute: str, *, question: str = DEFAULT_QUESTION, task: str = "auto",
                  n: int | None = None, identity: str = "file_name", min_per_class: int = 2) -> ClipSet:
    """One row per clip of ``dataset`` (an AudioTaskDataset: ``rows`` carry the clip metadata), labelled with
    ``attribute``; clips where it is null are dropped, as are classes with fewer than ``min_per_class`` clips.
    ``n`` keeps the first n labelled clips (file order), before rare classes are dropped. ``task`` auto:
    numbers with more than 12 distinct values are a regression, anything else classes."""
    where = str(getattr(dataset, "root", "the dataset"))
    cols = _columns(dataset)
    if attribute not in cols:
        raise ProbeError(f"attribute {attribute!r} is not a column of dataset {where}; columns available: "
                         f"{', '.join(cols)}")
    if identity not in cols:
        raise ProbeError(f"control identity {identity!r} is not a column of dataset {where}; columns available: "
                         f"{', '.join(cols)}")
    seen: set[str] = set()
    idx, values, ids, files = [], [], [], []
    dropped = Counter()
    for i, row in enumerate(dataset.rows):
        fn = row["file_name"]
        if fn in seen:
            continue
        seen.add(fn)
        v = row.get(attribute)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            dropped["null"] += 1
            continue
        if isinstance(v, (list, dict)):
            raise ProbeError(f"attribute {attribute!r} of dataset {where} holds {type(v).__name__}s, not single values")
        idx.append(i), values.append(v), ids.append(str(row.get(identity))), files.append(fn)
    if not values:
        filled = [c for c in cols if any(r.get(c) is not None for r in dataset.rows[:500])]
        raise ProbeError(f"attribute {attribute!r} is null for every clip of dataset {where} ({len(seen)} clips): "
                         "the data may not have it (the synthetic tiny preset has no music: instrument and other "
                         f"music attributes need the default preset); columns with values: {', '.join(filled)}")
    if task == "auto":
        numeric = all(_is_number(v) for v in values)
        task = "regression" if numeric and len(set(values)) > 12 else "classification"
    if n is not None:
        if n < 1:
            raise ProbeError(f"n must be >= 1, got {n}")
        idx, values, ids, files = idx[:n], values[:n], ids[:n], files[:n]
    if task == "regression":
        if not all(_is_number(v) for v in values):
            raise ProbeError(f"attribute {attribute!r} has non-numeric values; use task: classification")
        labels = np.asarray(values, dtype=np.float64)
    else:
        labels = np.asarray([str(v) for v in values], dtype=object)
        counts = Counter(labels)
        rare = {c for c, k in counts.items() if k < min_per_class}
        if rare:
            keep = [j for j, lab in enumerate(labels) if lab not in rare]
            dropped["rare_class"] = len(labels) - len(keep)
            log.warning("%s: dropped classes with < %d clips: %s", attribute, min_per_class, sorted(rare))
            idx = [idx[j] for j in keep]
            ids = [ids[j] for j in keep]
            files = [files[j] for j in keep]
            labels = labels[keep]
    if task == "classification" and len(set(labels)) < 2:
        raise ProbeError(f"attribute {attribute!r} has fewer than 2 classes with >= {min_per_class} clips in "
                         f"{where} ({len(labels)} clips): nothing to probe; use more clips (--n)")
    return ClipSet(_ClipView(dataset, idx, question), labels, np.asarray(ids, dtype=object), files, task,
                   attribute, dict(dropped))


# ---------------------------------------------------------------------------------------------- activations
def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x [B, T, ...] mean over T where mask [B, T] (rows without a valid token -> zeros) -> [B, prod(...)]."""
    x = x.float().flatten(2)
    m = mask.to(x.device, torch.float32)[..., None]
    return (x * m).sum(1) / m.sum(1).clamp(min=1)


def _pool(site: Site, act: torch.Tensor, ctx: dict) -> torch.Tensor:
    B = act.shape[0]
    if site.kind == "encoder":
        return _masked_mean(act, ctx["enc_mask"][site.encoder])
    if site.kind == "connector":
        return _masked_mean(act, ctx["layout"].audio[site.encoder].mask)
    if site.kind == "audio_in":
        layout = ctx["layout"]
        names = [a.name for a in layout.audio.values() if a.mode == "plits" and a.layer == site.layer]
        return _masked_mean(act, torch.cat([layout.audio[n].mask for n in names], 1))
    if site.kind in ("audio_k", "audio_v"):
        mask = torch.cat([a.mask for a in ctx["layout"].lal_at(site.layer)], 1)
        return _masked_mean(act, mask)
    # resid: [B, S, d] at text positions mapped to residual indices by the layout
    layout = ctx["layout"]
    ar = torch.arange(B, device=act.device)
    ti = layout.text_index.to(act.device)
    slot = layout.audio_slot.to(act.device).long()
    plen = ctx["prompt_len"].to(act.device).long()
    if site.position == "last_prompt":
        return act[ar, ti[ar, plen - 1]].float()
    if site.position == "slot_after":
        return act[ar, ti[ar, slot]].float()
    if site.position == "before_slot":
        if bool((slot < 1).any()):
            raise ProbeError("position before_slot needs text before the audio slot (this prompt puts audio first)")
        return act[ar, ti[ar, slot - 1]].float()
    if site.position == "mean_after_slot":
        t = torch.arange(ti.shape[1], device=act.device)[None]
        sel = (t >= slot[:, None]) & (t < plen[:, None]) & layout.text_mask.to(act.device)
        x = act.gather(1, ti[..., None].expand(-1, -1, act.shape[-1]))  # [B, Lt, d]
        return _masked_mean(x, sel)
    raise ProbeError(f"unknown position {site.position!r}")


class ActivationStore:
    """A run folder: ``manifest.json`` (sites, dims, dtype, row count) + one raw row-major file per site
    (``site_###.bin``, n x dim) + ``clips.csv`` (file_name, label, identity). Written batch by batch
    (:meth:`append`), read one site at a time (:meth:`load`)."""

    def __init__(self, root: str | os.PathLike, sites: list[Site] | None = None, dtype: str = "float32"):
        self.root = Path(root)
        if sites is None:  # open an existing store
            mf = self.root / "manifest.json"
            if not mf.exists():
                raise ProbeError(f"{self.root} is not an activation store (no manifest.json)")
            meta = json.loads(mf.read_text())
            if not meta.get("complete"):
                raise ProbeError(f"{self.root}: activation store is incomplete (collection did not finish)")
            self.sites = [Site(**s["site"]) for s in meta["sites"]]
            self.dims = {s["site"]["name"]: s["dim"] for s in meta["sites"]}
            self.files = {s["site"]["name"]: s["file"] for s in meta["sites"]}
            self.dtype, self.n, self.info = meta["dtype"], meta["n"], meta.get("info", {})
            self._handles = None
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if (self.root / "manifest.json").exists():
            (self.root / "manifest.json").unlink()
        self.sites, self.dtype, self.n, self.info = list(sites), dtype, 0, {}
        self.files = {s.name: f"site_{i:03d}.bin" for i, s in enumerate(self.sites)}
        self.dims: dict[str, int] = {}
        self._handles = {s.name: open(self.root / self.files[s.name], "wb") for s in self.sites}

    def append(self, pooled: dict[str, np.ndarray]) -> None:
        rows = {v.shape[0] for v in pooled.values()}
        if len(rows) != 1 or set(pooled) != set(self._handles):
            raise ProbeError("append needs every site with the same number of rows")
        for name, x in pooled.items():
            x = np.ascontiguousarray(x, dtype=_DTYPES[self.dtype])
            if self.dims.setdefault(name, x.shape[1]) != x.shape[1]:
                raise ProbeError(f"site {name}: width changed from {self.dims[name]} to {x.shape[1]}")
            self._handles[name].write(x.tobytes())
        self.n += rows.pop()

    def close(self, info: dict | None = None) -> None:
        for h in self._handles.values():
            h.close()
        self._handles = None
        self.info = info or {}
        meta = {"complete": True, "n": self.n, "dtype": self.dtype, "info": self.info,
                "sites": [{"site": asdict(s), "dim": self.dims.get(s.name, 0), "file": self.files[s.name]}
                          for s in self.sites]}
        tmp = self.root / "manifest.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, self.root / "manifest.json")

    def load(self, site: str | Site) -> np.ndarray:
        """[n, dim] float32 array of one site (read from its file)."""
        name = site.name if isinstance(site, Site) else site
        if name not in self.files:
            raise ProbeError(f"site {name!r} is not in {self.root}; stored: {[s.name for s in self.sites]}")
        path = self.root / self.files[name]
        dim = self.dims[name]
        expect = self.n * dim * np.dtype(_DTYPES[self.dtype]).itemsize
        if path.stat().st_size != expect:
            raise ProbeError(f"{path}: {path.stat().st_size} bytes, expected {expect} ({self.n} x {dim} {self.dtype})")
        mm = np.memmap(path, dtype=_DTYPES[self.dtype], mode="r", shape=(self.n, dim))
        return np.array(mm, dtype=np.float32)


def _capture_masks(model):
    """Forward hooks on the encoder slots / connectors recording their output masks -> (dict, handles)."""
    masks: dict[str, dict[str, torch.Tensor]] = {"enc": {}, "conn": {}}
    handles = []
    for spec in model.pal_cfg.encoders:
        def enc_hook(_m, _i, out, name=spec.name):
            masks["enc"][name] = out[1].detach()

        def conn_hook(_m, _i, out, name=spec.name):
            masks["conn"][name] = out[1].detach()

        handles.append(model.encoders[spec.key].register_forward_hook(enc_hook))
        handles.append(model.connectors[spec.key].register_forward_hook(conn_hook))
    return masks, handles


@torch.no_grad()
def collect_activations(model, clips: ClipSet | Any, sites: list[Site], run_dir: str | os.PathLike, *,
                        backend: str = "transformer_lens", batch_size: int = 8, dtype: str = "float32",
                        progress: bool = False) -> ActivationStore:
    """Pool every site for every clip, one forward (one ``collect`` call with all hook names) per batch, and
    stream the pooled vectors to an :class:`ActivationStore` in ``run_dir``."""
    from workbench.analysis.core import collect

    dataset = clips.dataset if isinstance(clips, ClipSet) else clips
    hooks = list(dict.fromkeys(s.hook for s in sites))
    store = ActivationStore(run_dir, sites, dtype)
    masks, handles = _capture_masks(model)
    it = range(0, len(dataset), batch_size)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="probe activations", unit="batch")
    try:
        for start in it:
            batch = dataset.collate_fn([dataset[j] for j in range(start, min(start + batch_size, len(dataset)))])
            masks["enc"].clear(), masks["conn"].clear()
            _, acts = collect(model, batch, hooks, backend=backend)
            enc_mask = {name: masks["enc"].get(name, batch.get("audio_token_mask", {}).get(name))
                        for name in model.encoder_names}
            audio = {name: (None, m) for name, m in masks["conn"].items()}
            layout = model.token_layout(batch, audio if len(audio) == len(model.encoder_names) else None)
            ctx = {"layout": layout, "enc_mask": enc_mask, "prompt_len": batch["prompt_len"]}
            store.append({s.name: _pool(s, acts[s.hook], ctx).cpu().numpy() for s in sites})
            del acts
    except BaseException:
        for h in store._handles.values():
            h.close()
        raise
    finally:
        for h in handles:
            h.remove()
    info = {}
    if isinstance(clips, ClipSet):
        pd.DataFrame({"file_name": clips.file_names, "label": clips.labels, "identity": clips.identities}).to_csv(
            store.root / "clips.csv", index=False)
        info = {"attribute": clips.attribute, "task": clips.task}
    store.close(info)
    return store


# ---------------------------------------------------------------------------------------------- fitting
def control_labels(labels: np.ndarray, identities: np.ndarray, kind: str = "random_identity",
                   seed: int = 0) -> np.ndarray:
    """Hewitt & Liang control task: every distinct identity (e.g. clip) gets a random label with the real
    label distribution (``random_identity``: the identities' labels permuted among them), or the row labels
    are permuted (``shuffle``). With one row per identity both are a label permutation."""
    rng = np.random.default_rng([seed, 7919])
    labels = np.asarray(labels)
    if kind == "shuffle":
        return labels[rng.permutation(len(labels))]
    # one label per identity (its first row's), permuted across identities: the identity-level label
    # distribution is kept exactly, and rows of one identity share their control label
    _, first, inverse = np.unique(np.asarray(identities).astype(str), return_index=True, return_inverse=True)
    per_identity = labels[first]
    return per_identity[rng.permutation(len(per_identity))][inverse]


class NearConstantFilter(TransformerMixin, BaseEstimator):
    """Zero every feature whose spread across the training clips is at the level of floating-point noise
    (std <= rtol * rms). Identical inputs give activations that differ only by batch-dependent rounding
    (1e-7 relative); StandardScaler would blow that noise up to unit variance, and with clips batched in file
    order it can correlate with labels by chance (a text position that cannot see the audio scored 0.41 vs a
    0.32 majority without this filter). Genuine signals that small are not usable anyway."""

    def __init__(self, rtol: float = 1e-5):
        self.rtol = rtol

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        self.keep_ = X.std(0) > self.rtol * np.sqrt((X ** 2).mean(0)) + 1e-30
        return self

    def transform(self, X):
        return np.asarray(X) * self.keep_.astype(np.asarray(X).dtype)



def _noise_rtol(storage_dtype: str) -> float:
    """Relative spread below which a feature counts as constant: 1e-5 (float32 store) or 4 ulp (float16)."""
    return max(1e-5, 4 * float(np.finfo(_DTYPES[storage_dtype]).eps))


def _estimator(task: str, cfg: dict, rtol: float = 1e-5):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cfg = dict(cfg or {})
    kind = cfg.pop("type", "logistic" if task == "classification" else "ridge")
    if task == "classification":
        if kind != "logistic":
            raise ProbeError(f"classification estimator type must be 'logistic', got {kind!r}")
        cfg.setdefault("max_iter", 2000)
        return make_pipeline(NearConstantFilter(rtol), StandardScaler(), LogisticRegression(**cfg))
    if kind != "ridge":
        raise ProbeError(f"regression estimator type must be 'ridge', got {kind!r}")
    return make_pipeline(NearConstantFilter(rtol), StandardScaler(), Ridge(**cfg))


def _splits(labels, task: str, folds: int, seed: int):
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(labels)
    if task == "classification":
        k = min(folds, min(Counter(labels).values()))
        if k < 2:
            raise ProbeError("every class needs at least 2 clips for cross-validation")
        return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(n), labels))
    k = min(folds, n)
    if k < 2:
        raise ProbeError(f"regression probe needs at least 2 clips, got {n}")
    return list(KFold(k, shuffle=True, random_state=seed).split(np.zeros(n)))


def _oof(X, y, splits, make) -> np.ndarray:
    """Out-of-fold predictions; ``make()`` gives a fresh estimator (or None: majority / mean baseline)."""
    pred = np.empty(len(y), dtype=y.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on separable data: the fit is still usable
        for train, test in splits:
            est = make()
            if est is None:
                if y.dtype.kind == "f":
                    pred[test] = y[train].mean()
                else:
                    counts = Counter(y[train])  # ties -> first in sorted order, as scikit-learn's classes_
                    top = max(counts.values())
                    pred[test] = min(c for c, k in counts.items() if k == top)
                continue
            ytr = y[train]
            if y.dtype.kind != "f" and len(set(ytr)) < 2:  # a fold with one class: predict it
                pred[test] = ytr[0]
                continue
            est.fit(X[train], ytr)
            pred[test] = est.predict(X[test])
    return pred


def _score(y, pred, task: str) -> np.ndarray:
    """Per-example score: correct (classification) or the squared error (regression)."""
    return (y == pred).astype(np.float64) if task == "classification" else (y - pred) ** 2


def _metric(y, pred, task: str) -> float:
    if task == "classification":
        return float(np.mean(y == pred))
    sst = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / sst if sst > 0 else float("nan")


def _bootstrap_ci(y, pred, task: str, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    if n_boot <= 0 or len(y) < 2:
        return float("nan"), float("nan")
    from workbench.stats import percentile_ci, resample_indices

    rng = np.random.default_rng([seed, 31337])
    n = len(y)
    parts = []
    for idx in resample_indices(rng, n, n_boot, chunk=256):  # chunks keep the index matrix small for large n
        if task == "classification":
            parts.append((y == pred)[idx].mean(1))
        else:
            yy, pp = y[idx], pred[idx]
            sst = ((yy - yy.mean(1, keepdims=True)) ** 2).sum(1)
            with np.errstate(divide="ignore", invalid="ignore"):
                parts.append(1 - ((yy - pp) ** 2).sum(1) / sst)
    return percentile_ci(np.concatenate(parts), level, nan_ok=True)


def fit_probes(store: ActivationStore, labels, identities=None, *, task: str | None = None, folds: int = 5,
               seed: int = 0, estimator: dict | None = None, control: dict | None = None, bootstrap: int = 1000,
               attribute: str | None = None, sites: list[Site] | None = None, progress: bool = False,
               threads: int | None = 1) -> pd.DataFrame:
    """One probe per site (loaded one at a time from ``store``) -> tidy DataFrame, one row per site:
    site, kind, layer, position, encoder, hook, attribute, task, metric, value, ci_low, ci_high, fold_std,
    majority, control, control_ci_low, control_ci_high, selectivity, n, n_classes, folds, dim.
    ``threads``: BLAS/OpenMP threads while fitting (None: library default)."""
    y = np.asarray(labels)
    if len(y) != store.n:
        raise ProbeError(f"{len(y)} labels for {store.n} stored rows in {store.root}")
    task = task or store.info.get("task") or ("regression" if y.dtype.kind == "f" else "classification")
    y = y.astype(np.float64) if task == "regression" else y.astype(str).astype(object)
    ids = np.asarray(identities if identities is not None else np.arange(len(y)).astype(str))
    ctl = {"type": "random_identity", **(control or {})}
    yc = control_labels(y, ids, ctl["type"], seed)
    splits = _splits(y, task, folds, seed)
    est_cfg = (estimator or {}).get(task, {})
    rtol = _noise_rtol(store.dtype)
    make = lambda: _estimator(task, est_cfg, rtol)  # noqa: E731
    maj_pred = _oof(np.zeros((len(y), 1)), y, splits, lambda: None)
    majority = _metric(y, maj_pred, task)
    metric = "accuracy" if task == "classification" else "r2"
    rows = []
    todo = sites if sites is not None else store.sites
    it = todo
    if progress:
        from tqdm import tqdm

        it = tqdm(todo, desc="probes", unit="site")
    from threadpoolctl import threadpool_limits

    for site in it:
        X = store.load(site)
        with threadpool_limits(threads):  # small BLAS problems: threads only add contention (10x slower here)
            pred, cpred = _oof(X, y, splits, make), _oof(X, yc, splits, make)
        value = _metric(y, pred, task)
        lo, hi = _bootstrap_ci(y, pred, task, bootstrap, seed)
        fold_vals = [_metric(y[te], pred[te], task) for _, te in splits]
        cval = _metric(yc, cpred, task)
        clo, chi = _bootstrap_ci(yc, cpred, task, bootstrap, seed)
        rows.append({"site": site.name, "kind": site.kind, "layer": site.layer, "position": site.position,
                     "encoder": site.encoder, "hook": site.hook, "attribute": attribute or store.info.get("attribute"),
                     "task": task, "metric": metric, "value": value, "ci_low": lo, "ci_high": hi,
                     "fold_std": float(np.std(fold_vals)), "majority": majority, "control": cval,
                     "control_ci_low": clo, "control_ci_high": chi, "selectivity": value - cval, "n": len(y),
                     "n_classes": len(set(y)) if task == "classification" else None, "folds": len(splits),
                     "dim": X.shape[1], "control_type": ctl["type"]})
        del X
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- figure
_KIND_X = {"encoder": -2.0, "connector": -1.0}


def probe_figure(df: pd.DataFrame, title: str | None = None):
    """Metric per layer (one line + 95% CI band per residual position / audio K / V), encoder and connector
    sites as markers left of layer 0, the majority baseline and each series' control task as reference
    lines."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    from workbench.analysis.figures import add_caption

    fig = go.Figure()
    if df.empty:
        fig.update_layout(title=title or "Linear probes: no results", xaxis_title="site (layer index)",
                          yaxis_title="probe metric (out-of-fold)")
        return add_caption(fig, "No probe results (empty table): nothing to plot.")
    metric = df["metric"].iloc[0]
    attr = df["attribute"].iloc[0]
    palette = qualitative.Plotly
    layered = df[df["layer"].notna() & df["kind"].isin(["resid", "audio_k", "audio_v", "audio_in"])].copy()
    layered["series"] = np.where(layered["kind"] == "resid",
                                 layered["hook"].str.replace(r"^blocks\.\d+\.", "", regex=True) + " @ "
                                 + layered["position"].astype(str), layered["kind"])
    for i, (series, g) in enumerate(layered.groupby("series", sort=False)):
        g = g.sort_values("layer")
        color = palette[i % len(palette)]
        x = g["layer"].astype(int).tolist()
        fig.add_trace(go.Scatter(x=x + x[::-1], y=g["ci_high"].tolist() + g["ci_low"].tolist()[::-1], fill="toself",
                                 fillcolor=color, opacity=0.18, line={"width": 0}, hoverinfo="skip",
                                 showlegend=False, legendgroup=series))
        fig.add_trace(go.Scatter(x=x, y=g["value"], mode="lines+markers", name=series, legendgroup=series,
                                 line={"color": color}, customdata=g[["ci_low", "ci_high", "control", "selectivity"]],
                                 hovertemplate="layer %{x}<br>" + metric + " %{y:.3f} [%{customdata[0]:.3f}, "
                                 "%{customdata[1]:.3f}]<br>control %{customdata[2]:.3f}<br>selectivity "
                                 "%{customdata[3]:.3f}<extra>" + series + "</extra>"))
        fig.add_trace(go.Scatter(x=x, y=g["control"], mode="lines", name=f"control ({series})", legendgroup=series,
                                 line={"color": color, "dash": "dot", "width": 1}))
    point = df[df["kind"].isin(list(_KIND_X))]
    for i, (kind, g) in enumerate(point.groupby("kind", sort=False)):
        offs = np.linspace(-0.25, 0.25, len(g)) if len(g) > 1 else [0.0]
        xs = [_KIND_X[kind] + o for o in offs]
        fig.add_trace(go.Scatter(
            x=xs, y=g["value"], mode="markers+text", text=g["encoder"], textposition="top center",
            marker={"size": 10, "symbol": "diamond" if kind == "encoder" else "square"}, name=f"{kind} output",
            error_y={"type": "data", "symmetric": False, "array": (g["ci_high"] - g["value"]).tolist(),
                     "arrayminus": (g["value"] - g["ci_low"]).tolist()}))
        fig.add_trace(go.Scatter(x=xs, y=g["control"], mode="markers", marker={"symbol": "x", "color": "grey"},
                                 name=f"control ({kind})"))
    fig.add_hline(y=float(df["majority"].iloc[0]), line_dash="dash", line_color="black",
                  annotation_text="majority class" if metric == "accuracy" else "mean predictor",
                  annotation_position="bottom right")
    max_layer = int(layered["layer"].max()) if len(layered) else 0
    step = max(1, math.ceil((max_layer + 1) / 15))
    ticks = ([-2, -1] if len(point) else []) + list(range(0, max_layer + 1, step))
    text = (["encoders", "connectors"] if len(point) else []) + [str(t) for t in ticks[(2 if len(point) else 0):]]
    n, folds = int(df["n"].iloc[0]), int(df["folds"].iloc[0])
    ylab = ("accuracy (fraction of clips correct, out-of-fold)" if metric == "accuracy"
            else "R² (coefficient of determination, out-of-fold; 1 = perfect)")
    fig.update_layout(
        title=title or f"Linear probes for {attr}: {metric} per site ({n} clips, {folds}-fold CV)",
        xaxis={"title": "site: encoder / connector output, then LLM layer (block index, 0-based)",
               "tickmode": "array", "tickvals": ticks, "ticktext": text},
        yaxis={"title": ylab}, template="plotly_white", legend={"groupclick": "togglegroup"})
    ctl = df["control_type"].iloc[0] if "control_type" in df else "random_identity"
    return add_caption(
        fig, f"Standardised linear probe ({'logistic regression' if metric == 'accuracy' else 'ridge'}) on {n} clips, "
             f"{folds}-fold out-of-fold {metric}; bands/bars: 95% bootstrap CI over clips. Dotted: control task "
             f"({ctl.replace('_', ' ')} labels, same distribution); selectivity = {metric} - control. Dashed: "
             f"{'majority-class' if metric == 'accuracy' else 'mean-predictor'} baseline. Same question for every "
             "clip, so only the audio carries the label.")


# ---------------------------------------------------------------------------------------------- end to end
def run_suite(suite: ProbeSuite, model, dataset, *, out_dir: str | os.PathLike | None = None,
              activations_dir: str | os.PathLike | None = None, keep_activations: bool = False, n: int | None = None,
              backend: str = "transformer_lens", batch_size: int | None = None, seed: int | None = None,
              progress: bool = False, write: bool = True):
    """Prepare clips, resolve sites, collect (streamed to disk), fit, plot; write ``probe_<name>`` csv/html/png
    into ``out_dir`` (when given and ``write``). Returns (df, fig)."""
    from workbench.analysis.core import write_outputs

    if seed is not None:
        suite = copy.copy(suite)
        suite.seed = seed
    sites = resolve_sites(suite, model)
    clips = prepare_clips(dataset, suite.attribute, question=suite.question, task=suite.task, n=n,
                          identity=suite.control.get("identity", "file_name"))
    log.info("probing %s on %d clips, %d sites", suite.attribute, len(clips), len(sites))
    if activations_dir:
        base = Path(activations_dir)
    elif out_dir is not None:
        base = Path(out_dir) / f".probe_{suite.name}_activations"
    else:
        import tempfile

        base = Path(tempfile.mkdtemp(prefix=f"probe_{suite.name}_"))
    try:
        store = collect_activations(model, clips, sites, base, backend=backend,
                                    batch_size=batch_size or suite.batch_size, dtype=suite.storage_dtype,
                                    progress=progress)
        df = fit_probes(store, clips.labels, clips.identities, task=clips.task, folds=suite.folds, seed=suite.seed,
                        estimator=suite.estimator, control=suite.control, bootstrap=suite.bootstrap,
                        attribute=suite.attribute, progress=progress)
    finally:
        if not keep_activations and not activations_dir:
            shutil.rmtree(base, ignore_errors=True)
    df.insert(0, "suite", suite.name)
    fig = probe_figure(df)
    if out_dir is not None and write:
        write_outputs(df, fig, out_dir, f"probe_{suite.name}")
    return df, fig
