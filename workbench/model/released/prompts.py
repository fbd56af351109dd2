"""Prompts for released audio-LLMs in their own chat template, and `ReleasedTaskDataset`, the adapter that
asks an audiofolder's task rows (the synthetic corpus, the importers' datasets) to such a model.

The template renders the user turn ``[audio, question]`` (the audio part in the shape transformers' processors
document, `AUDIO_PART`, so the real templates of every supported checkpoint place it) with the model's audio
placeholder (Qwen2-Audio:
``<|audio_bos|><|AUDIO|><|audio_eos|>``; Audio Flamingo 3: ``<sound>``; ...); the placeholder token is taken
out of ``input_ids`` and its index becomes ``audio_slot``, where the model writes the clip's audio tokens
(the processor would have repeated the placeholder that many times). Answers are labelled as in
`workbench.data.dataset.encode_example`, so `workbench.evaluate` scores them the same way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from workbench.common.audio_io import AudioError, load_audio
from workbench.data.audiofolder import DataError
from workbench.data.dataset import AudioTaskDataset, answer_item
from workbench.model.released.registry import ReleasedModelError

#: where a feature extractor can sit in a model folder: the hub's file, and the processor file into which
#: transformers 5's ``processor.save_pretrained`` writes it
FEATURE_EXTRACTOR_FILES = ("preprocessor_config.json", "processor_config.json")
#: where a chat template can sit (AutoProcessor's order), the tokenizer's own last
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json", "tokenizer_config.json")
#: the audio part of a user turn, in the shape transformers' processors document for an audio array
#: (`transformers.audio_utils.make_audio_chat_template_content`: ``{"type": "audio", "audio": ...}``): every
#: supported template places it, whether it tests ``content['type'] == 'audio'`` or ``'audio' in content``
AUDIO_PART = {"type": "audio", "audio": "clip"}


def _processor(folder: Path):
    """transformers' AutoProcessor for the folder, or None when it does not load here (Voxtral's needs the
    mistral-common package); the feature extractor and tokenizer then load on their own."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(folder)
    except (ImportError, ValueError, OSError, TypeError, KeyError, AttributeError):
        return None


def _feature_extractor(folder: Path, processor):
    from transformers import AutoFeatureExtractor

    fe = getattr(processor, "feature_extractor", None)
    if fe is not None:
        return fe
    if not any((folder / f).exists() for f in FEATURE_EXTRACTOR_FILES):
        raise ReleasedModelError(
            f"{folder}: no feature extractor: looked for {' and '.join(FEATURE_EXTRACTOR_FILES)} "
            "(the first as on the hub, the second as transformers' processor.save_pretrained "
            "writes it); copy the complete model folder, not only its weights"
        )
    try:
        return AutoFeatureExtractor.from_pretrained(folder)
    except (ValueError, OSError, KeyError) as e:
        raise ReleasedModelError(
            f"{folder}: its feature extractor ({' or '.join(FEATURE_EXTRACTOR_FILES)}) does "
            f"not load ({type(e).__name__}: {e})"
        ) from e


