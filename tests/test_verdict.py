"""Claim verdicts follow the fixed rule and read every number from the run folder's CSVs."""

import pandas as pd
import pytest

from workbench.claims.verdict import claim_verdicts, format_verdicts
from workbench.stats.bootstrap import decide_claim, decide_contrast
from workbench.verdict import main


@pytest.mark.parametrize(
    "cis, want",
    [
        ([(0.01, 0.2)], "agree"),
        ([(-0.3, -0.01)], "disagree"),
        ([(-0.05, 0.1)], "inconclusive"),
        ([(0.01, 0.2), (-0.05, 0.1)], "inconclusive"),
        ([(0.01, 0.2), (-0.2, -0.1)], "disagree"),
        ([], "no data"),
    ],
)
def test_one_verdict_rule_on_row_bootstrap_intervals(cis, want):
    """The contrasts.csv fallback decides with the same rule as the seed-aware path (workbench.stats.bootstrap)."""
    assert decide_claim([decide_contrast(lo, hi) for lo, hi in cis]) == want


def _contrast(variant, baseline, diff, lo, hi, n=100):
    return {
        "variant": variant,
        "baseline": baseline,
        "metric": "accuracy",
        "task": "all",
        "attribute": "all",
        "diff": diff,
        "ci_low": lo,
        "ci_high": hi,
        "p_value": 0.5,
        "n": n,
    }


def _write_run(tmp_path, claim3_lo):
    pd.DataFrame(
        [
            _contrast("delayed", "baseline", 0.15, 0.11, 0.19),
            _contrast("lal", "delayed", -0.08, -0.12, -0.03),
            _contrast("pal", "lal", 0.05, 0.02, 0.08),
            _contrast("ensemble", "baseline", 0.02, claim3_lo, 0.06),
            # a per-task cell must not be taken for the overall one
            {**_contrast("lal", "delayed", 0.9, 0.8, 0.95), "task": "cls"},
        ]
    ).to_csv(tmp_path / "contrasts.csv", index=False)
    pd.DataFrame(
        [
            {
                "variant": v,
                "metric": "accuracy",
                "task": "all",
                "attribute": "all",
                "value": x,
                "ci_low": x - 0.03,
                "ci_high": x + 0.03,
                "n": 100,
                "chance": 0.27,
            }
            for v, x in [("baseline", 0.45), ("delayed", 0.6), ("lal", 0.52), ("pal", 0.57), ("ensemble", 0.47)]
        ]
    ).to_csv(tmp_path / "compare.csv", index=False)
    ffn = [
        {
            "mode": "ffn",
            "encoder": "all",
            "layer_start": 8,
            "layer_end": 29,
            "task": "all",
            "attribute": "all",
            "metric": m,
            "baseline": 0.5,
            "ablated": 0.4,
            "delta": d,
            "delta_se": 0.02,
            "n": 32,
            "condition": "c",
        }
        for m, d in (("accuracy", -0.1), ("answer_logprob", -1.5))
    ]
    pd.DataFrame(ffn).to_csv(tmp_path / "ablation_delayed_ffn.csv", index=False)
    probe = [
        {
            "site": f"encoders.{e}.hook_out",
            "kind": "encoder",
            "encoder": e,
            "attribute": att,
            "metric": "accuracy",
            "value": v,
        }
        for att, vals in (("word", {"whisper": 0.99, "mel": 0.3}), ("pitch_class", {"whisper": 0.4, "mel": 0.9}))
        for e, v in vals.items()
    ]
    for att in ("word", "pitch_class"):
        pd.DataFrame([r for r in probe if r["attribute"] == att]).to_csv(tmp_path / f"probe_{att}.csv", index=False)


def test_verdicts_from_csvs(tmp_path):
    _write_run(tmp_path, claim3_lo=-0.01)
    v = claim_verdicts(tmp_path).set_index("claim")
    assert v.loc["claim1", "verdict"] == "agree"
    assert v.loc["claim2", "verdict"] == "disagree"
    assert v.loc["claim3", "verdict"] == "inconclusive"  # pal-lal agrees, ensemble-baseline CI covers 0
    assert "+0.150 [95% CI +0.110, +0.190]" in v.loc["claim1", "evidence"]
    assert "accuracy 0.600 vs 0.450" in v.loc["claim1", "evidence"]
    assert "-0.080" in v.loc["claim2", "evidence"] and "+0.9" not in v.loc["claim2", "evidence"]
    assert "-0.100 ± 0.02" in v.loc["claim2", "inside"] and "-1.500 ± 0.02 nats" in v.loc["claim2", "inside"]
    assert "ablation_baseline_early_late.csv missing" in v.loc["claim1", "inside"]
    assert "different encoders win different attributes (mel, whisper)" in v.loc["claim3", "inside"]
    text = format_verdicts(v.reset_index())
    assert len(text.splitlines()) == 9 and "DISAGREE" in text


