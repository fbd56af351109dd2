"""Hard-kill safety with the real model: ``python -m workbench.train`` (SmolLM2-135M + the log-mel encoder) is
SIGKILLed mid-stage, then ``--resume``d; its log and final weights equal an uninterrupted run's, bit for bit.

Everything is real and small: 6 clips of synthetic data generated into tmp_path, mel tokens encoded by the
trainer itself, 2 stages x 3 steps of batch 2 (LoRA dropout on, so the RNG state matters), a checkpoint every
2 steps. All three runs are subprocesses with one thread each (the same summation order in every run).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from workbench.training.driver import read_log

ROOT = Path(__file__).resolve().parents[2]
KILL_AFTER_ROW = 3  # SIGKILL once step 3's log row is written: checkpoint 2 (stage 1, step 2 of 3) is the latest
STEPS_PER_STAGE = 3


def _config(tmp: Path) -> Path:
    """A two-stage preset: connector only (3 steps), then connector + adapter + LoRA (3 steps)."""
    stage = {"lr": 1.0e-3, "warmup": 1, "tasks": ["cls"]}
    preset = {
        "model": {
            "llm": "smollm2",
            "encoders": [
                {
                    "name": "mel",
                    "dim": 256,
                    "connector": {"type": "mlp", "n_tokens": 4, "hidden": 64},
                    "integration": {"mode": "lal", "layer": 26, "adapter": True, "adapter_rank": 4, "gate": True},
                }
            ],
        },
        "data": {"train": str(tmp / "synth" / "train"), "cache_dir": str(tmp / "cache")},
        "training": {
            "seed": 0,
            "batch_size": 2,
            "grad_accum": 1,
            "mixed_precision": "no",
            "checkpoint_every": 2,
            "keep_checkpoints": 2,
            "log_every": 1,
            "eval_batches": 0,
            "lora": {"rank": 2, "alpha": 4, "dropout": 0.1, "targets": ["q_proj", "v_proj"]},
            "stages": [
                {"name": "connector", "steps": STEPS_PER_STAGE, "trainable": ["connectors"], **stage},
                {"name": "lora", "steps": STEPS_PER_STAGE, "trainable": ["connectors", "adapters", "lora"], **stage},
            ],
        },
    }
    path = tmp / "hard_kill.yaml"
    path.write_text(yaml.safe_dump({"presets": {"tiny": preset}}, sort_keys=False))
    return path


def _cmd(cfg: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "workbench.train",
        "--config",
        str(cfg),
        "--preset",
        "tiny",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def _rows(out: Path) -> int:
    try:
        return len(read_log(out / "train_log.csv"))
    except (OSError, KeyError):
        return 0


def _run_and_kill(cmd: list[str], out: Path, after_rows: int) -> tuple[int, str]:
    """Start ``cmd``; SIGKILL it as soon as ``after_rows`` log rows exist -> (rows seen, latest checkpoint)."""
    log = open(out.parent / f"{out.name}.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while _rows(out) < after_rows:
            assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before {after_rows} rows: see {log.name}"
            assert time.monotonic() < deadline, "timed out waiting for the log rows"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    return _rows(out), (out / "checkpoints" / "latest").read_text().strip()


def _final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "final" / "model.safetensors"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    try:
        from workbench.model.llm import ensure_converted

        ensure_converted()
    except Exception as e:  # pragma: no cover
        pytest.skip(f"SmolLM2 not available offline: {e}")
    from workbench.data.synth import generate

    tmp = tmp_path_factory.mktemp("hard-kill")
    generate(tmp / "synth" / "train", 6, seed=0, split="train", preset="tiny", workers=1, progress=False)
    return _config(tmp), tmp


def test_sigkill_mid_stage_then_resume_equals_uninterrupted_run(setup):
    cfg, tmp = setup
    ref, run = tmp / "reference", tmp / "killed"
    _run(_cmd(cfg, ref))  # uninterrupted (also encodes the mel tokens once, into the shared cache)
    ref_rows = read_log(ref / "train_log.csv")
    assert [int(r["step"]) for r in ref_rows] == list(range(1, 2 * STEPS_PER_STAGE + 1))
    assert [r["stage_name"] for r in ref_rows] == ["connector"] * STEPS_PER_STAGE + ["lora"] * STEPS_PER_STAGE

    seen, latest = _run_and_kill(_cmd(cfg, run), run, KILL_AFTER_ROW)
    assert not (run / "final").exists() and not (run / "train_summary.json").exists()
    ckpt_step = int(latest.removeprefix("step-"))
    assert ckpt_step < seen < 2 * STEPS_PER_STAGE  # killed mid-run, with log rows past the checkpoint
    _run(_cmd(cfg, run, "--resume"))

    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["completed"] and summary["resumed_from"].endswith(latest)
    rows = read_log(run / "train_log.csv")
    # every column of every row: loss, lr, grad norm, token counts (a skipped or repeated batch changes them)
    assert rows == ref_rows, "\n".join(
        f"step {a['step']}: loss {a['loss']} vs uninterrupted {b['loss']}" for a, b in zip(rows, ref_rows) if a != b
    )
    a, b = _final_weights(run), _final_weights(ref)
    assert sorted(a) == sorted(b) and any("lora_" in k for k in a)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
