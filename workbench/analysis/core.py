"""Shared machinery of every analysis: run a model and read / replace named activations through either
TransformerLens hooks or nnsight, load a trained checkpoint with its data, score answers, write outputs.

    logits, acts = collect(model, batch, ["blocks.3.attn.hook_pattern"], backend="nnsight")
    logits = run_with_interventions(model, batch, [("connectors.mel.hook_out", torch.zeros_like)])

``model`` is a `PALModel` called on a collate batch dict, or a plain `HookedDecoder` called on input_ids
[B, L]. Both backends give identical numbers (tests/analysis/test_core.py).

nnsight reads a trace body from source and needs module accesses in execution order, so this file keeps the
traces and sorts hook names by the order they fire (recorded once per model with TransformerLens hooks).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from workbench.constants import TOKEN_CACHE
from workbench.paths import atomic_write_bytes, variant_of

log = logging.getLogger(__name__)

__all__ = [
    "BACKENDS", "DEFAULT_CHECKPOINT", "collect", "run_with_interventions", "execution_order", "load_for_analysis",
    "answer_logprob", "answer_logit_diff", "last_prompt_index", "cli_common", "write_outputs", "default_out_dir",
    "batches", "block_audio_interventions", "sample_rows", "prompt_item",
]

BACKENDS = ("transformer_lens", "nnsight")
DEFAULT_CHECKPOINT = Path("results/checkpoints/pal/final")
DEFAULT_DATA = Path("data/synth-tiny/val")
DEFAULT_CACHE = TOKEN_CACHE
TRAIN_COMMAND = "python -m workbench.train --config configs/{variant}.yaml --preset tiny --out results/checkpoints/{variant}"

Intervention = tuple[str, Callable[[torch.Tensor], torch.Tensor]]


# ---------------------------------------------------------------------------------------------- helpers
def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    return backend


def _forward(model, batch):
    return model(batch)


def execution_order(model, batch) -> list[str]:
    """Hook names in the order they fire in one forward of ``model`` on ``batch`` (hooks that never fire, e.g.
    audio hooks at layers without audio, are absent). Recorded once with TransformerLens hooks and cached on
    the model, keyed by the kind of input (batch dict vs input_ids)."""
    key = "dict" if isinstance(batch, dict) else "ids"
    cache = model.__dict__.setdefault("_analysis_hook_order", {})
    if key not in cache:
        order: list[str] = []

        def record(_tensor, hook):
            if hook.name not in order:
                order.append(hook.name)

        with torch.no_grad():
            model.run_with_hooks(batch, fwd_hooks=[(lambda name: True, record)])
        cache[key] = order
    return cache[key]


def _sorted_names(model, batch, names: Sequence[str]) -> list[str]:
    """Unique names, each checked (clear KeyError), sorted by execution order; a valid hook that does not fire
    on this model/batch is a KeyError too (nothing to read or replace there)."""
    unique = list(dict.fromkeys(names))
    for name in unique:
        model.check_hook_name(name)
    order = execution_order(model, batch)
    rank = {n: i for i, n in enumerate(order)}
    silent = [n for n in unique if n not in rank]
    if silent:
        raise KeyError(f"hook(s) {silent} exist but do not fire for this model and input (e.g. audio hooks at a "
                       f"layer this model's audio does not reach); hooks that fire: {len(order)}, first/last "
                       f"{order[:1]} .. {order[-1:]}")
    return sorted(unique, key=rank.__getitem__)


def _envoy(wrapped, name: str):
    """nnsight envoy of the HookPoint module ``name`` (dotted path; ModuleList indices)."""
    obj = wrapped
    for part in name.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def _compose(interventions: Sequence[Intervention]) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """{name: fn} with several functions on one name applied in list order."""
    by_name: dict[str, list[Callable]] = {}
    for name, fn in interventions:
        if not callable(fn):
            raise TypeError(f"intervention on {name!r} is not callable: {fn!r}")
        by_name.setdefault(name, []).append(fn)

    def chain(fns):
        def run(t):
            for f in fns:
                t = f(t)
            return t
        return run

    return {name: chain(fns) for name, fns in by_name.items()}


# ---------------------------------------------------------------------------------------------- backends
def _nnsight_collect(model, batch, names: list[str], save: set, fns: dict):
    """One trace: in execution order, replace the output of each name in ``fns``, then save those in ``save``."""
    from nnsight import NNsight

    wrapped = NNsight(model)
    saved = {}
    with wrapped.trace(batch):
        for name in names:
            envoy = _envoy(wrapped, name)
            if name in fns:
                envoy.output = fns[name](envoy.output)
            if name in save:
                saved[name] = envoy.output.save()
        logits = wrapped.output.save()
    return logits, saved


@torch.no_grad()
def collect(model, batch, names: list[str], backend: str = "transformer_lens", *,
            interventions: Sequence[Intervention] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``model`` on ``batch`` (a batch dict for a PALModel, input_ids for a HookedDecoder) and return
    ``(logits, {hook name: activation})``. Unknown hook names raise the model's KeyError.

    interventions (optional): ``[(hook name, fn)]`` applied during the same run (as in
    `run_with_interventions`); an activation that is both replaced and collected is returned replaced."""
    _check_backend(backend)
    if isinstance(names, str):
        names = [names]
    names = _sorted_names(model, batch, names)
    fns = _compose(interventions)
    if not fns and backend == "transformer_lens":
        logits, cache = model.run_with_cache(batch, names_filter=names)
        return logits, {n: cache[n] for n in names}
    if backend == "transformer_lens":
        saved: dict[str, torch.Tensor] = {}

        def saver(t, hook):
            saved[hook.name] = t.detach()

        hooks = [(n, (lambda f: (lambda t, hook: f(t)))(fns[n])) for n in _sorted_names(model, batch, list(fns))]
        logits = model.run_with_hooks(batch, fwd_hooks=hooks + [(n, saver) for n in names])
        return logits, {n: saved[n] for n in names}
    every = _sorted_names(model, batch, list(names) + list(fns))
    logits, saved = _nnsight_collect(model, batch, every, set(names), fns)
    return logits, {n: saved[n] for n in names}


