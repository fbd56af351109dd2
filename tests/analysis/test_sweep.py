"""The injection-layer sweep: configs per layer, train + evaluate each once, resumable, table with CIs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.claims.sweep_table import sweep_figure
from workbench.evaluation.metrics import ANSWER_COLUMNS
from workbench.pipeline.sweep import SweepError, injection_layer_sweep, sweep_configs
from workbench.sweep import main
from workbench.training.run_config import load_run_config

BASE = "configs/delayed.yaml"


class Fakes:
    """Stand-ins for the trainer and evaluator: a layer's accuracy is 1 - layer / 20 on 20 closed rows."""

    def __init__(self):
        self.trained, self.evaluated = [], []

    def train(self, cfg_path, preset, run_dir, resume, progress):
        cfg = load_run_config(cfg_path, preset)  # the written config is a valid run config
        layer = cfg.model["encoders"][0]["integration"]["layer"]
        self.trained.append((layer, resume))
        (run_dir / "final").mkdir(parents=True, exist_ok=True)
        (run_dir / "final" / "config.json").write_text(json.dumps({"layer": layer}))

    def evaluate(self, checkpoint, data, out_csv, max_rows, cache_dir, progress):
        layer = json.loads((checkpoint / "config.json").read_text())["layer"]
        self.evaluated.append(layer)
        n_right = 20 - layer
        df = pd.DataFrame(
            [
                {
                    "row_id": str(i),
                    "file_name": f"{i}.wav",
                    "task": "cls",
                    "attribute": "category",
                    "question": "q",
                    "answer": "tone",
                    "prediction": "tone" if i < n_right else "noise",
                    "correct": i < n_right,
                    "closed": True,
                }
                for i in range(20)
            ],
            columns=ANSWER_COLUMNS,
        )
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out_csv, index=False)


def test_sweep_writes_one_config_per_layer_trains_once_and_resumes(tmp_path):
    f = Fakes()
    kw = dict(
        base_config=BASE,
        out=tmp_path,
        max_steps=2,
        train_fn=f.train,
        evaluate_fn=f.evaluate,
        resamples=200,
        progress=False,
        log=lambda s: None,
    )
    table = injection_layer_sweep([0, 4], **kw)
    assert f.trained == [(0, False), (4, False)] and f.evaluated == [0, 4]
    cfg = load_run_config(tmp_path / "L04" / "config.yaml", "tiny")
    assert all(s.steps == 2 for s in cfg.training.stages)
    assert cfg.model["encoders"][0]["integration"] == {"mode": "plits", "layer": 4}
    acc = table[(table["metric"] == "accuracy") & (table["task"] == "all")].set_index("layer")
    assert acc.loc[0, "value"] == 1.0 and acc.loc[4, "value"] == pytest.approx(0.8)
    assert acc.loc[4, "ci_low"] < 0.8 < acc.loc[4, "ci_high"]
    # re-run with one more layer: only the new one trains; a trained-but-unevaluated layer is only evaluated
    (tmp_path / "L04" / "eval" / "answers.csv").unlink()
    table = injection_layer_sweep([0, 4, 8], **kw)
    assert f.trained == [(0, False), (4, False), (8, False)] and f.evaluated == [0, 4, 4, 8]
    assert sorted(table["layer"].unique()) == [0, 4, 8]
    fig = sweep_figure(table)
    assert "injection layer" in fig.layout.xaxis.title.text and "%" in fig.layout.yaxis.title.text
    with pytest.raises(SweepError, match="other settings"):
        injection_layer_sweep([0], **{**kw, "max_steps": 3})


