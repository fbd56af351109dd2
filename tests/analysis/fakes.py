"""Tiny random PAL models and a dataset-like object over random token ids (vocab 97) for the analysis tests."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch

from tests.model.tiny_models import D_MEL, build, enc_spec, tiny_llama_checkpoint  # noqa: F401
from workbench.data.dataset import collate


class FakeDataset:
    """Duck-types AudioTaskDataset: rows, __getitem__, collate_fn, prompt_collate_fn, root, tokenizer.

    Rows with the same question share the prompt ids; answers are 2 tokens + an end token."""

    system_prompt, slot = "You are a helpful assistant.", "after_system"

    def __init__(self, tokenizer, root, n=6, dims=None, seed=0, questions=("q0", "q1")):
        if dims is None:
            dims = {"mel": D_MEL}
        self.tokenizer, self.root, self.dims = tokenizer, root, dims
        g = torch.Generator().manual_seed(seed)
        self.prompts = {q: torch.randint(3, 97, (8,), generator=g) for q in questions}
        answers = ["low", "high", "medium"]
        self.rows, self.items = [], []
        for i in range(n):
            q = questions[i % len(questions)]
            ans = answers[i % 3]
            row = {
                "row_id": f"r{i}",
                "file_name": f"a{i}.wav",
                "task": "cls",
                "attribute": "pitch_class",
                "question": q,
                "answer": ans,
                "closed": True,
                "category": "tone" if i % 2 else "noise",
            }
            aid = torch.tensor([10 + 7 * answers.index(ans), 50 + i % 5, 2])
            ids = torch.cat([self.prompts[q], aid])
            labels = torch.cat([torch.full((8,), -100), aid])
            audio = {name: torch.randn(5 + i % 3, d, generator=g) for name, d in dims.items()}
            self.rows.append(row)
            self.items.append(
                {
                    "input_ids": ids,
                    "labels": labels,
                    "audio_slot": 3,
                    "prompt_len": 8,
                    "row": row,
                    "audio_tokens": audio,
                }
            )

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.items[i]

    def collate_fn(self, items, padding_side="right"):
        return collate(items, pad_id=0, padding_side=padding_side)

    def prompt_collate_fn(self):
        return lambda items: collate(items, pad_id=0, padding_side="left")


def make_tiny_llama_dir(folder):
    """The tiny 2-layer random Llama with the SmolLM2 tokenizer saved beside it (so checkpoints of PAL models
    on it load through PALModel.from_pretrained)."""
    from workbench.model.llm import load_tokenizer

    d, hf = tiny_llama_checkpoint(folder)
    load_tokenizer("smollm2").save_pretrained(d)
    return d, hf


def fake_batch_pair(model_dims, seed=0):
    """(clean, corrupted) prompt batches (B=2) with the same text and different audio."""
    from tests.model.tiny_models import make_batch

    a = make_batch(seed=seed, dims=model_dims)
    b = make_batch(seed=seed, dims=model_dims)
    g = torch.Generator().manual_seed(seed + 1)
    for k in b["audio_tokens"]:
        b["audio_tokens"][k] = torch.randn(b["audio_tokens"][k].shape, generator=g)
    for x in (a, b):
        x["prompt_len"] = torch.full((2,), x["input_ids"].shape[1])
    return a, b


@functools.cache
def shared_tokenizer():
    from workbench.model.llm import load_tokenizer

    return load_tokenizer("smollm2")


@functools.cache
def shared_tiny_dir():
    """One tiny LLM folder per test session (a temporary directory), shared by the analysis test modules."""
    return make_tiny_llama_dir(Path(tempfile.mkdtemp(prefix="tiny_llama_analysis_")))