@torch.no_grad()
def run_with_interventions(model, batch, interventions: list[Intervention], backend: str = "transformer_lens") -> torch.Tensor:
    """Logits of ``model`` on ``batch`` with each named activation replaced by ``fn(activation)``.

    Several functions on one hook name are applied in list order. ``fn`` may modify its argument in place
    and return it, or return a new tensor of the same shape."""
    _check_backend(backend)
    fns = _compose(interventions)
    names = _sorted_names(model, batch, list(fns))
    if backend == "transformer_lens":
        hooks = [(n, (lambda f: (lambda t, hook: f(t)))(fns[n])) for n in names]
        return model.run_with_hooks(batch, fwd_hooks=hooks)
    return _nnsight_collect(model, batch, names, set(), fns)[0]


def block_audio_interventions(model, batch, encoders: Sequence[str] | None = None) -> list[Intervention]:
    """Interventions that cut the audio out of the text's view: at every layer where an encoder's tokens are
    keys, their attention scores are set to the mask value (``finfo.min``), so no query reads them (pattern
    exactly 0 there). The text then runs as the bare LLM with the same position ids. PLITS audio tokens still
    flow through the residual stream, but nothing reads them. ``encoders``: which ones (default all)."""
    layout = model.token_layout(batch)
    names = model.check_encoders(encoders)
    out: list[Intervention] = []
    for layer in range(model.cfg.n_layers):
        idx = [layout.audio_key_index(layer, n) for n in names]
        idx = [i for i in idx if i is not None and i.shape[1]]
        if not idx:
            continue
        keys = torch.cat(idx, 1)  # [B, N]
        B, S = layout.attention_mask.shape
        K = S + layout.n_extra_keys(layer)
        cut = torch.zeros(B, S, K, dtype=torch.bool, device=keys.device)
        is_text = torch.zeros(B, S, dtype=torch.bool, device=keys.device).scatter(1, layout.text_index, True)
        cut.scatter_(2, keys[:, None, :].expand(B, S, -1), True)
        cut &= is_text[:, :, None]  # text queries only (audio queries keep their own view)

        def block(scores, cut=cut):
            return scores.masked_fill(cut.to(scores.device)[:, None], torch.finfo(scores.dtype).min)

        out.append((f"blocks.{layer}.attn.hook_attn_scores", block))
    return out


