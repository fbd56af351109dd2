"""Shared machinery of every analysis, in one import: run a model and read / replace named activations
(`workbench.analysis.hooks`: TransformerLens hooks or nnsight), load a trained checkpoint with its data
(`workbench.analysis.inputs`), score answers (here), write outputs (`workbench.analysis.outputs`).

    logits, acts = collect(model, batch, ["blocks.3.attn.hook_pattern"], backend="nnsight")
    logits = run_with_interventions(model, batch, [("connectors.mel.hook_out", torch.zeros_like)])

Every public name of those modules is importable from here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.analysis.hooks import (
    BACKENDS,
    Intervention,
    block_audio_interventions,
    collect,
    execution_order,
    run_with_interventions,
)
from workbench.analysis.inputs import (
    DEFAULT_CACHE,
    DEFAULT_CHECKPOINT,
    DEFAULT_DATA,
    TRAIN_COMMAND,
    batches,
    load_for_analysis,
    prompt_item,
    sample_rows,
)
from workbench.analysis.outputs import cli_common, default_out_dir, write_outputs

__all__ = [
    "BACKENDS",
    "DEFAULT_CHECKPOINT",
    "collect",
    "run_with_interventions",
    "execution_order",
    "load_for_analysis",
    "answer_logprob",
    "answer_logit_diff",
    "last_prompt_index",
    "cli_common",
    "write_outputs",
    "default_out_dir",
    "batches",
    "block_audio_interventions",
    "sample_rows",
    "prompt_item",
    "DEFAULT_DATA",
    "DEFAULT_CACHE",
    "TRAIN_COMMAND",
    "Intervention",
]


def _labels(batch) -> torch.Tensor:
    if not isinstance(batch, dict) or "labels" not in batch:
        raise KeyError("the batch has no 'labels' (answer tokens): build it with AudioTaskDataset(with_answer=True)")
    return batch["labels"]


def answer_logprob(model, batch, logits: torch.Tensor) -> torch.Tensor:
    """[B] sum of log p(answer token) over the answer tokens (labels != -100), read from ``logits``
    [B, L, V] aligned with ``batch["input_ids"]`` (token t is predicted at position t - 1)."""
    labels = _labels(batch).to(logits.device)
    logp = F.log_softmax(logits[:, :-1].float(), -1)
    target = labels[:, 1:]
    keep = target != -100
    got = logp.gather(-1, target.clamp(min=0)[..., None])[..., 0]
    return (got * keep).sum(1)


def last_prompt_index(batch) -> torch.Tensor:
    """[B] text index of the last prompt token (the position that predicts the first answer token)."""
    if "prompt_len" in batch:
        return batch["prompt_len"].long() - 1
    labels = _labels(batch)
    has = labels != -100
    if not bool(has.any(1).all()):
        raise ValueError("some batch rows have no answer tokens (labels all -100) and no prompt_len")
    return has.long().argmax(1) - 1


def answer_logit_diff(logits: torch.Tensor, batch, correct_ids, wrong_ids) -> torch.Tensor:
    """[B] logit(correct) - logit(wrong) at the last prompt position (where the first answer token is
    predicted). ``correct_ids`` / ``wrong_ids``: int or [B] token ids."""
    pos = last_prompt_index(batch).to(logits.device)
    B = logits.shape[0]
    last = logits[torch.arange(B, device=logits.device), pos].float()  # [B, V]

    def ids(x):
        t = torch.as_tensor(x, device=logits.device).long()
        return t.expand(B) if t.ndim == 0 else t

    c, w = ids(correct_ids), ids(wrong_ids)
    return last.gather(1, c[:, None])[:, 0] - last.gather(1, w[:, None])[:, 0]