def test_mode_switch_and_bad_input(tmp_path, capsys):
    docs = sweep_configs(BASE, "tiny", [12], mode="lal")
    integ = docs[12]["presets"]["tiny"]["model"]["encoders"][0]["integration"]
    assert integ == {"mode": "lal", "layer": 12, "adapter": True, "gate": True}
    back = sweep_configs("configs/pal.yaml", "tiny", [3], mode="plits")[3]["presets"]["tiny"]["model"]["encoders"]
    assert all(e["integration"] == {"mode": "plits", "layer": 3} for e in back)
    with pytest.raises(SweepError, match="available"):
        sweep_configs(BASE, "huge", [1])
    with pytest.raises(SweepError, match="plits or lal"):
        sweep_configs(BASE, "tiny", [1], mode="ffn")
    assert main(["injection-layer", "--layers", "0,x", "--out", str(tmp_path)]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
    assert main(["injection-layer", "--layers", "0,-4", "--out", str(tmp_path)]) == 2


@pytest.mark.slow  # real SmolLM2-135M training (1 step per stage) + evaluation at two layers: ~5 min on 2 shared CPU cores (incl. data synthesis)
def test_real_sweep_trains_and_evaluates(tmp_path_factory):
    from tests.training.conftest import EXAMPLE, write_config
    from workbench.training.batch_order import prepare_data

    root = tmp_path_factory.mktemp("sweep-data")
    cfg = load_run_config(EXAMPLE, "tiny")
    cfg.data.train, cfg.data.val, cfg.data.cache_dir = root / "synth" / "train", root / "synth" / "val", root / "cache"
    prepare_data(cfg.data, ["mel"], progress=False)

    def mutate(doc):
        p = doc["presets"]["tiny"]
        p["model"] = {
            "llm": "smollm2",
            "encoders": [
                {
                    "name": "mel",
                    "dim": 256,
                    "connector": {"type": "mlp", "n_tokens": 2, "hidden": 32},
                    "integration": {"mode": "plits", "layer": 0},
                }
            ],
        }
        p["training"].update(batch_size=2, eval_batches=1)

    base = write_config(tmp_path_factory.mktemp("sweep-cfg"), root, mutate)
    out = tmp_path_factory.mktemp("sweep-out")
    assert (
        main(
            [
                "injection-layer",
                "--layers",
                "0,28",
                "--base-config",
                str(base),
                "--out",
                str(out),
                "--max-steps",
                "1",
                "--max-rows",
                "4",
                "--resamples",
                "50",
                "--no-progress",
            ]
        )
        == 0
    )
    table = pd.read_csv(out / "injection_layer.csv")
    assert sorted(table["layer"].unique()) == [0, 28] and (out / "injection_layer.html").is_file()
    assert (out / "L28" / "final" / "config.json").is_file()


def test_curve_jobs_one_per_mode_layer_and_seed_reusing_matching_runs(tmp_path):
    from workbench.pipeline.sweep import injection_layer_jobs

    reuse = tmp_path / "checkpoints"
    base = reuse / "delayed"
    base.mkdir(parents=True)
    (base / "train_summary.json").write_text(json.dumps({"seed": 0, "completed": True}))
    jobs = injection_layer_jobs(["plits", "lal"], [0, 8], [0, 1], out=tmp_path / "curve", reuse_root=reuse)
    assert [j.name for j in jobs] == [
        "plits@0/seed-0",
        "plits@0/seed-1",
        "plits@8/seed-0",
        "plits@8/seed-1",
        "lal@0/seed-0",
        "lal@0/seed-1",
        "lal@8/seed-0",
        "lal@8/seed-1",
    ]
    assert jobs[6].out == tmp_path / "curve" / "lal" / "L08" / "seed-0" and jobs[6].seed == 0
    assert all(j.reuse == [base] for j in jobs)
    lal8 = load_run_config(jobs[6].config, "tiny", seed=0)
    integ = lal8.model["encoders"][0]["integration"]
    assert (integ["mode"], integ["layer"], integ.get("adapter"), integ.get("gate")) == ("lal", 8, True, True)
    # PLITS@8 of the curve is configs/delayed.yaml itself: its hash (seed 0) is the delayed run's
    assert (
        load_run_config(jobs[2].config, "tiny", seed=0).hash() == load_run_config("configs/delayed.yaml", "tiny").hash()
    )
    assert all(j.splits == ("test",) for j in jobs)  # the curve is evaluated on the committed split by default
    both = injection_layer_jobs(
        ["lal"], [8], [0], out=tmp_path / "curve", reuse_root=reuse, splits=["test", "test-seed1"]
    )
    assert both[0].missing_evals() == ["test", "test-seed1"]
    for bad in ({"modes": ["ffn"]}, {"modes": ["lal"], "seeds": [1, 1]}, {"modes": ["lal"], "splits": ["val"]}):
        with pytest.raises(SweepError):
            injection_layer_jobs(
                bad["modes"],
                [4],
                bad.get("seeds", [0]),
                out=tmp_path / "bad",
                reuse_root=None,
                splits=bad.get("splits", ["test"]),
            )
