"""Activations of one hook, restricted to a token role, written to disk in shards: the SAE's training rows.

    store = collect_rows(model, dataset, "connectors.whisper.hook_out", "audio", "runs/acts/x")
    X = store.matrix()          # [n_rows, d] float32
    store.meta                  # one row per activation row: clip, row_id, token, encoder, t0, t1 (seconds)

Roles (positions from ``model.token_layout``, no hard-coded offsets):
- ``audio``: the audio tokens. ``encoders.{e}.hook_out`` [B, T, D]: the encoder's valid frames;
  ``connectors.{e}.hook_out`` [B, N, d]: its valid tokens; ``blocks.{l}.hook_audio_in`` [B, N, d]: the PLITS
  tokens entering at l; ``blocks.{l}.attn.hook_audio_k/v`` [B, N, G, D] (heads flattened): the LAL keys/values
  visible at l; residual-shaped hooks (``blocks.{l}.hook_resid_*``, ``hook_attn_out``, ``hook_mlp_out``,
  ``mlp.hook_post``, ``attn.hook_z``) [B, S, ...]: the PLITS audio slots (from l = the encoder's layer on; a LAL
  model has no audio in its residual stream: an error says which hook to use instead).
- ``text``: every real prompt text token of a residual-shaped hook; ``answer``: the last prompt token (the
  position that predicts the first answer token).

Rows per clip: ``rows="clips"`` asks every clip the same question (`workbench.analysis.probes`' fixed
question, one forward per clip, so only the audio differs); ``rows="tasks"`` uses the dataset's task rows as they
are. A token's time span: audio token j of N covers [j/N, (j+1)/N] of the clip (the connectors pool the valid
frames into N equal segments); encoder frame j of T likewise.

Resumable: a shard (``acts_#####.npy`` + ``rows_#####.csv``) is written atomically every ``shard_rows`` rows and
the manifest records the next batch; a rerun continues from there, a finished store is reused.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import torch

from workbench.analysis.sae.row_store import RowStore, model_fingerprint, open_store, write_shard

__all__ = ["ROLES", "RowStore", "clip_view", "collect_rows", "collect_until", "extract_rows", "pool_by_clip"]

ROLES = ("audio", "text", "answer")
_RESID = re.compile(
    r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_mid|hook_resid_post|hook_attn_out|hook_mlp_out|"
    r"mlp\.hook_post|attn\.hook_z)$"
)


def clip_view(dataset, question: str | None = None):
    """One item per clip of ``dataset`` (its first task row), every clip asked ``question`` (default: the probes'
    fixed question), no answer."""
    from workbench.analysis.probes.store import _ClipView
    from workbench.analysis.probes.suite import DEFAULT_QUESTION

    seen, idx = set(), []
    for i, r in enumerate(dataset.rows):
        if r["file_name"] not in seen:
            seen.add(r["file_name"])
            idx.append(i)
    return _ClipView(dataset, idx, question or DEFAULT_QUESTION)


def _kind(hook: str) -> tuple[str, int | None, str | None]:
    """(kind, layer, encoder) of a hook name."""
    if m := re.match(r"^(encoders|connectors)\.([^.]+)\.hook_out$", hook):
        return m.group(1)[:-1], None, m.group(2)
    if m := re.match(r"^blocks\.(\d+)\.hook_audio_in$", hook):
        return "audio_in", int(m.group(1)), None
    if m := re.match(r"^blocks\.(\d+)\.attn\.hook_audio_(k|v)$", hook):
        return "audio_kv", int(m.group(1)), None
    if m := _RESID.match(hook):
        return "resid", int(m.group(1)), None
    raise ValueError(
        f"hook {hook!r} is not one this collector reads: encoders.E.hook_out, connectors.E.hook_out, "
        "blocks.L.hook_audio_in, blocks.L.attn.hook_audio_k/v, blocks.L.hook_resid_pre/mid/post, "
        "blocks.L.hook_attn_out/hook_mlp_out, blocks.L.mlp.hook_post, blocks.L.attn.hook_z"
    )


def _audio_index(model, hook: str, layout, acts: dict) -> tuple[torch.Tensor, torch.Tensor, list[str], list[int]]:
    """(index [B, N] into the hook's token axis, valid mask [B, N], encoder of each column, token j of each column)."""
    kind, layer, enc = _kind(hook)
    B = layout.text_index.shape[0]
    if kind in ("encoder", "connector"):
        assert enc is not None  # _kind names the encoder of every encoder/connector hook
        mask = acts[f"{kind}s.{enc}.hook_mask"].bool()
        n = mask.shape[1]
        return torch.arange(n)[None].expand(B, -1), mask, [enc] * n, list(range(n))
    if kind == "audio_in":
        parts = [a for a in layout.audio.values() if a.mode == "plits" and a.layer == layer]
    elif kind == "audio_kv":
        parts = layout.lal_at(layer)
    else:
        parts = [a for a in layout.audio.values() if a.mode == "plits"]
        if not parts:
            raise ValueError(
                f"{hook}: this model integrates audio by LAL only, so its residual stream holds no audio "
                "tokens; read the audio at connectors.E.hook_out or blocks.L.attn.hook_audio_v"
            )
        late = [a.name for a in parts if a.layer > layer]
        if late:
            raise ValueError(
                f"{hook}: the audio of {late} enters the residual stream at layer "
                f"{min(a.layer for a in parts)}; before that its slots are dead (zeros). Use a layer >= "
                f"{max(a.layer for a in parts if a.name in late)}"
            )
    if not parts:
        raise ValueError(f"{hook}: no audio tokens at this hook for this model")
    encs = [a.name for a in parts for _ in range(a.n_tokens)]
    toks = [j for a in parts for j in range(a.n_tokens)]
    mask = torch.cat([a.mask for a in parts], 1)
    if kind == "resid":
        index = torch.cat([a.residual_index for a in parts], 1)
    else:
        index = torch.arange(mask.shape[1])[None].expand(B, -1)
    return index, mask, encs, toks


def extract_rows(
    model, hook: str, role: str, act: torch.Tensor, layout, acts: dict, batch: dict
) -> tuple[torch.Tensor, pd.DataFrame]:
    """The rows of one batch: (``[n, d]`` float32 activations, frame with batch_row, token, encoder, frac0, frac1)."""
    if role not in ROLES:
        raise ValueError(f"positions must be one of {ROLES}, got {role!r}")
    x = act.float().flatten(2)  # [B, tokens, d]
    B = x.shape[0]
    if role == "audio":
        index, mask, encs, toks = _audio_index(model, hook, layout, acts)
        n_tok = {e: encs.count(e) for e in set(encs)}
        b, c = torch.nonzero(mask.cpu(), as_tuple=True)
        rows = x[b, index.cpu()[b, c]]
        if _kind(hook)[0] == "encoder":  # frames: fraction of the valid frames
            valid = mask.sum(1).clamp(min=1).cpu()
            f0, f1 = c.float() / valid[b], (c.float() + 1) / valid[b]
        else:
            j = torch.tensor([toks[i] for i in c.tolist()], dtype=torch.float32)
            n = torch.tensor([n_tok[encs[i]] for i in c.tolist()], dtype=torch.float32)
            f0, f1 = j / n, (j + 1) / n
        meta = pd.DataFrame(
            {
                "batch_row": b.numpy(),
                "token": [toks[i] for i in c.tolist()],
                "encoder": [encs[i] for i in c.tolist()],
                "frac0": f0.numpy(),
                "frac1": f1.numpy(),
            }
        )
        return rows, meta
    if _kind(hook)[0] != "resid":
        raise ValueError(f"positions {role!r} need a residual-shaped hook (blocks.L.hook_resid_post, ...), not {hook}")
    plen = batch["prompt_len"].long().cpu()
    ti = layout.text_index.cpu()
    if role == "answer":
        b = torch.arange(B)
        t = plen - 1
    else:
        tt = torch.arange(ti.shape[1])[None]
        b, t = torch.nonzero((tt < plen[:, None]) & layout.text_mask.cpu(), as_tuple=True)
    rows = x[b, ti[b, t]]
    meta = pd.DataFrame({"batch_row": b.numpy(), "token": t.numpy(), "encoder": "", "frac0": np.nan, "frac1": np.nan})
    return rows, meta


class _Stop(Exception):
    """Raised by the last needed hook: the rest of the forward is not needed for collection."""


@torch.no_grad()
def collect_until(model, batch, names: list[str]) -> dict[str, torch.Tensor]:
    """``{name: activation}`` like `workbench.analysis.core.collect`, but the forward stops once the last of
    ``names`` (in execution order) has fired: a connector or early-layer site costs only the layers before it."""
    from workbench.analysis.hooks import execution_order

    order = {n: i for i, n in enumerate(execution_order(model, batch))}
    for n in names:
        model.check_hook_name(n)
        if n not in order:
            raise KeyError(f"hook {n!r} does not fire for this model and input")
    last = max(names, key=order.__getitem__)
    saved: dict[str, torch.Tensor] = {}

    def save(t, hook):
        saved[hook.name] = t.detach()
        if hook.name == last:
            raise _Stop

    try:
        model.run_with_hooks(batch, fwd_hooks=[(n, save) for n in names])
    except _Stop:
        pass
    return saved


def _attrs(row: dict, keep: list[str]) -> dict:
    return {k: (None if isinstance(row.get(k), (list, dict)) else row.get(k)) for k in keep}


@torch.no_grad()
def collect_rows(
    model,
    dataset,
    hook: str,
    positions: str = "audio",
    out_dir: str | os.PathLike = "runs/sae/acts",
    *,
    rows: str = "clips",
    question: str | None = None,
    batch_size: int = 8,
    shard_rows: int = 8192,
    dtype: str = "float32",
    backend: str = "transformer_lens",
    attributes: list[str] | None = None,
    progress: bool = True,
    max_batches: int | None = None,
    stop_early: bool = True,
) -> RowStore:
    """Run ``model`` over ``dataset`` and store ``hook``'s rows at ``positions`` in ``out_dir`` (resumable; a
    complete store for the same hook/positions/rows is returned as is). ``attributes``: clip columns copied into
    the row frame (default: every scalar column of the first row). ``max_batches``: stop early (benchmarks).
    ``stop_early``: end each forward once the hook has fired (`collect_until`; TransformerLens backend)."""
    if rows not in ("clips", "tasks"):
        raise ValueError(f"rows must be 'clips' or 'tasks', got {rows!r}")
    kind, _, enc = _kind(hook)
    if positions != "audio" and kind != "resid":
        raise ValueError(f"positions {positions!r} need a residual-shaped hook, not {hook}")
    items = clip_view(dataset, question) if rows == "clips" else dataset
    key = {
        "hook": hook,
        "positions": positions,
        "rows": rows,
        "n_items": len(items),
        "dtype": dtype,
        "model": model_fingerprint(model),
        "data": str(getattr(dataset, "root", "")),
    }
    store, manifest = open_store(out_dir, key)
    if manifest.get("complete"):
        return store
    job = _Collection(
        model, dataset, items, hook, positions, rows, _kept_attributes(dataset.rows, attributes), backend, stop_early
    )
    n_batches = len(range(0, len(items), batch_size))
    starts = list(range(0, len(items), batch_size))[manifest["next_batch"] :]
    if max_batches is not None:
        starts = starts[:max_batches]
    done_batches = _collect_batches(job, store, manifest, starts, batch_size, shard_rows, np.dtype(dtype), progress)
    if max_batches is None or done_batches >= n_batches:
        manifest["complete"] = True
        manifest["next_batch"] = done_batches
        store.write_manifest(manifest)
    return store


def _kept_attributes(base_rows: list[dict], attributes: list[str] | None) -> list[str]:
    """The clip columns copied into the row frame: ``attributes``, or every scalar column of the first row (not
    the question or answer)."""
    if attributes is not None:
        return attributes
    first = base_rows[0] if base_rows else {}
    return [
        k
        for k, v in first.items()
        if not k.startswith("_") and not isinstance(v, (list, dict)) and k not in ("question", "answer")
    ]


class _Collection:
    """What `collect_rows` reads: ``hook``'s rows at ``positions`` of ``items`` (the clip view or the dataset
    itself), with the hooks that must fire beside it (its mask; every connector's mask, for the token layout)."""

    def __init__(self, model, dataset, items, hook, positions, rows, keep, backend, stop_early):
        self.model, self.dataset, self.items = model, dataset, items
        self.hook, self.positions, self.rows, self.keep = hook, positions, rows, keep
        self.backend, self.stop_early = backend, stop_early
        kind, _, enc = _kind(hook)
        self.names = [hook]
        if kind in ("encoder", "connector"):
            self.names.append(f"{kind}s.{enc}.hook_mask")
        self.masks = {e: (None, f"connectors.{e}.hook_mask") for e in model.encoder_names}
        self.names += [m for _, m in self.masks.values() if m not in self.names]

    def batch_rows(self, idx: list[int]) -> tuple[np.ndarray, pd.DataFrame]:
        """Items ``idx`` -> (rows [n, d] float32, their frame: token, encoder, t0, t1, item, clip attributes)."""
        from workbench.analysis.core import collect

        model, items = self.model, self.items
        batch = items.collate_fn([items[j] for j in idx])
        if self.stop_early and self.backend == "transformer_lens":
            acts = collect_until(model, batch, self.names)
        else:
            _, acts = collect(model, batch, self.names, backend=self.backend)
        layout = model.token_layout(batch, {e: (None, acts[m]) for e, (_, m) in self.masks.items()})
        x, meta = extract_rows(model, self.hook, self.positions, acts[self.hook], layout, acts, batch)
        base_rows = self.dataset.rows
        src = [base_rows[items.indices[j]] if self.rows == "clips" else items.rows[j] for j in idx]
        info = pd.DataFrame([_attrs(src[b], self.keep) for b in meta["batch_row"]])
        dur = info["duration_s"].astype(float) if "duration_s" in info else np.nan
        meta = meta.assign(t0=meta["frac0"] * dur, t1=meta["frac1"] * dur, item=[idx[b] for b in meta["batch_row"]])
        meta = pd.concat([meta.drop(columns=["batch_row", "frac0", "frac1"]), info], axis=1)
        return x.numpy(), meta


def _collect_batches(
    job: _Collection,
    store: RowStore,
    manifest: dict,
    starts: list[int],
    batch_size: int,
    shard_rows: int,
    dtype,
    progress,
) -> int:
    """Collect the batches beginning at ``starts``, a shard written every ``shard_rows`` rows and at the end.
    Returns the number of batches done (where a rerun continues)."""
    items = job.items
    it = starts
    if progress:
        from tqdm import tqdm

        it = tqdm(starts, desc=f"collect {job.hook} [{job.positions}]", unit="batch")
    buf, metas, n_buf = [], [], 0
    for start in it:
        x, meta = job.batch_rows(list(range(start, min(start + batch_size, len(items)))))
        buf.append(x)
        metas.append(meta)
        n_buf += len(meta)
        if n_buf >= shard_rows:
            write_shard(store, manifest, buf, metas, start // batch_size + 1, dtype)
            buf, metas, n_buf = [], [], 0
    done_batches = (starts[-1] // batch_size + 1) if starts else manifest["next_batch"]
    if buf:
        write_shard(store, manifest, buf, metas, done_batches, dtype)
    return done_batches


def pool_by_clip(values: np.ndarray, meta: pd.DataFrame, how: str = "max", key: str = "file_name"):
    """Rows -> one row per clip (in first-seen order): ``max`` or ``mean`` over the clip's rows. Returns (clip ids,
    pooled [n_clips, d], index of each clip's first row in ``meta``)."""
    codes, uniques = pd.factorize(meta[key])
    out = np.zeros((len(uniques), values.shape[1]), np.float32)
    if how == "max":
        out[:] = -np.inf
        np.maximum.at(out, codes, values)
    elif how == "mean":
        np.add.at(out, codes, values)
        out /= np.bincount(codes, minlength=len(uniques))[:, None]
    else:
        raise ValueError(f"how must be 'max' or 'mean', got {how!r}")
    first = pd.Series(np.arange(len(codes))).groupby(codes).first().to_numpy()
    return np.asarray(uniques), out, first
