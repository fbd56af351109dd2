"""The reproducible mode (``--reproducible``): a few real training steps give the committed loss log bit for bit.

``tests/training/reproducible/train_log.csv`` was written by ``python -m workbench.train --reproducible --config
tests/training/reproducible/config.yaml`` on an Intel Xeon with AVX-512 (its ``train_summary.json`` beside it says
where and with what). Run here, on any x86 CPU with AVX2 and the same torch, the same four steps of SmolLM2-135M +
log-mel (LAL, LoRA with dropout) must give every column of every row again: loss, learning rate, gradient norm,
token counts. A failure here means runs do not reproduce on this machine; the message says whether the synthetic
clips already differed (``data_sha256.txt``) and what the environments were.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workbench.training.driver import read_log

ROOT = Path(__file__).resolve().parents[2]
REF = Path(__file__).with_name("reproducible")


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**env, **extra}


def data_sha256(folder: Path) -> str:
    """One hash over the names and bytes of every file of a generated audiofolder."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def model_available():
    try:
        from workbench.model.llm import ensure_converted

        ensure_converted()
    except Exception as e:  # pragma: no cover
        pytest.skip(f"SmolLM2 not available offline: {e}")


def test_pins_take_effect_in_a_fresh_process():
    """ATen dispatches to AVX2 and MKL runs its AVX2 reproducibility branch (MKL_VERBOSE says CNR:AVX2)."""
    from workbench.training.reproducible import pinned_env

    code = "import torch; a = torch.ones(64, 64); a @ a; print('CAP', torch.backends.cpu.get_cpu_capability())"
    r = subprocess.run(
        [sys.executable, "-c", code], env=pinned_env(_env(MKL_VERBOSE="1")), capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "CAP AVX2" in r.stdout and "CNR:AVX2" in r.stdout, r.stdout[-2000:]


def test_reproducible_run_matches_the_committed_log_bit_for_bit(tmp_path, model_available):
    doc = yaml.safe_load((REF / "config.yaml").read_text())
    data = doc["presets"]["tiny"]["data"]
    data["train"], data["cache_dir"] = str(tmp_path / "data" / "train"), str(tmp_path / "cache")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.train",
            "--reproducible",
            "--config",
            str(cfg),
            "--out",
            str(out),
            "--no-progress",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    env_now = json.loads((out / "train_summary.json").read_text())["environment"]
    assert env_now["reproducible"] and env_now["cpu_capability"] == "AVX2" and env_now["threads"] == 1, env_now
    rows, ref = read_log(out / "train_log.csv"), read_log(REF / "train_log.csv")
    if rows != ref:
        env_ref = json.loads((REF / "train_summary.json").read_text())["environment"]
        same_data = data_sha256(tmp_path / "data" / "train") == (REF / "data_sha256.txt").read_text().split()[0]
        steps = "\n".join(
            f"  step {a['step']}: loss {a['loss']} (reference {b['loss']}), grad norm {a['grad_norm']} "
            f"(reference {b['grad_norm']})"
            for a, b in zip(rows, ref)
            if a != b
        )
        pytest.fail(
            f"the reproducible run differs from tests/training/reproducible/train_log.csv:\n{steps}\n"
            f"synthetic clips identical to the reference's: {same_data}\n"
            f"environment here: {env_now}\nreference: {env_ref}"
        )
