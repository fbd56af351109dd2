"""The demo's steps for the attribute lens, listening heads, steering and attribution patching, at cheap settings
(the CLIs ``python -m workbench.attribute_lens / listening_heads / steer / patch --method atp`` run the full ones):
together about 3 minutes of the demo's 15-minute budget on the 2-core CPU machine.

``analysis_steps(demo)`` returns the `workbench.pipeline.steps.Step`s; ``workbench.demo`` adds them before its report.
Each writes its csv/html into the demo folder through ``demo.write`` and returns a small summary for the marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VAL_DATA = Path("data/synth-tiny/val")
LENS_VARIANTS = ("baseline", "delayed", "lal", "pal")


@dataclass(frozen=True)
class AnalysisSizes:
    rows: int = 16  # lens rows per variant; validation rows for listening scores and steering directions
    test_rows: int = 48  # test rows for the steering gain
    k: int = 5
    draws: int = 2
    alphas: tuple[float, ...] = (-1.0, 1.0, 2.0)
    pairs: int = 4  # AtP vs exact patching of pal's audio K/V


QUICK_SIZES = AnalysisSizes(rows=4, test_rows=4, k=2, draws=1, alphas=(1.0,), pairs=2)


def _sizes(demo) -> AnalysisSizes:
    return QUICK_SIZES if demo.sizes.rows < 8 else AnalysisSizes()


def attribute_lens(demo) -> dict:
    import pandas as pd

    from workbench.analysis.attribute_lens import attribute_lens as lens
    from workbench.analysis.attribute_lens import attribute_lens_figure, summarize_lens

    s = _sizes(demo)
    frames = {
        v: lens(demo.model(v), demo.dataset(v, s.rows), demo.answer_options(), batch_size=demo.batch_size)
        for v in LENS_VARIANTS
    }
    summary = pd.concat([summarize_lens(df).assign(variant=v) for v, df in frames.items()], ignore_index=True)
    demo.write(
        summary,
        attribute_lens_figure(frames, "Attribute lens across variants: the right option among the options, per layer"),
        "attribute_lens",
    )
    last = summary[
        (summary["position"] == "last_prompt") & (summary["split"] == "all") & (summary["condition"] == "audio")
    ]
    return {
        v: {
            "critical_median": None if g["critical_median"].isna().all() else float(g["critical_median"].iloc[0]),
            "final_accuracy": round(float(g.sort_values("layer")["accuracy"].iloc[-1]), 4),
        }
        for v, g in last.groupby("variant")
    }


def _val(demo, variant, n):
    from workbench.analysis.core import load_for_analysis

    return load_for_analysis(data_dir=VAL_DATA, n=n, split="val", seed=0, model=demo.model(variant))[1]


def listening(demo) -> dict:
    from workbench.analysis.listening import (
        listening_ablation,
        listening_ablation_figure,
        listening_figure,
        listening_scores,
    )

    s = _sizes(demo)
    model, ds = demo.model("pal"), _val(demo, "pal", s.rows)
    scores = listening_scores(model, ds, batch_size=demo.batch_size)
    demo.write(
        scores,
        listening_figure(scores, "pal: listening heads (audio vs silence of the same length)"),
        "listening_heads_pal",
    )
    table = listening_ablation(
        model, ds, scores, s.k, draws=s.draws, answer_options=demo.answer_options(), batch_size=demo.batch_size
    )
    demo.write(table, listening_ablation_figure(table), "listening_ablation_pal")
    lp = table[table["metric"] == "answer_logprob"].set_index("condition")
    return {
        "top": [f"L{r.layer}H{r.head}" for r in scores.head(s.k).itertuples()],
        "delta_top": round(float(lp.loc["top-k", "delta"]), 4),
        "delta_random": round(float(lp.loc["random", "delta"]), 4),
    }


def steering(demo) -> dict:
    from workbench.analysis.steering import steer, steering_figure

    s = _sizes(demo)
    model = demo.model("pal")
    table = steer(
        model,
        _val(demo, "pal", s.rows),
        demo.dataset("pal", s.test_rows),
        demo.answer_options(),
        alphas=s.alphas,
        modes=("resid",),
        batch_size=demo.batch_size,
    )
    demo.write(
        table.assign(variant="pal"),
        steering_figure(table.assign(variant="pal"), "pal: audio-minus-silence steering"),
        "steering_pal",
    )
    g = table[(table["split"] == "gain") & (table["metric"] == "accuracy")].iloc[0]
    return {
        "alpha": float(g["alpha"]),
        "gain": round(float(g["gain"]), 4),
        "ci": [round(float(g["ci_low"]), 4), round(float(g["ci_high"]), 4)],
    }


def atp(demo) -> dict:
    from workbench.analysis.atp import agreement, atp_dataset, atp_figure, summarize_atp
    from workbench.analysis.patching import make_pairs, patch_dataset

    s = _sizes(demo)
    model, ds = demo.model("pal"), demo.dataset("pal", None)
    pairs = make_pairs(ds, None, s.pairs, seed=0, answer_options=demo.answer_options())
    est = atp_dataset(model, ds, pairs, ["audio_kv"], batch_size=demo.batch_size)
    exact = patch_dataset(model, ds, pairs, ["audio_kv"], batch_size=demo.batch_size)
    summary = summarize_atp(est, exact)
    demo.write(
        summary,
        atp_figure(summary, f"pal: attribution patching vs exact patching of the audio K/V ({len(pairs)} pairs)"),
        "atp_pal",
    )
    a = agreement(summary)
    demo.write(a, None, "atp_pal_agreement")
    row = a[(a["method"] == "atp_qk") & (a["sites"] == "all")]
    return {
        "spearman": round(float(row["spearman"].iloc[0]), 4) if len(row) else None,
        "top_overlap": round(float(row["top_overlap"].iloc[0]), 4) if len(row) else None,
    }


def analysis_steps(demo) -> list:
    from workbench.pipeline.steps import Step

    s = _sizes(demo)
    out, ck = demo.out, str(demo.checkpoints)
    p = {"sizes": repr(s), "checkpoints": ck}
    return [
        Step(
            "attribute-lens",
            f"attribute lens across {', '.join(LENS_VARIANTS)}",
            lambda: attribute_lens(demo),
            params=p,
            deps=["encode"],
            outputs=[out / "attribute_lens.csv"],
        ),
        Step(
            "listening-pal",
            "listening heads of pal, top-k vs random heads mean-ablated",
            lambda: listening(demo),
            params=p,
            deps=["encode"],
            outputs=[out / "listening_heads_pal.csv", out / "listening_ablation_pal.csv"],
        ),
        Step(
            "steering-pal",
            "audio-minus-silence steering of pal (alpha on val, gain on test)",
            lambda: steering(demo),
            params=p,
            deps=["encode"],
            outputs=[out / "steering_pal.csv"],
        ),
        Step(
            "atp-pal",
            "attribution patching of pal's audio K/V, checked against exact patching",
            lambda: atp(demo),
            params=p,
            deps=["encode"],
            outputs=[out / "atp_pal.csv"],
        ),
    ]
