"""workbench.layer_curve: sweep answer CSVs -> tidy table, seed-aware curve, its shape in words, the figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench import layer_curve as layer_curve_cli
from workbench.analysis.figures import caption_of
from workbench.claims import layer_curve as LC
from workbench.training.runs import EVAL_DIRS, sweep_run_dir

ATTRS = ["word", "pitch_class", "category", "count", "loudness_class"]
TRUE = {"plits": {0: 0.45, 8: 0.75, 16: 0.5}, "lal": {0: 0.6, 8: 0.65, 16: 0.62}}


def _write_sweep(root, seeds=(0, 1), clips=30):
    for mode, curve in TRUE.items():
        for layer, p in curve.items():
            for s in seeds:
                for split, folder in EVAL_DIRS.items():
                    rng = np.random.default_rng([layer, s, len(mode), len(split)])
                    rows = [
                        {
                            "row_id": f"{c}-{a}",
                            "file_name": f"audio/{split}-{c:03d}.wav",
                            "task": "cls",
                            "attribute": a,
                            "answer": "x",
                            "prediction": "x",
                            "correct": bool(rng.random() < p),
                            "closed": True,
                        }
                        for c in range(clips)
                        for a in ATTRS
                    ]
                    out = sweep_run_dir(mode, layer, s, root) / folder / "answers.csv"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    pd.DataFrame(rows).to_csv(out, index=False)
    (root / "plits" / "L24" / "seed-0").mkdir(parents=True)  # a point still training: skipped


def test_layer_curve_table_summary_sentence_and_figure(tmp_path):
    root = tmp_path / "sweeps"
    _write_sweep(root)
    clips = LC.load_sweep_clips(root)
    tidy = LC.curve_seeds(clips)
    assert set(tidy["family"]) == {"all attributes", "spoken word", "pitch", "category", "count"}
    assert set(tidy["layer"]) == {0, 8, 16} and set(tidy["seed"]) == {0, 1} and set(tidy["split"]) == set(EVAL_DIRS)
    assert (tidy.loc[tidy["family"] == "all attributes", "n_rows"] == 30 * len(ATTRS)).all()
    summary = LC.curve_summary(clips, resamples=300)
    top = summary[summary["family"] == "all attributes"].set_index(["mode", "layer"])
    assert top.loc[("plits", 8), "n_clips"] == 60 and top.loc[("plits", 8), "n_seeds"] == 2  # both splits pooled
    assert abs(top.loc[("plits", 8), "accuracy"] - 0.75) < 0.06
    assert (top["ci_low"] < top["accuracy"]).all() and (top["accuracy"] < top["ci_high"]).all()
    sentence = LC.shape_sentence(summary)
    assert sentence.startswith("LAL peaks at layer") and "PLITS peaks at layer 8" in sentence
    assert (
        "falls below the peak's interval from layer 16 on" in sentence and "earlier layers 0 lie below it" in sentence
    )
    fig = LC.curve_figure(summary)
    assert len(fig.data) == 2 * 5 and "training seed" in caption_of(fig)
    assert fig.layout.yaxis.title.text == "closed-task accuracy (%)"


def test_every_point_is_scored_on_the_splits_all_runs_share(tmp_path):
    """A point evaluated on a second split as well (a reused variant run) is scored on the shared split only, as
    every other point: no layer gains or loses from a split the others lack."""
    import shutil

    root = tmp_path / "sweeps"
    _write_sweep(root)
    for mode, curve in TRUE.items():
        for layer in curve:
            if (mode, layer) != ("plits", 8):
                for s in (0, 1):
                    shutil.rmtree(sweep_run_dir(mode, layer, s, root) / EVAL_DIRS["test-seed1"])
    clips = LC.load_sweep_clips(root)
    assert LC.common_splits(clips) == ["test"]
    summary = LC.curve_summary(clips, resamples=200)
    assert set(summary["splits"]) == {"test"} and set(
        summary.loc[summary["family"] == "all attributes", "n_clips"]
    ) == {30}
    assert "held-out test split test," in caption_of(LC.curve_figure(summary))


def test_write_layer_curve_and_cli(tmp_path, capsys):
    from workbench.analysis import outputs

    assert layer_curve_cli.main(["--sweeps", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "no evaluated sweep point" in capsys.readouterr().err
    root = tmp_path / "sweeps"
    _write_sweep(root, seeds=(0,))
    saved, outputs._PNG_OK = outputs._PNG_OK, False
    try:
        assert layer_curve_cli.main(["--sweeps", str(root), "--out", str(tmp_path / "out"), "--resamples", "200"]) == 0
    finally:
        outputs._PNG_OK = saved
    assert "1 seed)" in capsys.readouterr().out
    s = pd.read_csv(tmp_path / "out" / "injection_layer_curve.csv")
    assert s["method"].str.contains("clip bootstrap").all()
    assert (tmp_path / "out" / "injection_layer_curve.html").is_file()


def test_intervals_stay_within_an_accuracys_range_and_seeds_are_drawn(tmp_path):
    """Two seeds far apart at a point near 100%: the two-seed t interval (about one degree of freedom) reaches past
    1; the curve keeps it within [0, 1] and says so. The figure draws each seed's point beside the mean."""
    root = tmp_path / "sweeps"
    for s, p in [(0, 1.0), (1, 0.6)]:
        rows = [
            {
                "row_id": f"{c}-w",
                "file_name": f"audio/test-{c:03d}.wav",
                "task": "cls",
                "attribute": "word",
                "answer": "x",
                "prediction": "x",
                "correct": bool(p == 1.0 or c % 5 < 3),
                "closed": True,
            }
            for c in range(20)
        ]
        out = sweep_run_dir("plits", 4, s, root) / EVAL_DIRS["test"] / "answers.csv"
        out.parent.mkdir(parents=True)
        pd.DataFrame(rows).to_csv(out, index=False)
    clips = LC.load_sweep_clips(root)
    summary = LC.curve_summary(clips, resamples=200)
    top = summary[summary["family"] == "all attributes"].iloc[0]
    assert abs(top["accuracy"] - 0.8) < 1e-9 and top["ci_high"] == 1.0 and 0.0 <= top["ci_low"] < 0.8
    assert top["method"].endswith("clipped to [0, 1]")
    seeds = LC.seed_points(clips)
    assert sorted(seeds.loc[seeds["family"] == "all attributes", "accuracy"]) == [0.6, 1.0]
    fig = LC.curve_figure(summary, per_seed=seeds)
    marks = [t for t in fig.data if t.name == "PLITS, each seed"]
    assert len(marks) == 2 and sorted(marks[0].y) == [60.0, 100.0]  # overall + spoken-word panel
    assert "each training seed" in caption_of(fig) and "each training seed" not in caption_of(LC.curve_figure(summary))


