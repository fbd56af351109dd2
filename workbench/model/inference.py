"""Ask a model about one recording: a trained PAL checkpoint or a released audio-LLM, the clip in, the greedy
answer out.

    answer = ask(model, "clip.wav", "What is the pitch class?")          # or model.ask(...)
    clip = answer_clip(model, "clip.wav", "What is the pitch class?")    # prompt, waveform, answer ids, batch

Audio: a file path (any format libsndfile reads, any rate, any channel count) or a waveform (``[S]`` or
``[C, S]`` with ``sample_rate=``), mixed down to mono and resampled to the model's audio rate. The model then
encodes it on its own path (`PALModel.encode_audio`: each encoder's waveform mode; a released model's own
feature extractor and tower), so what is asked here is what `workbench.evaluate` and the analyses see.

The prompt is the model's own: the PAL prompt (`workbench.data.dataset.build_prompt`, the audio slot where the
checkpoint's ``insertion`` puts it) or a released model's chat template (`released.prompts.released_example`).
`workbench.analysis.explain` re-runs `AnsweredClip.batch` to explain the answer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from workbench.common.audio_io import AudioError, load_audio, resample, to_mono

__all__ = [
    "AudioInput",
    "MODEL_DEFAULT",
    "AnsweredClip",
    "load_clip",
    "audio_rate",
    "prompt_ids",
    "clip_batch",
    "answer_clip",
    "ask",
    "frames_per_second",
]

AudioInput = str | os.PathLike | np.ndarray | torch.Tensor
#: ``system_prompt`` default: the PAL training prompt for PAL checkpoints, the template's own for released models
MODEL_DEFAULT = "model default"


def load_clip(audio: AudioInput, sample_rate: int | None = None) -> tuple[np.ndarray, int, str]:
    """(mono float32 wave [S] at its own rate, that rate, a label for it) from a path or a waveform.

    A waveform is ``[S]`` or ``[C, S]`` (channels first, as `workbench.common.audio_io` uses) and needs ``sample_rate``."""
    if isinstance(audio, (str, os.PathLike)):
        wave, sr = load_audio(audio, target_sr=None, mono=True)
        return wave, sr, str(audio)
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().float().numpy()
    if not isinstance(audio, np.ndarray):
        raise AudioError(f"audio must be a file path or a waveform array, got {type(audio).__name__}")
    if sample_rate is None:
        raise AudioError("a waveform needs its rate: pass sample_rate=... (Hz), or pass the file path instead")
    if audio.ndim == 2 and audio.shape[0] > audio.shape[1]:
        raise AudioError(
            f"waveform of shape {audio.shape} looks like [S, C]; pass it channels first ([C, S], "
            "e.g. wave.T) or mixed down to [S]"
        )
    wave = to_mono(audio)
    if wave.shape[0] == 0 or not np.isfinite(wave).all():
        raise AudioError("the waveform is empty or holds NaN/inf samples; pass a clip with real samples")
    return wave, int(sample_rate), f"waveform ({wave.shape[0] / sample_rate:.2f} s at {sample_rate} Hz)"


def audio_rate(model) -> int:
    """The sample rate the model's audio path reads (a released model's feature extractor; PAL: its encoders')."""
    if getattr(model, "is_released", False):
        return int(model.sample_rate)
    rates = {model.encoders[s.key].encoder().sample_rate for s in model.encoder_specs}
    if len(rates) != 1:
        raise ValueError(
            f"this model's encoders read audio at different rates {sorted(rates)}; one clip cannot be "
            "encoded on the model's waveform path"
        )
    return int(rates.pop())


