"""Attribution patching (AtP) with AtP*'s QK fix: the effect of patching every site, from one forward per run
and one backward, validated against exact patching (:mod:`workbench.analysis.patching`) on the same pairs.

For a site with activation a, patching the clean activation into the corrupted run changes the metric
(LD = logit(clean answer token) - logit(corrupted answer token) at the last prompt position) by about

    AtP(site) = (a_clean - a_corrupted) . dLD/da |corrupted

(first-order Taylor expansion around the corrupted run; Nanda 2023, Kramár et al. 2024, arXiv 2403.00745).
Sites and their activations are those of exact patching: ``head_out`` (``blocks.{l}.attn.hook_z`` of head h
at the text positions), ``audio_kv`` (the encoder's slice of ``hook_audio_k`` and ``hook_audio_v``),
``resid_audio`` (``hook_resid_pre`` at the encoder's PLITS audio positions), ``connector``
(``connectors.{e}.hook_out``). ``layer == -1`` rows of ``audio_kv`` sum the per-layer estimates (patch every
layer at once; each layer's audio K/V is computed from the connector on its own, so the first-order effects
add). ``resid_audio`` has no such row: patching the audio residual at one layer already changes it at the
later ones, so per-layer estimates double count.
The gradient is taken through zero-valued leaves added at each hook (``a + delta``, d LD/d delta), so no path
through a later site is cut.

**QK fix** (AtP*): a key that moves a saturated softmax has a near-zero gradient, so plain AtP misses it. For
``audio_kv`` the attention pattern of layer l is recomputed exactly with the clean audio keys (corrupted
queries: ``hook_rot_q``, or ``hook_q`` without RoPE; scale and any gate bias as in the corrupted scores) and
the key part is estimated as ``(pattern_patched - pattern_corrupted) . dLD/dpattern``; the value part stays
``(v_clean - v_corrupted) . dLD/dv``. Column ``atp_qk`` holds it (equal to ``atp`` for sites without keys).
Scope: the fix is applied where the site *is* a key (the audio keys of a LAL layer, the
dominant saturation path of audio); effects that reach later layers' attention through their queries and keys
(head outputs, audio residuals) stay first-order, as in plain AtP (AtP* also recomputes those patterns).

Gradients need TransformerLens-style hooks (the ``transformer_lens`` backend); exact patching, the reference,
runs on either backend.

API: :func:`atp_batch`, :func:`atp_dataset`, :func:`summarize_atp`, :func:`agreement`, :func:`atp_figure`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from workbench.analysis.core import answer_logit_diff, collect
from workbench.analysis.figures import add_caption
from workbench.analysis.patch_sites import pair_batches, site_list
from workbench.analysis.patching import PatchingError, _check_same_prompt, resolve_sites

__all__ = ["atp_batch", "atp_dataset", "summarize_atp", "agreement", "atp_figure", "ITEM_COLUMNS"]

ITEM_COLUMNS = ["site", "layer", "head", "encoder", "pair", "clean_ld", "corrupted_ld", "atp", "atp_qk"]


def _dot(how, diff, grad, text_q, layout, enc):
    """Per item [B]: sum over the patched part of (clean - corrupted) * gradient."""
    prod = diff.double() * grad.double()
    if how[0] == "z":
        p = prod[:, :, how[1]].sum(-1)  # [B, S]
        return (p * text_q.to(p.device)).sum(1)
    if how[0] == "slice":
        return prod[:, how[1] : how[1] + how[2]].flatten(1).sum(1)
    if how[0] == "resid":
        idx = layout.audio[enc].residual_index.to(prod.device)
        return prod.sum(-1).gather(1, idx).sum(1)
    return prod.flatten(1).sum(1)


def _qk_term(model, layer, off, n, k_clean, k_corr, q, scores, grad_pattern):
    """[B]: (softmax(scores with the clean audio keys) - softmax(scores)) . dLD/dpattern for one layer."""
    attn = model.blocks[layer].attn
    H, G = model.cfg.n_heads, model.cfg.n_kv_heads
    R = H // G
    dk = (k_clean[:, off : off + n] - k_corr[:, off : off + n]).double()  # [B, n, G, D]
    dk = dk.repeat_interleave(R, dim=2)  # [B, n, H, D] (head h reads kv head h // R)
    dscores = torch.einsum("bqhd,bnhd->bhqn", q.double(), dk) * attn.scale  # [B, H, L, n]
    s = scores.double()
    masked = s[..., off : off + n] <= torch.finfo(scores.dtype).min / 2
    patched = s.clone()
    patched[..., off : off + n] = torch.where(masked, s[..., off : off + n], s[..., off : off + n] + dscores)
    dp = torch.softmax(patched, -1) - torch.softmax(s, -1)
    return (dp * grad_pattern.double()).flatten(1).sum(1)


def _corrupted_grads(model, corrupt_batch, clean_ids, corrupt_ids, names, qk_layers, q_hook):
    """One corrupted forward with zero leaves at ``names`` (and each QK layer's pattern) and one backward: the
    corrupted activations, d LD/d leaf per hook, the kept scores and queries, and the corrupted LD [B]."""
    deltas, corr_acts, extra = {}, {}, {}

    def leaf(t, hook):
        corr_acts[hook.name] = t.detach()
        d = torch.zeros_like(t, requires_grad=True)
        deltas[hook.name] = d
        return t + d

    def keep(t, hook):
        extra[hook.name] = t.detach()

    fwd = [(n, leaf) for n in names]
    for l in qk_layers:
        fwd += [
            (f"blocks.{l}.attn.hook_pattern", leaf),
            (f"blocks.{l}.attn.hook_attn_scores", keep),
            (f"blocks.{l}.attn.{q_hook}", keep),
        ]
    with torch.enable_grad():
        logits = model.run_with_hooks(corrupt_batch, fwd_hooks=fwd)
        ld = answer_logit_diff(logits, corrupt_batch, clean_ids, corrupt_ids)
        order = list(deltas)
        grads = dict(zip(order, torch.autograd.grad(ld.sum(), [deltas[n] for n in order], allow_unused=True)))
    ld_corr = ld.detach().double().cpu()
    for n in order:
        if grads[n] is None:
            grads[n] = torch.zeros_like(deltas[n])
    return corr_acts, grads, extra, ld_corr


def _qk_fixed(model, layer, hooks, clean_acts, corr_acts, grads, extra, q_hook, text_q, layout, enc):
    """[B]: the value part of an ``audio_kv`` site plus the exact-pattern key part (the QK fix)."""
    (kn, (_, off, nt)), (vn, vhow) = hooks
    q = extra[f"blocks.{layer}.attn.{q_hook}"]
    pn = f"blocks.{layer}.attn.hook_pattern"
    return _dot(vhow, clean_acts[vn] - corr_acts[vn], grads[vn], text_q, layout, enc) + _qk_term(
        model,
        layer,
        off,
        nt,
        clean_acts[kn],
        corr_acts[kn],
        q,
        extra[f"blocks.{layer}.attn.hook_attn_scores"],
        grads[pn],
    )


def _with_all_layers(items: pd.DataFrame) -> pd.DataFrame:
    """``items`` plus, where there are ``audio_kv`` rows, one ``layer == -1`` row per (encoder, pair): every layer
    at once, the sum of the first-order estimates (each layer's K/V is its own)."""
    per_layer = items[items["site"] == "audio_kv"]
    if len(per_layer):
        tot = (
            per_layer.groupby(["site", "encoder", "pair"], sort=False)
            .agg(
                clean_ld=("clean_ld", "first"),
                corrupted_ld=("corrupted_ld", "first"),
                atp=("atp", "sum"),
                atp_qk=("atp_qk", "sum"),
            )
            .reset_index()
            .assign(layer=-1, head=-1)
        )
        items = pd.concat([items, tot[ITEM_COLUMNS]], ignore_index=True)
    return items


def atp_batch(
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
    qk_fix: bool = True,
) -> pd.DataFrame:
    """AtP estimates of ``patched_ld - corrupted_ld`` for every site (module docstring): one row per (site,
    layer, head, encoder, pair), ``ITEM_COLUMNS``. Same arguments as :func:`patching.patch_batch`."""
    if backend != "transformer_lens":
        raise PatchingError(
            f"--method atp takes gradients through TransformerLens hooks: use --backend "
            f"transformer_lens (got {backend!r}); exact patching runs on either backend"
        )
    sites, encs = resolve_sites(model, sites, encoders)
    _check_same_prompt(model, clean_batch, corrupt_batch)
    layout = model.token_layout(corrupt_batch)
    specs = site_list(model, layout, sites, encs, layers)  # the same sites as exact patching, less its joint ones
    names = sorted({name for *_, hooks in specs for name, _ in hooks})
    qk_layers = sorted({l for site, l, *_ in specs if site == "audio_kv"}) if qk_fix else []
    q_hook = "hook_rot_q" if model.cfg.arch == "llama" else "hook_q"
    clean_logits, clean_acts = collect(model, clean_batch, names)
    ld_clean = answer_logit_diff(clean_logits, clean_batch, clean_ids, corrupt_ids).double().cpu()
    corr_acts, grads, extra, ld_corr = _corrupted_grads(
        model, corrupt_batch, clean_ids, corrupt_ids, names, qk_layers, q_hook
    )
    text_q = layout.text_positions()
    rows = []
    for site, layer, head, enc, hooks in specs:
        plain = sum(_dot(how, clean_acts[n] - corr_acts[n], grads[n], text_q, layout, enc) for n, how in hooks)
        fixed = plain
        if site == "audio_kv" and qk_fix:
            fixed = _qk_fixed(model, layer, hooks, clean_acts, corr_acts, grads, extra, q_hook, text_q, layout, enc)
        for b in range(ld_corr.shape[0]):
            rows.append(
                (
                    site,
                    layer,
                    head,
                    enc,
                    pair_offset + b,
                    float(ld_clean[b]),
                    float(ld_corr[b]),
                    float(plain[b]),
                    float(fixed[b]),
                )
            )
    return _with_all_layers(pd.DataFrame(rows, columns=ITEM_COLUMNS))


def atp_dataset(
    model,
    dataset,
    pairs: pd.DataFrame,
    sites=None,
    encoders=None,
    layers=None,
    backend: str = "transformer_lens",
    batch_size: int = 8,
    qk_fix: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """:func:`atp_batch` over the pairs of :func:`patching.make_pairs` (prompts only, left-padded)."""
    frames = []
    batches = pair_batches(dataset, pairs, batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=-(-len(pairs) // batch_size), desc="attribution patching", unit="batch")
    for i, clean, corrupt, clean_tok, corrupt_tok in batches:
        frames.append(
            atp_batch(
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
                qk_fix=qk_fix,
            )
        )
    return pd.concat(frames, ignore_index=True)


KEYS = ["site", "layer", "head", "encoder"]


def summarize_atp(atp_items: pd.DataFrame, exact_items: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per site: mean over pairs of the estimated effect (``atp``, ``atp_qk``; LD units) and, with exact patching
    items, the exact effect ``exact`` = mean(patched_ld - corrupted_ld); ``restored_*``: each divided by the
    mean (clean_ld - corrupted_ld), as in :func:`patching.summarize_patching`."""
    g = atp_items.groupby(KEYS, sort=False)
    out = g.agg(
        atp=("atp", "mean"),
        atp_qk=("atp_qk", "mean"),
        clean_ld=("clean_ld", "mean"),
        corrupted_ld=("corrupted_ld", "mean"),
        n_pairs=("pair", "nunique"),
    ).reset_index()
    den = out["clean_ld"] - out["corrupted_ld"]
    if exact_items is not None:
        ex = exact_items.assign(effect=exact_items["patched_ld"] - exact_items["corrupted_ld"])
        ex = ex.groupby(KEYS, sort=False)["effect"].mean().rename("exact").reset_index()
        out = out.merge(ex, on=KEYS, how="left")
    for c in ("atp", "atp_qk", "exact"):
        if c in out:
            out[f"restored_{c}"] = np.where(den != 0, out[c] / den.where(den != 0, 1), np.nan)
    return out


def agreement(summary: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """Per method (atp, atp_qk) and site group (every site, head_out, audio sites): Spearman correlation of the
    estimated with the exact effect over sites, and the overlap of the top-``top`` sites by |effect|."""
    rows = []
    s = summary[summary["layer"] >= 0].dropna(subset=["exact"]) if "exact" in summary else summary.iloc[0:0]
    groups = [
        ("all", s),
        ("head_out", s[s["site"] == "head_out"]),
        ("audio", s[s["site"].isin(["audio_kv", "resid_audio"])]),
    ]
    for method in ("atp", "atp_qk"):
        for name, g in groups:
            if len(g) < 2:
                continue
            rho = g[method].corr(g["exact"], method="spearman")
            k = min(top, len(g))
            est = set(g[method].abs().nlargest(k).index)
            ref = set(g["exact"].abs().nlargest(k).index)
            rows.append(
                {
                    "method": method,
                    "sites": name,
                    "spearman": float(rho),
                    "top_k": k,
                    "top_overlap": len(est & ref) / k,
                    "n_sites": len(g),
                    "max_abs_error": float((g[method] - g["exact"]).abs().max()),
                }
            )
    return pd.DataFrame(rows)


def atp_figure(summary: pd.DataFrame, title: str | None = None):
    """Estimated (AtP, AtP with QK fix) against exact patching effect per site, the diagonal dashed."""
    import plotly.graph_objects as go

    fig = go.Figure()
    s = summary[summary["layer"] >= 0]
    sym = {"head_out": "circle", "audio_kv": "diamond", "resid_audio": "square"}
    for method, color in (("atp", "#1f77b4"), ("atp_qk", "#d62728")):
        for site, g in s.groupby("site", sort=False):
            fig.add_trace(
                go.Scatter(
                    x=g["exact"],
                    y=g[method],
                    mode="markers",
                    name=f"{method}: {site}",
                    marker=dict(color=color, symbol=sym.get(site, "circle"), size=6, opacity=0.7),
                    text=[f"L{r.layer} H{r.head} {r.encoder}" for r in g.itertuples()],
                )
            )
    if len(s):
        lo = float(np.nanmin(s[["exact", "atp", "atp_qk"]].to_numpy()))
        hi = float(np.nanmax(s[["exact", "atp", "atp_qk"]].to_numpy()))
        fig.add_trace(
            go.Scatter(
                x=[lo, hi], y=[lo, hi], mode="lines", line=dict(dash="dash", color="#888"), name="estimate = exact"
            )
        )
    fig.update_xaxes(title_text="exact patching effect (Δ logit difference, logits)")
    fig.update_yaxes(title_text="attribution-patching estimate (Δ logit difference, logits)")
    n = int(summary["n_pairs"].max()) if len(summary) else 0
    fig.update_layout(title=title or "Attribution patching vs exact patching", template="plotly_white", height=560)
    return add_caption(
        fig,
        f"Each point is one site (head output, audio K/V or audio residual of one layer), mean over "
        f"{n} clean/corrupted pairs of the change of LD = logit(clean answer) − logit(corrupted "
        "answer) when the clean activation is patched in. Blue: plain AtP (gradient times "
        "difference); red: AtP with the QK fix (audio keys' attention recomputed exactly).",
    )
