"""Clips to probe (one fixed question each) and their pooled activations, streamed to an on-disk store (see
`workbench.analysis.probes`)."""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import torch

from workbench.analysis.probes.suite import _DTYPES, DEFAULT_QUESTION, ProbeError, Site

log = logging.getLogger(__name__)


class _ClipView(torch.utils.data.Dataset):
    """Items of ``base`` at ``indices`` with the prompt replaced by one fixed question (no answer)."""

    def __init__(self, base, indices: list[int], question: str):
        from workbench.data.dataset import DEFAULT_SYSTEM_PROMPT, build_prompt

        self.base, self.indices, self.question = base, list(indices), question
        mode = getattr(base, "slot", "after_system")
        if hasattr(base, "build_prompt"):  # a dataset with its own prompt format (released models)
            ids, slot = base.build_prompt(question)
        else:
            ids, slot = build_prompt(
                base.tokenizer,
                question,
                getattr(base, "system_prompt", DEFAULT_SYSTEM_PROMPT),
                mode if isinstance(mode, str) else "after_system",
            )
        self.ids, self.slot = torch.tensor(ids, dtype=torch.long), slot

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[self.indices[i]])
        item.update(
            input_ids=self.ids.clone(),
            labels=torch.full_like(self.ids, -100),
            audio_slot=self.slot,
            prompt_len=len(self.ids),
        )
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


def _labelled_rows(
    dataset, attribute: str, identity: str, where: str, cols: list[str], dropped: Counter[str]
) -> tuple[list[int], list, list[str], list[str]]:
    """(row index, label value, control identity, file name) of each clip's first row with ``attribute``
    set (nulls counted in ``dropped["null"]``); ProbeError if no clip has it or it is a list / dict."""
    seen: set[str] = set()
    idx, values, ids, files = [], [], [], []
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
        idx.append(i)
        values.append(v)
        ids.append(str(row.get(identity)))
        files.append(fn)
    if not values:
        filled = [c for c in cols if any(r.get(c) is not None for r in dataset.rows[:500])]
        raise ProbeError(
            f"attribute {attribute!r} is null for every clip of dataset {where} ({len(seen)} clips): "
            "the data may not have it (the synthetic tiny preset has no music: instrument and other "
            f"music attributes need the default preset); columns with values: {', '.join(filled)}"
        )
    return idx, values, ids, files


def prepare_clips(
    dataset,
    attribute: str,
    *,
    question: str = DEFAULT_QUESTION,
    task: str = "auto",
    n: int | None = None,
    identity: str = "file_name",
    min_per_class: int = 2,
) -> ClipSet:
    """One row per clip of ``dataset`` (an AudioTaskDataset: ``rows`` carry the clip metadata), labelled with
    ``attribute``; clips where it is null are dropped, as are classes with fewer than ``min_per_class`` clips.
    ``n`` keeps the first n labelled clips (file order), before rare classes are dropped. ``task`` auto:
    numbers with more than 12 distinct values are a regression, anything else classes."""
    where = str(getattr(dataset, "root", "the dataset"))
    cols = _columns(dataset)
    if attribute not in cols:
        raise ProbeError(
            f"attribute {attribute!r} is not a column of dataset {where}; columns available: {', '.join(cols)}"
        )
    if identity not in cols:
        raise ProbeError(
            f"control identity {identity!r} is not a column of dataset {where}; columns available: {', '.join(cols)}"
        )
    dropped: Counter[str] = Counter()
    idx, values, ids, files = _labelled_rows(dataset, attribute, identity, where, cols, dropped)
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
        raise ProbeError(
            f"attribute {attribute!r} has fewer than 2 classes with >= {min_per_class} clips in "
            f"{where} ({len(labels)} clips): nothing to probe; use more clips (--n)"
        )
    return ClipSet(
        _ClipView(dataset, idx, question), labels, np.asarray(ids, dtype=object), files, task, attribute, dict(dropped)
    )


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
            self.dims: dict[str, int] = {s["site"]["name"]: s["dim"] for s in meta["sites"]}
            self.files = {s["site"]["name"]: s["file"] for s in meta["sites"]}
            self.dtype, self.n, self.info = meta["dtype"], meta["n"], meta.get("info", {})
            self._handles: dict[str, BinaryIO] | None = None
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if (self.root / "manifest.json").exists():
            (self.root / "manifest.json").unlink()
        self.sites, self.dtype, self.n, self.info = list(sites), dtype, 0, {}
        self.files = {s.name: f"site_{i:03d}.bin" for i, s in enumerate(self.sites)}
        self.dims = {}
        self._handles = {s.name: open(self.root / self.files[s.name], "wb") for s in self.sites}

    def writers(self) -> dict[str, BinaryIO]:
        """The open per-site files of a store being written (`append`, `close`)."""
        if self._handles is None:
            raise ProbeError(f"{self.root}: the activation store is not open for writing (opened to read, or closed)")
        return self._handles

    def append(self, pooled: dict[str, np.ndarray]) -> None:
        handles = self.writers()
        rows = {v.shape[0] for v in pooled.values()}
        if len(rows) != 1 or set(pooled) != set(handles):
            raise ProbeError("append needs every site with the same number of rows")
        for name, x in pooled.items():
            x = np.ascontiguousarray(x, dtype=_DTYPES[self.dtype])
            if self.dims.setdefault(name, x.shape[1]) != x.shape[1]:
                raise ProbeError(f"site {name}: width changed from {self.dims[name]} to {x.shape[1]}")
            handles[name].write(x.tobytes())
        self.n += rows.pop()

    def close(self, info: dict | None = None) -> None:
        for h in self.writers().values():
            h.close()
        self._handles = None
        self.info = info or {}
        meta = {
            "complete": True,
            "n": self.n,
            "dtype": self.dtype,
            "info": self.info,
            "sites": [
                {"site": asdict(s), "dim": self.dims.get(s.name, 0), "file": self.files[s.name]} for s in self.sites
            ],
        }
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


