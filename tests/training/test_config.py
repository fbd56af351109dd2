"""Bad input: config schema errors, presets, empty datasets, resume mismatches."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.training.conftest import EXAMPLE, example_dict, write_config
from workbench.train import main
from workbench.training.batch_order import EmptyDatasetError
from workbench.training.checkpoint import CheckpointError
from workbench.training.driver import train
from workbench.training.run_config import ConfigError, config_hash, load_run_config


def _write(tmp_path, doc):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def _err(tmp_path, mutate, preset="tiny"):
    doc = example_dict()
    mutate(doc)
    with pytest.raises(ConfigError) as ei:
        load_run_config(_write(tmp_path, doc), preset)
    return str(ei.value)


def test_example_config_loads():
    cfg = load_run_config(EXAMPLE, "tiny")
    assert [s.name for s in cfg.training.stages] == ["connector", "lora", "full_mix"]
    assert cfg.training.total_steps == 12 and cfg.training.uses_lora and cfg.training.lora.rank == 4
    assert cfg.data.train.is_absolute() and cfg.data.generate["n_train"] == 24
    assert cfg.training.stages[0].lr == 1e-2 and cfg.training.stages[1].tasks == ["cls", "qa"]
    other = load_run_config(EXAMPLE, "other")
    assert other.training.seed == 0 and other.training.grad_accum == 1 and other.data.val is None


def test_unknown_preset_lists_available():
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'; available presets: \['other', 'tiny'\]"):
        load_run_config(EXAMPLE, "huge")


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d["presets"]["tiny"]["training"].update(batchsize=3), r"training: unknown key\(s\) \['batchsize'\]"),
        (lambda d: d["presets"]["tiny"].pop("training"), r"missing required key\(s\) \['training'\]"),
        (lambda d: d["presets"]["tiny"].pop("model"), r"\['model'\]"),
        (lambda d: d["presets"]["tiny"]["data"].pop("train"), r"data: missing required key\(s\) \['train'\]"),
        (lambda d: d["presets"]["tiny"]["data"].update(trian="x"), r"data: unknown key\(s\) \['trian'\]"),
        (lambda d: d.update(defaults={}), r"<top level>: unknown key\(s\) \['defaults'\]"),
        (
            lambda d: d["presets"]["tiny"]["training"]["stages"][1]["trainable"].append("encoder"),
            r"stages\[1\] \(lora\)\.trainable: unknown value\(s\) \['encoder'\]; choose from \['connectors', 'adapters', 'lora'\]",
        ),
        (lambda d: d["presets"]["tiny"]["training"]["stages"][0].update(tasks=["clss"]), r"tasks: unknown value"),
        (lambda d: d["presets"]["tiny"]["training"]["stages"][0].update(steps=0), r"steps: must be >= 1"),
        (lambda d: d["presets"]["tiny"]["training"]["stages"][0].update(lr="fast"), r"lr: expected a number"),
        (lambda d: d["presets"]["tiny"]["training"]["stages"][0].update(lrate=1), r"unknown key\(s\) \['lrate'\]"),
        (lambda d: d["presets"]["tiny"]["training"].update(stages=[]), r"non-empty list of stages"),
        (lambda d: d["presets"]["tiny"]["training"].pop("lora"), r"train 'lora' but the training section has no lora"),
        (
            lambda d: d["presets"]["tiny"]["training"].update(mixed_precision="fp8"),
            r"mixed_precision: 'fp8' is not one of",
        ),
        (lambda d: d["presets"]["tiny"]["training"]["lora"].update(rnk=2), r"training.lora: unknown key"),
    ],
)
def test_schema_errors(tmp_path, mutate, match):
    msg = _err(tmp_path, mutate)
    assert "[preset tiny]" in msg or "<top level>" in msg
    import re

    assert re.search(match, msg), msg


def test_yaml_quirks_accepted(tmp_path):
    doc = example_dict()
    doc["presets"]["tiny"]["training"]["stages"][0]["lr"] = "1e-3"  # YAML reads this as a string
    p = _write(tmp_path, doc)
    p.write_text(p.read_text().replace("mixed_precision: 'no'", "mixed_precision: no"))  # YAML 1.1 false
    cfg = load_run_config(p, "tiny")
    assert cfg.training.stages[0].lr == 1e-3 and cfg.training.mixed_precision == "no"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "nope.yaml", "tiny")
    (tmp_path / "bad.yaml").write_text("presets: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(tmp_path / "bad.yaml", "tiny")


def test_hash_ignores_logging_keys_only():
    raw = example_dict()["presets"]["tiny"]
    h = config_hash(raw)
    raw["training"]["checkpoint_every"] = 99
    raw["training"]["log_every"] = 7
    assert config_hash(raw) == h
    raw["training"]["stages"][0]["lr"] = 0.5
    assert config_hash(raw) != h
    assert config_hash(example_dict()["presets"]["tiny"], seed=1) != h


def test_empty_dataset_after_task_filter(tmp_path, data_root, factory):
    d = tmp_path / "clsonly"
    shutil.copytree(data_root / "synth" / "train", d)
    rows = [json.loads(x) for x in (d / "tasks.jsonl").read_text().splitlines() if x.strip()]
    (d / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["task"] == "caption"))

    def mutate(doc):
        doc["presets"]["tiny"]["data"]["train"] = str(d)

    cfg = load_run_config(write_config(tmp_path, data_root, mutate), "tiny")
    with pytest.raises(EmptyDatasetError) as ei:
        train(cfg, tmp_path / "run", model_factory=factory, progress=False)
    msg = str(ei.value)
    assert str(d) in msg and "tasks=['cls']" in msg and "'connector'" in msg


def test_resume_errors(tmp_path, data_root, factory, monkeypatch, capsys):
    cfg = load_run_config(write_config(tmp_path, data_root), "tiny")
    with pytest.raises(CheckpointError, match="--resume: no checkpoint in"):
        train(cfg, tmp_path / "run", resume=True, model_factory=factory, progress=False)
    train(cfg, tmp_path / "run", max_steps=3, model_factory=factory, progress=False)
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        train(cfg, tmp_path / "run", model_factory=factory, progress=False)

    def mutate(doc):
        doc["presets"]["tiny"]["training"]["stages"][1]["lr"] = 0.5
        doc["presets"]["tiny"]["training"]["checkpoint_every"] = 5  # allowed to differ

    cfg2 = load_run_config(write_config(tmp_path, data_root, mutate, name="c2.yaml"), "tiny")
    with pytest.raises(CheckpointError, match=r"config differs.*training\.stages\[1\]\.lr: 0\.005 -> 0\.5"):
        train(cfg2, tmp_path / "run", resume=True, model_factory=factory, progress=False)
    with pytest.raises(CheckpointError, match="config differs.*training.seed: 0 -> 4"):
        train(
            load_run_config(write_config(tmp_path, data_root), "tiny", seed=4),
            tmp_path / "run",
            resume=True,
            model_factory=factory,
            progress=False,
        )
    # CLI: exit code 2 and a message
    import workbench.training.driver as T

    monkeypatch.setattr(T, "default_model_factory", factory)
    rc = main(["--config", str(tmp_path / "c2.yaml"), "--out", str(tmp_path / "run"), "--resume", "--no-progress"])
    assert rc == 2 and "config differs" in capsys.readouterr().err
    rc = main(["--config", str(tmp_path / "c2.yaml"), "--preset", "nope", "--out", str(tmp_path / "x")])
    assert rc == 2 and "available presets" in capsys.readouterr().err


def test_all_variants_skips_missing(tmp_path, data_root, factory, monkeypatch, capsys):
    import workbench.training.driver as T

    monkeypatch.setattr(T, "default_model_factory", factory)
    cdir = tmp_path / "configs"
    cdir.mkdir()
    shutil.copy(write_config(tmp_path, data_root), cdir / "pal.yaml")
    shutil.copy(write_config(tmp_path, data_root), cdir / "lal.yaml")
    with pytest.warns(UserWarning, match="baseline.yaml missing"):
        rc = main(
            [
                "--all",
                "--preset",
                "other",
                "--configs-dir",
                str(cdir),
                "--out-root",
                str(tmp_path / "res"),
                "--no-progress",
            ]
        )
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["lal", "pal"]
    assert (tmp_path / "res" / "pal" / "final" / "model.safetensors").is_file()
    rc = main(["--all", "--configs-dir", str(tmp_path / "none"), "--out-root", str(tmp_path / "r2")])
    assert rc == 2


def test_encoder_alias_does_not_change_the_hash():
    """``yamnet`` and its old name ``general`` run the same numbers: the committed runs (hashed with ``general``)
    keep matching the configs, which now say ``yamnet`` (``--resume``, reuse of finished runs)."""
    import copy

    cfg = load_run_config("configs/pal.yaml", "tiny")
    names = [e["name"] for e in cfg.raw["model"]["encoders"]]
    assert "yamnet" in names and "general" not in names
    old = copy.deepcopy(cfg.raw)
    for e in old["model"]["encoders"]:
        e["name"] = {"yamnet": "general"}.get(e["name"], e["name"])
    assert config_hash(old, 0) == config_hash(cfg.raw, 0) == cfg.hash()
    import json
    from pathlib import Path

    assert json.loads(Path("results/checkpoints/pal/train_summary.json").read_text())["config_hash"] == cfg.hash()
    other = copy.deepcopy(cfg.raw)
    other["model"]["encoders"][0]["name"] = "mel"
    assert config_hash(other, 0) != cfg.hash()
