"""The on-disk store of an SAE's training rows: a folder of shards with a manifest, written atomically, resumable.

    store = RowStore("runs/sae/acts")        # a folder written by `workbench.analysis.sae.activations.collect_rows`
    X = store.matrix()                       # [n_rows, d] float32
    store.meta                               # one row per activation row

``manifest.json`` records what was collected (hook, positions, rows, n_items, dtype, model fingerprint, data), the
shards written so far, the next batch and whether the store is complete; ``open_store`` continues a store with the
same record and starts one with another record over.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["RowStore", "model_fingerprint", "open_store", "write_shard"]


class RowStore:
    """A folder of shards: ``manifest.json`` (hook, positions, dim, shards, next_batch, complete),
    ``acts_#####.npy`` [rows, d] and ``rows_#####.csv`` (clip, row_id, token, encoder, t0, t1, attributes)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        mf = self.root / "manifest.json"
        self.manifest: dict | None = json.loads(mf.read_text()) if mf.is_file() else None

    @property
    def complete(self) -> bool:
        return bool(self.manifest and self.manifest.get("complete"))

    def _need(self) -> dict:
        """The manifest; a clear error when the folder holds none."""
        if not self.manifest:
            raise FileNotFoundError(
                f"{self.root} holds no activation rows (no manifest.json); collect them first: "
                "python -m workbench.sae collect --checkpoint DIR --site HOOK --out DIR"
            )
        return self.manifest

    def shards(self):
        """Stream the shards: yields (activations [rows, d] float32 memmap-backed, row frame)."""
        manifest = self._need()
        for s in manifest["shards"]:
            yield (np.load(self.root / s["acts"], mmap_mode="r"), pd.read_csv(self.root / s["rows"]))

    def matrix(self) -> np.ndarray:
        """Every row, [n, d] float32."""
        manifest = self._need()
        parts = [np.asarray(a, dtype=np.float32) for a, _ in self.shards()]
        return np.concatenate(parts) if parts else np.zeros((0, manifest.get("dim", 0)), np.float32)

    @property
    def meta(self) -> pd.DataFrame:
        manifest = self._need()
        return pd.concat([pd.read_csv(self.root / s["rows"]) for s in manifest["shards"]], ignore_index=True)

    def __len__(self) -> int:
        return sum(s["n"] for s in self.manifest["shards"]) if self.manifest else 0

    def write_manifest(self, manifest: dict) -> None:
        tmp = self.root / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, self.root / "manifest.json")
        self.manifest = manifest


def model_fingerprint(model) -> str:
    """A short id of the model's configuration and trainable weights (so a resumed store never mixes models)."""
    import hashlib

    h = hashlib.sha1()
    cfg = getattr(model, "pal_cfg", None)
    described = cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else str(cfg)
    h.update(json.dumps(described, sort_keys=True, default=str).encode())
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad or name.startswith(("connectors", "lal_")):
            h.update(name.encode())
            h.update(np.ascontiguousarray(p.detach().float().flatten()[:4096].cpu().numpy()).tobytes())
    return h.hexdigest()[:16]


def open_store(out_dir: str | os.PathLike, key: dict) -> tuple[RowStore, dict]:
    """(store, manifest) in ``out_dir`` (made if missing) for the collection ``key``: the folder's own manifest when
    it records the same ``key`` (complete or to continue), else a fresh one (the old shards deleted)."""
    store = RowStore(out_dir)
    store.root.mkdir(parents=True, exist_ok=True)
    manifest = store.manifest
    if manifest and {k: manifest.get(k) for k in key} == key:
        return store, manifest
    if manifest:  # another model, hook or data: start over (old shards are overwritten)
        for s in manifest.get("shards", []):
            for f in (s["acts"], s["rows"]):
                (store.root / f).unlink(missing_ok=True)
    manifest = {**key, "shards": [], "next_batch": 0, "complete": False}
    store.write_manifest(manifest)
    return store, manifest


def write_shard(store: RowStore, manifest: dict, acts: list, metas: list, next_batch: int, dtype) -> None:
    """Write the buffered rows (``acts``: [n_i, d] arrays, ``metas``: their frames) as the next shard, atomically,
    and record it (and ``next_batch``, where a rerun continues) in the manifest."""
    i = len(manifest["shards"])
    a_name, r_name = f"acts_{i:05d}.npy", f"rows_{i:05d}.csv"
    x = np.concatenate(acts).astype(dtype)
    with open(store.root / (a_name + ".tmp"), "wb") as f:
        np.save(f, x)
    os.replace(store.root / (a_name + ".tmp"), store.root / a_name)
    pd.concat(metas, ignore_index=True).to_csv(store.root / (r_name + ".tmp"), index=False)
    os.replace(store.root / (r_name + ".tmp"), store.root / r_name)
    manifest["shards"].append({"acts": a_name, "rows": r_name, "n": int(x.shape[0])})
    manifest["dim"] = int(x.shape[1])
    manifest["next_batch"] = next_batch
    store.write_manifest(manifest)