def test_all_agree_and_cli_writes_csv(tmp_path, capsys):
    _write_run(tmp_path, claim3_lo=0.005)
    assert main([str(tmp_path)]) == 0
    out = pd.read_csv(tmp_path / "verdict.csv").set_index("claim")
    assert out.loc["claim3", "verdict"] == "agree"
    assert "Claim 3, encoder ensemble: AGREE" in capsys.readouterr().out


def test_empty_folder_has_no_data_and_missing_folder_is_an_error(tmp_path, capsys):
    v = claim_verdicts(tmp_path)
    assert set(v["verdict"]) == {"no data"}
    assert "contrasts.csv missing" in v["evidence"].iloc[0]
    assert main([str(tmp_path / "nope")]) == 2
    assert "run the demo first" in capsys.readouterr().err


def test_ablation_rows_without_a_condition_are_labelled_by_mode_and_layers(tmp_path):
    _write_run(tmp_path, claim3_lo=0.005)
    df = pd.read_csv(tmp_path / "ablation_delayed_ffn.csv").drop(columns="condition")
    df.to_csv(tmp_path / "ablation_delayed_ffn.csv", index=False)
    v = claim_verdicts(tmp_path).set_index("claim")
    assert "ffn / all / layers 8-29 -0.100 ± 0.02" in v.loc["claim2", "inside"]


