"""workbench.evaluate end to end with stand-in predictors on a tiny synthetic corpus; bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.evaluate import main
from workbench.evaluation.evaluator import EvaluationError, evaluate_checkpoint, evaluate_predictor
from workbench.evaluation.metrics import normalize_answer


@pytest.fixture(scope="module")
def dataset(tiny_data, tokenizer):
    from workbench.data.dataset import AudioTaskDataset

    return AudioTaskDataset(tiny_data, tokenizer, with_answer=False)


def _oracle(batch):
    return [f"{r['answer']}." for r in batch["row"]]


def test_oracle_scores_perfectly(dataset, tmp_path):
    out = tmp_path / "run" / "answers.csv"
    answers, scores = evaluate_predictor(
        dataset, _oracle, out, batch_size=16, meteor=False, info={"variant": "oracle"}, progress=False
    )
    assert len(answers) == len(dataset)
    on_disk = pd.read_csv(out)
    assert list(on_disk.columns[:8]) == [
        "row_id",
        "file_name",
        "task",
        "attribute",
        "question",
        "answer",
        "prediction",
        "correct",
    ]
    assert on_disk.loc[on_disk["closed"], "correct"].all()
    assert on_disk.loc[~on_disk["closed"], "correct"].isna().all()
    s = pd.read_csv(out.parent / "scores.csv")
    assert list(s.columns) == ["metric", "task", "attribute", "value", "n", "chance"]
    acc = s[s["metric"] == "accuracy"]
    assert (acc["value"] == 1.0).all() and len(acc) > 10
    assert set(acc["task"]) == {"all", "cls", "qa"}
    # chance per attribute from answer_options.json
    opts = json.loads((dataset.root / "answer_options.json").read_text())
    loud = acc[(acc["task"] == "cls") & (acc["attribute"] == "loudness_class")].iloc[0]
    assert loud["chance"] == pytest.approx(1 / len(opts["loudness_class"]))
    cap = s[s["task"] == "caption"].set_index("metric")["value"]
    assert cap["exact_match"] == 1.0 and cap["cider_d"] == pytest.approx(10.0, rel=1e-6)
    assert cap["bleu_4"] == pytest.approx(1.0, abs=1e-6) and cap["rouge_l"] == pytest.approx(1.0)
    assert json.loads((out.parent / "run.json").read_text())["variant"] == "oracle"


def test_constant_predictor_accuracy_is_answer_frequency(dataset):
    answers, scores = evaluate_predictor(
        dataset, lambda b: ["medium"] * len(b["row"]), None, batch_size=32, meteor=False, progress=False, max_rows=60
    )
    assert len(answers) == 60
    closed = answers[answers["closed"]]
    expected = (closed["answer"].map(normalize_answer) == "medium").mean()
    assert 0 < expected < 1
    s = scores.set_index(["metric", "task", "attribute"])
    assert s.loc[("accuracy", "all", "all"), "value"] == pytest.approx(expected)
    g = closed[closed["attribute"] == "loudness_class"]
    assert s.loc[("accuracy", "cls", "loudness_class"), "value"] == pytest.approx((g["answer"] == "medium").mean())


def test_token_mode_with_mel_cache(tiny_data, tokenizer, tmp_path):
    """The checkpoint path with a stand-in model: encoder cache + token-mode batches reach the predictor."""
    seen = {}

    class Stub:
        encoder_names = ["mel"]

        def __init__(self):
            self.tokenizer = tokenizer

        def generate_answers(self, batch, max_new_tokens=16):
            seen["keys"] = set(batch["audio_tokens"])
            seen["shape"] = tuple(batch["audio_tokens"]["mel"].shape)
            return ["yes"] * len(batch["row"])

    answers, scores = evaluate_checkpoint(
        tmp_path / "stub-ckpt",
        tiny_data,
        tmp_path / "out" / "answers.csv",
        tasks=["qa"],
        max_rows=10,
        batch_size=4,
        cache_dir=tmp_path / "cache",
        meteor=False,
        progress=False,
        model=Stub(),
    )
    assert seen["keys"] == {"mel"} and seen["shape"][0] <= 4 and len(seen["shape"]) == 3
    assert set(answers["task"]) == {"qa"} and len(answers) == 10
    assert (tmp_path / "out" / "scores.csv").is_file()


def test_bad_input_messages(tiny_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(tmp_path / "nope"), "--data", str(tiny_data)])
    assert "nope" in str(e.value) and "checkpoint folder not found" in str(e.value)
    ck = tmp_path / "ck"
    ck.mkdir()
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(ck), "--data", str(tiny_data)])
    assert "config.json" in str(e.value)
    (ck / "config.json").write_text("{}")
    empty = tmp_path / "data"
    empty.mkdir()
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(ck), "--data", str(empty)])
    assert "tasks.jsonl" in str(e.value) and "workbench.data.synth" in str(e.value)
    with pytest.raises(EvaluationError, match="tasks.jsonl"):
        evaluate_checkpoint(ck, empty, model=object())


@pytest.mark.slow  # ~15 s; the CLI test below covers the same path (+ save/from_pretrained) in the fast suite
def test_real_untrained_pal_model(tiny_data, tmp_path):
    """The real path on a freshly initialised PALModel (untrained): runs, writes, scores in [0, 1]."""
    from workbench.model.pal import PALModel

    model = _untrained_pal(PALModel, tmp_path)
    answers, scores = evaluate_checkpoint(
        tmp_path / "ckpt",
        tiny_data,
        tmp_path / "eval" / "answers.csv",
        tasks=["cls"],
        max_rows=4,
        batch_size=2,
        max_new_tokens=4,
        cache_dir=tmp_path / "cache",
        meteor=False,
        progress=False,
        model=model,
    )
    assert len(answers) == 4 and answers["prediction"].map(type).eq(str).all()
    acc = scores[scores["metric"] == "accuracy"]["value"]
    assert ((acc >= 0) & (acc <= 1)).all()


def _untrained_pal(PALModel, tmp_path):
    """An untrained PALModel: SmolLM2 + the cheap mel encoder, MLP connector, PLITS at layer 0."""
    from workbench.model.pal_config import PALConfig

    cfg = PALConfig.from_dict(
        {
            "llm": "smollm2",
            "encoders": [
                {
                    "name": "mel",
                    "connector": {"type": "mlp", "n_tokens": 4, "hidden": 64},
                    "integration": {"mode": "plits", "layer": 0},
                }
            ],
        }
    )
    return PALModel.from_config(cfg)


def test_cli_on_saved_untrained_checkpoint(tiny_data, tmp_path, capsys, monkeypatch):
    """save_pretrained -> `python -m workbench.evaluate --checkpoint ...` (PALModel.from_pretrained path)."""
    from workbench.model.pal import PALModel

    ckpt = _untrained_pal(PALModel, tmp_path).save_pretrained(tmp_path / "plits0")
    main(
        [
            "--checkpoint",
            str(ckpt),
            "--data",
            str(tiny_data),
            "--max-rows",
            "3",
            "--batch-size",
            "3",
            "--tasks",
            "qa",
            "--max-new-tokens",
            "3",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-progress",
            "--no-meteor",
        ]
    )
    assert "accuracy" in capsys.readouterr().out
    a = pd.read_csv(ckpt / "eval" / "answers.csv")
    assert len(a) == 3 and set(a["task"]) == {"qa"}
    info = json.loads((ckpt / "eval" / "run.json").read_text())
    assert info["variant"] == "plits0"
    import torch  # what the answers depend on (workbench.training.environment)

    assert info["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["environment"]["threads"] == torch.get_num_threads() and info["environment"]["device"] == "cpu"


def test_grouping_short_answers_keeps_answers_in_row_order(dataset):
    from workbench.evaluation.evaluator import predict_rows

    batches = []

    def oracle(batch):
        batches.append([bool(r.get("closed", False)) for r in batch["row"]])
        return _oracle(batch)

    plain = predict_rows(dataset, _oracle, batch_size=8, max_rows=40, progress=False)
    grouped = predict_rows(dataset, oracle, batch_size=8, max_rows=40, progress=False, group_by_answer_length=True)
    pd.testing.assert_frame_equal(plain, grouped)
    flat = [c for b in batches for c in b]
    assert flat == sorted(flat, reverse=True) and 0 < sum(flat) < len(flat)  # closed rows first, then the rest
