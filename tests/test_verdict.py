"""Claim verdicts follow the fixed rule and read every number from the run folder's CSVs."""

import pandas as pd
import pytest

from workbench.verdict import claim_verdicts, decide, format_verdicts, main


@pytest.mark.parametrize("cis, want", [
    ([(0.01, 0.2)], "agree"),
    ([(-0.3, -0.01)], "disagree"),
    ([(-0.05, 0.1)], "inconclusive"),
    ([(0.01, 0.2), (-0.05, 0.1)], "inconclusive"),
    ([(0.01, 0.2), (-0.2, -0.1)], "disagree"),
    ([], "no data"),
])
def test_decide(cis, want):
    assert decide(cis) == want


def _contrast(variant, baseline, diff, lo, hi, n=100):
    return {"variant": variant, "baseline": baseline, "metric": "accuracy", "task": "all", "attribute": "all",
            "diff": diff, "ci_low": lo, "ci_high": hi, "p_value": 0.5, "n": n}


def _write_run(tmp_path, claim3_lo):
    pd.DataFrame([_contrast("delayed", "baseline", 0.15, 0.11, 0.19),
                  _contrast("lal", "delayed", -0.08, -0.12, -0.03),
                  _contrast("pal", "lal", 0.05, 0.02, 0.08),
                  _contrast("ensemble", "baseline", 0.02, claim3_lo, 0.06),
                  # a per-task cell must not be taken for the overall one
                  {**_contrast("lal", "delayed", 0.9, 0.8, 0.95), "task": "cls"}]).to_csv(tmp_path / "contrasts.csv", index=False)
    pd.DataFrame([{"variant": v, "metric": "accuracy", "task": "all", "attribute": "all", "value": x, "ci_low": x - .03,
                   "ci_high": x + .03, "n": 100, "chance": 0.27}
                  for v, x in [("baseline", 0.45), ("delayed", 0.6), ("lal", 0.52), ("pal", 0.57), ("ensemble", 0.47)]]
                 ).to_csv(tmp_path / "compare.csv", index=False)
    ffn = [{"mode": "ffn", "encoder": "all", "layer_start": 8, "layer_end": 29, "task": "all", "attribute": "all",
            "metric": m, "baseline": 0.5, "ablated": 0.4, "delta": d, "delta_se": 0.02, "n": 32, "condition": "c"}
           for m, d in (("accuracy", -0.1), ("answer_logprob", -1.5))]
    pd.DataFrame(ffn).to_csv(tmp_path / "ablation_delayed_ffn.csv", index=False)
    probe = [{"site": f"encoders.{e}.hook_out", "kind": "encoder", "encoder": e, "attribute": att, "metric": "accuracy",
              "value": v} for att, vals in (("word", {"whisper": 0.99, "mel": 0.3}), ("pitch_class", {"whisper": 0.4, "mel": 0.9}))
             for e, v in vals.items()]
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
