"""What the attribute lens, listening heads and steering share: the answer options of a closed row as first
tokens, the same rows with silence in place of their audio, and reading a position out of an activation.

* :func:`option_tokens`: ``{option: first answer token id}`` of a row's attribute (answer_options.json), the
  token the model emits first when it answers with that option after this row's prompt.
* Silence: ``"encoder"`` (default) runs each of the model's encoders on digital silence of the clip's own
  length (waveform-mode items, such as a released model's, get the silent waveform and the model's own tower) (``duration`` from the audio file), so the model sees the tokens it would get for a silent clip of
  the same length; ``"zeros"`` sets the encoder tokens to zero (a cheap stand-in, used by the tiny tests whose
  encoders are not real). Either keeps the token count, so ``model.token_layout`` is the same for both.
* :func:`paired_batches`: collated (audio, silence) batch pairs over a dataset.
* :func:`last_prompt_residual_index`: where the answer-predicting token sits in the residual layout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import torch

__all__ = [
    "AudioAnalysisError",
    "SILENCES",
    "require_audio",
    "option_tokens",
    "closed_rows_with_options",
    "make_silence",
    "paired_batches",
    "last_prompt_residual_index",
]

log = logging.getLogger(__name__)
SILENCES = ("encoder", "zeros")


class AudioAnalysisError(ValueError):
    """Bad request to an audio analysis (the message names the fix)."""


def require_audio(model, what: str) -> list[str]:
    """The model's encoder names, or an error when it has none (text-only models have nothing to listen to)."""
    names = list(getattr(model, "encoder_names", None) or [])
    if not names:
        raise AudioAnalysisError(
            f"{what} needs a model with audio (a PALModel with at least one encoder); this "
            f"model has none. Load a PAL checkpoint, e.g. --checkpoint results/checkpoints/pal/final"
        )
    return names


# ---------------------------------------------------------------------------------------------- options
def _first_token(dataset, question: str, option: str) -> int:
    from workbench.data.dataset import encode_example

    if hasattr(dataset, "encode_row"):  # a released model's dataset: its own chat template
        enc = dataset.encode_row(question, option)
    else:
        enc = encode_example(dataset.tokenizer, question, option, dataset.system_prompt, dataset.slot)
    return int(enc["input_ids"][enc["prompt_len"]])


def option_tokens(dataset, row: dict, options: Sequence[str], cache: dict | None = None) -> dict[str, int]:
    """``{option: first token id}`` after ``row``'s prompt. Raises AudioAnalysisError when two options share
    their first token (the lens could not tell them apart)."""
    out = {}
    for opt in options:
        key = (row["question"], opt)
        if cache is not None and key in cache:
            out[opt] = cache[key]
            continue
        out[opt] = _first_token(dataset, row["question"], str(opt))
        if cache is not None:
            cache[key] = out[opt]
    if len(set(out.values())) < len(out):
        raise AudioAnalysisError(
            f"options of attribute {row.get('attribute')!r} share a first token ({out}); the "
            "first-token readout cannot separate them: choose another --attribute"
        )
    return out


def closed_rows_with_options(
    dataset, answer_options: dict, attribute: str | None = None, option_ids: dict | None = None
) -> tuple[list[int], dict[int, dict[str, int]]]:
    """Indices of the closed rows whose attribute has an option list and whose answer is one of its options,
    and per row ``{option: first token}``. ``option_ids``: ``{attribute: {option: token}}`` to use instead of
    the tokenizer (tests on random-token datasets). Attributes whose options share a first token are skipped
    (a warning), unless asked for by name (an error)."""
    rows = dataset.rows
    atts = sorted({str(r.get("attribute")) for r in rows if r.get("closed")})
    known = sorted(a for a in atts if a in answer_options)
    if attribute is not None and attribute not in known:
        raise AudioAnalysisError(
            f"unknown attribute {attribute!r}: closed rows with an option list ask about "
            f"{known}; pass one of them as --attribute (or leave it out for all)"
        )
    keep: list[int] = []
    toks: dict[int, dict[str, int]] = {}
    cache: dict = {}
    bad: set[str] = set()
    for i, r in enumerate(rows):
        att = str(r.get("attribute"))
        if not r.get("closed") or att not in answer_options or (attribute is not None and att != attribute):
            continue
        opts = [str(o) for o in answer_options[att]]
        if str(r["answer"]).strip().lower() not in [o.lower() for o in opts] or att in bad:
            continue
        try:
            ids = dict(option_ids[att]) if option_ids is not None else option_tokens(dataset, r, opts, cache)
        except AudioAnalysisError:
            if attribute is not None:
                raise
            bad.add(att)
            log.warning("attribute %r skipped: its options share a first token", att)
            continue
        keep.append(i)
        toks[i] = ids
    if not keep:
        raise AudioAnalysisError(
            "no closed rows whose answer is one of their attribute's options"
            + (f" for attribute {attribute!r}" if attribute else "")
            + "; analyse more rows (--n) or another --attribute"
        )
    return keep, toks


