"""Attribute lens (AudioLens-style): at which layer does the model know the auditory attribute a closed question
asks about?

Readout. For a closed row whose attribute has an option list (``answer_options.json``), the residual stream
after layer l (``blocks.{l}.hook_resid_post``) at a position is decoded with the model's own ``ln_final`` and
unembedding, and scored over the attribute's options only: the logit of each option's first answer token
(:func:`workbench.analysis.audio_conditions.option_tokens`), softmaxed over the options. Positions:
``last_prompt`` (the token that predicts the first answer token; residual index from ``model.token_layout``)
and, for each PLITS encoder e, ``audio:e`` (the option probabilities averaged over e's real audio positions,
from e's insertion layer on).

Per (row, condition, position, layer): ``prob`` = the right option's probability among the options,
``correct`` = the right option's logit is strictly larger than every other option's (ties, e.g. a zero
residual, are not correct), ``top`` = the option with the largest logit.

**Critical layer** of a row (per condition and position): the smallest analysed layer l such that the right
option is ``correct`` at l and at every analysed layer after l, i.e. the layer from which the attribute stays
resolved to the end; NaN when it is not correct at the last analysed layer. (AudioLens defines a critical layer
from its own information score; ours is this "stays top-1 among the options" rule.)

``final_correct`` splits rows by the model's own answer: the lens at the last layer, last prompt position,
with audio, is the model's first-token choice among the options; right or wrong.

Conditions: ``audio`` (the model as it is), ``silence`` (the same rows with silence of the same length in place
of the audio, :func:`~workbench.analysis.audio_conditions.make_silence`), ``blocked`` (text queries cannot
attend to audio keys: :func:`~workbench.analysis.core.block_audio_interventions`).

API: :func:`attribute_lens` (tidy per-row frame), :func:`critical_layers`, :func:`summarize_lens`,
:func:`attribute_lens_figure` (one figure across variants), :func:`run_attribute_lens_command`
(``python -m workbench.attribute_lens``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from workbench.analysis.audio_conditions import (
    AudioAnalysisError,
    closed_rows_with_options,
    last_prompt_residual_index,
    make_silence,
    paired_batches,
    require_audio,
)
from workbench.analysis.cli import run_per_checkpoint, variant_first
from workbench.analysis.core import block_audio_interventions, collect, write_outputs
from workbench.analysis.figures import add_caption
from workbench.evaluation.evaluator import load_answer_options

__all__ = [
    "CONDITIONS",
    "attribute_lens",
    "critical_layers",
    "summarize_lens",
    "attribute_lens_figure",
    "run_attribute_lens_command",
]

CONDITIONS = ("audio", "silence", "blocked")
COLUMNS = ["example", "row_id", "attribute", "condition", "position", "layer", "right", "top", "prob", "correct"]


def _option_logits(model, x: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """x [..., M] residual -> [..., n_options] logits of the option tokens (ln_final, then unembedding rows)."""
    w = model.unembed.weight[torch.as_tensor(ids, device=model.unembed.weight.device)]  # [n, M]
    out = model.ln_final(x.to(w.dtype)) @ w.T
    bias = getattr(model.unembed, "bias", None)
    return (out + bias[ids] if bias is not None else out).double()


def _score(model, resid: torch.Tensor, ids: list[int], right: int, mask: torch.Tensor | None = None):
    """resid [L, M] or [L, N, M] (audio positions, with mask [N]) -> (prob [L], correct [L], top [L])."""
    logits = _option_logits(model, resid, ids)  # [L, n] or [L, N, n]
    if logits.ndim == 3:
        if mask is None:
            raise ValueError("resid [L, N, M] (audio positions) needs their mask [N]")
        keep = mask.to(logits.device).bool()
        probs = torch.softmax(logits[:, keep], -1).mean(1)  # [L, n]
        logits = probs.log()
    else:
        probs = torch.softmax(logits, -1)
    others = torch.cat([logits[:, :right], logits[:, right + 1 :]], 1)
    correct = (
        logits[:, right] > others.max(1).values if others.shape[1] else torch.ones_like(logits[:, 0], dtype=torch.bool)
    )
    return probs[:, right], correct, logits.argmax(1)


def _item_sites(layers, stack, b: int, last, layout, plits) -> list[tuple]:
    """The positions read for item b: (name, layers, residuals [L', (N,) M], audio mask or None); the last
    prompt token at every layer and each PLITS encoder's audio positions from its injection layer on."""
    sites = [("last_prompt", layers, stack[:, b, int(last[b])], None)]
    for e in plits:
        a = layout.audio[e]
        ls = [j for j, l in enumerate(layers) if l >= a.layer]
        if ls and a.n_tokens and bool(a.mask[b].any()):
            res = stack[ls][:, b][:, a.residual_index[b].to(stack.device)]  # [L', N, M]
            sites.append((f"audio:{e}", [layers[j] for j in ls], res, a.mask[b]))
    return sites


def _lens_rows(model, dataset, toks, idx, batch, cond: str, layers, names, plits, backend: str) -> list[tuple]:
    """The ``COLUMNS`` tuples of one batch (rows ``idx``) under one condition."""
    ivs = block_audio_interventions(model, batch) if cond == "blocked" else []
    _, acts = collect(model, batch, names, backend=backend, interventions=ivs)
    stack = torch.stack([acts[n] for n in names])  # [L, B, S, M]
    last = last_prompt_residual_index(model, batch)
    layout = model.token_layout(batch)
    rows = []
    for b, i in enumerate(idx):
        r = dataset.rows[i]
        opts = list(toks[i])
        right = [o.lower() for o in opts].index(str(r["answer"]).strip().lower())
        ids = [toks[i][o] for o in opts]
        for pos, ls, resid, mask in _item_sites(layers, stack, b, last, layout, plits):
            prob, correct, top = _score(model, resid, ids, right, mask)
            for j, l in enumerate(ls):
                rows.append(
                    (
                        i,
                        str(r.get("row_id", i)),
                        str(r.get("attribute")),
                        cond,
                        pos,
                        l,
                        opts[right],
                        opts[int(top[j])],
                        float(prob[j]),
                        bool(correct[j]),
                    )
                )
    return rows


def _with_critical_and_final(df: pd.DataFrame, last_layer: int) -> pd.DataFrame:
    """``df`` with ``critical_layer`` and ``final_correct`` (the audio answer at the last prompt token and the
    last analysed layer; NaN without the audio condition) joined in."""
    crit = critical_layers(df)
    df = df.merge(crit, on=["example", "condition", "position"], how="left")
    final = df[(df["condition"] == "audio") & (df["position"] == "last_prompt") & (df["layer"] == last_layer)]
    if len(final):
        df = df.merge(
            final[["example", "correct"]].rename(columns={"correct": "final_correct"}), on="example", how="left"
        )
    else:  # without the audio condition the split is by the blocked/silent answer's own final layer: not defined
        df["final_correct"] = np.nan
    return df


@torch.no_grad()
def attribute_lens(
    model,
    dataset,
    answer_options: dict,
    attribute: str | None = None,
    *,
    layers: Sequence[int] | None = None,
    conditions: Sequence[str] = CONDITIONS,
    silence: str | Callable[[dict], dict] = "encoder",
    audio_positions: bool = True,
    backend: str = "transformer_lens",
    batch_size: int = 8,
    option_ids: dict | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Per (row, condition, position, layer) the right option's probability among the options and whether it is
    top-1 (module docstring), with ``critical_layer`` and ``final_correct`` joined in.

    answer_options: ``{attribute: [option, ...]}`` (the dataset's ``answer_options.json``); attribute: only rows
    asking about it (default every attribute with an option list); silence: ``"encoder"``, ``"zeros"`` or a
    function item -> item; option_ids: ``{attribute: {option: token}}`` instead of the tokenizer."""
    require_audio(model, "the attribute lens")
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad or not conditions:
        raise AudioAnalysisError(f"unknown condition(s) {bad or list(conditions)}; choose from {CONDITIONS}")
    layers = list(range(model.cfg.n_layers)) if layers is None else sorted(model.check_layer(int(l)) for l in layers)
    keep, toks = closed_rows_with_options(dataset, answer_options, attribute, option_ids)
    sil = make_silence(model, dataset, silence) if "silence" in conditions else (lambda it: it)
    names = [f"blocks.{l}.hook_resid_post" for l in layers]
    plits = model.encoders_in_mode("plits") if audio_positions else []
    it = paired_batches(dataset, keep, sil, batch_size)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=-(-len(keep) // batch_size), desc="attribute lens")
    rows = []
    for idx, audio_b, silent_b in it:
        for cond in conditions:
            batch = silent_b if cond == "silence" else audio_b
            rows += _lens_rows(model, dataset, toks, idx, batch, cond, layers, names, plits, backend)
    return _with_critical_and_final(pd.DataFrame(rows, columns=COLUMNS), max(layers))


def critical_layers(df: pd.DataFrame) -> pd.DataFrame:
    """Per (example, condition, position): ``critical_layer`` (module docstring; NaN if not resolved at the last
    analysed layer)."""
    out = []
    for (ex, cond, pos), g in df.groupby(["example", "condition", "position"], sort=False):
        g = g.sort_values("layer")
        ok = g["correct"].to_numpy(bool)
        ls = g["layer"].to_numpy()
        crit = np.nan
        if len(ok) and ok[-1]:
            j = len(ok) - 1
            while j > 0 and ok[j - 1]:
                j -= 1
            crit = float(ls[j])
        out.append((ex, cond, pos, crit))
    return pd.DataFrame(out, columns=["example", "condition", "position", "critical_layer"])


def summarize_lens(df: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Per ([by...,] condition, position, split, layer): ``accuracy`` (fraction top-1 among the options),
    ``prob`` (mean right-option probability), its ``prob_sem``, ``n``; plus per (.., split) the critical layer's
    ``critical_median`` and ``resolved`` (fraction with a critical layer). split: all / right / wrong (the
    model's final answer)."""
    parts = [df.assign(split="all")]
    if "final_correct" in df and df["final_correct"].notna().any():
        parts += [
            df[df["final_correct"] == True].assign(split="right"),  # noqa: E712 - object column
            df[df["final_correct"] == False].assign(split="wrong"),  # noqa: E712 - object column
        ]
    d = pd.concat(parts, ignore_index=True)
    keys = [*by, "condition", "position", "split"]
    g = d.groupby([*keys, "layer"], sort=True)
    out = g.agg(
        accuracy=("correct", "mean"), prob=("prob", "mean"), prob_std=("prob", "std"), n=("prob", "size")
    ).reset_index()
    out["prob_sem"] = out["prob_std"] / np.sqrt(out["n"])
    per_ex = d.drop_duplicates([*keys, "example"])
    crit = per_ex.groupby(keys, sort=True).agg(
        critical_median=("critical_layer", "median"), resolved=("critical_layer", lambda s: float(s.notna().mean()))
    )
    return out.drop(columns="prob_std").merge(crit.reset_index(), on=keys, how="left")


def _add_lens_variant(fig, s: pd.DataFrame, variant: str, color: str, crit: tuple[list, list, list]) -> None:
    """One variant's traces from its :func:`summarize_lens` table ``s``: accuracy and probability per condition
    (top row), audio accuracy by final answer (bottom left); its critical layers appended to ``crit``."""
    import plotly.graph_objects as go

    dash = {"audio": "solid", "silence": "dash", "blocked": "dot"}
    crit_x, crit_y, crit_c = crit
    for cond, g in s[s["split"] == "all"].groupby("condition", sort=False):
        g = g.sort_values("layer")
        for col, val in ((1, "accuracy"), (2, "prob")):
            fig.add_trace(
                go.Scatter(
                    x=g["layer"],
                    y=g[val],
                    mode="lines",
                    line=dict(color=color, dash=dash.get(cond)),
                    name=f"{variant}: {cond}",
                    legendgroup=f"{variant}:{cond}",
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        crit_x.append(f"{variant}: {cond}")
        crit_y.append(float(g["critical_median"].iloc[0]) if g["critical_median"].notna().any() else None)
        crit_c.append(color)
    for split, d in (("right", "solid"), ("wrong", "dashdot")):
        g = s[(s["split"] == split) & (s["condition"] == "audio")].sort_values("layer")
        if len(g):
            fig.add_trace(
                go.Scatter(
                    x=g["layer"],
                    y=g["accuracy"],
                    mode="lines",
                    line=dict(color=color, dash=d),
                    name=f"{variant}: answered {split} (n={int(g['n'].max())})",
                ),
                row=2,
                col=1,
            )


def _label_lens_axes(fig) -> None:
    for col in (1, 2):
        fig.update_xaxes(title_text="layer (index; residual after the layer)", row=1, col=col)
    fig.update_xaxes(title_text="layer (index; residual after the layer)", row=2, col=1)
    fig.update_xaxes(title_text="variant: condition (label)", row=2, col=2)
    fig.update_yaxes(title_text="accuracy (fraction)", row=1, col=1)
    fig.update_yaxes(title_text="probability (0..1, over options)", row=1, col=2)
    fig.update_yaxes(title_text="accuracy (fraction)", row=2, col=1)
    fig.update_yaxes(title_text="critical layer (layer index)", row=2, col=2)


def attribute_lens_figure(
    frames: dict[str, pd.DataFrame] | pd.DataFrame, title: str | None = None, position: str = "last_prompt"
):
    """One figure across variants: per layer, top-1 accuracy among the options (left) and the right option's
    mean probability (right); solid: with audio, dashed: silence, dotted: audio blocked; bottom row: with audio,
    rows the model finally answers right (solid) vs wrong (dash-dot). ``frames``: {variant: attribute_lens
    frame} or one frame."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    if isinstance(frames, pd.DataFrame):
        frames = {"model": frames}
    fig = make_subplots(
        rows=2,
        cols=2,
        vertical_spacing=0.16,
        horizontal_spacing=0.14,
        subplot_titles=(
            "top-1 among options",
            "P(right option)",
            "with audio, by final answer",
            "critical layer (median)",
        ),
    )
    crit_x: list = []
    crit_y: list = []
    crit_c: list = []
    n_rows = 0
    for k, (variant, df) in enumerate(frames.items()):
        color = qualitative.Plotly[k % len(qualitative.Plotly)]
        s = summarize_lens(df[df["position"] == position])
        n_rows = max(n_rows, int(s["n"].max()) if len(s) else 0)
        _add_lens_variant(fig, s, variant, color, (crit_x, crit_y, crit_c))
    fig.add_trace(go.Bar(x=crit_x, y=crit_y, marker_color=crit_c, showlegend=False), row=2, col=2)
    _label_lens_axes(fig)
    fig.update_layout(
        title=title or f"Attribute lens at the {position} position", template="plotly_white", height=820, width=1150
    )
    return add_caption(
        fig,
        f"Each layer's residual at the {position} position decoded with the final norm and unembedding and "
        f"scored over the attribute's answer options only (first answer token of each option), up to {n_rows} "
        "rows per variant. Solid: with audio; dashed: silence of the same length; dotted: audio blocked. "
        "Critical layer: first layer from which the right option stays top-1 among the options to the last "
        "layer (median over resolved rows).",
    )


def run_attribute_lens_command(a: argparse.Namespace) -> int:
    """``python -m workbench.attribute_lens`` with parsed arguments ``a``: the lens of every checkpoint, written
    to ``OUT_DIR/attribute_lens.csv`` (+ .html/.png) and ``attribute_lens_items.csv``; its exit code."""
    frames, summaries = {}, []

    def one(variant, model, ds):
        df = attribute_lens(
            model,
            ds,
            load_answer_options(ds.root),
            a.attribute,
            silence=a.silence,
            backend=a.backend,
            batch_size=a.batch_size,
            progress=True,
        )
        frames[variant] = df
        summaries.append(summarize_lens(df).assign(variant=variant))

    rc = run_per_checkpoint(a, one)
    if rc:
        return rc
    summary = variant_first(summaries)
    items = variant_first(d.assign(variant=v) for v, d in frames.items())
    title = "Attribute lens: when does each variant resolve the attribute?" + (
        f" ({a.attribute})" if a.attribute else ""
    )
    out = write_outputs(summary, attribute_lens_figure(frames, title), a.out_dir, "attribute_lens", png=not a.no_png)
    write_outputs(items, None, a.out_dir, "attribute_lens_items")
    s = summary[(summary["position"] == "last_prompt") & (summary["split"] == "all")]
    crit = s.drop_duplicates(["variant", "condition"])[["variant", "condition", "critical_median", "resolved"]]
    last = s[s["layer"] == s["layer"].max()][["variant", "condition", "accuracy"]]
    print(crit.merge(last, on=["variant", "condition"]).to_string(index=False))
    print("wrote " + ", ".join(str(v) for v in out.values()))
    return 0