# ---------------------------------------------------------------------------------------------- scores
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


# ---------------------------------------------------------------------------------------------- loading
def load_for_analysis(checkpoint: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
                      n: int | None = None, *, split: str = "val", seed: int = 0, preset: str | None = "tiny",
                      n_generate: int = 120, cache_dir: str | os.PathLike = DEFAULT_CACHE,
                      tasks: list[str] | None = None, progress: bool = False, tokenizer=None, model=None):
    """(PALModel, AudioTaskDataset) ready for analysis.

    checkpoint: a `PALModel.save_pretrained` folder (default ``results/checkpoints/pal/final``).
    data_dir: an audiofolder (default ``data/synth-tiny/val``); if missing and ``preset`` is given, the
    synthetic generator writes ``n_generate`` clips of ``split`` there. The encoder token cache in
    ``cache_dir`` is filled for the model's encoders. n: keep a seeded random subset of n task rows.
    tokenizer: passed to `PALModel.from_pretrained` (default: the LLM's own).
    model: an already loaded PALModel to reuse (``checkpoint`` is then ignored); only the dataset is built.
    """
    from workbench.data.dataset import AudioTaskDataset
    from workbench.encoders import load_encoder
    from workbench.encoders.cache import encode_dataset
    from workbench.model.pal import PALModel

    ckpt = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    if model is None and not (ckpt / "config.json").exists():
        variant = variant_of(ckpt)
        raise FileNotFoundError(
            f"no checkpoint at {ckpt} (needs config.json + model.safetensors). Make it with: "
            + TRAIN_COMMAND.format(variant=variant if (Path("configs") / f"{variant}.yaml").exists() else "pal"))
    if model is None:
        model = PALModel.from_pretrained(ckpt, tokenizer=tokenizer)
    data = Path(data_dir) if data_dir is not None else DEFAULT_DATA
    if not ((data / "metadata.jsonl").exists() and (data / "tasks.jsonl").exists()):
        if preset is None:
            raise FileNotFoundError(f"dataset {data} is missing (no metadata.jsonl/tasks.jsonl); pass a preset to "
                                    f"generate it, or run: python -m workbench.data.synth --out {data} --n {n_generate} "
                                    f"--split {split} --preset tiny")
        from workbench.data.synth import generate

        log.info("generating %d synthetic %s clips (preset %s) into %s", n_generate, split, preset, data)
        generate(data, n_generate, seed=seed, split=split, preset=preset, progress=progress)
    encoders = [load_encoder(s.name, **(s.options or {})) for s in model.pal_cfg.encoders]
    encode_dataset(data, encoders, cache_dir, progress=progress)
    ds = AudioTaskDataset(data, model.tokenizer, encoders=model.encoder_names, cache_dir=cache_dir, tasks=tasks,
                          slot=model.pal_cfg.insertion)
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


# ---------------------------------------------------------------------------------------------- CLI + outputs
def cli_common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add --checkpoint --data --n --backend --out-dir --seed (plus --batch-size) to an analysis CLI."""
    parser.add_argument("--checkpoint", default=None, help=f"PAL checkpoint folder (default {DEFAULT_CHECKPOINT})")
    parser.add_argument("--data", default=None, help=f"audiofolder to analyse (default {DEFAULT_DATA}; generated if missing)")
    parser.add_argument("--n", type=int, default=32, help="number of task rows (seeded random subset; default 32)")
    parser.add_argument("--backend", choices=BACKENDS, default="transformer_lens")
    parser.add_argument("--out-dir", default=None, help="output folder (default results/<variant of the checkpoint>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    return parser


def default_out_dir(args) -> Path:
    if getattr(args, "out_dir", None):
        return Path(args.out_dir)
    ckpt = Path(args.checkpoint) if getattr(args, "checkpoint", None) else DEFAULT_CHECKPOINT
    return Path("results") / variant_of(ckpt)


_PNG_OK: bool | None = None
PNG_TIMEOUT_S = 120.0  # first image includes starting Chromium; later ones take well under a second
_KALEIDO_LOGGERS = ("kaleido", "choreographer", "logistro", "browser_proc")


def _quiet_kaleido() -> None:
    """kaleido/choreographer log every browser start and stop at INFO ("Cancelling tasks.", "Exiting
    Kaleido/Choreo.", ...) and forward Chromium's stderr: keep them to warnings unless a level was set."""
    for name in _KALEIDO_LOGGERS:
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.WARNING)


