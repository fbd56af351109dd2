"""Load a trained checkpoint with the data to analyse it on, and batch that data.

model, ds = load_for_analysis("results/checkpoints/pal/final", n=32)   # model + AudioTaskDataset
for batch in batches(ds, 8): ...
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from workbench.common.constants import TOKEN_CACHE
from workbench.common.paths import variant_of

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CHECKPOINT",
    "DEFAULT_DATA",
    "DEFAULT_CACHE",
    "TRAIN_COMMAND",
    "load_for_analysis",
    "sample_rows",
    "prompt_item",
    "batches",
]

DEFAULT_CHECKPOINT = Path("results/checkpoints/pal/final")
DEFAULT_DATA = Path("data/synth-tiny/val")
DEFAULT_CACHE = TOKEN_CACHE
TRAIN_COMMAND = (
    "python -m workbench.train --config configs/{variant}.yaml --preset tiny --out results/checkpoints/{variant}"
)


def load_for_analysis(
    checkpoint: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    n: int | None = None,
    *,
    split: str = "val",
    seed: int = 0,
    preset: str | None = "tiny",
    n_generate: int = 120,
    cache_dir: str | os.PathLike = DEFAULT_CACHE,
    tasks: list[str] | None = None,
    progress: bool = False,
    tokenizer=None,
    model=None,
):
    """(PALModel, AudioTaskDataset) ready for analysis.

    checkpoint: a `PALModel.save_pretrained` folder (default ``results/checkpoints/pal/final``), or a released
    audio-LLM's transformers folder / hub id (`workbench.model.released`; the dataset is then in its template).
    data_dir: an audiofolder (default ``data/synth-tiny/val``); if missing and ``preset`` is given, the
    synthetic generator writes ``n_generate`` clips of ``split`` there. The encoder token cache in
    ``cache_dir`` is filled for the model's encoders. n: keep a seeded random subset of n task rows.
    tokenizer: passed to `PALModel.from_pretrained` (default: the LLM's own).
    model: an already loaded PALModel to reuse (``checkpoint`` is then ignored); only the dataset is built.
    """
    from workbench.data.audiofolder import require_tasks
    from workbench.model.pal import PALModel
    from workbench.model.released import is_hub_id

    ckpt = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    if model is None and not (ckpt / "config.json").exists() and not is_hub_id(ckpt):
        variant = variant_of(ckpt)
        raise FileNotFoundError(
            f"no checkpoint at {ckpt} (needs config.json + model.safetensors). Make it with: "
            + TRAIN_COMMAND.format(variant=variant if (Path("configs") / f"{variant}.yaml").exists() else "pal")
        )
    if model is None:
        model = PALModel.from_pretrained(ckpt, tokenizer=tokenizer)
    data = Path(data_dir) if data_dir is not None else DEFAULT_DATA
    if (data / "metadata.jsonl").exists():
        require_tasks(data)  # a user's audiofolder without questions: say so (never generate into it)
    if not ((data / "metadata.jsonl").exists() and (data / "tasks.jsonl").exists()):
        if preset is None:
            raise FileNotFoundError(
                f"dataset {data} is missing (no metadata.jsonl/tasks.jsonl); pass a preset to "
                f"generate it, or run: python -m workbench.data.synth --out {data} --n {n_generate} "
                f"--split {split} --preset tiny"
            )
        from workbench.data.synth import generate

        log.info("generating %d synthetic %s clips (preset %s) into %s", n_generate, split, preset, data)
        generate(data, n_generate, seed=seed, split=split, preset=preset, progress=progress)
    # token cache filled for this model's encoders (a released audio-LLM reads waveforms, in its own chat template)
    ds = model.task_dataset(data, tasks=tasks, cache_dir=cache_dir, progress=progress)
    if n is not None:
        ds.rows = sample_rows(ds, n, seed).rows
    if len(ds) == 0:
        raise ValueError(f"dataset {data} has no task rows" + (f" for tasks {tasks}" if tasks else ""))
    return model, ds


def sample_rows(dataset, n: int, seed: int = 0):
    """A shallow copy of ``dataset`` keeping a seeded random subset of ``n`` task rows, in their original order
    (all rows when n >= len). The same subset as ``load_for_analysis(..., n=n, seed=seed)``, so one model can
    analyse every clip (probes) and a row sample (attention, ablations) without loading twice. The copy shares
    the tokenizer and token cache; ``dataset`` itself is not changed."""
    import copy

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    out = copy.copy(dataset)
    if n < len(dataset.rows):
        g = torch.Generator().manual_seed(seed)
        keep = sorted(torch.randperm(len(dataset.rows), generator=g)[:n].tolist())
        out.rows = [dataset.rows[i] for i in keep]
    else:
        out.rows = list(dataset.rows)
    return out


def prompt_item(item: dict) -> dict:
    """A dataset item cut to its prompt (``input_ids[:prompt_len]``, labels all -100): what generation starts
    from, also for a dataset built with answers (``with_answer=True``, the analysis default)."""
    p = int(item["prompt_len"])
    return {**item, "input_ids": item["input_ids"][:p], "labels": torch.full((p,), -100, dtype=torch.long)}


def batches(dataset, batch_size: int = 8, prompt_only: bool = False):
    """Collated batches over a dataset in order: right-padded items, or with ``prompt_only`` left-padded
    prompts without their answers (`prompt_item`; ready for ``model.generate_answers``)."""
    collate = dataset.prompt_collate_fn() if prompt_only else dataset.collate_fn
    for i in range(0, len(dataset), batch_size):
        items = [dataset[j] for j in range(i, min(i + batch_size, len(dataset)))]
        yield collate([prompt_item(it) for it in items] if prompt_only else items)