def _write_blocked_sweep(root, clips=60):
    """PLITS rising with the layer (0 -> 8 -> 16), with training seed 1 lower at every layer (a seed moves every
    layer alike). A seed's runs share their row draws (as runs share what is hard for them), so a row flips only
    where the layer's gain moves it: the per-seed layer differences agree, the seeds' levels do not."""
    difficulty = np.random.default_rng(7).normal(0, 1.0, clips)
    u = {s: np.random.default_rng([11, s]).random((clips, len(ATTRS))) for s in (0, 1)}
    for layer, s in [(layer, s) for layer in (0, 8, 16) for s in (0, 1)]:
        p = 1 / (1 + np.exp(-(0.3 + 0.35 * layer / 8 - 0.75 * s + difficulty)))
        correct = u[s] < p[:, None]
        rows = [
            {
                "row_id": f"{c}-{a}",
                "file_name": f"audio/test-{c:03d}.wav",
                "task": "cls",
                "attribute": a,
                "answer": "x",
                "prediction": "x",
                "correct": bool(correct[c, j]),
                "closed": True,
            }
            for c in range(clips)
            for j, a in enumerate(ATTRS)
        ]
        out = sweep_run_dir("plits", layer, s, root) / EVAL_DIRS["test"] / "answers.csv"
        out.parent.mkdir(parents=True)
        pd.DataFrame(rows).to_csv(out, index=False)