def prompt_ids(model, question: str, system_prompt: str | None = MODEL_DEFAULT) -> tuple[list[int], int]:
    """(prompt token ids, audio slot) of a generation prompt for ``question``, in the model's own format."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("the question is empty: pass the question to ask about the clip as a string")
    if getattr(model, "is_released", False):
        from workbench.model.released.prompts import released_example

        enc = released_example(model, question, None, None if system_prompt == MODEL_DEFAULT else system_prompt)
        return enc["input_ids"], enc["audio_slot"]
    from workbench.data.dataset import DEFAULT_SYSTEM_PROMPT, build_prompt

    system = DEFAULT_SYSTEM_PROMPT if system_prompt == MODEL_DEFAULT else system_prompt
    return build_prompt(model.tokenizer, question, system, slot=model.insertion)


def _pad_id(tok) -> int:
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return int(pad if pad is not None else 0)


def clip_batch(
    model,
    prompt: list[int],
    slot: int,
    wave: np.ndarray,
    rate: int,
    answer: Sequence[int] = (),
    padding_side: str = "left",
) -> dict:
    """A one-clip waveform-mode batch: ``prompt`` (+ ``answer``, labelled) with ``wave`` [S] at ``rate``."""
    from workbench.data.dataset import collate

    ids = list(prompt) + list(answer)
    item = {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor([-100] * len(prompt) + list(answer), dtype=torch.long),
        "audio_slot": slot,
        "prompt_len": len(prompt),
        "row": {},
        "wave": wave.astype(np.float32),
    }
    batch = collate([item], pad_id=_pad_id(model.tokenizer), padding_side=padding_side)
    batch["sample_rate"] = rate
    return batch


def _end_ids(model) -> set[int]:
    ids = set(getattr(model, "eos_token_ids", None) or [])
    if model.tokenizer.eos_token_id is not None:
        ids.add(int(model.tokenizer.eos_token_id))
    return ids


@dataclass
class AnsweredClip:
    """One clip asked one question: ``wave`` [S] mono at ``sample_rate`` (as given), ``prompt`` ids with the audio
    at ``slot``, the greedy ``answer_ids`` (up to and including the end-of-turn token) and ``answer`` (decoded);
    ``batch``: prompt + answer with the clip at the model's rate (right-padded, answer labelled)."""

    source: str
    wave: np.ndarray
    sample_rate: int
    prompt: list[int]
    slot: int
    answer_ids: list[int]
    answer: str
    batch: dict


@torch.no_grad()
def answer_clip(
    model,
    audio: AudioInput,
    question: str,
    *,
    sample_rate: int | None = None,
    max_new_tokens: int = 32,
    system_prompt: str | None = MODEL_DEFAULT,
) -> AnsweredClip:
    """Load the clip, ask ``question`` in the model's own prompt format, and keep what an explanation re-runs."""
    wave, sr, source = load_clip(audio, sample_rate)
    prompt, slot = prompt_ids(model, question, system_prompt)
    rate = audio_rate(model)
    at_rate = resample(wave, sr, rate) if sr != rate else wave
    new = model.generate_ids(clip_batch(model, prompt, slot, at_rate, rate), max_new_tokens)[0].tolist()
    ends = _end_ids(model)
    cut = next((i + 1 for i, t in enumerate(new) if t in ends), len(new))
    new = new[:cut]
    answer = model.tokenizer.decode(new, skip_special_tokens=True).strip()
    batch = clip_batch(model, prompt, slot, at_rate, rate, new, padding_side="right")
    return AnsweredClip(source, wave, sr, prompt, slot, new, answer, batch)


def ask(
    model,
    audio: AudioInput,
    question: str,
    *,
    sample_rate: int | None = None,
    max_new_tokens: int = 32,
    system_prompt: str | None = MODEL_DEFAULT,
) -> str:
    """The model's greedy answer (decoded, stripped) to ``question`` about ``audio`` (see the module docstring)."""
    return answer_clip(
        model, audio, question, sample_rate=sample_rate, max_new_tokens=max_new_tokens, system_prompt=system_prompt
    ).answer


def frames_per_second(model, encoder: str) -> float:
    """Frames per second of audio at ``encoders.{encoder}.hook_out`` (a PAL encoder's tokens, a released tower's
    output frames)."""
    slot = model.encoders[encoder]
    fps = getattr(slot, "frames_per_second", None)
    return float(fps if fps is not None else slot.encoder().frames_per_second)
