"""The one list of patching sites, shared by exact activation patching (:mod:`workbench.analysis.patching`) and
attribution patching (:mod:`workbench.analysis.atp`), so both always cover the same sites in the same order, and
the patch functions exact patching applies to each (:func:`patch_specs`).

A site is ``(site, layer, head, encoder, [(hook name, part)])``: which hooks carry it and which part of each hook's
activation is the site's. ``part`` is one of

* ``("all",)``: the whole activation (``connectors.{enc}.hook_out`` ``[B, n_tokens, d_model]``);
* ``("slice", offset, n)``: key positions ``offset .. offset + n`` of an LAL encoder's extra keys/values at one
  layer (``blocks.{l}.attn.hook_audio_k`` / ``hook_audio_v``, ``[B, keys, kv_heads, d_head]``);
* ``("resid",)``: a PLITS encoder's audio positions of the residual stream entering layer ``l``
  (``blocks.{l}.hook_resid_pre`` ``[B, S, d_model]``, positions ``layout.audio[enc].residual_index``);
* ``("z", h)``: head ``h`` of ``blocks.{l}.attn.hook_z`` ``[B, S, H, d_head]`` at the text query positions.

Sites per kind (``sites``, :func:`workbench.analysis.patching.resolve_sites`): ``connector`` (one per encoder with
tokens), ``audio_kv`` (LAL encoders) and ``resid_audio`` (PLITS encoders), one per layer from the encoder's entry
layer on, and ``head_out`` (one per layer and head). With ``groups=True`` (exact patching) each kind also gets its
joint sites, layer and head ``-1``: every encoder's connector at once (``encoder="all"``, when there are several)
and each encoder's audio K/V or residual at every listed layer at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["site_list", "patch_specs"]


def _audio_sites(layout, site: str, encs, layers, groups: bool) -> list[tuple]:
    want = "lal" if site == "audio_kv" else "plits"
    out = []
    for e in encs:
        a = layout.audio[e]
        if a.mode != want or a.n_tokens == 0:
            continue
        per_layer = []
        for l in layers:
            if l < a.layer:
                continue
            hooks: list[tuple[str, tuple]]  # (hook name, part)
            if site == "audio_kv":
                keys = layout.audio_key_slice(l, e)
                hooks = [
                    (f"blocks.{l}.attn.{h}", ("slice", keys.start, a.n_tokens))
                    for h in ("hook_audio_k", "hook_audio_v")
                ]
            else:
                hooks = [(f"blocks.{l}.hook_resid_pre", ("resid",))]
            per_layer += hooks
            out.append((site, l, -1, e, hooks))
        if groups and per_layer:
            out.append((site, -1, -1, e, per_layer))
    return out


def site_list(
    model, layout, sites: Sequence[str], encs: Sequence[str], layers: Sequence[int] | None, groups: bool = False
) -> list[tuple]:
    """``[(site, layer, head, encoder, [(hook name, part)])]`` for ``sites`` over encoders ``encs`` and ``layers``
    (None: every layer; each is checked against the model), see the module docstring; ``layout`` is the batch's
    :class:`~workbench.model.layout.TokenLayout`."""
    layers = list(range(model.cfg.n_layers)) if layers is None else [model.check_layer(int(l)) for l in layers]
    out: list[tuple] = []
    for site in sites:
        if site == "connector":
            every = []
            for e in encs:
                if layout.audio[e].n_tokens:
                    hooks = [(f"connectors.{e}.hook_out", ("all",))]
                    every += hooks
                    out.append((site, -1, -1, e, hooks))
            if groups and len(every) > 1:
                out.append((site, -1, -1, "all", every))
        elif site in ("audio_kv", "resid_audio"):
            out += _audio_sites(layout, site, encs, layers, groups)
        elif site == "head_out":
            for l in layers:
                for h in range(model.cfg.n_heads):
                    out.append((site, l, h, "all", [(f"blocks.{l}.attn.hook_z", ("z", h))]))
    return out


# ---------------------------------------------------------------------------------------------- patch functions
def patch_specs(model, layout, sites, encs, layers):
    """[(site, layer, head, encoder, [(hook name, fn(clean) -> fn(act))])]: the shared site list
    (:func:`workbench.analysis.patch_sites.site_list`, with the joint sites) with each part as a patch function (used by
    :func:`workbench.analysis.patching.patch_batch`)."""
    dev, S = model.device, layout.seq_len
    text_q = layout.text_positions(dev) if "head_out" in sites else None

    def patch(part, enc):
        if part[0] == "all":
            return lambda c: lambda a, c=c: c.clone()
        if part[0] == "slice":
            return _slice_patch(part[1], part[2])
        if part[0] == "resid":
            return _resid_patch(layout.audio[enc].residual_index.to(dev), S)
        return _head_patch(part[1], text_q)

    return [
        (site, l, h, e, [(name, patch(part, e)) for name, part in hooks])
        for site, l, h, e, hooks in site_list(model, layout, sites, encs, layers, groups=True)
    ]


def _slice_patch(off, n):
    def make(clean):
        def fn(x):
            x = x.clone()
            x[:, off : off + n] = clean[:, off : off + n].to(x.device, x.dtype)
            return x

        return fn

    return make


def _resid_patch(index, S):
    def make(clean):
        def fn(x):
            if x.shape[1] != S:
                return x
            idx = index.to(x.device)[..., None].expand(-1, -1, x.shape[-1])
            return x.scatter(1, idx, clean.to(x.device, x.dtype).gather(1, idx))

        return fn

    return make


def _head_patch(h, text_q):
    def make(clean):
        def fn(z):  # [B, S, H, D]
            z = z.clone()
            m = text_q.to(z.device)[..., None]
            z[:, :, h] = torch.where(m, clean[:, :, h].to(z.device, z.dtype), z[:, :, h])
            return z

        return fn

    return make


def pair_batches(dataset, pairs, batch_size: int):
    """``(offset, clean batch, corrupted batch, clean token [b], corrupted token [b])`` for each chunk of
    ``batch_size`` rows of ``pairs`` (:func:`workbench.analysis.patching.make_pairs`; prompts only, left-padded): the
    batches that exact patching and AtP both run on."""
    from workbench.analysis.core import prompt_item

    collate = dataset.prompt_collate_fn()
    for i in range(0, len(pairs), batch_size):
        chunk = pairs.iloc[i : i + batch_size]
        clean = collate([prompt_item(dataset[int(j)]) for j in chunk["clean"]])
        corrupt = collate([prompt_item(dataset[int(j)]) for j in chunk["corrupted"]])
        yield (
            i,
            clean,
            corrupt,
            torch.tensor(chunk["clean_token"].to_numpy()),
            torch.tensor(chunk["corrupted_token"].to_numpy()),
        )
