"""Every figure builder: each axis that shows data has a title with its unit in parentheses, each colour bar a
title with its unit, and the figure a caption (``layout.meta["caption"]`` and an annotation under the plot).

Frames come from the real analysis functions on the tiny random PAL models (attention, logit lens, patching)
or from the real summarising functions on small hand-made per-row tables (ablation, comparison); the probe
and injection-layer curve tables are hand-made with the exact columns the builders read.
"""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
import torch

from tests.analysis.tiny_pal import DIMS, make_qa_batch, model
from tests.evaluation.conftest import synthetic_answers
from workbench.analysis import ablation as AB
from workbench.analysis import ablation_figures as ABF
from workbench.analysis import attention as A
from workbench.analysis import logit_lens as LL
from workbench.analysis import patching as P
from workbench.analysis import probes as PR
from workbench.analysis.figures import CAPTION_NAME, add_caption, caption_from_html, caption_of
from workbench.claims import compare as C
from workbench.claims import layer_curve as LC
from workbench.reporting import forest as F


# ---------------------------------------------------------------------------------------------- frames
@pytest.fixture(scope="module")
def attention_frames():
    m = model("ensemble")
    batch = make_qa_batch("ensemble", lengths=(9, 7))
    return A.attention_to_audio(m, batch), A.attention_tokens(m, batch, layer=1, head=0, example=0)


@pytest.fixture(scope="module")
def lens_frame():
    return LL.logit_lens(model("lal"), [make_qa_batch("lal", seed=0), make_qa_batch("lal", seed=1)])


@pytest.fixture(scope="module")
def patching_summary():
    from tests.analysis.fakes import fake_batch_pair

    clean, corr = fake_batch_pair({"mel": DIMS["mel"]})
    items = P.patch_batch(
        model("lal"), clean, corr, torch.tensor([5, 6]), torch.tensor([7, 8]), "audio_kv,head_out,connector"
    )
    return P.summarize_patching(items)


def _item_rows(n=12, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(n)],
            "task": np.where(np.arange(n) % 2, "cls", "qa"),
            "attribute": np.where(np.arange(n) % 3, "pitch_class", "category"),
            "closed": True,
            "logprob": rng.normal(-2 + shift, 0.5, n),
            "correct": (rng.random(n) < 0.6 + shift / 4) * 1.0,
        }
    )


def ablation_table(layer_start=0, shift=-1.0):
    base, abl = _item_rows(seed=0), _item_rows(seed=0, shift=shift)
    return AB.summarize_items(base, abl, mode="zero", encoder="mel", layer_start=layer_start, layer_end=1)


def probe_frame():
    rows = []
    for kind, layer, enc, hook in (
        ("encoder", None, "mel", "encoders.mel.hook_out"),
        ("connector", None, "mel", "connectors.mel.hook_out"),
    ):
        rows.append({"site": hook, "kind": kind, "layer": layer, "position": None, "encoder": enc, "hook": hook})
    for layer in range(3):
        for pos in ("before_slot", "last_prompt"):
            rows.append(
                {
                    "site": f"blocks.{layer}.hook_resid_post@{pos}",
                    "kind": "resid",
                    "layer": layer,
                    "position": pos,
                    "encoder": None,
                    "hook": f"blocks.{layer}.hook_resid_post",
                }
            )
        rows.append(
            {
                "site": f"blocks.{layer}.attn.hook_audio_k",
                "kind": "audio_k",
                "layer": layer,
                "position": None,
                "encoder": "mel",
                "hook": f"blocks.{layer}.attn.hook_audio_k",
            }
        )
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rows)
    v = rng.uniform(0.3, 0.95, len(df))
    return df.assign(
        attribute="pitch_class",
        task="classification",
        metric="accuracy",
        value=v,
        ci_low=v - 0.05,
        ci_high=v + 0.05,
        fold_std=0.02,
        majority=1 / 3,
        control=0.34,
        control_ci_low=0.3,
        control_ci_high=0.38,
        selectivity=v - 0.34,
        n=60,
        n_classes=3,
        folds=4,
        dim=16,
        control_type="random_identity",
    )