# ---------------------------------------------------------------------------------------------- silence
def _clip_samples(dataset, row: dict, sample_rate: int) -> int:
    import soundfile as sf

    path = dataset.root / row["file_name"]
    info = sf.info(str(path))
    return max(1, int(round(info.frames * sample_rate / info.samplerate)))


def make_silence(model, dataset, kind: str | Callable[[dict], dict] = "encoder") -> Callable[[dict], dict]:
    """A function item -> the same item with silence in place of its audio (see the module docstring);
    a callable ``kind`` is returned as it is."""
    if callable(kind):
        return kind
    if kind not in SILENCES:
        raise AudioAnalysisError(f"unknown silence {kind!r}; choose one of {SILENCES}")
    if kind == "zeros":

        def zeros(item):
            if "audio_tokens" in item:
                return {**item, "audio_tokens": {k: torch.zeros_like(v) for k, v in item["audio_tokens"].items()}}
            return {**item, "wave": torch.zeros_like(torch.as_tensor(item["wave"]))}

        return zeros

    encoders: dict = {}  # loaded on first use: waveform-mode items (a released model's) need none
    cache: dict = {}

    def encoder(name):
        if name not in encoders:
            from workbench.encoders import load_encoder

            spec = next(s for s in model.encoder_specs if s.name == name)
            encoders[name] = load_encoder(spec.name, **(spec.options or {}))
        return encoders[name]

    def silent_tokens(name, n):
        if (name, n) not in cache:
            enc = encoder(name)
            with torch.no_grad():
                tok, mask = enc(torch.zeros(1, n), torch.tensor([n]))
            cache[(name, n)] = tok[0, : int(mask[0].sum())].float()
        return cache[(name, n)]

    def encoder_silence(item):
        if "audio_tokens" not in item:
            return {**item, "wave": torch.zeros_like(torch.as_tensor(item["wave"]))}
        out = {}
        for name, tok in item["audio_tokens"].items():
            s = silent_tokens(name, _clip_samples(dataset, item["row"], encoder(name).sample_rate))
            if s.shape[0] != tok.shape[0]:  # a frame more or less from rounding: keep the real token count
                s = torch.nn.functional.pad(s, (0, 0, 0, max(0, tok.shape[0] - s.shape[0])))[: tok.shape[0]]
            out[name] = s.to(tok.dtype)
        return {**item, "audio_tokens": out}

    return encoder_silence


def paired_batches(
    dataset, indices: Sequence[int], silence: Callable[[dict], dict], batch_size: int = 8
) -> Iterator[tuple[list[int], dict, dict]]:
    """``(indices, audio batch, silence batch)`` per chunk of ``indices`` (right-padded, with answers)."""
    for i in range(0, len(indices), batch_size):
        idx = list(indices[i : i + batch_size])
        items = [dataset[j] for j in idx]
        yield idx, dataset.collate_fn(items), dataset.collate_fn([silence(it) for it in items])


# ---------------------------------------------------------------------------------------------- positions
def last_prompt_residual_index(model, batch) -> torch.Tensor:
    """[B] residual index of the last prompt token (from ``model.token_layout``)."""
    from workbench.analysis.core import last_prompt_index

    layout = model.token_layout(batch)
    lp = last_prompt_index(batch).to(layout.text_index.device)
    return layout.text_index.gather(1, lp[:, None])[:, 0]
