"""Audio-minus-silence steering: does pushing the final representation towards "what audio adds" help?

Direction. Over the rows of a *validation* split, the mean difference of the final layer's residual
(``blocks.{L-1}.hook_resid_post``) at the last prompt token between the real audio and silence of the same
length (:func:`steering_vector`, [d_model]). Heads variant: for each of the top listening heads, the mean
difference of its ``hook_z`` at that position ([D] per head, :func:`head_steering_vectors`).

Steering. At inference ``alpha`` times the direction is added at the last prompt token (the position that
predicts the first answer token): to ``blocks.{L-1}.hook_resid_post`` (mode ``resid``), or to each chosen
head's ``z`` in its layer (mode ``heads``). ``alpha = 0`` leaves every number unchanged (x + 0 = x).

Evaluation (closed rows with an option list): option accuracy (the right option's first token has the
largest logit among the options) and the right option's log-probability (nats, full vocabulary). ``alpha``
is chosen on the validation split (best option accuracy; ties: larger mean log-probability, then the
smaller |alpha|), and the gain is measured on the *test* split against alpha = 0 on the same rows, with a
95% paired bootstrap interval over rows.

API: :func:`steering_vector`, :func:`head_steering_vectors`, :func:`steering_interventions`,
:func:`steered_metrics`, :func:`steer`, :func:`steering_figure`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

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
from workbench.analysis.core import collect, last_prompt_index, run_with_interventions
from workbench.analysis.figures import add_caption
from workbench.analysis.listening import option_correct
from workbench.stats.bootstrap import bootstrap_ci

__all__ = [
    "MODES",
    "DEFAULT_ALPHAS",
    "check_alpha",
    "steering_vector",
    "head_steering_vectors",
    "steering_interventions",
    "steered_metrics",
    "steer",
    "steering_figure",
]

MODES = ("resid", "heads")
DEFAULT_ALPHAS = (-4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0)


def check_alpha(alpha) -> float:
    """alpha as a float, or a clear error when it is not a finite number."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        a = math.nan
    if not math.isfinite(a):
        raise AudioAnalysisError(
            f"steering scale alpha must be a finite number, got {alpha!r}; pass e.g. --alphas -2,-1,0,1,2"
        )
    return a


@torch.no_grad()
def steering_vector(
    model,
    dataset,
    indices: Sequence[int] | None = None,
    silence: str | Callable = "encoder",
    *,
    backend: str = "transformer_lens",
    batch_size: int = 8,
) -> torch.Tensor:
    """[d_model] mean over rows of final-layer residual (audio) - (silence) at the last prompt token."""
    require_audio(model, "audio-silence steering")
    name = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    sil = make_silence(model, dataset, silence)
    idx = list(range(len(dataset))) if indices is None else list(indices)
    total: torch.Tensor | None = None
    n = 0
    for _, a, s in paired_batches(dataset, idx, sil, batch_size):
        pos = last_prompt_residual_index(model, a)
        ar = torch.arange(pos.shape[0])
        ra = collect(model, a, [name], backend=backend)[1][name][ar, pos]
        rs = collect(model, s, [name], backend=backend)[1][name][ar, pos]
        d = (ra - rs).double().sum(0)
        total = d if total is None else total + d
        n += pos.shape[0]
    if total is None:
        raise AudioAnalysisError("steering_vector needs at least one row (indices is empty)")
    return (total / n).to(model.dtype)


@torch.no_grad()
def head_steering_vectors(
    model,
    dataset,
    heads: Sequence[tuple[int, int]],
    indices: Sequence[int] | None = None,
    silence: str | Callable = "encoder",
    *,
    backend: str = "transformer_lens",
    batch_size: int = 8,
) -> dict[tuple[int, int], torch.Tensor]:
    """{(layer, head): [d_head] mean over rows of z (audio) - z (silence) at the last prompt token}."""
    require_audio(model, "audio-silence steering")
    if not heads:
        raise AudioAnalysisError("mode 'heads' needs at least one head (e.g. the top listening heads)")
    names = sorted({f"blocks.{l}.attn.hook_z" for l, _ in heads})
    sil = make_silence(model, dataset, silence)
    idx = list(range(len(dataset))) if indices is None else list(indices)
    sums: dict = {}
    n = 0
    for _, a, s in paired_batches(dataset, idx, sil, batch_size):
        pos = last_prompt_residual_index(model, a)
        ar = torch.arange(pos.shape[0])
        za, zs = collect(model, a, names, backend=backend)[1], collect(model, s, names, backend=backend)[1]
        for l, h in heads:
            nm = f"blocks.{l}.attn.hook_z"
            d = (za[nm][ar, pos, h] - zs[nm][ar, pos, h]).double().sum(0)
            sums[(l, h)] = sums[(l, h)] + d if (l, h) in sums else d
        n += pos.shape[0]
    return {k: (v / n).to(model.dtype) for k, v in sums.items()}


