"""torch Dataset + collate over an audiofolder's task rows, with chat-templated prompts.

Per task row the sequence is the LLM's chat template of ``[system, user(question), assistant(answer)]``,
cut right after the assistant's end-of-turn token. The audio is NOT in the text: ``audio_slot`` is the
token index where the model inserts it (default ``"after_system"``: the first token of the user turn,
found by templating the system message alone and checking it is a prefix of the full sequence;
``"prefix"``: 0). ``labels`` are -100 except on the answer tokens and the end-of-turn token after them.

Batch (from :func:`collate`)::

    input_ids       LongTensor [B, L]   right-padded with pad_id (left with padding_side="left")
    attention_mask  LongTensor [B, L]   1 on real tokens
    labels          LongTensor [B, L]   -100 outside the answer (and on padding)
    audio_slot      LongTensor [B]      token index of the audio slot (shifted by left padding)
    prompt_len      LongTensor [B]      tokens before the answer (after left padding shift)
    waves           FloatTensor [B, S]  + wave_lengths LongTensor [B]        (waveform mode)
    audio_tokens    {encoder: FloatTensor [B, T, D]} + audio_token_mask {encoder: BoolTensor [B, T]}  (token mode)
    row             list[dict]          the task row merged with its clip's metadata (for evaluation)
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from workbench.common.audio_io import AudioError, load_audio, pad_batch
from workbench.data.audiofolder import DataError, require_tasks
from workbench.data.validate import load_audiofolder

__all__ = ["DEFAULT_SYSTEM_PROMPT", "build_prompt", "encode_example", "answer_item", "AudioTaskDataset", "collate"]

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant that listens to audio. Answer the question about the audio briefly."
)


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _render(tokenizer, messages, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _messages(system_prompt, question):
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return msgs + [{"role": "user", "content": question}]


def _audio_slot(tokenizer, system_prompt: str | None, ids: list[int], slot: str) -> int:
    if slot == "prefix":
        return 0
    if slot != "after_system":
        raise ValueError(f"unknown audio slot {slot!r}; expected 'after_system' or 'prefix'")
    if not system_prompt:
        raise ValueError("slot='after_system' needs a system prompt; use slot='prefix' without one")
    sys_ids = _ids(tokenizer, _render(tokenizer, [{"role": "system", "content": system_prompt}], False))
    if ids[: len(sys_ids)] != sys_ids:
        raise ValueError(
            "the chat-templated system prompt is not a token prefix of the full prompt for this tokenizer's "
            "template, so the audio slot cannot be placed after it; use slot='prefix'"
        )
    return len(sys_ids)


def build_prompt(
    tokenizer, question: str, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT, slot: str = "after_system"
) -> tuple[list[int], int]:
    """Generation-time prompt: ``(ids, audio_slot)`` of ``[system, user(question)]`` + the assistant header."""
    ids = _ids(tokenizer, _render(tokenizer, _messages(system_prompt, question), True))
    return ids, _audio_slot(tokenizer, system_prompt, ids, slot)


def encode_example(
    tokenizer, question: str, answer: str, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT, slot: str = "after_system"
) -> dict:
    """Training sequence of one row: ``{input_ids, labels, audio_slot, prompt_len}`` (lists / ints).

    ``labels[i] = input_ids[i]`` for the answer tokens and the end-of-turn token that closes them, -100
    elsewhere. Raises ValueError if the template's prompt is not a prefix of prompt+answer.
    """
    prompt_ids, audio_slot = build_prompt(tokenizer, question, system_prompt, slot)
    msgs = _messages(system_prompt, question) + [{"role": "assistant", "content": answer}]
    full_ids = _ids(tokenizer, _render(tokenizer, msgs, False))
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("chat template: the generation prompt is not a token prefix of prompt + answer")
    end_ids = {tokenizer.eos_token_id, *(tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|eot_id|>"))}
    return answer_item(tokenizer, prompt_ids, audio_slot, full_ids[len(prompt_ids) :], end_ids)


def answer_item(tokenizer, prompt_ids: list[int], audio_slot: int, answer_ids: list[int], end_ids: set) -> dict:
    """``{input_ids, labels, audio_slot, prompt_len}`` of prompt + answer, the answer cut after its first
    end-of-turn id (``end_ids`` less None and the tokenizer's unknown id); labels -100 on the prompt."""
    end_ids = set(end_ids) - {None, getattr(tokenizer, "unk_token_id", None)}
    ans = answer_ids[: next((i + 1 for i, t in enumerate(answer_ids) if t in end_ids), len(answer_ids))]
    return {
        "input_ids": prompt_ids + ans,
        "labels": [-100] * len(prompt_ids) + ans,
        "audio_slot": audio_slot,
        "prompt_len": len(prompt_ids),
    }


class AudioTaskDataset(Dataset):
    """One item per task row of an audiofolder (see :mod:`workbench.data.audiofolder`).

    Args:
        root: dataset folder. tokenizer: any HF tokenizer with a chat template.
        tasks: keep only these task types (e.g. ``["cls"]`` for curriculum stage 1); attributes: idem.
        sample_rate: waveforms are resampled to it (waveform mode).
        encoders, cache_dir: token mode: read ``TokenCache(cache_dir).load(path, name)`` -> ``[T, D]`` for
            each encoder name instead of the waveform.
        system_prompt, slot: see :func:`build_prompt`. with_answer=False: prompt only (labels all -100).
        skip_bad, check_audio: validation (see :func:`workbench.data.validate.load_audiofolder`).

    ``__getitem__`` returns ``{input_ids [L], labels [L], audio_slot, prompt_len, wave [S] | audio_tokens
    {name: [T, D]}, row}``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        tokenizer,
        *,
        tasks: list[str] | None = None,
        attributes: list[str] | None = None,
        sample_rate: int = 16000,
        encoders: list[str] | None = None,
        cache_dir: str | os.PathLike | None = None,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        slot: str = "after_system",
        max_seconds: float | None = None,
        skip_bad: bool = False,
        check_audio: bool = True,
        with_answer: bool = True,
        report_path: str | os.PathLike | None = None,
    ):
        self.root = Path(root)
        self.tokenizer = tokenizer
        tasks_file = require_tasks(self.root)
        self.report = load_audiofolder(self.root, skip_bad=skip_bad, check_audio=check_audio, report_path=report_path)
        clips = {c["file_name"]: c for c in self.report.clips}
        rows = self.report.tasks
        if not rows:
            raise DataError(
                f"{tasks_file}: no task rows"
                + (
                    f" left after skipping bad ones (see {self.report.report_path})"
                    if self.report.bad
                    else "; the file is empty"
                )
            )
        if tasks is not None:
            rows = [r for r in rows if r["task"] in tasks]
        if attributes is not None:
            rows = [r for r in rows if r.get("attribute") in attributes]
        self.rows = [{**{k: v for k, v in clips[r["file_name"]].items() if k != "_line"}, **r} for r in rows]
        self.sample_rate, self.max_seconds = sample_rate, max_seconds
        if encoders:
            from workbench.encoders import canonical_encoder_name

            encoders = [canonical_encoder_name(n) for n in encoders]  # old names (general, pitch) accepted
        self.encoders = list(encoders) if encoders else None
        self.cache = None
        if self.encoders:
            if cache_dir is None:
                raise ValueError("token mode (encoders=...) needs cache_dir")
            from workbench.encoders.cache import TokenCache

            self.cache = TokenCache(cache_dir)
        self.system_prompt, self.slot, self.with_answer = system_prompt, slot, with_answer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)

    def __len__(self) -> int:
        return len(self.rows)

    def _where(self, row) -> str:
        return f"{self.root / 'tasks.jsonl'} line {row.get('_line')} (file_name {row['file_name']!r})"

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        if self.with_answer:
            enc = encode_example(self.tokenizer, row["question"], str(row["answer"]), self.system_prompt, self.slot)
        else:
            ids, slot = build_prompt(self.tokenizer, row["question"], self.system_prompt, self.slot)
            enc = {"input_ids": ids, "labels": [-100] * len(ids), "audio_slot": slot, "prompt_len": len(ids)}
        item = {
            "input_ids": torch.tensor(enc["input_ids"], dtype=torch.long),
            "labels": torch.tensor(enc["labels"], dtype=torch.long),
            "audio_slot": enc["audio_slot"],
            "prompt_len": enc["prompt_len"],
            "row": row,
        }
        path = self.root / row["file_name"]
        if self.cache is not None:
            try:
                item["audio_tokens"] = {n: self.cache.load(path, n) for n in self.encoders}
            except KeyError as e:
                raise DataError(f"{self._where(row)}: {e.args[0]}") from e
        else:
            try:
                item["wave"], _ = load_audio(path, target_sr=self.sample_rate, max_seconds=self.max_seconds)
            except AudioError as e:
                raise DataError(f"{self._where(row)}: {e}") from e
        return item

    def collate_fn(self, items: list[dict], padding_side: str = "right") -> dict:
        """:func:`collate` with this tokenizer's pad id."""
        return collate(items, pad_id=self.pad_id, padding_side=padding_side)

    def prompt_collate_fn(self):
        """Collate for generation (prompts, left-padded so every prompt ends at the last column)."""
        return partial(collate, pad_id=self.pad_id, padding_side="left")


def _pad_tokens(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    B, T = len(seqs), max(s.shape[0] for s in seqs)
    D = seqs[0].shape[1]
    out = torch.zeros(B, T, D, dtype=seqs[0].dtype)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, s in enumerate(seqs):
        out[b, : s.shape[0]] = s
        mask[b, : s.shape[0]] = True
    return out, mask


def collate(items: list[dict], pad_id: int = 0, padding_side: str = "right") -> dict:
    """Batch items of :class:`AudioTaskDataset` (shapes: see module docstring)."""
    if not items:
        raise ValueError("collate got an empty batch")
    B, L = len(items), max(int(it["input_ids"].shape[0]) for it in items)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    attention = torch.zeros(B, L, dtype=torch.long)
    labels = torch.full((B, L), -100, dtype=torch.long)
    slots, plens = torch.zeros(B, dtype=torch.long), torch.zeros(B, dtype=torch.long)
    for b, it in enumerate(items):
        n = int(it["input_ids"].shape[0])
        off = L - n if padding_side == "left" else 0
        input_ids[b, off : off + n] = it["input_ids"]
        attention[b, off : off + n] = 1
        labels[b, off : off + n] = it["labels"]
        slots[b], plens[b] = it["audio_slot"] + off, it["prompt_len"] + off
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention,
        "labels": labels,
        "audio_slot": slots,
        "prompt_len": plens,
        "row": [it["row"] for it in items],
    }
    if "wave" in items[0]:
        batch["waves"], batch["wave_lengths"] = pad_batch([np.asarray(it["wave"]) for it in items])
    if "audio_tokens" in items[0]:
        names = list(items[0]["audio_tokens"])
        batch["audio_tokens"], batch["audio_token_mask"] = {}, {}
        for n in names:
            batch["audio_tokens"][n], batch["audio_token_mask"][n] = _pad_tokens(
                [it["audio_tokens"][n] for it in items]
            )
    return batch
