"""The injection-layer sweep: every call is the curve (one mode and seed 0 without --modes/--seeds): configs per
point, train + evaluate each once, resumable, the curve's tables, and the report shows them under claim 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from workbench.claims import layer_curve as LC
from workbench.claims.registry import LAYER_CURVE_STEM, analysis
from workbench.pipeline.sweep import SweepError, base_mode, injection_layer_jobs, sweep_configs
from workbench.reporting import report
from workbench.sweep import build_parser, main
from workbench.training import jobs as J
from workbench.training.run_config import load_run_config
from workbench.training.runs import custom_split

BASE = "configs/delayed.yaml"

#: stands in for ``python -m workbench.train`` / ``workbench.evaluate`` (same arguments): training writes
#: ``final/config.json`` with the run's injection layer; evaluation answers 10 clips x 2 closed attributes, a clip right
#: when its index is below 10 - layer / 2 (layer 0: 100%, 4: 80%, 8: 60%), the first --max-rows rows if given
FAKE = """
import csv, json, pathlib, sys, yaml
module, args = sys.argv[1], sys.argv[2:]
arg = lambda k: args[args.index(k) + 1] if k in args else None
if module == "workbench.train":
    doc = yaml.safe_load(open(arg("--config")))["presets"][arg("--preset")]
    final = pathlib.Path(arg("--out")) / "final"
    final.mkdir(parents=True, exist_ok=True)
    layer = doc["model"]["encoders"][0]["integration"]["layer"]
    (final / "config.json").write_text(json.dumps({"layer": layer, "seed": int(arg("--seed"))}))