def test_layers_are_compared_paired_by_seed_and_clip(tmp_path):
    """With two seeds the unpaired intervals of neighbouring layers overlap (the seed shift is in each), while the
    paired layer contrasts resolve the rise; the sentence reads the paired ones, and the table says why."""
    root = tmp_path / "sweeps"
    _write_blocked_sweep(root)
    clips = LC.load_sweep_clips(root)
    summary = LC.curve_summary(clips, resamples=400)
    top = summary[summary["family"] == "all attributes"].set_index("layer")
    assert top.loc[16, "ci_low"] < top.loc[0, "ci_high"]  # unpaired: layer 16 not clearly above layer 0
    c = LC.layer_contrasts(clips, summary, resamples=400)
    assert set(c["versus"]) == {"first", "peak"} and set(c["family"]) >= {"all attributes", "spoken word"}
    a = c[c["family"] == "all attributes"].set_index(["versus", "layer"])
    assert a.loc[("first", 16), "reference_layer"] == 0 and a.loc[("peak", 0), "reference_layer"] == 16
    assert a.loc[("first", 16), "reading"] == "higher" and a.loc[("first", 16), "ci_low"] > 0
    assert a.loc[("peak", 0), "reading"] == "lower"
    per_seed = dict(x.split(":") for x in a.loc[("first", 16), "per_seed"].split(";"))
    assert set(per_seed) == {"0", "1"} and all(float(v) > 0 for v in per_seed.values())
    # the paired difference is the difference of the means, and narrower than the unpaired bars
    assert abs(a.loc[("first", 16), "difference"] - (top.loc[16, "accuracy"] - top.loc[0, "accuracy"])) < 1e-12
    paired_width = a.loc[("first", 16), "ci_high"] - a.loc[("first", 16), "ci_low"]
    assert paired_width < top.loc[16, "ci_high"] - top.loc[16, "ci_low"]
    sentence = LC.shape_sentence(summary, c)
    assert sentence.startswith("PLITS peaks at layer 16") and "above layer 0" in sentence
    assert "lies below the peak" in sentence or "lie below the peak" in sentence
    assert "last layer tested (16)" in sentence
    assert LC.shape_sentence(summary) != sentence  # the unpaired reading is kept for tables without contrasts
    fig = LC.curve_figure(summary, contrasts=c)
    gain = [t for t in fig.data if t.name == "PLITS, gain over layer 0"]
    assert len(gain) == 1 and list(gain[0].x) == [0, 8, 16] and gain[0].y[0] == 0.0
    assert abs(gain[0].y[2] - 100 * a.loc[("first", 16), "difference"]) < 1e-9
    assert "paired by seed and clip" in caption_of(fig)
    assert "paired by seed and clip" not in caption_of(LC.curve_figure(summary))


def test_write_layer_curve_writes_the_paired_contrasts(tmp_path):
    from workbench.analysis import outputs
    from workbench.claims.registry import CLAIMS

    root = tmp_path / "sweeps"
    _write_blocked_sweep(root, clips=20)
    saved, outputs._PNG_OK = outputs._PNG_OK, False
    try:
        sentence = LC.write_layer_curve(root, tmp_path / "out", resamples=200)
    finally:
        outputs._PNG_OK = saved
    c = pd.read_csv(tmp_path / "out" / f"{LC.CONTRASTS_STEM}.csv")
    assert len(c) == 2 * 2 * 5 and "paired by training seed" in sentence  # 2 other layers x 2 references x 5 families
    assert LC.CONTRASTS_STEM in CLAIMS["claim1"].figures  # shown in the report under claim 1


def test_layers_evaluated_on_different_rows_are_not_paired(tmp_path):
    """Two layers whose answer files hold different closed rows for the same clip (e.g. evaluated on different
    regenerations of the split) cannot be paired row-for-row: a clear error names both layers."""
    import pytest

    root = tmp_path / "sweeps"
    _write_blocked_sweep(root, clips=20)
    csv = sweep_run_dir("plits", 8, 0, root) / EVAL_DIRS["test"] / "answers.csv"
    df = pd.read_csv(csv)
    df.drop(index=df.index[df["file_name"] == "audio/test-003.wav"][:2]).to_csv(csv, index=False)
    clips = LC.load_sweep_clips(root)
    with pytest.raises(ValueError, match="plits layers 8 and 0 .* different closed rows per test clip"):
        LC.layer_contrasts(clips, LC.curve_summary(clips, resamples=50), resamples=50)