def steering_interventions(
    model, batch, alpha: float, vector: torch.Tensor | None = None, head_vectors: dict | None = None
):
    """Interventions adding ``alpha`` x the direction at the last prompt token: the residual vector to the final
    layer's ``hook_resid_post`` (``vector``), or each head's vector to its ``hook_z`` (``head_vectors``)."""
    alpha = check_alpha(alpha)
    pos = last_prompt_residual_index(model, batch)

    def add(v, head=None):
        def fn(x):  # resid [B, S, M] or z [B, S, H, D]
            x = x.clone()
            ar = torch.arange(x.shape[0], device=x.device)
            p = pos.to(x.device)
            if head is None:
                x[ar, p] = x[ar, p] + alpha * v.to(x.device, x.dtype)
            else:
                x[ar, p, head] = x[ar, p, head] + alpha * v.to(x.device, x.dtype)
            return x

        return fn

    if (vector is None) == (head_vectors is None):
        raise AudioAnalysisError("pass exactly one of vector (mode resid) or head_vectors (mode heads)")
    if vector is not None:
        return [(f"blocks.{model.cfg.n_layers - 1}.hook_resid_post", add(vector))]
    assert head_vectors is not None  # exactly one of the two is given (checked above)
    return [(f"blocks.{l}.attn.hook_z", add(v, h)) for (l, h), v in sorted(head_vectors.items())]


@torch.no_grad()
def steered_metrics(
    model,
    dataset,
    indices: Sequence[int],
    toks: dict,
    alpha: float,
    *,
    vector=None,
    head_vectors=None,
    backend: str = "transformer_lens",
    batch_size: int = 8,
) -> pd.DataFrame:
    """Per row: ``row``, ``option_correct`` (0/1), ``right_logprob`` (nats) with the steering active."""
    out = []
    for i in range(0, len(indices), batch_size):
        idx = list(indices[i : i + batch_size])
        batch = dataset.collate_fn([dataset[j] for j in idx])
        ivs = steering_interventions(model, batch, alpha, vector, head_vectors)
        logits = run_with_interventions(model, batch, ivs, backend=backend)
        rights = [next(o for o in toks[j] if o.lower() == str(dataset.rows[j]["answer"]).strip().lower()) for j in idx]
        corr = option_correct(model, batch, logits, [toks[j] for j in idx], rights)
        lp = last_prompt_index(batch).to(logits.device)
        logp = torch.log_softmax(logits[torch.arange(len(idx)), lp].double(), -1)
        for b, j in enumerate(idx):
            out.append({"row": j, "option_correct": corr[b], "right_logprob": float(logp[b, toks[j][rights[b]]])})
    return pd.DataFrame(out)


def _choose(val: pd.DataFrame) -> float:
    best = val.sort_values(["accuracy", "right_logprob", "abs_alpha"], ascending=[False, False, True])
    return float(best["alpha"].iloc[0])


def _split_row(mode: str, split: str, alpha: float, m: pd.DataFrame) -> dict:
    """One ``val``/``test`` row: option accuracy and mean right-answer log-probability of the rows ``m``."""
    return {
        "mode": mode,
        "split": split,
        "alpha": alpha,
        "abs_alpha": abs(alpha),
        "accuracy": float(m["option_correct"].mean()),
        "right_logprob": float(m["right_logprob"].mean()),
        "n": len(m),
    }


def _gain_rows(mode: str, best: float, test: dict, resamples: int, seed: int) -> list[dict]:
    """The two ``gain`` rows of a mode: test gain of alpha ``best`` over alpha = 0, paired bootstrap interval."""
    rows = []
    for metric, col in (("accuracy", "option_correct"), ("right_logprob", "right_logprob")):
        d = test[best][col].to_numpy(float) - test[0.0][col].to_numpy(float)
        lo, hi = bootstrap_ci(d, resamples, seed)
        rows.append(
            {
                "mode": mode,
                "split": "gain",
                "alpha": best,
                "abs_alpha": abs(best),
                "metric": metric,
                "gain": float(d.mean()),
                "ci_low": lo,
                "ci_high": hi,
                "n": len(d),
            }
        )
    return rows