def compare_tables():
    base = synthetic_answers(60, 0.55, seed=0)
    other = synthetic_answers(60, 0.8, seed=1, base=base)
    items = {"baseline": C.item_scores(base), "lal": C.item_scores(other)}
    chances = C._chances(base, {"has_speech": ["yes", "no"], "is_loud": ["yes", "no"]})
    table, resampled = C.bootstrap_table(items, resamples=50, seed=0, chances=chances)
    return table, C.paired_differences(resampled, "baseline")


def layer_curve_summary() -> pd.DataFrame:
    rows = [
        {
            "mode": m,
            "layer": l,
            "family": f,
            "accuracy": a,
            "ci_low": a - 0.05,
            "ci_high": a + 0.05,
            "n_seeds": 2,
            "seeds": "0,1",
            "n_clips": 240,
            "n_rows": 1384,
            "splits": "test+test-seed1",
            "method": "two-level",
        }
        for m, base in (("plits", 0.5), ("lal", 0.6))
        for l in (0, 8, 16)
        for f, a in (
            ("all attributes", base + l / 100),
            ("spoken word", base),
            ("pitch", base - 0.1),
            ("category", base + 0.2),
            ("count", base - 0.2),
        )
    ]
    return pd.DataFrame(rows)


def one_seed_curve() -> pd.DataFrame:
    """The curve of one mode and one training seed (``workbench.sweep injection-layer`` without --modes/--seeds)."""
    one = layer_curve_summary().query("mode == 'plits'")
    return one.assign(n_seeds=1, seeds="0", method="clip bootstrap (1 training seed: seed variance not covered)")


def layer_curve_gains() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "mode": m,
                "family": "all attributes",
                "versus": "first",
                "reference_layer": 0,
                "layer": l,
                "difference": d,
                "ci_low": d - 0.03,
                "ci_high": d + 0.03,
            }
            for m in ("plits", "lal")
            for l, d in ((8, 0.08), (16, 0.16))
        ]
    )


def forest_table() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "claim": "Claim 1, delayed integration",
                "contrast": "delayed − baseline",
                "scope": s,
                "diff": d,
                "ci_low": d - w,
                "ci_high": d + w,
                "verdict": v,
            }
            for s, d, w, v in (("seed 0 alone", 0.15, 0.04, "agree"), ("all seeds (3)", 0.09, 0.1, "inconclusive"))
        ]
    )


def all_figures(attention_frames, lens_frame, patching_summary) -> dict:
    att, tok = attention_frames
    sweep = pd.concat([ablation_table(l).assign(span="from") for l in (0, 1)], ignore_index=True)
    table, diffs = compare_tables()
    return {
        "attention.fig_heatmap": A.fig_heatmap(att),
        "attention.fig_heatmap(mass)": A.fig_heatmap(att, value="mass"),
        "attention.fig_layers": A.fig_layers(att),
        "attention.fig_tokens": A.fig_tokens(tok),
        "logit_lens.fig_logit_lens": LL.fig_logit_lens(lens_frame),
        "probes.probe_figure": PR.probe_figure(probe_frame()),
        "ablation_figures.ablation_figure": ABF.ablation_figure(ablation_table()),
        "ablation_figures.sweep_figure": ABF.sweep_figure(sweep),
        "ablation_figures.conditions_figure": ABF.conditions_figure(
            pd.concat([ablation_table(0), ablation_table(1, -0.5)], ignore_index=True)
        ),
        "patching.patching_figure": P.patching_figure(patching_summary),
        "compare.comparison_figure": C.comparison_figure(table, diffs),
        "compare.comparison_figure(no diffs)": C.comparison_figure(table),
        "layer_curve.curve_figure": LC.curve_figure(layer_curve_summary()),
        "layer_curve.curve_figure(paired gains)": LC.curve_figure(layer_curve_summary(), contrasts=layer_curve_gains()),
        "layer_curve.curve_figure(one mode, one seed)": LC.curve_figure(one_seed_curve()),
        "forest.forest_figure": F.forest_figure(forest_table()),
    }


# ---------------------------------------------------------------------------------------------- checks
def _axis_key(ref: str) -> str:
    """'x' -> 'xaxis', 'y3' -> 'yaxis3'."""
    return ref[0] + "axis" + ref[1:]


