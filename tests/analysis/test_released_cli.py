"""Every analysis CLI (attention, logit_lens, attribute_lens, listening_heads, steer, ablate, patch, probe,
evaluate, ask) on a tiny random Qwen2-Audio folder (``--checkpoint DIR``) saved by today's
``processor.save_pretrained`` with the checkpoint's real chat template, asked about a few synthetic clips."""

from __future__ import annotations

import importlib
import json

import pandas as pd
import pytest

from tests.model.released_tiny import real_template, shared_released


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from workbench.data.synth import generate

    root = tmp_path_factory.mktemp("released-cli")
    folder, *_ = shared_released("qwen2_audio")
    assert (folder / "processor_config.json").exists() and (
        folder / "chat_template.jinja"
    ).read_text() == real_template("qwen2_audio")
    data = generate(root / "data", 12, seed=0, split="val", preset="tiny", progress=False)
    suite = root / "loudness.yaml"
    suite.write_text(
        "attribute: loudness_class\nsites:\n  encoders: all\n  connectors: all\n"
        "  resid: {layers: [1], positions: [last_prompt, slot_after]}\n"
        "estimator:\n  classification: {C: 1.0, max_iter: 200}\nfolds: 2\nseed: 0\nbootstrap: 20\n"
    )
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
    "attribute_lens": (["--n", "8", "--no-png"], "attribute_lens.csv"),
    "listening_heads": (["--n", "8", "--k", "2", "--draws", "2", "--no-png"], "listening_heads.csv"),
    "steer": (
        ["--n", "8", "--k", "2", "--test-data", "DATA", "--n-test", "8", "--alphas=-1,1", "--no-png"],
        "steering.csv",
    ),
}


@pytest.mark.parametrize("cli", list(CASES))
def test_analysis_cli_runs_on_a_released_checkpoint(setup, cli, capsys):
    folder, data, root, suite = setup
    extra, produced = CASES[cli]
    extra = [{"SUITE": str(suite), "DATA": str(data)}.get(a, a) for a in extra]
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
        "attribute_lens": lambda: (
            set(df["condition"]) == {"audio", "silence", "blocked"} and set(df["layer"]) == {0, 1, 2}
        ),
        "listening_heads": lambda: (
            len(df) == 3 * 4 and df["score"].notna().all() and (out / "listening_ablation.csv").is_file()
        ),
        "steer": lambda: set(df["mode"]) == {"resid", "heads"} and (df["split"] == "gain").sum() == 4,
    }
    assert checks[cli](), df.head()


def test_evaluate_cli_scores_a_released_model_in_its_own_template(setup, tmp_path, capsys):
    from workbench.evaluate import main

    folder, data, _, _ = setup
    out = tmp_path / "answers.csv"
    main(
        [
            "--checkpoint",
            str(folder),
            "--data",
            str(data),
            "--out",
            str(out),
            "--max-rows",
            "3",
            "--batch-size",
            "3",
            "--max-new-tokens",
            "3",
            "--no-meteor",
            "--no-progress",
        ]
    )
    answers = pd.read_csv(out, keep_default_na=False)
    assert len(answers) == 3 and (tmp_path / "scores.csv").exists()
    assert answers["prediction"].map(lambda p: isinstance(p, str)).all()


def test_ask_cli_answers_and_explains_on_a_released_checkpoint(setup, tmp_path, capsys):
    """``python -m workbench.ask --checkpoint FOLDER clip question`` answers (the model's own greedy answer) and
    ``--html`` writes the page with the attention over the tower's frames."""
    from workbench.ask import main
    from workbench.model.pal import PALModel

    folder, data, _, _ = setup
    clip = str(next((data / "audio").glob("*.wav")))
    assert main(["--checkpoint", str(folder), clip, "What is the pitch class?", "--max-new-tokens", "4"]) == 0
    answer = capsys.readouterr().out.strip()
    assert answer == PALModel.from_pretrained(folder).ask(clip, "What is the pitch class?", max_new_tokens=4)
    html, csv = tmp_path / "view.html", tmp_path / "csv"
    assert (
        main(
            [
                "--checkpoint",
                str(folder),
                clip,
                "What is the pitch class?",
                "--max-new-tokens",
                "4",
                "--html",
                str(html),
                "--csv-dir",
                str(csv),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == answer and "qwen2_audio" in printed
    time = pd.read_csv(csv / "ask_time_attention.csv")
    layers = pd.read_csv(csv / "ask_attention_layers.csv")
    assert set(time["encoder"]) == {"qwen2_audio"} and time["start_s"].min() == 0
    assert time["weight"].sum() == pytest.approx(layers["mass"].mean(), rel=1e-4)  # attention mass conserved
    page = html.read_text()
    assert "data:audio/wav;base64," in page and page.count("Plotly.newPlot") == 3


def test_cli_reports_an_unsupported_architecture(setup, tmp_path, capsys):
    from workbench.ablate import main

    _, data, _, _ = setup
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlavaForConditionalGeneration"]}))
    assert (
        main(["--checkpoint", str(tmp_path), "--data", str(data), "--layer", "0", "--out-dir", str(tmp_path / "o")])
        == 2
    )
    err = capsys.readouterr().err
    assert "LlavaForConditionalGeneration" in err and "Qwen2AudioForConditionalGeneration" in err


@pytest.mark.parametrize("broken", ["no_tasks", "empty_tasks"])
def test_an_audiofolder_without_task_rows_names_the_file(setup, tmp_path, capsys, broken):
    import shutil

    from workbench.attention import main

    folder, data, _, _ = setup
    bad = tmp_path / "data"
    shutil.copytree(data, bad)
    if broken == "no_tasks":
        (bad / "tasks.jsonl").unlink()
    else:
        (bad / "tasks.jsonl").write_text("")
    assert main(["--checkpoint", str(folder), "--data", str(bad), "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(bad / "tasks.jsonl") in err and ("file not found" if broken == "no_tasks" else "no task rows") in err
    assert not (bad / "tasks.jsonl").exists() or broken == "empty_tasks"  # nothing generated into the user's folder