def mask_hooks(model) -> dict[str, tuple[str, str]]:
    """{encoder: (``encoders.{e}.hook_mask``, ``connectors.{e}.hook_mask``)}: the real frames [B, T] and real
    tokens [B, N] of each encoder, read with the same ``collect`` call as the sites."""
    return {e: (f"encoders.{e}.hook_mask", f"connectors.{e}.hook_mask") for e in model.encoder_names}


@torch.no_grad()
def collect_activations(
    model,
    clips: ClipSet | Any,
    sites: list[Site],
    run_dir: str | os.PathLike,
    *,
    backend: str = "transformer_lens",
    batch_size: int = 8,
    dtype: str = "float32",
    progress: bool = False,
) -> ActivationStore:
    """Pool every site for every clip, one forward (one ``collect`` call with all hook names) per batch, and
    stream the pooled vectors to an :class:`ActivationStore` in ``run_dir``."""
    from workbench.analysis.core import collect

    dataset = clips.dataset if isinstance(clips, ClipSet) else clips
    hooks = list(dict.fromkeys(s.hook for s in sites))
    store = ActivationStore(run_dir, sites, dtype)
    masks = mask_hooks(model)
    names = hooks + [h for pair in masks.values() for h in pair if h not in hooks]
    it = range(0, len(dataset), batch_size)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="probe activations", unit="batch")
    try:
        for start in it:
            batch = dataset.collate_fn([dataset[j] for j in range(start, min(start + batch_size, len(dataset)))])
            _, acts = collect(model, batch, names, backend=backend)
            enc_mask = {e: acts[enc] for e, (enc, _) in masks.items()}
            layout = model.token_layout(batch, {e: (None, acts[conn]) for e, (_, conn) in masks.items()})
            ctx = {"layout": layout, "enc_mask": enc_mask, "prompt_len": batch["prompt_len"]}
            store.append({s.name: _pool(s, acts[s.hook], ctx).cpu().numpy() for s in sites})
            del acts
    except BaseException:
        for h in store.writers().values():
            h.close()
        raise
    info = {}
    if isinstance(clips, ClipSet):
        pd.DataFrame({"file_name": clips.file_names, "label": clips.labels, "identity": clips.identities}).to_csv(
            store.root / "clips.csv", index=False
        )
        info = {"attribute": clips.attribute, "task": clips.task}
    store.close(info)
    return store