def _steer_mode(model, mode, val_dataset, test_dataset, v_sel, t_sel, alphas, heads, silence, kw, progress):
    """The val rows (one per alpha), the test rows (alpha = 0 and the chosen one) of one mode; and the chosen
    alpha and the test metrics per alpha."""
    (v_idx, v_toks), (t_idx, t_toks) = v_sel, t_sel
    dirs: dict[str, Any]
    if mode == "resid":
        dirs = {"vector": steering_vector(model, val_dataset, v_idx, silence, **kw)}
    else:
        dirs = {"head_vectors": head_steering_vectors(model, val_dataset, list(heads), v_idx, silence, **kw)}
    it = alphas
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(alphas, desc=f"steering ({mode}) on validation")
    rows = [_split_row(mode, "val", a, steered_metrics(model, val_dataset, v_idx, v_toks, a, **dirs, **kw)) for a in it]
    best = _choose(pd.DataFrame(rows))
    test = {a: steered_metrics(model, test_dataset, t_idx, t_toks, a, **dirs, **kw) for a in sorted({0.0, best})}
    rows += [_split_row(mode, "test", a, m) for a, m in test.items()]
    return rows, best, test


def steer(
    model,
    val_dataset,
    test_dataset,
    answer_options: dict,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    modes: Sequence[str] = ("resid",),
    heads: Sequence[tuple[int, int]] = (),
    silence: str | Callable = "encoder",
    option_ids: dict | None = None,
    backend: str = "transformer_lens",
    batch_size: int = 8,
    resamples: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """The whole protocol (module docstring). One row per (mode, split, alpha): ``accuracy``, ``right_logprob``,
    ``n``, ``chosen``; plus per mode two ``split == "gain"`` rows (metric accuracy / right_logprob: test gain of
    the chosen alpha over alpha = 0, with ``ci_low``/``ci_high``)."""
    require_audio(model, "audio-silence steering")
    alphas = sorted({check_alpha(a) for a in alphas} | {0.0})
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise AudioAnalysisError(f"unknown steering mode(s) {bad or list(modes)}; choose from {MODES}")
    v_sel = closed_rows_with_options(val_dataset, answer_options, None, option_ids)
    t_sel = closed_rows_with_options(test_dataset, answer_options, None, option_ids)
    kw: dict[str, Any] = dict(backend=backend, batch_size=batch_size)
    rows = []
    for mode in modes:
        mode_rows, best, test = _steer_mode(
            model, mode, val_dataset, test_dataset, v_sel, t_sel, alphas, heads, silence, kw, progress
        )
        rows += mode_rows + _gain_rows(mode, best, test, resamples, seed)
    df = pd.DataFrame(rows)
    chosen = df[df["split"] == "gain"].drop_duplicates("mode").set_index("mode")["alpha"]
    df["chosen"] = [r.split != "gain" and r.alpha == chosen.get(r.mode) for r in df.itertuples()]
    return df.drop(columns="abs_alpha")


def steering_figure(table: pd.DataFrame, title: str | None = None):
    """Left: validation option accuracy against alpha per mode (chosen alpha marked); right: test gain of the
    chosen alpha over alpha = 0 with its 95% paired interval."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation: choosing alpha", "test: gain over alpha = 0"))
    if "variant" not in table:
        table = table.assign(variant="model")
    for (variant, mode), g in table[table["split"] == "val"].groupby(["variant", "mode"], sort=False):
        g = g.sort_values("alpha")
        fig.add_trace(
            go.Scatter(x=g["alpha"], y=g["accuracy"], mode="lines+markers", name=f"{variant} / {mode}"), row=1, col=1
        )
    gain = table[(table["split"] == "gain") & (table["metric"] == "accuracy")]
    labels = [f"{r.variant} / {r.mode} (α={r.alpha:g})" for r in gain.itertuples()]
    fig.add_trace(
        go.Bar(
            x=labels,
            y=gain["gain"] * 100,
            showlegend=False,
            error_y=dict(
                type="data",
                symmetric=False,
                array=(gain["ci_high"] - gain["gain"]) * 100,
                arrayminus=(gain["gain"] - gain["ci_low"]) * 100,
            ),
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text="alpha (scale of the direction)", row=1, col=1)
    fig.update_yaxes(title_text="option accuracy (fraction)", row=1, col=1)
    fig.update_xaxes(title_text="variant / mode (chosen alpha)", row=1, col=2)
    fig.update_yaxes(title_text="Δ option accuracy (percentage points)", row=1, col=2)
    n = int(gain["n"].max()) if len(gain) else 0
    fig.update_layout(title=title or "Audio-minus-silence steering", template="plotly_white", height=500, width=1000)
    return add_caption(
        fig,
        "Direction: mean (audio − silence) final-layer residual at the last prompt token on the "
        "validation split (mode heads: the top listening heads' z), added times alpha at that "
        f"token. Alpha chosen on validation; gain on {n} test rows against alpha = 0 on the same "
        "rows, 95% paired bootstrap interval.",
    )
