"""The trainer with the real PALModel (SmolLM2-135M + cached mel tokens): a few steps, resume bit-exact."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import workbench.model.pal as pal  # noqa: E402 (a broken import must fail, not skip)
from tests.training.conftest import write_config
from workbench.training.driver import read_log, train
from workbench.training.run_config import load_run_config

pytestmark = pytest.mark.slow  # ~60 s on 2 CPU cores

MODEL = {
    "llm": "smollm2",
    "encoders": [
        {
            "name": "mel",
            "dim": 256,
            "connector": {"type": "mlp", "n_tokens": 4, "hidden": 64},
            "integration": {"mode": "lal", "layer": 26, "adapter": True, "adapter_rank": 4, "gate": True},
        }
    ],
}


def _mutate(doc):
    p = doc["presets"]["tiny"]
    p["model"] = MODEL
    t = p["training"]
    t.update(batch_size=2, checkpoint_every=2, eval_batches=1)
    t["lora"] = {"rank": 2, "alpha": 4, "dropout": 0.1, "targets": ["q_proj", "v_proj"]}
    for s in t["stages"]:
        s["steps"] = 2


@pytest.fixture(scope="module")
def real_cfg(tmp_path_factory, data_root):
    try:
        from workbench.model.llm import ensure_converted

        ensure_converted()
    except Exception as e:  # pragma: no cover
        pytest.skip(f"SmolLM2 not available offline: {e}")
    tmp = tmp_path_factory.mktemp("real")
    return load_run_config(write_config(tmp, data_root, _mutate), "tiny")


def test_real_model_trains_and_resumes_exactly(tmp_path, real_cfg):
    ref = tmp_path / "ref"
    s = train(real_cfg, ref, progress=False)
    rows = read_log(ref / "train_log.csv")
    assert (
        s["completed"] and len(rows) == 6 and [r["stage_name"] for r in rows[::2]] == ["connector", "lora", "full_mix"]
    )
    assert all(float(r["loss"]) > 0 and float(r["grad_norm"]) > 0 for r in rows)
    out = tmp_path / "run"
    train(real_cfg, out, max_steps=3, progress=False)
    train(real_cfg, out, resume=True, progress=False)
    assert read_log(out / "train_log.csv") == rows
    a, b = load_file(str(ref / "final" / "model.safetensors")), load_file(str(out / "final" / "model.safetensors"))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert any("lora_" in k for k in a) and any(k.startswith("lal_adapters.") for k in a)
    # the final folder is a loadable PAL checkpoint
    m = pal.PALModel.from_pretrained(ref / "final")
    assert (
        m.lora_cfg["rank"] == 2 and json.loads((ref / "final" / "config.json").read_text())["pal"]["llm"] == "smollm2"
    )
