"""Every analysis CLI, and `workbench.evaluate`, on a tiny random Qwen2-Audio folder (``--checkpoint DIR``)
with a few synthetic clips asked in the model's own chat template."""

from __future__ import annotations

import importlib

import pandas as pd
import pytest

from tests.model.released_tiny import shared_released


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from workbench.data.synth import generate

    root = tmp_path_factory.mktemp("released-cli")
    folder, *_ = shared_released("qwen2_audio")
    data = generate(root / "data", 12, seed=0, split="val", preset="tiny", progress=False)
    suite = root / "loudness.yaml"
    suite.write_text("attribute: loudness_class\nsites:\n  encoders: all\n  connectors: all\n"
                     "  resid: {layers: [1], positions: [last_prompt, slot_after]}\n"
                     "estimator:\n  classification: {C: 1.0, max_iter: 200}\nfolds: 2\nseed: 0\nbootstrap: 20\n")
    return folder, data, root, suite


@pytest.fixture(autouse=True)
def _no_png(monkeypatch):
    from workbench.analysis import outputs

    monkeypatch.setattr(outputs, "_PNG_OK", False)  # no headless browser in these tests


CASES = {
    "ablate": (["--layer", "1", "--n", "4", "--max-new-tokens", "3"], "ablation_block_L1-2.csv"),
    "attention": (["--n", "4"], "attention_to_audio.csv"),
    "logit_lens": (["--n", "4"], "logit_lens.csv"),
    "patch": (["--n", "60", "--max-pairs", "2", "--layers", "0,2"], "patching.csv"),
    "probe": (["SUITE", "--no-progress"], "probe_loudness.csv"),
}


@pytest.mark.parametrize("cli", list(CASES))
def test_analysis_cli_runs_on_a_released_checkpoint(setup, cli, capsys):
    folder, data, root, suite = setup
    extra, produced = CASES[cli]
    extra = [str(suite) if a == "SUITE" else a for a in extra]
    out = root / "out" / cli
    main = importlib.import_module(f"workbench.{cli}").main
    rc = main(["--checkpoint", str(folder), "--data", str(data), "--out-dir", str(out), *extra])
    assert rc == 0, capsys.readouterr().err
    df = pd.read_csv(out / produced)
    assert len(df) > 0
    checks = {
        "ablate": lambda: "answer_logprob" in set(df["metric"]) and df["ablated"].notna().all(),
        "attention": lambda: set(df["encoder"]) == {"qwen2_audio"} and df["mass"].between(0, 1).all(),
        "logit_lens": lambda: "audio" in set(df["condition"]) and set(df["layer"]) == {0, 1, 2},
        "patch": lambda: "resid_audio" in set(df["site"]) and "qwen2_audio" in set(df["encoder"]),
        "probe": lambda: {"encoders.qwen2_audio.hook_out", "connectors.qwen2_audio.hook_out"} <= set(df["site"]),
    }
    assert checks[cli](), df.head()


def test_cli_reports_an_unsupported_architecture(setup, tmp_path, capsys):
    import json

    from workbench.ablate import main

    _, data, _, _ = setup
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlavaForConditionalGeneration"]}))
    assert main(["--checkpoint", str(tmp_path), "--data", str(data), "--layer", "0", "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "LlavaForConditionalGeneration" in err and "Qwen2AudioForConditionalGeneration" in err


def test_evaluate_scores_a_released_model_in_its_own_template(setup, tmp_path):
    from workbench.evaluation.evaluator import evaluate_checkpoint

    folder, data, _, _ = setup
    answers, scores = evaluate_checkpoint(folder, data, tmp_path / "answers.csv", max_rows=3, batch_size=3,
                                          max_new_tokens=3, meteor=False, progress=False)
    assert len(answers) == 3 and (tmp_path / "answers.csv").exists() and len(scores) > 0
    assert answers["prediction"].map(lambda p: isinstance(p, str)).all()