def _start_png_server() -> None:
    """Start kaleido's sync server once per process: one headless Chromium kept open, so each image costs
    ~0.3 s instead of a browser start (~3-7 s). Stopped at exit. Raises if no Chrome/Chromium is found."""
    import atexit

    import kaleido

    _quiet_kaleido()
    try:
        from choreographer.browsers.chromium import Chromium

        found = Chromium.find_browser(skip_local=False)
    except Exception:  # an API change in choreographer: let kaleido find (or not find) it
        found = True
    if not found:
        raise RuntimeError("no Chrome/Chromium found for kaleido: install it with `apt-get install chromium` "
                           "(or `./run setup`), or set BROWSER_PATH")
    kaleido.start_sync_server(silence_warnings=True)
    atexit.register(kaleido.stop_sync_server, silence_warnings=True)


def _to_png(fig, timeout: float) -> bytes:
    """``fig.to_image(format="png")`` with a time limit (a browser that dies under kaleido's server would
    otherwise block forever)."""
    import threading

    out: dict = {}

    def work():
        import warnings

        try:
            with warnings.catch_warnings():  # the caller's thread only waits meanwhile
                warnings.filterwarnings("ignore", message="The kopts argument is ignored", category=UserWarning)
                out["png"] = fig.to_image(format="png")
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            out["error"] = e

    t = threading.Thread(target=work, name="png-export", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"no image from kaleido after {timeout:.0f} s")
    if "error" in out:
        raise out["error"]
    return out["png"]


def _png_bytes(fig) -> bytes | None:
    """PNG of a plotly figure via kaleido (a persistent headless Chromium, started on the first call), or None
    where it cannot run (once per process, a one-line notice)."""
    global _PNG_OK
    if _PNG_OK is False:
        return None
    try:
        if _PNG_OK is None:
            _start_png_server()
        data = _to_png(fig, PNG_TIMEOUT_S)
        if not data.startswith(b"\x89PNG"):
            raise ValueError(f"kaleido returned {len(data)} bytes that are not a PNG")
        _PNG_OK = True
        return data
    except Exception as e:  # kaleido missing, no Chrome for kaleido >= 1, or the browser failed
        _PNG_OK = False
        msg = str(e).splitlines()[0][:160] if str(e) else ""
        print(f"note: PNG export skipped ({type(e).__name__}: {msg})")
        return None


def write_outputs(df, fig, out_dir: str | os.PathLike, name: str, *, png: bool = True) -> dict[str, Path]:
    """Write ``out_dir/name.csv`` (df), ``name.html`` (self-contained plotly) and ``name.png`` when an image
    exporter works and ``png`` (False skips the export: kaleido starts a browser, seconds per process); every
    write atomic. ``df`` or ``fig`` may be None. Returns {suffix: path}."""
    out = Path(out_dir)
    written = {}
    if df is not None:
        written["csv"] = atomic_write_bytes(out / f"{name}.csv", df.to_csv(index=False).encode())
    if fig is not None:
        buf = io.StringIO()
        fig.write_html(buf, include_plotlyjs=True, full_html=True)
        written["html"] = atomic_write_bytes(out / f"{name}.html", buf.getvalue().encode())
        image = _png_bytes(fig) if png else None
        if image is not None:
            written["png"] = atomic_write_bytes(out / f"{name}.png", image)
    return written
