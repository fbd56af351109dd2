"""Data-parallel training with two CPU processes (``torchrun --nproc_per_node 2``, gloo), checked against what data
parallelism promises: the same global batch gives one process's loss and weights, each rank trains on its own
shard, rank 0 alone writes one log and one set of checkpoints, and ``--resume`` continues exactly.

The model is the stand-in (:mod:`tests.training.standin`) on 24 tiny clips, batch 4 (2 per process), 12 steps in
three stages, LoRA dropout off (with dropout each process draws its own masks: equal in distribution only).
Tolerance against one process (float32 sums in another order): 1e-5 absolute on every loss, gradient norm and
validation loss (measured: 5e-7 at most), 1e-4 on every trained weight after 12 AdamW steps (measured: 6e-6).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from tests.training.conftest import write_config
from tests.training.ddp_standin import RecordingStandIn, rows_file
from workbench.training.driver import read_log, train
from workbench.training.launch import LaunchError, check_launch

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-5  # losses and gradient norms (measured: 5e-7, 1e-6)
TOL_WEIGHTS = 1e-4  # trained weights after 12 AdamW steps (measured: 6e-6)


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.pop("WORLD_SIZE", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "tests.training.ddp_standin",
        *args,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"rc {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def _no_dropout(doc):
    for p in doc["presets"].values():
        if "lora" in p["training"]:
            p["training"]["lora"]["dropout"] = 0.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_root, tokenizer):
    """One process in this one (A1), two processes uninterrupted (A2), two processes stopped at step 5 and resumed (B2)."""
    tmp = tmp_path_factory.mktemp("ddp")
    cfg = write_config(tmp, data_root, _no_dropout)
    models = []

    def factory(model_dict, **_):
        models.append(RecordingStandIn(tokenizer, **model_dict))
        return models[-1]

    from workbench.training.run_config import load_run_config

    train(load_run_config(cfg, "tiny"), tmp / "A1", model_factory=factory, progress=False)
    logs = {"A2": _ok(_torchrun("--config", str(cfg), "--out", str(tmp / "A2")))}
    logs["B2-stop"] = _ok(_torchrun("--config", str(cfg), "--out", str(tmp / "B2"), "--max-steps", "5"))
    logs["B2-resume"] = _ok(_torchrun("--config", str(cfg), "--out", str(tmp / "B2"), "--resume"))
    return SimpleNamespace(tmp=tmp, one_rows=models[0].rows, logs=logs)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / "model.safetensors"))


def test_two_processes_equal_one_process_on_the_same_global_batch(runs):
    one, two = read_log(runs.tmp / "A1" / "train_log.csv"), read_log(runs.tmp / "A2" / "train_log.csv")
    assert [r["step"] for r in two] == [r["step"] for r in one] and len(one) == 12
    for a, b in zip(one, two):
        assert (a["tokens"], a["label_tokens"], a["lr"]) == (b["tokens"], b["label_tokens"], b["lr"])  # global counts
        assert abs(float(a["loss"]) - float(b["loss"])) <= TOL, (a, b)
        assert abs(float(a["grad_norm"]) - float(b["grad_norm"])) <= TOL * max(1.0, float(a["grad_norm"])), (a, b)
    v1, v2 = read_log(runs.tmp / "A1" / "val_log.csv"), read_log(runs.tmp / "A2" / "val_log.csv")
    assert len(v1) == len(v2) == 3
    assert all(abs(float(a["val_loss"]) - float(b["val_loss"])) <= TOL for a, b in zip(v1, v2))
    w1, w2 = _weights(runs.tmp / "A1"), _weights(runs.tmp / "A2")
    assert sorted(w1) == sorted(w2) and any("lora_" in k for k in w1)
    worst = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert worst <= TOL_WEIGHTS, f"largest weight difference {worst}"
    summary = json.loads((runs.tmp / "A2" / "train_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["completed"]


def test_each_rank_trains_on_its_own_half_of_the_global_batch(runs):
    ranks = [json.loads(rows_file(runs.tmp / "A2", r).read_text()) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(runs.one_rows) == 12
    for step, (r0, r1, both) in enumerate(zip(ranks[0], ranks[1], runs.one_rows), 1):
        assert len(r0) == len(r1) == 2, step
        assert r0 != r1, f"step {step}: both ranks trained on the same rows {r0}"
        assert sorted(r0 + r1) == sorted(both), f"step {step}: ranks {r0} + {r1} != one process's batch {both}"


def test_rank0_alone_prints_and_writes(runs):
    out = runs.tmp / "A2"
    log = runs.logs["A2"]
    assert log.count("done;") == 1, log[-2000:]
    assert sum(line.startswith("step 1/12") for line in log.splitlines()) == 1, log[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "final",
        "train_log.csv",
        "train_summary.json",
        "val_log.csv",
    ]
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["latest", "step-000009", "step-000012"], ckpts
    assert sorted(p.name for p in (out / "checkpoints" / "step-000012").glob("rng-rank*.pt")) == [
        "rng-rank0.pt",
        "rng-rank1.pt",
    ]


def test_two_process_resume_continues_exactly(runs):
    assert "stopped at step 5/12" in runs.logs["B2-stop"]
    a, b = read_log(runs.tmp / "A2" / "train_log.csv"), read_log(runs.tmp / "B2" / "train_log.csv")
    assert a == b, "\n".join(f"step {x['step']}: {x['loss']} vs {y['loss']}" for x, y in zip(a, b) if x != y)
    wa, wb = _weights(runs.tmp / "A2"), _weights(runs.tmp / "B2")
    assert [k for k in wa if not torch.equal(wa[k], wb[k])] == []
    assert json.loads((runs.tmp / "B2" / "train_summary.json").read_text())["resumed_from"].endswith("step-000005")


def test_a_lone_rank_of_a_multi_process_launch_stops_with_how_to_launch():
    r = _torchrun("--alone")  # accelerate.Accelerator() without cpu=True: each of the 2 processes sees 1
    assert r.returncode != 0
    assert "the launcher started 2 processes" in r.stderr and "torchrun --nproc_per_node N" in r.stderr, r.stderr[
        -2000:
    ]
    with pytest.raises(LaunchError, match="accelerate sees 1"):
        check_launch(SimpleNamespace(num_processes=1, distributed_type="NO"), env={"WORLD_SIZE": "4", "RANK": "3"})
    check_launch(SimpleNamespace(num_processes=1), env={})  # a plain single process is fine
