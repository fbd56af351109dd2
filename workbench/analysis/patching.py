"""Activation patching of audio between clean and corrupted examples: where does the audio that decides the
answer enter, and which heads carry it to the answer position?

A pair is two task rows with the same task, attribute and question (so the same prompt tokens and the same
layout) whose answers differ, and whose first answer tokens differ (the logit difference is read at the
first answer token). Among candidates the corrupted clip is the one whose other class attributes
(the keys of ``answer_options.json`` found in the metadata) differ least from the clean clip's; the number
of other differing attributes is reported per pair (``n_other_diffs``). Synthetic clips are sampled
independently, so pairs that differ in exactly one attribute are not guaranteed.

Patching runs the corrupted prompt with activations taken from the clean run, one site at a time:

* ``audio_kv`` (LAL): ``blocks.{l}.attn.hook_audio_k`` + ``hook_audio_v`` (the encoder's slice), per layer;
* ``resid_audio`` (PLITS): ``blocks.{l}.hook_resid_pre`` at the encoder's audio residual positions, per layer;
* ``head_out``: ``blocks.{l}.attn.hook_z`` of head h at the text positions, per layer and head;
* ``connector``: ``connectors.{name}.hook_out`` (everything that encoder contributes; encoder ``all`` patches
  every chosen encoder at once: with all encoders it restores exactly 1).

``layer == -1`` rows of ``audio_kv`` / ``resid_audio`` patch every layer of the site at once. The metric is
the answer logit difference LD = logit(clean answer's first token) - logit(corrupted answer's first token) at
the last prompt position, and the fraction restored = (LD_patched - LD_corr) / (LD_clean - LD_corr), ratio
of means over pairs (per-pair ratios explode where a pair's clean and corrupted LD nearly agree).

API: :func:`make_pairs`, :func:`patch_batch` (one clean/corrupted batch pair), :func:`patch_dataset`,
:func:`summarize_patching`, :func:`patching_figure`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from workbench.analysis.core import answer_logit_diff, collect, run_with_interventions
from workbench.analysis.patch_pairs import PatchingError as PatchingError  # re-exported (callers import it here)
from workbench.analysis.patch_pairs import make_pairs as make_pairs
from workbench.analysis.patch_sites import pair_batches, patch_specs
from workbench.analysis.patching_summary import SUMMARY_COLUMNS as SUMMARY_COLUMNS
from workbench.analysis.patching_summary import patching_figure as patching_figure
from workbench.analysis.patching_summary import summarize_patching as summarize_patching

__all__ = [
    "SITES",
    "PatchingError",
    "make_pairs",
    "patch_batch",
    "patch_dataset",
    "summarize_patching",
    "patching_figure",
    "resolve_sites",
]

SITES = ("audio_kv", "resid_audio", "head_out", "connector")
DEFAULT_SITES = ("audio_kv", "resid_audio", "head_out")
ITEM_COLUMNS = ["site", "layer", "head", "encoder", "pair", "clean_ld", "corrupted_ld", "patched_ld"]


def resolve_sites(model, sites: str | Sequence[str] | None, encoders: str | Sequence[str] | None = None):
    """(sites, encoders) checked; sites that do not apply to any chosen encoder (audio_kv without LAL,
    resid_audio without PLITS) are dropped unless asked for alone."""
    if sites is None:
        sites = list(DEFAULT_SITES)
    elif isinstance(sites, str):
        sites = [s.strip() for s in sites.split(",") if s.strip()]
    bad = [s for s in sites if s not in SITES]
    if bad or not sites:
        raise PatchingError(f"unknown patching site(s) {bad or sites}; choose from {SITES} (comma-separated)")
    encs = model.check_encoders(encoders, PatchingError)
    modes = {name: mode for name, (mode, _) in model.integration.items()}
    keep = []
    for s in sites:
        need = {"audio_kv": "lal", "resid_audio": "plits"}.get(s)
        if need and not any(modes[e] == need for e in encs):
            if len(sites) == 1:
                raise PatchingError(
                    f"site {s!r} needs a {need.upper()} encoder but the chosen encoders {encs} are "
                    f"{sorted({modes[e] for e in encs})}; use --sites "
                    f"{'resid_audio' if need == 'lal' else 'audio_kv'},head_out"
                )
            continue
        keep.append(s)
    return keep, encs


# ---------------------------------------------------------------------------------------------- patching
def _check_same_prompt(model, clean, corrupt):
    for k in ("input_ids", "attention_mask", "audio_slot"):
        if (
            k not in clean
            or k not in corrupt
            or clean[k].shape != corrupt[k].shape
            or not torch.equal(clean[k], corrupt[k])
        ):
            raise PatchingError(
                f"clean and corrupted batches differ in {k!r}: patching needs the same prompt text "
                "(pairs from make_pairs share the question); only the audio may differ"
            )


def _repeat_batch(batch: dict, g: int) -> dict:
    """The batch stacked ``g`` times along the batch axis (tensors, dicts of tensors, per-row lists)."""
    if g == 1:
        return batch
    out: dict = {}
    for k, v in batch.items():
        if torch.is_tensor(v) and v.ndim:
            out[k] = torch.cat([v] * g)
        elif isinstance(v, dict):
            out[k] = {kk: torch.cat([vv] * g) if torch.is_tensor(vv) else vv for kk, vv in v.items()}
        elif isinstance(v, list):
            out[k] = v * g
        else:
            out[k] = v
    return out


def _grouped_ivs(group, clean_acts, B):
    """Interventions for one forward over ``len(group)`` stacked copies of the corrupted batch: copy r gets the
    patch of site ``group[r]`` (each patch function sees its own [B, ...] slice, exactly as when run alone)."""
    by_name: dict[str, list] = {}
    for r, (*_, hooks) in enumerate(group):
        for name, make in hooks:
            by_name.setdefault(name, []).append((r, make(clean_acts[name])))

    def combined(fns):
        def fn(x):
            parts = list(x.split(B))
            for r, f in fns:
                parts[r] = f(parts[r])
            return torch.cat(parts)

        return fn

    return [(name, combined(fns)) for name, fns in by_name.items()]


def _last_prompt_mask(batch) -> torch.Tensor:
    """[B, Lt] bool: the last prompt position of each row (``logits_at``: unembed only there)."""
    from workbench.analysis.core import last_prompt_index

    at = torch.zeros(batch["input_ids"].shape, dtype=torch.bool)
    at[torch.arange(at.shape[0]), last_prompt_index(batch)] = True
    return at.to(batch["input_ids"].device)


def _rep_ids(x, B: int, g: int) -> torch.Tensor:
    t = torch.as_tensor(x).long()
    return t.expand(B).repeat(g) if t.ndim == 0 else t.repeat(g)


def _ld_at_last(logits: torch.Tensor, c: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """[n] logit(c) - logit(w) from the last-prompt-position logits [n, V] of ``logits_at``."""
    logits = logits.float()
    r = torch.arange(logits.shape[0], device=logits.device)
    return logits[r, c.to(logits.device)] - logits[r, w.to(logits.device)]


def _last_logit_diff(model, batch, ivs, backend, clean_ids, corrupt_ids, g):
    """[g * B] LD of ``batch`` (g stacked copies) under ``ivs``. Stacked copies (g > 1, TransformerLens backend)
    unembed only the last prompt position (``logits_at``); one run per site (g = 1, the default) unembeds every
    position as the analyses always have, so its numbers are bit for bit those of earlier versions."""
    B = batch["input_ids"].shape[0] // g
    c, w = _rep_ids(clean_ids, B, g), _rep_ids(corrupt_ids, B, g)
    if backend != "transformer_lens" or g == 1:
        logits = run_with_interventions(model, batch, ivs, backend=backend)
        return answer_logit_diff(logits, batch, c, w)
    logits = model.run_with_hooks(
        batch,
        fwd_hooks=[(n, (lambda f: lambda t, hook: f(t))(f)) for n, f in ivs],  # noqa: B023 - f is bound by the outer call
        logits_at=_last_prompt_mask(batch),
    )  # [g * B, V]
    return _ld_at_last(logits, c, w)


def _clean_and_corrupted(model, clean_batch, corrupt_batch, clean_ids, corrupt_ids, names, backend, stacked, B):
    """(clean activations at ``names``, clean LD [B], corrupted LD [B]); with ``stacked`` unembedded only at the
    last prompt position, as the stacked patched runs are."""
    if stacked:  # the clean and corrupted runs unembed exactly as the stacked patched runs do
        logits, cache = model.run_with_cache(clean_batch, names_filter=names, logits_at=_last_prompt_mask(clean_batch))
        clean_acts = {n: cache[n] for n in names}
        ld_clean = _ld_at_last(logits, _rep_ids(clean_ids, B, 1), _rep_ids(corrupt_ids, B, 1)).double().cpu()
        corrupt_logits = model.run_with_hooks(corrupt_batch, logits_at=_last_prompt_mask(corrupt_batch))
        ld_corr = _ld_at_last(corrupt_logits, _rep_ids(clean_ids, B, 1), _rep_ids(corrupt_ids, B, 1)).double().cpu()
    else:
        clean_logits, clean_acts = collect(model, clean_batch, names, backend=backend)
        ld_clean = answer_logit_diff(clean_logits, clean_batch, clean_ids, corrupt_ids).double().cpu()
        corrupt_logits, _ = collect(model, corrupt_batch, [], backend=backend)
        ld_corr = answer_logit_diff(corrupt_logits, corrupt_batch, clean_ids, corrupt_ids).double().cpu()
    return clean_acts, ld_clean, ld_corr


def _chunk_rows(chunk, B: int, pair_offset: int, ld_clean, ld_corr, ld_all) -> list[tuple]:
    """``ITEM_COLUMNS`` tuples of one group of patched sites; ld_all [g, B] the patched LDs."""
    rows = []
    for r, (site, layer, head, enc, _) in enumerate(chunk):
        for b in range(B):
            rows.append(
                (site, layer, head, enc, pair_offset + b, float(ld_clean[b]), float(ld_corr[b]), float(ld_all[r, b]))
            )
    return rows


@torch.no_grad()
def patch_batch(
    model,
    clean_batch: dict,
    corrupt_batch: dict,
    clean_ids,
    corrupt_ids,
    sites: str | Sequence[str] | None = None,
    encoders: str | Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    backend: str = "transformer_lens",
    pair_offset: int = 0,
    bar=None,
    n_batches: int = 1,
    group: int = 1,
) -> pd.DataFrame:
    """Patch every site of ``sites`` from ``clean_batch`` into ``corrupt_batch`` (same prompts, different audio).

    clean_ids / corrupt_ids: [B] (or int) first answer tokens of the clean / corrupted answer; the logit
    difference is read at the last prompt position (``core.last_prompt_index``). Returns one row per
    (site, layer, head, encoder, pair): ``ITEM_COLUMNS``. bar: an optional tqdm bar advanced once per patched
    site (its total is set to ``n_batches`` x the number of sites per batch on first use).

    group: patched runs done in one forward, on ``group`` stacked copies of the corrupted batch (each copy
    patched at its own site; items never interact, so the numbers are those of one run per site up to float
    rounding of the larger matmuls): fewer, larger forwards, for accelerators (on a 2-core CPU the forward is
    compute-bound and group 4 took as long as group 1), which unembed only the last prompt position. group 1 (the
    default) runs one forward per site with every position unembedded, bit for bit as earlier versions did."""
    if int(group) < 1:
        raise PatchingError(f"group must be >= 1 (patched runs per forward), got {group!r}")
    sites, encs = resolve_sites(model, sites, encoders)
    _check_same_prompt(model, clean_batch, corrupt_batch)
    layout = model.token_layout(corrupt_batch)
    specs = patch_specs(model, layout, sites, encs, layers)
    names = sorted({name for *_, hooks in specs for name, _ in hooks})
    B = clean_batch["input_ids"].shape[0]
    stacked = backend == "transformer_lens" and int(group) > 1
    clean_acts, ld_clean, ld_corr = _clean_and_corrupted(
        model, clean_batch, corrupt_batch, clean_ids, corrupt_ids, names, backend, stacked, B
    )
    rows = []
    if bar is not None and not bar.total:
        bar.total = n_batches * len(specs)
        bar.refresh()
    for start in range(0, len(specs), int(group)):
        chunk = specs[start : start + int(group)]
        g = len(chunk)
        ivs = _grouped_ivs(chunk, clean_acts, B)
        ld_all = _last_logit_diff(model, _repeat_batch(corrupt_batch, g), ivs, backend, clean_ids, corrupt_ids, g)
        ld_all = ld_all.double().cpu().view(g, B)
        rows += _chunk_rows(chunk, B, pair_offset, ld_clean, ld_corr, ld_all)
        if bar is not None:
            bar.update(g)
    return pd.DataFrame(rows, columns=ITEM_COLUMNS)


def patch_dataset(
    model,
    dataset,
    pairs: pd.DataFrame,
    sites=None,
    encoders=None,
    layers=None,
    backend: str = "transformer_lens",
    batch_size: int = 8,
    progress: bool = False,
    group: int = 1,
) -> pd.DataFrame:
    """:func:`patch_batch` over the pairs of :func:`make_pairs` (prompts only, left-padded) -> item rows,
    with the pairs' ``attribute`` and ``n_other_diffs`` joined in."""
    frames = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="patching", unit="site")
    n_batches = -(-len(pairs) // batch_size)
    for i, clean, corrupt, clean_tok, corrupt_tok in pair_batches(dataset, pairs, batch_size):
        frames.append(
            patch_batch(
                model,
                clean,
                corrupt,
                clean_tok,
                corrupt_tok,
                sites,
                encoders,
                layers,
                backend,
                pair_offset=i,
                bar=bar,
                n_batches=n_batches,
                group=group,
            )
        )
    if bar is not None:
        bar.close()
    items = pd.concat(frames, ignore_index=True)
    meta = pairs[["attribute", "n_other_diffs"]].reset_index(drop=True)
    return items.join(meta, on="pair")
