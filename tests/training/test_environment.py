"""What a run depends on is recorded (summary, checkpoint, evaluation), with repository-relative paths, and a resume
in another environment warns that it will not continue bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.training.conftest import write_config
from workbench.training.checkpoint import find_latest, read_trainer_state
from workbench.training.driver import train
from workbench.training.environment import relative_command, repo_relative, resume_mismatches, with_environment
from workbench.training.run_config import load_run_config

ROOT = Path(__file__).resolve().parents[2]


def test_summary_and_checkpoint_record_the_environment_and_resume_warns_on_other_threads(tmp_path, data_root, factory):
    import transformers

    cfg = load_run_config(write_config(tmp_path, data_root), "tiny")
    s = train(cfg, tmp_path / "run", max_steps=3, model_factory=factory, progress=False)
    env = s["environment"]
    assert env["threads"] == torch.get_num_threads() and env["device"] == "cpu" and env["cpu"]
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert (env["torch"], env["transformers"]) == (torch.__version__, transformers.__version__)
    assert env["reproducible"] is False  # the default mode
    on_disk = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert on_disk["environment"] == env and on_disk["num_processes"] == 1
    state = read_trainer_state(find_latest(tmp_path / "run" / "checkpoints"))
    assert state["environment"] == env
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        with pytest.warns(UserWarning, match=rf"threads {threads} -> {threads + 1}.*not be bit-identical"):
            train(cfg, tmp_path / "run", resume=True, model_factory=factory, progress=False)
    finally:
        torch.set_num_threads(threads)


def test_resume_mismatches_name_the_settings_that_change_the_numbers():
    a = {
        "threads": 1,
        "cpu_capability": "AVX2",
        "device": "cpu",
        "deterministic_algorithms": True,
        "env": {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    }
    b = {**a, "cpu_capability": "AVX512", "env": {"ATEN_CPU_CAPABILITY": "avx2"}}
    assert resume_mismatches(a, b) == ["cpu_capability 'AVX2' -> 'AVX512'", "MKL_CBWR 'AVX2' -> None"]
    assert resume_mismatches(a, dict(a)) == [] and resume_mismatches(None, a) == []


def test_paths_are_written_relative_to_the_repository():
    assert repo_relative(ROOT / "configs" / "pal.yaml") == "configs/pal.yaml"
    assert repo_relative("/elsewhere/x") == "/elsewhere/x"  # outside the repository: no portable spelling
    assert (
        relative_command(["python -m workbench.train", "--config", str(ROOT / "configs" / "pal.yaml")])
        == "python -m workbench.train --config configs/pal.yaml"
    )
    info = with_environment(
        {
            "checkpoint": str(ROOT / "results" / "checkpoints" / "pal" / "final"),
            "data": "data/synth-tiny/test",
            "n_rows": 3,
        }
    )
    assert (info["checkpoint"], info["data"], info["n_rows"]) == (
        "results/checkpoints/pal/final",
        "data/synth-tiny/test",
        3,
    )
    assert info["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_committed_run_records_hold_no_absolute_paths():
    files = [*ROOT.glob("results/**/train_summary.json"), *ROOT.glob("results/**/run.json")]
    assert len(files) > 50
    bad = [str(f.relative_to(ROOT)) for f in files if '"/' in f.read_text() or " /" in f.read_text()]
    assert bad == []