def _chat_template(folder: Path, processor, tokenizer) -> str:
    """The template ``processor.apply_chat_template`` would use, else the files in AutoProcessor's order, else the
    tokenizer's own."""
    template = getattr(processor, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one
        template = template.get("default")
    if not template and (folder / "chat_template.jinja").exists():
        template = (folder / "chat_template.jinja").read_text()
    if not template and (folder / "chat_template.json").exists():
        template = json.loads((folder / "chat_template.json").read_text()).get("chat_template")
    template = template or getattr(tokenizer, "chat_template", None)
    if not template:
        raise ReleasedModelError(
            f"{folder}: no chat template: looked for {', '.join(CHAT_TEMPLATE_FILES[:2])} and "
            f"the chat_template of {CHAT_TEMPLATE_FILES[2]}; copy the complete model folder "
            "(the template says where the audio goes in a prompt)"
        )
    return template


def load_preprocessing(folder: Path, tokenizer=None):
    """(tokenizer, feature extractor, chat template) from a released model's folder, resolved as transformers'
    ``AutoProcessor`` does (any layout it reads: see FEATURE_EXTRACTOR_FILES, CHAT_TEMPLATE_FILES)."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    processor = _processor(folder)
    fe = _feature_extractor(folder, processor)
    if tokenizer is None:
        tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
        except (ImportError, ValueError, OSError) as e:
            raise ReleasedModelError(
                f"{folder}: its tokenizer does not load here ({type(e).__name__}: {e}); Voxtral's "
                "tekken tokenizer needs the package mistral-common"
            ) from e
    return tokenizer, fe, _chat_template(folder, processor, tokenizer)


def _render(model, messages, generation: bool) -> list[int]:
    tok = model.tokenizer
    text = tok.apply_chat_template(
        messages, chat_template=model.chat_template, tokenize=False, add_generation_prompt=generation
    )
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _take_placeholder(model, ids: list[int]) -> tuple[list[int], int]:
    where = [i for i, t in enumerate(ids) if t == model.audio_token_id]
    if not where or where != list(range(where[0], where[0] + len(where))):
        raise ReleasedModelError(
            f"the chat template put {len(where)} audio placeholder token(s) (id {model.audio_token_id}) "
            "in the prompt; it must put one run of them, for the one clip"
        )
    return ids[: where[0]] + ids[where[-1] + 1 :], where[0]


def released_example(model, question: str, answer: str | None = None, system_prompt: str | None = None) -> dict:
    """``{input_ids, labels, audio_slot, prompt_len}`` (lists / ints) for one question (and answer) about one
    clip, in ``model``'s chat template; labels -100 outside the answer and its end-of-turn token."""
    msgs: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    msgs.append({"role": "user", "content": [dict(AUDIO_PART), {"type": "text", "text": question}]})
    prompt, slot = _take_placeholder(model, _render(model, msgs, True))
    if answer is None:
        return {"input_ids": prompt, "labels": [-100] * len(prompt), "audio_slot": slot, "prompt_len": len(prompt)}
    full, _ = _take_placeholder(model, _render(model, msgs + [{"role": "assistant", "content": answer}], False))
    if full[: len(prompt)] != prompt:
        raise ReleasedModelError("chat template: the generation prompt is not a token prefix of prompt + answer")
    tok = model.tokenizer
    end_ids = set(model.eos_token_ids) | {
        tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|eot_id|>", "<|user|>")
    }
    return answer_item(tok, prompt, slot, full[len(prompt) :], end_ids)


class ReleasedTaskDataset(AudioTaskDataset):
    """`AudioTaskDataset` (waveform mode, the model's sample rate) whose prompts are the released model's own.

    ``system_prompt`` None (default) leaves the template's own default system turn. ``max_seconds`` defaults to
    the tower's window (a longer file raises a `DataError` naming it). Items and batches have the
    usual keys (``input_ids`` without the placeholder, ``audio_slot``, ``waves`` ...), so every analysis and
    `workbench.evaluate` run on them unchanged.
    """

    def __init__(self, root: str | os.PathLike, model, *, system_prompt: str | None = None, **kw):
        for bad in ("encoders", "cache_dir", "sample_rate", "slot"):
            if bad in kw:
                raise TypeError(f"ReleasedTaskDataset sets {bad!r} itself (waveform mode, the model's own template)")
        kw.setdefault("max_seconds", model.window_samples / model.sample_rate)  # a longer file: an error naming it
        # slot="prefix" only matters to code that renders the tokenizer's plain template (first answer tokens)
        super().__init__(
            root, model.tokenizer, sample_rate=model.sample_rate, system_prompt=system_prompt, slot="prefix", **kw
        )
        self.model = model

    def encode_row(self, question: str, answer: str | None = None) -> dict:
        """`released_example` of ``question`` (and ``answer``) in this model's template and system prompt."""
        return released_example(self.model, question, answer, self.system_prompt)

    def build_prompt(self, question: str) -> tuple[list[int], int]:
        """(ids, audio_slot) of a generation prompt for ``question``."""
        enc = released_example(self.model, question, None, self.system_prompt)
        return enc["input_ids"], enc["audio_slot"]

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        enc = released_example(
            self.model, row["question"], str(row["answer"]) if self.with_answer else None, self.system_prompt
        )
        item = {
            "input_ids": torch.tensor(enc["input_ids"], dtype=torch.long),
            "labels": torch.tensor(enc["labels"], dtype=torch.long),
            "audio_slot": enc["audio_slot"],
            "prompt_len": enc["prompt_len"],
            "row": row,
        }
        try:
            item["wave"], _ = load_audio(
                self.root / row["file_name"], target_sr=self.sample_rate, max_seconds=self.max_seconds
            )
        except AudioError as e:
            raise DataError(f"{self._where(row)}: {e}") from e
        return item
