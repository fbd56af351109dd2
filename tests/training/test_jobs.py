"""Seed runs and sweep points: the run layout, job states, reuse of finished runs, and the parallel runner."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.training.conftest import EXAMPLE
from workbench.common.paths import variant_of
from workbench.train import main as train_main
from workbench.training import jobs as J
from workbench.training.driver import parse_seeds
from workbench.training.run_config import load_run_config
from workbench.training.runs import EVAL_DIRS, find_seed_runs, run_dir, sweep_run_dir


def _summary(folder: Path, seed: int, config_hash: str = "x", completed: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_summary.json").write_text(
        json.dumps({"seed": seed, "completed": completed, "config_hash": config_hash})
    )


def _answers(folder: Path, split: str) -> None:
    p = folder / EVAL_DIRS[split] / "answers.csv"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("row_id,correct\n1,True\n")


def test_layout_seed_zero_is_the_committed_folder(tmp_path):
    _summary(tmp_path / "pal", 0)
    _summary(tmp_path / "pal" / "seed-1", 1)
    _summary(tmp_path / "lal" / "seed-0", 0)
    assert run_dir(tmp_path, "pal", 0) == tmp_path / "pal"
    assert run_dir(tmp_path, "pal", 2) == tmp_path / "pal" / "seed-2"
    assert run_dir(tmp_path, "lal", 0) == tmp_path / "lal" / "seed-0"  # no committed run there
    runs = [(r.variant, r.seed, r.path) for r in find_seed_runs(tmp_path)]
    assert runs == [
        ("lal", 0, tmp_path / "lal" / "seed-0"),
        ("pal", 0, tmp_path / "pal"),
        ("pal", 1, tmp_path / "pal" / "seed-1"),
    ]
    assert variant_of(tmp_path / "pal" / "seed-1" / "final") == "pal"
    assert variant_of(tmp_path / "pal" / "final") == "pal"
    assert sweep_run_dir("lal", 4, 1, tmp_path) == tmp_path / "lal" / "L04" / "seed-1"


def test_job_states_follow_what_is_on_disk(tmp_path):
    job = J.Job("pal/seed-1", EXAMPLE, "tiny", 1, tmp_path / "run")
    assert J.job_state(job) == "train"
    (job.out / "checkpoints" / "step-000003").mkdir(parents=True)
    assert J.job_state(job) == "resume"
    (job.out / "final").mkdir()
    (job.out / "final" / "config.json").write_text("{}")
    assert J.job_state(job) == "evaluate"
    _answers(job.out, "test")
    assert J.job_state(job) == "evaluate" and job.missing_evals() == ["test-seed1"]
    _answers(job.out, "test-seed1")
    assert J.job_state(job) == "done"
    train_cmd, *evals = J._commands(J.Job("x", EXAMPLE, "tiny", 2, tmp_path / "new"), "train")
    assert train_cmd[2:4] == ["workbench.train", "--config"] and "--seed" in train_cmd and "2" in train_cmd
    assert len(evals) == 2 and all("workbench.evaluate" in c for c in evals)


def test_a_finished_run_with_the_same_config_and_seed_is_reused(tmp_path):
    src = tmp_path / "results" / "checkpoints" / "delayed"
    want = load_run_config(EXAMPLE, "tiny", seed=0).hash()
    _summary(src, 0, want)
    (src / "train_log.csv").write_text("step,loss\n1,2.0\n")
    _answers(src, "test")
    _answers(src, "test-seed1")
    other = tmp_path / "other"
    _summary(other, 0, "another-config")
    job = J.Job("plits@8/seed-0", EXAMPLE, "tiny", 0, tmp_path / "sweep" / "seed-0", reuse=[other, src])
    assert J._reusable(job) == src
    _, what, _ = J._run_job(job, threads=1)
    assert what.startswith("reused") and J.job_state(job) == "done"
    assert (job.out / "train_log.csv").read_text() == (src / "train_log.csv").read_text()
    assert json.loads((job.out / "reused_from.json").read_text())["run"] == str(src)
    seed1 = J.Job("plits@8/seed-1", EXAMPLE, "tiny", 1, tmp_path / "sweep" / "seed-1", reuse=[src])
    assert J._reusable(seed1) is None  # the seed is part of the config hash


def test_runner_runs_in_parallel_keeps_going_after_a_failure_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(J, "prepare_all", lambda jobs, progress=False: None)
    writer = (
        "import pathlib,sys; p=pathlib.Path(sys.argv[1]); p.parent.mkdir(parents=True, exist_ok=True); "
        "p.write_text('row_id,correct\\n')"
    )

    def commands(job, state):
        if job.name == "bad":
            return [[sys.executable, "-c", "raise SystemExit(3)"]]
        return [[sys.executable, "-c", writer, str(J.eval_answers(job.out, s))] for s in job.missing_evals()]

    monkeypatch.setattr(J, "_commands", commands)
    jobs = [J.Job(n, EXAMPLE, "tiny", 0, tmp_path / n) for n in ("a", "b", "bad", "c")]
    logs = []
    with pytest.raises(RuntimeError, match=r"1 run\(s\) failed: \['bad'\]"):
        J.run_jobs(jobs, parallel=2, log=logs.append)
    assert [J.job_state(j) for j in jobs] == ["done", "done", "train", "done"]
    assert "exit code 3" in (tmp_path / "bad" / "job.log").read_text() or any("exit code 3" in m for m in logs)
    logs.clear()
    J.run_jobs(jobs[:2], parallel=2, log=logs.append)  # finished runs are kept, nothing to do
    assert logs == ["2 runs: 2 done, 0 to do, 2 at a time x 1 thread(s)"]


def test_seed_arguments_are_checked(capsys):
    assert parse_seeds("0,1,2") == [0, 1, 2]
    for bad in ("0,0", "-1", "a", ""):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)
    assert train_main(["--all", "--seeds", "0,0"]) == 2
    assert "--seeds must be distinct non-negative integers, got '0,0'" in capsys.readouterr().err
    assert train_main(["--all", "--seeds", "0,1", "--max-steps", "3"]) == 2
    assert "drop --max-steps" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown"):
        train_main(["--all", "--seeds", "0", "--variants", "nope"])