else:
    layer = json.loads((pathlib.Path(arg("--checkpoint")) / "config.json").read_text())["layer"]
    rows = [dict(row_id=f"{c}-{a}", file_name=f"audio/{c:03d}.wav", task="cls", attribute=a, question="q",
                 answer="x", prediction="x", correct=c < 10 - layer // 2, closed=True)
            for c in range(10) for a in ("word", "category")]
    rows = rows[: int(arg("--max-rows"))] if arg("--max-rows") else rows
    out = pathlib.Path(arg("--out"))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    max_rows = int(arg("--max-rows")) if arg("--max-rows") else None
    (out.parent / "run.json").write_text(json.dumps({"data": arg("--data"), "max_rows": max_rows}))
"""


@pytest.fixture
def fake_runs(tmp_path, monkeypatch):
    """The sweep's real jobs and commands, each command run by :data:`FAKE` instead of training a model; returns
    the list of commands run (``[module, args...]``). No data preparation, no PNG export."""
    from workbench.analysis import outputs

    script = tmp_path / "fake_run.py"
    script.write_text(FAKE)
    real, ran = J._commands, []

    def commands(job, state):
        cmds = [c[2:] for c in real(job, state)]  # drop "python -m"
        ran.extend(cmds)
        return [[sys.executable, str(script), *c] for c in cmds]

    monkeypatch.setattr(J, "_commands", commands)
    monkeypatch.setattr(J, "prepare_all", lambda jobs, progress=False: None)
    monkeypatch.setattr(outputs, "_PNG_OK", False)
    return ran


def _sweep(out, *extra: str) -> int:
    args = ["injection-layer", "--base-config", BASE, "--out", str(out), "--resamples", "200", "--no-progress"]
    return main([*args, *extra])


def _point(cmd: list[str]) -> str:
    """The ``LNN`` folder a faked command writes into."""
    return next(p for p in Path(cmd[cmd.index("--out") + 1]).parts if p[0] == "L" and p[1:].isdigit())


def test_one_mode_one_seed_call_writes_the_curve_layout_and_tables(tmp_path, fake_runs, capsys):
    out = tmp_path / "sweep"
    assert _sweep(out, "--layers", "0,4", "--max-steps", "2") == 0
    trains = [c for c in fake_runs if c[0] == "workbench.train"]
    assert sorted(c[c.index("--out") + 1] for c in trains) == [
        str(out / "plits" / f"L{l:02d}" / "seed-0") for l in (0, 4)
    ]  # mode from the base config (delayed: PLITS), seed 0
    assert all(c[c.index("--seed") + 1] == "0" and "--reproducible" in c for c in trains)
    evals = [c for c in fake_runs if c[0] == "workbench.evaluate"]
    assert len(evals) == 2 and all(c[c.index("--data") + 1] == "data/synth-tiny/test" for c in evals)
    for l in (0, 4):
        assert (out / "plits" / f"L{l:02d}" / "seed-0" / "final" / "config.json").is_file()
        assert (out / "plits" / f"L{l:02d}" / "seed-0" / "eval" / "answers.csv").is_file()
    cfg = load_run_config(out / "plits" / "L04" / "config.yaml", "tiny")
    assert all(s.steps == 2 for s in cfg.training.stages)
    assert cfg.model["encoders"][0]["integration"] == {"mode": "plits", "layer": 4}
    # the curve's tables, in the curve's columns; one seed: a clip bootstrap that says so, no seed interval
    curve = pd.read_csv(out / f"{LAYER_CURVE_STEM}.csv")
    assert list(curve.columns) == list(LC.curve_summary(LC.load_sweep_clips(out)).columns)
    top = curve[curve["family"] == LC.ALL].set_index("layer")
    assert top.loc[0, "accuracy"] == 1.0 and top.loc[4, "accuracy"] == pytest.approx(0.8)
    assert (top["n_seeds"] == 1).all() and (top["seeds"].astype(str) == "0").all() and (top["n_clips"] == 10).all()
    assert top["method"].str.startswith("clip bootstrap (1 training seed").all()
    assert top.loc[4, "ci_low"] < 0.8 < top.loc[4, "ci_high"] and top.loc[0, "ci_low"] == 1.0
    for stem in (f"{LAYER_CURVE_STEM}_seeds", LC.CONTRASTS_STEM):
        assert (out / f"{stem}.csv").is_file()
    assert (out / f"{LAYER_CURVE_STEM}.html").is_file() and not (out / "injection_layer.csv").exists()
    assert "PLITS peaks at layer 0" in capsys.readouterr().out
    # the report finds it by its registered name, under claim 1
    assert analysis(LAYER_CURVE_STEM).kind == "layer_curve"
    claim1 = report.claim_summaries(report.read_tables(out))["claim1"]
    assert any(line.startswith("injection-layer curve: PLITS peaks at layer 0") for line in claim1), claim1
    assert "Accuracy against the injection layer" in report.build_report(out)
    # resumable: one more layer trains only it; an evaluated point whose answers went is only evaluated again
    fake_runs.clear()
    (out / "plits" / "L04" / "seed-0" / "eval" / "answers.csv").unlink()
    assert _sweep(out, "--layers", "0,4,8", "--max-steps", "2") == 0
    assert sorted((c[0], _point(c)) for c in fake_runs) == [
        ("workbench.evaluate", "L04"),
        ("workbench.evaluate", "L08"),
        ("workbench.train", "L08"),
    ]
    assert sorted(pd.read_csv(out / f"{LAYER_CURVE_STEM}.csv")["layer"].unique()) == [0, 4, 8]
    # a changed setting for an existing point is an error that names the fix
    capsys.readouterr()
    assert _sweep(out, "--layers", "0", "--max-steps", "3") == 2
    assert "other settings" in capsys.readouterr().err


def test_eval_data_and_max_rows_reach_the_evaluation_and_the_curve(tmp_path, fake_runs, capsys):
    data = tmp_path / "my-data"
    data.mkdir()
    (data / "tasks.jsonl").write_text("")
    out = tmp_path / "sweep"
    common = ("--mode", "lal", "--max-steps", "2")  # (capped: no committed run is reused)
    assert _sweep(out, "--layers", "0,8", *common, "--eval-data", str(data), "--max-rows", "12") == 0
    split = custom_split(data)
    evals = [c for c in fake_runs if c[0] == "workbench.evaluate"]
    assert all(c[c.index("--data") + 1] == str(data) and c[c.index("--max-rows") + 1] == "12" for c in evals)
    answers = out / "lal" / "L08" / "seed-0" / f"eval-{split}" / "answers.csv"
    assert answers.is_file() and len(pd.read_csv(answers)) == 12
    curve = pd.read_csv(out / f"{LAYER_CURVE_STEM}.csv")
    assert set(curve["mode"]) == {"lal"} and set(curve["splits"]) == {split}
    assert set(curve.loc[curve["family"] == LC.ALL, "n_rows"]) == {12} and set(curve["n_clips"]) == {6}
    # other rows than an existing evaluation: an error before anything runs
    fake_runs.clear()
    assert _sweep(out, "--layers", "0,8", *common, "--eval-data", str(data)) == 2
    assert "max_rows=12" in capsys.readouterr().err and fake_runs == []
    # a point evaluated on other data than the others: the curve names the runs and the fix
    assert _sweep(out, "--layers", "4", *common) == 2
    assert "none shared by all" in capsys.readouterr().err
    assert _sweep(out, "--layers", "4", "--eval-data", str(tmp_path / "nope")) == 2
    assert "no tasks.jsonl" in capsys.readouterr().err


def test_mode_and_seeds_of_a_call():
    from workbench.pipeline.sweep import _modes_and_seeds

    def parsed(*extra):
        return build_parser().parse_args(["injection-layer", "--layers", "0", *extra])

    assert _modes_and_seeds(parsed()) == (["plits"], [0])  # configs/delayed.yaml is PLITS
    assert _modes_and_seeds(parsed("--base-config", "configs/pal.yaml")) == (["lal"], [0])
    assert _modes_and_seeds(parsed("--mode", "lal", "--seeds", "1,2")) == (["lal"], [1, 2])
    assert _modes_and_seeds(parsed("--modes", "plits,lal")) == (["plits", "lal"], [0])
    assert base_mode("configs/lal.yaml", "tiny") == "lal"
    with pytest.raises(SweepError, match="give one of them"):
        _modes_and_seeds(parsed("--mode", "lal", "--modes", "plits"))
    with pytest.raises(ValueError, match="distinct"):
        _modes_and_seeds(parsed("--seeds", "1,1"))
    with pytest.raises(ValueError, match="comma-separated integers"):
        _modes_and_seeds(parsed("--seeds", "a"))


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
    capsys.readouterr()
    assert main(["injection-layer", "--layers", "0", "--seeds", "0,x", "--out", str(tmp_path)]) == 2
    assert "error: --seeds must be comma-separated integers, got '0,x'" in capsys.readouterr().err


@pytest.mark.slow  # real SmolLM2-135M training (1 step per stage, one process per run) + evaluation at two layers: minutes
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
                "--eval-data",
                str(cfg.data.val),
                "--max-rows",
                "16",
                "--resamples",
                "50",
                "--no-progress",
            ]
        )
        == 0
    )
    table = pd.read_csv(out / f"{LAYER_CURVE_STEM}.csv")
    assert sorted(table["layer"].unique()) == [0, 28] and (out / f"{LAYER_CURVE_STEM}.html").is_file()
    assert (out / "plits" / "L28" / "seed-0" / "final" / "config.json").is_file()


def test_curve_jobs_one_per_mode_layer_and_seed_reusing_matching_runs(tmp_path):
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
