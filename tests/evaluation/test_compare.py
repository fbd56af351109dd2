"""workbench.compare: bootstrap CIs, paired differences, figure, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from workbench.claims.compare import (
    CompareError,
    bootstrap_table,
    compare,
    comparison_figure,
    item_scores,
    load_runs,
    paired_differences,
)
from workbench.compare import main

from .conftest import synthetic_answers


def _write(run_dir, df, variant=None):
    run_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(run_dir / "answers.csv", index=False)
    if variant:
        (run_dir / "run.json").write_text(json.dumps({"variant": variant}))
    return run_dir


def test_bootstrap_ci_covers_true_value():
    """Over 40 simulated data sets with P(correct) = 0.7, the 95% CI covers 0.7 in >= 85% of them."""
    covered = 0
    for s in range(40):
        df = synthetic_answers(200, 0.7, seed=s)
        table, _ = bootstrap_table({"v": item_scores(df)}, resamples=400, seed=s)
        r = table[(table["task"] == "all") & (table["attribute"] == "all")].iloc[0]
        assert r["ci_low"] <= r["value"] <= r["ci_high"] and r["n"] == 200
        covered += r["ci_low"] <= 0.7 <= r["ci_high"]
    assert covered >= 34
    # and the width shrinks like 1/sqrt(n)
    w = {}
    for n in (100, 1600):
        t, _ = bootstrap_table({"v": item_scores(synthetic_answers(n, 0.7, seed=1))}, resamples=500)
        r = t[(t["task"] == "all") & (t["attribute"] == "all")].iloc[0]
        w[n] = r["ci_high"] - r["ci_low"]
    assert 2.5 < w[100] / w[1600] < 6


def test_paired_difference(tmp_path):
    base = synthetic_answers(400, 0.55, seed=0)
    better = synthetic_answers(400, 0.85, seed=1, base=base)
    same = base.copy()
    runs = [
        _write(tmp_path / "baseline", base, "baseline"),
        _write(tmp_path / "better", better, "better"),
        f"copy={_write(tmp_path / 'copy' / 'eval', same)}",
    ]
    table, diffs = compare(
        runs,
        baseline="baseline",
        resamples=1000,
        answer_options={"has_speech": ["yes", "no"], "is_loud": ["yes", "no"]},
    )
    assert set(table["variant"]) == {"baseline", "better", "copy"}
    allrow = table[(table["task"] == "all") & (table["attribute"] == "all")].set_index("variant")
    assert allrow.loc["better", "value"] == pytest.approx(better["correct"].mean())
    assert allrow.loc["baseline", "chance"] == pytest.approx(0.5)
    d = diffs[(diffs["task"] == "all") & (diffs["attribute"] == "all")].set_index("variant")
    assert d.loc["better", "diff"] == pytest.approx(better["correct"].mean() - base["correct"].mean())
    assert d.loc["better", "ci_low"] > 0.15 and d.loc["better", "p_value"] <= 0.002  # clearly better
    assert d.loc["copy", "diff"] == 0 and d.loc["copy", "ci_low"] == 0 and d.loc["copy", "ci_high"] == 0
    # paired CI is narrower than the unpaired one would be when the variants are correlated
    noisy = base.copy()
    flip = np.random.default_rng(3).random(len(noisy)) < 0.05
    noisy.loc[flip, "correct"] = ~noisy.loc[flip, "correct"]
    t2, r2 = bootstrap_table({"a": item_scores(base), "b": item_scores(noisy)}, resamples=1000)
    pd2 = paired_differences(r2, "a")
    row = pd2[(pd2["task"] == "all") & (pd2["attribute"] == "all")].iloc[0]
    tt = t2[(t2["task"] == "all") & (t2["attribute"] == "all")]
    se = ((tt["ci_high"] - tt["ci_low"]) / 3.92).to_numpy()  # per-variant standard errors
    unpaired_width = 3.92 * np.sqrt((se**2).sum())
    assert row["ci_high"] - row["ci_low"] < unpaired_width / 2


def test_cli_writes_table_diffs_and_html(tmp_path, capsys):
    base = synthetic_answers(120, 0.5, seed=0)
    cap = pd.DataFrame(
        {
            "row_id": ["c1", "c2", "c3"],
            "file_name": ["f1", "f2", "f3"],
            "task": "caption",
            "attribute": "caption",
            "question": "What do you hear?",
            "answer": ["A man says three.", "Pink noise sounds twice.", "A rising sweep, played loudly."],
            "prediction": ["A man says three.", "White noise sounds once.", "A loud tone."],
            "correct": None,
            "closed": False,
        }
    )
    b = _write(tmp_path / "runs" / "baseline", pd.concat([base, cap], ignore_index=True), "baseline")
    v = _write(
        tmp_path / "runs" / "lal",
        pd.concat([synthetic_answers(120, 0.9, 1, base), cap.assign(prediction=cap["answer"])], ignore_index=True),
        "lal",
    )
    out = tmp_path / "results" / "compare.csv"
    html = tmp_path / "results" / "compare.html"
    main([str(b), str(v), "--out", str(out), "--html", str(html), "--baseline", "baseline", "--resamples", "200"])
    t = pd.read_csv(out)
    assert {"variant", "metric", "task", "attribute", "value", "ci_low", "ci_high", "n", "chance"} <= set(t.columns)
    assert {"accuracy", "cider_d", "rouge_l", "exact_match"} <= set(t["metric"])
    cap_lal = t[(t["variant"] == "lal") & (t["metric"] == "cider_d")].iloc[0]
    assert cap_lal["value"] == pytest.approx(10.0, rel=1e-6) and cap_lal["n"] == 3
    d = pd.read_csv(out.with_name("compare_diff.csv"))
    assert set(d["variant"]) == {"lal"}
    text = html.read_text()
    assert "plotly" in text.lower() and len(text) > 1_000_000  # self-contained (plotly.js inlined)
    assert "lal" in capsys.readouterr().out
    fig = comparison_figure(t, d)
    xt = {fig.layout[k].title.text for k in fig.layout if k.startswith("xaxis")}
    yt = {fig.layout[k].title.text for k in fig.layout if k.startswith("yaxis")}
    assert any(x and x.startswith("task / attribute [metric] (") for x in xt)
    assert {y.split(" (")[0] for y in yt if y} >= {"accuracy / exact match", "difference"}
    assert "95%" in fig.layout.meta["caption"] and "variant minus baseline" in fig.layout.meta["caption"]
    # accuracy (0-1) and caption metrics (CIDEr-D 0-10) are in separate panels, two rows with the diffs
    assert len([k for k in fig.layout if k.startswith("xaxis")]) == 4


def test_bad_input(tmp_path):
    df = synthetic_answers(20, 0.5, 0)
    a = _write(tmp_path / "a", df, "a")
    bad = _write(tmp_path / "bad", df.drop(columns=["prediction"]), "bad")
    with pytest.raises(CompareError, match=r"bad/answers.csv: missing column\(s\) prediction.*workbench.evaluate"):
        load_runs([a, bad])
    other = _write(tmp_path / "other", df.assign(row_id=[f"x{i}" for i in range(20)]), "other")
    with pytest.raises(CompareError, match=r"different rows.*same --data"):
        load_runs([a, other])
    with pytest.raises(CompareError, match="no answers.csv"):
        load_runs([a, tmp_path])
    with pytest.raises(CompareError, match="not found"):
        load_runs([tmp_path / "missing"])
    dup = _write(tmp_path / "dup", df, "a")
    with pytest.raises(CompareError, match="NAME=PATH"):
        load_runs([a, dup])
    with pytest.raises(CompareError, match="baseline variant 'zzz'"):
        compare([a, f"b={dup}"], baseline="zzz", resamples=10)
    with pytest.raises(SystemExit, match="missing column"):
        main([str(a), str(bad), "--out", str(tmp_path / "o.csv")])