def _axis_title(fig, key: str) -> str | None:
    """The axis' title, or that of the axis it is shared with (``matches``: tick labels and title live on one)."""
    ax = fig.layout[key]
    if ax.title.text:
        return ax.title.text
    return fig.layout[_axis_key(ax.matches)].title.text if ax.matches else None


def check_figure(name: str, fig) -> None:
    used = set()
    for tr in fig.data:
        if hasattr(tr, "xaxis"):
            used |= {_axis_key(tr.xaxis or "x"), _axis_key(tr.yaxis or "y")}
    assert used, f"{name}: no traces on cartesian axes"
    for key in sorted(used):
        title = _axis_title(fig, key)
        assert title and "(" in title and ")" in title, f"{name}: {key} title {title!r} names no unit"
    n_bars = 0
    for tr in fig.data:
        if tr.type != "heatmap":
            continue
        cb = fig.layout[tr.coloraxis].colorbar if tr.coloraxis else tr.colorbar
        n_bars += 1
        assert cb.title.text and "(" in cb.title.text, f"{name}: colour bar title {cb.title.text!r}"
    caption = caption_of(fig)
    assert isinstance(caption, str) and len(caption.split()) >= 8, f"{name}: caption {caption!r}"
    assert "<br>" not in caption, f"{name}: caption holds markup: {caption!r}"
    ann = [a for a in fig.layout.annotations if a.name == CAPTION_NAME]
    assert len(ann) == 1 and ann[0].yref == "paper" and ann[0].yshift < 0, f"{name}: caption annotation {ann}"
    assert fig.layout.margin.b >= -ann[0].yshift + 15 * ann[0].text.count("<br>"), f"{name}: margin too small"
    assert fig.layout.title.text, f"{name}: no title"


def test_every_figure_has_axis_units_colourbar_titles_and_a_caption(attention_frames, lens_frame, patching_summary):
    figs = all_figures(attention_frames, lens_frame, patching_summary)
    for name, fig in figs.items():
        check_figure(name, fig)
    # every figure builder of the package is covered here
    builders = {
        f"{mod.__name__.rsplit('.', 1)[1]}.{n}"
        for mod in (A, LL, PR, AB, ABF, P, C, LC, F)
        for n, f in inspect.getmembers(mod, inspect.isfunction)
        if f.__module__ == mod.__name__ and (n.startswith("fig_") or n.endswith("_figure"))
    }
    covered = {k.split("(")[0] for k in figs}
    assert builders <= covered, f"figure builders without a check: {sorted(builders - covered)}"
    # the heatmap's colour bar and caption follow the value shown
    assert "fraction of softmax" in figs["attention.fig_heatmap(mass)"].layout.coloraxis.colorbar.title.text
    assert "dashed line" in caption_of(figs["attention.fig_layers"])
    n = int(attention_frames[0]["n"].max())
    assert f"{n} examples" in caption_of(figs["attention.fig_heatmap"])


def test_add_caption_replaces_stores_and_round_trips_through_html():
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 2]), layout={"meta": {"run": "x"}, "height": 400})
    add_caption(fig, "first " * 40)
    h1, b1 = fig.layout.height, fig.layout.margin.b
    add_caption(fig, 'Second caption: "quoted" and <tags> & ünïcode, n = 3.')
    assert [a.name for a in fig.layout.annotations] == [CAPTION_NAME]  # replaced, not stacked
    assert fig.layout.meta == {"run": "x", "caption": 'Second caption: "quoted" and <tags> & ünïcode, n = 3.'}
    assert fig.layout.height == h1 > 400 and b1 > 80  # grows once
    assert caption_from_html(fig.to_html(include_plotlyjs=False)) == caption_of(fig)
    assert caption_from_html(go.Figure().to_html(include_plotlyjs=False)) is None
    long = add_caption(go.Figure(go.Scatter(x=[0], y=[0])), "word " * 100)
    assert long.layout.annotations[0].text.count("<br>") >= 3  # wrapped to the figure width
    with pytest.raises(ValueError, match="empty"):
        add_caption(fig, "  ")