def _answers(path, clips, rates, rng_seed):
    """An answers.csv with 6 closed rows per clip; row i of clip c correct with probability rates[c % len]."""
    import numpy as np

    rng = np.random.default_rng(rng_seed)
    rows = []
    for c in range(clips):
        for i in range(6):
            ok = bool(rng.random() < rates)
            rows.append(
                {
                    "row_id": f"t-{c}-{i}",
                    "file_name": f"audio/t-{c:03d}.wav",
                    "task": "cls",
                    "attribute": "category",
                    "question": "q",
                    "answer": "a",
                    "prediction": "a" if ok else "b",
                    "correct": ok,
                    "closed": True,
                }
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def _seed_runs(root, accuracy: dict, seeds=(0, 1, 2), clips=40):
    """Fake run folders: VARIANT/ (seed 0, train_summary.json) and VARIANT/seed-S, both test splits."""
    import json

    for v, acc in accuracy.items():
        for s in seeds:
            run = root / v if s == 0 else root / v / f"seed-{s}"
            run.mkdir(parents=True, exist_ok=True)
            (run / "train_summary.json").write_text(json.dumps({"seed": s}))
            a = acc[s] if isinstance(acc, dict) else acc
            _answers(run / "eval" / "answers.csv", clips, a, [len(v), ord(v[0]), s])
            _answers(run / "eval-test-seed1" / "answers.csv", clips, a, [len(v), ord(v[0]), s, 1])


def test_seed_aware_verdicts_one_seed_vs_all_seeds(tmp_path, capsys):
    """delayed beats baseline under seed 0 only: one-seed agree, all-seeds inconclusive; the verdict and the
    report use the seed-aware contrasts, and the markdown tables say which verdict changed."""
    from workbench.seed_stats import main as seed_main

    ck = tmp_path / "checkpoints"
    _seed_runs(ck, {"baseline": 0.4, "delayed": {0: 0.75, 1: 0.38, 2: 0.42}, "lal": 0.8, "pal": 0.95, "ensemble": 0.6})
    run = tmp_path / "demo"
    assert (
        seed_main(
            [
                "--checkpoints",
                str(ck),
                "--out",
                str(run),
                "--markdown",
                str(tmp_path / "seeds.md"),
                "--resamples",
                "400",
            ]
        )
        == 0
    )
    v = claim_verdicts(run).set_index("claim")
    assert v.loc["claim1", "verdict_one_seed"] == "agree" and v.loc["claim1", "verdict"] == "inconclusive"
    assert v.loc["claim3", "verdict"] == "agree" and "3 training seed(s)" in v.loc["claim3", "evidence"]
    assert "80 test clips" in v.loc["claim3", "evidence"]  # both splits pooled
    md = (tmp_path / "seeds.md").read_text()
    assert "| delayed − baseline |" in md and "**yes**" in md and "| baseline | test-seed1 |" in md
    assert main([str(run), "--markdown"]) == 0
    assert "| Claim 1, delayed integration | agree | **inconclusive** |" in capsys.readouterr().out


def test_seeds_only_partly_present_pair_common_seeds(tmp_path):
    from workbench.claims.seeds import load_clip_scores, seed_accuracy, seed_contrasts

    ck = tmp_path / "checkpoints"
    _seed_runs(ck, {"baseline": 0.4}, seeds=(0, 1, 2))
    _seed_runs(ck, {"delayed": 0.7}, seeds=(0, 2))
    clips = load_clip_scores(ck)
    acc = seed_accuracy(clips)
    assert acc[(acc["seed"] == "all") & (acc["variant"] == "delayed")]["seeds"].tolist() == ["0,2", "0,2"]
    con = seed_contrasts(clips, [("claim1", "delayed", "baseline")], resamples=300)
    r = con[(con["split"] == "pooled") & (con["scope"] == "all seeds")].iloc[0]
    assert r["seeds"] == "0,2" and "seeds [1] only in one of delayed/baseline" in r["note"]
    one = con[(con["split"] == "test") & (con["scope"] == "one seed")].iloc[0]
    assert one["seeds"] == "0" and "clip bootstrap" in one["method"]


def test_a_toy_claim_in_the_registry_shows_in_the_verdicts_and_the_report(tmp_path, monkeypatch):
    from workbench.claims import registry as claims
    from workbench.reporting import report
    from workbench.seed_stats import main as seed_main

    toy = claims.Claim(
        "claim4",
        "Claim 4, toy claim",
        "pal beats the hybrid",
        (("pal", "hybrid"),),
        "a toy scope",
        (claims.Analysis("toy_analysis", "Toy analysis in words", "pal"),),
        ("toy_analysis",),
    )
    monkeypatch.setitem(claims.CLAIMS, "claim4", toy)
    ck = tmp_path / "checkpoints"
    _seed_runs(ck, {"baseline": 0.4, "delayed": 0.6, "lal": 0.7, "pal": 0.9, "ensemble": 0.5, "hybrid": 0.5})
    run = tmp_path / "demo"
    assert seed_main(["--checkpoints", str(ck), "--out", str(run), "--resamples", "300"]) == 0
    v = claim_verdicts(run).set_index("claim")
    assert v.loc["claim4", "title"] == "Claim 4, toy claim" and v.loc["claim4", "verdict"] == "agree"
    assert "pal - hybrid: difference +0.3" in v.loc["claim4", "evidence"] and "a toy scope" in v.loc["claim4", "scope"]
    import plotly.graph_objects as go

    from workbench.analysis.core import write_outputs
    from workbench.analysis.figures import add_caption

    write_outputs(
        None, add_caption(go.Figure(go.Scatter(x=[0, 1], y=[1, 2])), "toy caption"), run, "toy_analysis", png=False
    )
    main([str(run)])
    page = report.build_report(run)
    assert "<h2>Claim 4, toy claim: pal beats the hybrid</h2>" in page
    assert page.index("Claim 4, toy claim: pal beats the hybrid") < page.index("<h3>Toy analysis in words</h3>")
    assert "Claim 4, toy claim: pal \\u2212 hybrid" in page  # a line of the forest plot (JSON-escaped minus)


def test_registry_holds_the_ablation_settings_the_demo_runs():
    """Each claim's ablation is registered with its conditions; resolved for the committed tiny models (30 layers,
    audio entering at layer 8 for delayed/pal, encoders read from the checkpoints' configs) they are the
    conditions the paper's claims call for: early vs late layers, the FFN from the entry layer on, one encoder at
    a time at every layer."""
    import json
    from pathlib import Path

    from workbench.claims.registry import registered

    def cfg(v):
        c = json.loads(Path(f"results/checkpoints/{v}/final/config.json").read_text())
        return c["llm"]["n_layers"], [e["name"] for e in c["pal"]["encoders"]], c["pal"]["encoders"]

    n, encs, specs = cfg("baseline")
    got = registered("baseline", "ablation")[1].conditions(n, encs)
    assert got == [
        ("layers 0-7 blocked", list(range(8)), "block", None),
        (f"layers 8-{n - 1} blocked", list(range(8, n)), "block", None),
    ]
    n, encs, specs = cfg("delayed")
    entry = specs[0]["integration"]["layer"]  # the FFN ablation starts where the delayed model's audio enters
    assert registered("delayed", "ablation")[1].conditions(n, encs) == [
        (f"FFN skipped at audio, layers {entry}-{n - 1}", list(range(entry, n)), "ffn", None)
    ]
    n, encs, _ = cfg("pal")
    got = registered("pal", "ablation")[1].conditions(n, encs)
    assert [c[0] for c in got] == [f"without {e}" for e in encs] and len(encs) == 3
    assert all(c[1] == list(range(n)) and c[2] == "block" and c[3] == e for c, e in zip(got, encs))
    with pytest.raises(ValueError, match="empty for a model with 4 layers"):
        registered("delayed", "ablation")[1].conditions(4, encs)
