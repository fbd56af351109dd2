"""``python -m workbench.study`` end to end at ``--quick`` sizes: on a committed tiny PAL checkpoint (every step
runs, the report renders in headless Chromium), on a tiny random Qwen2-Audio folder (interrupted with Ctrl-C,
then resumed; every step runs on it), and its parts against outside oracles
(retrofitting a model to its own integration changes nothing; parameter counts = transformers' own)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.model.released_tiny import shared_released

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "results/checkpoints/baseline/final"
DELAYED = ROOT / "results/checkpoints/delayed/final"
WORKS_ON_RELEASED = (
    "accuracy",
    "attention",
    "logit-lens",
    "attribute-lens",
    "listening",
    "steering",
    "ablation-sweep",
    "atp-heads",
    "retrofit-claims",
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from workbench.data.synth import generate

    return generate(
        tmp_path_factory.mktemp("study-data") / "test", 12, seed=0, split="test", preset="tiny", progress=False
    )


def _study(args: list[str], interrupt_at: int | None = None, timeout: float = 600) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "workbench.study", "--quick", "--threads", "1", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each step's line arrives when printed, so Ctrl-C lands inside it
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    )
    lines, t0 = [], time.time()
    for line in proc.stdout:
        lines.append(line)
        if interrupt_at is not None and line.startswith(f"[{interrupt_at}/"):
            proc.send_signal(signal.SIGINT)
        if time.time() - t0 > timeout:
            proc.kill()
            break
    return proc.wait(), "".join(lines)


def test_study_of_a_committed_checkpoint_runs_every_step_and_renders(data, tmp_path):
    from workbench.reporting.browser_check import check_report

    out = tmp_path / "study"
    rc, log = _study(["--checkpoint", str(BASELINE), "--data", str(data), "--out", str(out), "--no-browser-check"])
    assert rc == 0, log[-3000:]
    assert "cost estimate" in log and "tokens per item" in log and "measured" in log
    assert not list((out / ".steps").glob("*.failed.json")), log[-3000:]
    answers = pd.read_csv(out / "answers.csv")
    closed = answers[answers["closed"]]
    page = (out / "report.html").read_text()
    assert page.index("At a glance") < page.index("Attention to the audio")  # verdict-first
    assert f"Accuracy {closed['correct'].astype(float).mean():.3g}" in page  # the sentence is the answers' mean
    assert str(answers["question"].iloc[0]) in page  # the answers are shown
    contrasts = pd.read_csv(out / "retrofit_contrasts.csv")
    assert (
        set(contrasts["claim"]) == {"claim1", "claim2"}
        and contrasts["caveat"].str.contains("Out of distribution").all()
    )
    res = check_report(out / "report.html")
    assert res["console_errors"] == [] and res["figures_rendered"] == res["figures_expected"] >= 8, res


def test_study_of_a_released_folder_resumes_after_ctrl_c(data, tmp_path):
    from workbench.pipeline.steps import Pipeline

    folder, *_ = shared_released("qwen2_audio")
    out = tmp_path / "study"
    args = ["--checkpoint", str(folder), "--data", str(data), "--out", str(out), "--no-browser-check"]
    rc, log = _study(args, interrupt_at=3)
    assert rc == 130 and "interrupted during step" in log, log[-3000:]
    assert {p.stem for p in (out / ".steps").glob("*.json")} == {"accuracy", "attention"}
    rc, log2 = _study(args)
    lines = log2.splitlines()
    for i in (1, 2):
        assert any(l.startswith(f"[{i}/") and "reused" in l for l in lines), log2[-3000:]
    pipe = Pipeline(out)
    for name in WORKS_ON_RELEASED:
        assert pipe.read_marker(name) is not None, (name, pipe.read_failure(name), log2[-3000:])
    failed = [p.name.split(".")[0] for p in (out / ".steps").glob("*.failed.json")]
    assert failed == [] and rc == 0, log2[-3000:]  # every step runs on a released model (a failing step's record and
    # the steps that go on after it: tests/test_pipeline.py::test_keep_going_records_a_failure_...)
    assert "At a glance" in (out / "report.html").read_text()


def _logits(model, ds):
    batch = ds.collate_fn([ds[i] for i in range(min(3, len(ds)))])
    with torch.no_grad():
        return model(batch)


@pytest.mark.parametrize("ckpt,mode,layer", [(DELAYED, "plits", 8)])
def test_retrofit_to_the_trained_integration_is_the_trained_model(data, ckpt, mode, layer):
    from workbench.analysis.inputs import load_for_analysis
    from workbench.pipeline.retrofit import load_model

    trained, ds = load_for_analysis(ckpt, data, n=3, preset=None)
    retro = load_model(str(ckpt), {"mode": mode, "layer": layer})
    assert torch.equal(_logits(trained, ds), _logits(retro, ds))
    other = load_model(str(ckpt), {"mode": "lal", "layer": layer})
    assert not torch.allclose(_logits(trained, ds), _logits(other, ds), atol=1e-3)


def test_released_parameter_count_is_transformers_own(data):
    import transformers

    from workbench.model.cost import estimate_cost

    folder, *_ = shared_released("qwen2_audio")
    hf = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(folder)
    cost = estimate_cost(str(folder), data, batch_size=2, dtype="float32")
    assert cost["params"] == sum(p.numel() for p in hf.parameters())
    assert cost["audio_tokens"] == 50  # 2 s window: 200 mel frames -> 100 conv frames -> pooled to 50
    assert cost["weights"] == 4 * cost["params"]


def test_the_guides_memory_numbers_come_from_the_real_qwen2_audio_7b_config():
    """tests/fixtures/qwen2_audio_7b_instruct/config.json is the shipped file (SOURCE.md); the counts are checked
    against closed forms of the architecture (Qwen2 text model with q/k/v biases and an untied unembedding;
    Whisper-style tower; one linear projector)."""
    from workbench.model.cost import model_config

    cfg = model_config(str(ROOT / "tests/fixtures/qwen2_audio_7b_instruct"))
    V, d, f, L = 156032, 4096, 11008, 32
    text = 2 * V * d + L * (4 * d * d + 3 * d + 3 * d * f + 2 * d) + d
    a, fa, La = 1280, 5120, 32
    layer = 4 * a * a + 3 * a + 2 * 2 * a + (a * fa + fa) + (fa * a + a)
    tower = (128 * a * 3 + a) + (a * a * 3 + a) + 1500 * a + La * layer + 2 * a
    assert cfg["params"] == {"text": text, "tower": tower, "projector": a * d + d}
    assert sum(cfg["params"].values()) == 8_397_094_912  # docs/guide.md §5.1: 8.40 B
    assert cfg["audio_tokens"] == 750 and cfg["text"]["kv"] == d  # 32 KV heads of 128: no grouped-query sharing


def test_bad_input_is_an_error_naming_the_file(tmp_path, capsys):
    import json

    from workbench.study import main

    (tmp_path / "data").mkdir()
    assert main(["--checkpoint", str(BASELINE), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "data" / "tasks.jsonl") in err and "--synth" in err
    (tmp_path / "llava").mkdir()
    (tmp_path / "llava" / "config.json").write_text(json.dumps({"architectures": ["LlavaForConditionalGeneration"]}))
    (tmp_path / "data" / "tasks.jsonl").write_text("")
    assert (
        main(["--checkpoint", str(tmp_path / "llava"), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "LlavaForConditionalGeneration" in capsys.readouterr().err
