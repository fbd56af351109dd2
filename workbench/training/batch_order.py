"""Training data: make sure the audiofolders and token caches exist; a deterministic, resumable batch order.

The order of a stage is a pure function of ``(seed, stage index, dataset length)``: epoch ``e`` is a
``torch.randperm`` drawn from a generator seeded with a hash of ``(seed, stage, e)``, the epochs are
concatenated into one stream, and global micro-batch ``m`` is the slice ``[m*B, (m+1)*B)`` of that stream
(batches run across epoch boundaries; nothing is dropped). It never depends on the model variant, the
number of processes or a DataLoader's state, so "resume at micro-batch m" is exact. With P processes,
process r takes the r-th contiguous ``B/P`` chunk of each global micro-batch.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch.utils.data import Sampler

from workbench.data.audiofolder import DataError

__all__ = ["order_seed", "epoch_permutation", "StageBatchSampler", "prepare_data", "EmptyDatasetError"]

log = logging.getLogger(__name__)


class EmptyDatasetError(DataError):
    """No task rows left after the stage's task filter."""


def order_seed(seed: int, stage: int, epoch: int) -> int:
    h = hashlib.sha256(f"pal-train-order:{seed}:{stage}:{epoch}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def epoch_permutation(n: int, seed: int, stage: int, epoch: int) -> torch.Tensor:
    g = torch.Generator()
    g.manual_seed(order_seed(seed, stage, epoch))
    return torch.randperm(n, generator=g)


class StageBatchSampler(Sampler[list[int]]):
    """Yields this process's share of global micro-batches ``start .. stop-1`` of a stage's order."""

    def __init__(
        self, n: int, batch_size: int, seed: int, stage: int, start: int, stop: int, rank: int = 0, world: int = 1
    ):
        if n <= 0:
            raise ValueError("StageBatchSampler over an empty dataset")
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not divisible by the number of processes {world}")
        self.n, self.bs, self.seed, self.stage = n, batch_size, seed, stage
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {epoch: epoch_permutation(self.n, self.seed, self.stage, epoch)}
        return self._perms[epoch]

    def global_batch(self, m: int) -> list[int]:
        out = []
        for pos in range(m * self.bs, (m + 1) * self.bs):
            epoch, off = divmod(pos, self.n)
            out.append(int(self._perm(epoch)[off]))
        return out

    def position(self, m: int) -> dict:
        """Where micro-batch ``m`` starts: ``{"micro_batch", "epoch", "offset"}``."""
        epoch, off = divmod(m * self.bs, self.n)
        return {"micro_batch": m, "epoch": epoch, "offset": off}

    def __iter__(self):
        per = self.bs // self.world
        for m in range(self.start, self.stop):
            yield self.global_batch(m)[self.rank * per : (self.rank + 1) * per]

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _has_audiofolder(d: Path) -> bool:
    return (d / "metadata.jsonl").is_file() and (d / "tasks.jsonl").is_file()


def prepare_data(data_cfg, encoders: list, progress: bool = True) -> None:
    """Generate missing synthetic splits (``data.generate``) and encode missing cache entries.

    ``encoders``: names or ``(name, load_encoder kwargs)`` pairs. Run on the main process only (others wait).
    """
    dirs = [d for d in (data_cfg.train, data_cfg.val) if d is not None]
    missing = [d for d in dirs if not _has_audiofolder(d)]
    if missing:
        if not data_cfg.generate:
            raise DataError(
                f"dataset folder(s) {[str(d) for d in missing]} missing (no metadata.jsonl/tasks.jsonl) "
                f"and the config's data section has no `generate:` entry to create them"
            )
        from workbench.data.synth import generate, generate_all_splits

        g = data_cfg.generate
        tr, va = data_cfg.train, data_cfg.val
        if va is not None and tr.parent == va.parent and tr.name == "train" and va.name == "val":
            log.info("generating synthetic splits under %s", tr.parent)
            generate_all_splits(
                tr.parent,
                g["n_train"],
                seed=g["seed"],
                preset=g["preset"],
                workers=g["workers"],
                n_eval=g["n_eval"],
                progress=progress,
            )
        else:
            for d in missing:
                split, n = ("train", g["n_train"]) if d == tr else ("val", g["n_eval"])
                generate(d, n, g["seed"], split, g["preset"], g["workers"], progress)
    if encoders:
        from workbench.encoders import encoders_for
        from workbench.encoders.cache import TokenCache, encode_dataset, read_audiofolder

        cache = TokenCache(data_cfg.cache_dir)
        built = encoders_for(encoders)
        for d in dirs:
            paths = read_audiofolder(d)
            todo = [e for e in built if not all(cache.has(p, e) for p in paths)]
            if todo:
                log.info("encoding %s with %s into %s", d, [e.name for e in todo], data_cfg.cache_dir)
                encode_dataset(d, todo, data_cfg.cache_dir, progress=progress)
        for e in built:  # name-only lookups (the Dataset) read exactly these encoders' entries
            cache.set_current(e)
