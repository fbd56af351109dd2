"""benchmarks/integration_cost.py: the analytic FLOP count by hand, and a smoke run of its measuring code."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from tests.model.tiny_models import D_MEL, build, enc_spec, tiny_llama_checkpoint

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "integration_cost.py"
_spec = importlib.util.spec_from_file_location("integration_cost", _PATH)
ic = sys.modules.setdefault("integration_cost", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(ic)

# the tiny 2-layer Llama of tests/model/tiny_models.py
TINY = ic.Dims(d_model=64, n_layers=2, n_heads=8, n_kv_heads=2, d_head=8, d_mlp=112, d_vocab=97)


def test_analytic_flops_match_a_hand_count():
    na, nt = 3, 5
    # PLITS: every layer, N = K = 8 positions (multiply-adds)
    #   q, o: 8*64*64 = 32768 each; k, v: 8*64*16 = 8192 each (2 KV heads x 8)
    #   attention: QK^T + PV = 2 * 8*8 * 64 = 8192; SwiGLU: 3 * 8*64*112 = 172032
    #   per layer 262144, two layers 524288; unembedding at the 5 text positions 5*64*97 = 31040
    plits_macs = 2 * (2 * 32768 + 2 * 8192 + 8192 + 172032) + 31040
    assert plits_macs == 555328
    # LAL: text N = 5, keys K = 8; audio: W_K, W_V on 3 tokens
    #   q, o: 5*64*64 = 20480 each; k, v: 5*64*16 = 5120 each; attention 2 * 5*8 * 64 = 5120
    #   SwiGLU 3 * 5*64*112 = 107520; audio K, V: 2 * 3*64*16 = 6144; per layer 169984
    lal_macs = 2 * (2 * 20480 + 2 * 5120 + 5120 + 107520 + 6144) + 31040
    assert lal_macs == 371008
    p = ic.analytic_flops(TINY, na, nt, "plits")
    l = ic.analytic_flops(TINY, na, nt, "lal")
    assert p["forward"] == 2 * plits_macs and l["forward"] == 2 * lal_macs
    assert p["total"] == 3 * 2 * plits_macs and l["total"] == 3 * 2 * lal_macs  # backward = 2 x forward
    assert l["audio_kv"] == 2 * 2 * 6144 and p["audio_kv"] == 0
    assert p["unembed"] == l["unembed"] == 2 * 31040
    assert ic.flop_ratio(TINY, na, nt) == pytest.approx(555328 / 371008)
    # batch scales, the ratio does not; no audio: the two modes are the same model
    assert ic.analytic_flops(TINY, na, nt, "lal", batch=4)["total"] == 4 * l["total"]
    assert ic.flop_ratio(TINY, 0, nt) == 1.0


@pytest.fixture
def one_thread():
    """Tiny ops: one thread avoids OpenMP barrier stalls on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_measuring_code_runs_both_modes_on_the_tiny_llm(tmp_path, one_thread):
    tiny_dir = tiny_llama_checkpoint(tmp_path)
    runs = {}
    for mode in ("plits", "lal"):
        model = build(tiny_dir, object(), enc_spec(mode=mode, n=3))  # any tokenizer: the step never uses it
        model.set_trainable(["connectors"])
        batch = ic.make_batch(1, 9, 3, D_MEL, model.cfg.d_vocab)
        runs[mode] = (model, batch)
    assert ic.Dims.of(runs["lal"][0].cfg) == TINY
    out = ic.measure_modes(runs, reps=2)
    for mode, (model, _batch) in runs.items():
        assert len(out[mode]["times"]) == 2 and out[mode]["time_s"] > 0
        assert torch.isfinite(torch.tensor(out[mode]["loss"]))
        grads = [p.grad for p in model.connectors.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)  # backward reached it
        assert all(p.grad is None for p in model.blocks.parameters())  # the LLM stays frozen
    peaks = {mode: ic.step_peak_bytes(model, batch, "cpu") for mode, (model, batch) in runs.items()}
    assert peaks["lal"] > 0 and peaks["plits"] > peaks["lal"]
