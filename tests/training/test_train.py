"""Training mechanics with the stand-in model: resume bit-exactness, NaN stop, atomic checkpoints, logs,
stage switching, data order."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from tests.training.conftest import write_config
from workbench.training.checkpoint import find_latest, is_complete, read_trainer_state
from workbench.training.driver import LOG_COLUMNS, TrainingDivergedError, lr_factor, read_log, train
from workbench.training.run_config import load_run_config


def _cfg(tmp_path, data_root, mutate=None):
    return load_run_config(write_config(tmp_path, data_root, mutate), "tiny")


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def _same_weights(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root, tokenizer):
    """An uninterrupted 12-step run (3 stages x 4 steps, LoRA dropout 0.1 so the RNG matters)."""
    from tests.training.standin import StandInModel

    tmp = tmp_path_factory.mktemp("ref")
    out = tmp / "run"
    built = []

    def factory(d, **_):
        built.append(StandInModel(tokenizer, **d))
        return built[-1]

    summary = train(_cfg(tmp, data_root), out, model_factory=factory, progress=False)
    return out, summary, list(built[-1].seen)


def test_csv_log_and_outputs(reference):
    out, summary, _ = reference
    rows = read_log(out / "train_log.csv")
    assert list(rows[0]) == LOG_COLUMNS
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    assert [int(r["stage"]) for r in rows] == [0] * 4 + [1] * 4 + [2] * 4
    assert [r["stage_name"] for r in rows[::4]] == ["connector", "lora", "full_mix"]
    assert all(math.isfinite(float(r["loss"])) and int(r["tokens"]) > int(r["label_tokens"]) > 0 for r in rows)
    # LR schedule: stage 1 warmup 2 steps of lr 1e-2, then cosine decay
    assert float(rows[0]["lr"]) == pytest.approx(0.5e-2) and float(rows[1]["lr"]) == pytest.approx(1e-2)
    assert float(rows[3]["lr"]) < float(rows[2]["lr"]) == pytest.approx(1e-2)
    assert float(rows[4]["lr"]) == pytest.approx(5e-3)  # fresh schedule per stage (warmup 1)
    vals = read_log(out / "val_log.csv")
    assert [int(v["stage"]) for v in vals] == [0, 1, 2] and all(math.isfinite(float(v["val_loss"])) for v in vals)
    assert (out / "final" / "config.json").is_file() and (out / "final" / "model.safetensors").is_file()
    s = json.loads((out / "train_summary.json").read_text())
    assert s["completed"] and s["steps"] == 12 and s["seed"] == 0 and "torch" in s["versions"]
    assert [st["final_loss"] for st in s["stages"]] == [float(rows[i]["loss"]) for i in (3, 7, 11)]
    assert s["wall_time_s"] > 0 and s["command"]
    latest = find_latest(out / "checkpoints")
    assert latest.name == "step-000012" and read_trainer_state(latest)["stage_index"] == 2
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-000009", "step-000012"]  # keep 2


def test_loss_decreases_on_repeated_data(tmp_path, data_root, factory):
    def mutate(doc):
        t = doc["presets"]["tiny"]["training"]
        t["stages"] = [
            {
                "name": "fit",
                "steps": 30,
                "lr": 3e-2,
                "trainable": ["connectors", "adapters", "lora"],
                "tasks": ["cls"],
                "schedule": "constant",
            }
        ]
        t["batch_size"] = 8

    train(_cfg(tmp_path, data_root, mutate), tmp_path / "run", model_factory=factory, progress=False)
    losses = [float(r["loss"]) for r in read_log(tmp_path / "run" / "train_log.csv")]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5


@pytest.mark.parametrize("stop", [6, 5, 8])
def test_resume_is_bit_exact(tmp_path, data_root, factory, reference, stop):
    ref_out, _, ref_seen = reference
    cfg = _cfg(tmp_path, data_root)
    out = tmp_path / "run"
    s1 = train(cfg, out, max_steps=stop, model_factory=factory, progress=False)
    assert not s1["completed"] and s1["steps"] == stop and not (out / "final").exists()
    assert find_latest(out / "checkpoints").name == f"step-{stop:06d}"
    seen1 = list(factory.models[-1].seen)
    s2 = train(cfg, out, resume=True, model_factory=factory, progress=False)
    assert s2["completed"] and s2["resumed_from"].endswith(f"step-{stop:06d}")
    assert read_log(out / "train_log.csv") == read_log(ref_out / "train_log.csv")  # every column, every row
    assert read_log(out / "val_log.csv") == read_log(ref_out / "val_log.csv")
    _same_weights(_weights(out / "final"), _weights(ref_out / "final"))
    assert seen1 + factory.models[-1].seen == ref_seen  # same batches, same order


def test_resume_after_crash_drops_rows_after_checkpoint(tmp_path, data_root, factory, reference):
    ref_out = reference[0]
    cfg = _cfg(tmp_path, data_root)
    out = tmp_path / "run"
    factory.kw = {"fail_at_call": 8, "fail_kind": "raise"}  # dies during step 8; checkpoints at 3 and 6
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, out, model_factory=factory, progress=False)
    assert len(read_log(out / "train_log.csv")) == 7
    (out / "checkpoints" / ".tmp-step-000009-12345").mkdir()  # what a hard kill mid-write leaves behind
    (out / "checkpoints" / ".tmp-step-000009-12345" / "optimizer.pt").write_bytes(b"partial")
    factory.kw = {}
    s = train(cfg, out, resume=True, model_factory=factory, progress=False)
    assert s["resumed_from"].endswith("step-000006")
    assert not list((out / "checkpoints").glob(".tmp-*"))
    assert read_log(out / "train_log.csv") == read_log(ref_out / "train_log.csv")
    _same_weights(_weights(out / "final"), _weights(ref_out / "final"))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data_root, factory, reference):
    ref_out = reference[0]
    cfg = _cfg(tmp_path, data_root)
    out = tmp_path / "run"
    factory.kw = {"fail_at_call": 5, "fail_kind": "nan"}  # step 5 = stage 'lora', stage step 1
    with pytest.raises(TrainingDivergedError) as ei:
        train(cfg, out, model_factory=factory, progress=False)
    msg = str(ei.value)
    assert "step 5" in msg and "'lora'" in msg and "step-000003" in msg and "non-finite loss" in msg
    assert ei.value.checkpoint == out / "checkpoints" / "step-000003"
    assert find_latest(out / "checkpoints").name == "step-000003"
    assert is_complete(out / "checkpoints" / "step-000003")
    assert not (out / "checkpoints" / "step-000005").exists() and not (out / "final").exists()
    assert all(torch.isfinite(t).all() for t in _weights(out / "checkpoints" / "step-000003" / "model").values())
    # the kept checkpoint is the good one: resuming from it reproduces the uninterrupted run
    factory.kw = {}
    train(cfg, out, resume=True, model_factory=factory, progress=False)
    assert read_log(out / "train_log.csv") == read_log(ref_out / "train_log.csv")


def test_nan_cli_exit_code(tmp_path, data_root, factory, monkeypatch, capsys):
    import workbench.train as T
    import workbench.training.driver as D

    factory.kw = {"fail_at_call": 2, "fail_kind": "nan"}
    monkeypatch.setattr(D, "default_model_factory", factory)
    rc = T.main(
        [
            "--config",
            str(write_config(tmp_path, data_root)),
            "--preset",
            "tiny",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ]
    )
    assert rc == 3
    err = capsys.readouterr().err
    assert "step 2" in err and "no checkpoint was written" in err


def test_crash_while_writing_checkpoint_keeps_previous(tmp_path, data_root, factory, reference):
    cfg = _cfg(tmp_path, data_root)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="simulated crash while writing"):
        train(cfg, out, model_factory=factory, progress=False, _fail_checkpoint_at=6)
    ck = out / "checkpoints"
    assert (ck / "latest").read_text() == "step-000003" and find_latest(ck).name == "step-000003"
    assert not (ck / "step-000006").exists() and not list(ck.glob(".tmp-*"))
    # a dangling `latest` (pointer replaced but folder gone) falls back to the newest complete checkpoint
    (ck / "latest").write_text("step-000099")
    assert find_latest(ck).name == "step-000003"
    (ck / "step-000003" / "optimizer.pt").unlink()  # incomplete -> not usable
    assert find_latest(ck) is None
    from workbench.training.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="no checkpoint"):  # nothing left to resume from
        train(cfg, out, resume=True, model_factory=factory, progress=False)


def test_stage_trainable_switching(tmp_path, data_root, factory):
    cfg = _cfg(tmp_path, data_root)
    out = tmp_path / "run"

    def grab(m):
        return {n: p.detach().clone() for n, p in m.named_parameters()}

    train(cfg, out, max_steps=4, model_factory=factory, progress=False)  # end of stage 'connector'
    m1 = factory.models[-1]
    after1 = grab(m1)
    # the same model built again (same seed) = the initial weights
    torch.manual_seed(cfg.training.seed)
    factory(cfg.model).enable_lora(4, 8, 0.1, ["q_proj", "v_proj"])
    init = {n: p for n, p in grab(factory.models[-1]).items()}

    def changed(a, b):
        return {n for n in a if not torch.equal(a[n], b[n])}

    c1 = changed(init, after1)
    assert c1 == {n for n in init if n.startswith("connectors.")}, c1
    train(cfg, out, resume=True, max_steps=8, model_factory=factory, progress=False)  # end of stage 'lora'
    after2 = grab(factory.models[-1])
    c2 = changed(after1, after2)
    assert c2 == {n for n in init if n.startswith(("connectors.", "adapters.")) or "lora_" in n}, c2
    assert not any(n.startswith("llm.") and "lora_" not in n for n in c2)  # the LLM base stays frozen
    assert all(p.grad is None for p in factory.models[-1].parameters() if not p.requires_grad)


def test_data_order_independent_of_model_variant(tmp_path, data_root, factory, reference):
    _, _, ref_seen = reference
    factory.kw = {"d": 8, "vocab": 64}  # a different "variant"
    cfg = _cfg(tmp_path, data_root)
    train(cfg, tmp_path / "run", model_factory=factory, progress=False)
    assert factory.models[-1].seen == ref_seen


def test_seed_changes_order(tmp_path, data_root, factory, reference):
    _, _, ref_seen = reference
    cfg = load_run_config(write_config(tmp_path, data_root), "tiny", seed=1)
    train(cfg, tmp_path / "run", max_steps=3, model_factory=factory, progress=False)
    assert factory.models[-1].seen != ref_seen[:3]


def test_grad_accum_and_checkpoint_hash(tmp_path, data_root, factory):
    def mutate(doc):
        doc["presets"]["tiny"]["training"]["grad_accum"] = 2

    cfg = _cfg(tmp_path, data_root, mutate)
    ref = tmp_path / "ref"
    train(cfg, ref, model_factory=factory, progress=False)
    assert factory.models[-1].calls == 24  # 2 micro-batches per step
    out = tmp_path / "run"
    train(cfg, out, max_steps=7, model_factory=factory, progress=False)
    train(cfg, out, resume=True, model_factory=factory, progress=False)
    assert read_log(out / "train_log.csv") == read_log(ref / "train_log.csv")


def test_lr_factor():
    from workbench.training.run_config import StageConfig

    st = StageConfig(name="s", steps=10, lr=1.0, warmup=2, trainable=["connectors"], tasks=["cls"])
    f = [lr_factor(i, st) for i in range(10)]
    assert (
        f[0] == 0.5 and f[1] == 1.0 and f[2] == 1.0 and f[-1] > 0 and f == sorted(f[:2]) + sorted(f[2:], reverse=True)
    )
    st.schedule = "constant"
    assert {lr_factor(i, st) for i in range(2, 10)} == {1.0}
    st.schedule, st.warmup = "linear", 0
    assert lr_factor(0, st) == 1.0 and lr_factor(5, st) == pytest.approx(0.5)


def test_bf16_without_gpu_falls_back_to_fp32(tmp_path, data_root, factory):
    if torch.cuda.is_available():
        pytest.skip("has a GPU")

    def mutate(doc):
        doc["presets"]["tiny"]["training"]["mixed_precision"] = "bf16"

    with pytest.warns(UserWarning, match="needs a GPU"):
        s = train(
            _cfg(tmp_path, data_root, mutate), tmp_path / "run", max_steps=1, model_factory=factory, progress=False
        )
    assert s["mixed_precision"] == "no" and s["steps"] == 1
