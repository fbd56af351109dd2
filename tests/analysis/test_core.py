"""workbench.analysis.core: the two backends agree, interventions compose, scores and outputs are right."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.analysis.tiny_pal import PROMPT_LEN, make_qa_batch, model
from workbench.analysis import core, outputs

NAMES = [
    "blocks.1.attn.hook_pattern",
    "connectors.mel.hook_out",
    "blocks.0.attn.hook_audio_k",
    "blocks.0.hook_resid_post",
    "encoders.whisper.hook_out",
    "blocks.0.hook_audio_in",
    "ln_final.hook_normalized",
]


def test_backends_collect_identical_numbers():
    m = model("ensemble")
    batch = make_qa_batch("ensemble")
    l1, a1 = core.collect(m, batch, NAMES)
    l2, a2 = core.collect(m, batch, list(reversed(NAMES)), backend="nnsight")  # any order in, sorted inside
    assert torch.equal(l1, l2) and torch.equal(l1, m(batch))
    assert set(a1) == set(a2) == set(NAMES)
    for name in NAMES:
        assert torch.equal(a1[name], a2[name]), name


def test_backends_agree_on_a_plain_hooked_decoder():
    from tests.model.tiny_models import make_tiny

    _, dec = make_tiny("llama_gqa_llama3_rope")
    ids = make_qa_batch()["input_ids"]
    names = ["blocks.1.hook_resid_pre", "hook_embed", "blocks.2.attn.hook_pattern"]
    l1, a1 = core.collect(dec, ids, names)
    l2, a2 = core.collect(dec, ids, names, backend="nnsight")
    assert torch.equal(l1, l2) and torch.equal(l1, dec(ids))
    for name in names:
        assert torch.equal(a1[name], a2[name]), name
    zero = [("blocks.1.attn.hook_z", torch.zeros_like)]
    assert torch.equal(
        core.run_with_interventions(dec, ids, zero), core.run_with_interventions(dec, ids, zero, backend="nnsight")
    )


def test_interventions_identical_across_backends_and_compose_in_order():
    m = model("ensemble")
    batch = make_qa_batch("ensemble")
    ivs = [
        ("blocks.0.hook_resid_post", lambda t: t * 1.5),
        ("connectors.whisper.hook_out", torch.zeros_like),
        ("blocks.0.hook_resid_post", lambda t: t + 1.0),
    ]
    a = core.run_with_interventions(m, batch, ivs)
    b = core.run_with_interventions(m, batch, ivs, backend="nnsight")
    assert torch.equal(a, b)
    assert (a - m(batch)).abs().max() > 1e-3
    swapped = core.run_with_interventions(m, batch, [ivs[2], ivs[1], ivs[0]])
    assert (swapped - a).abs().max() > 1e-3  # order on one hook matters: (x*1.5)+1 != (x+1)*1.5
    # collect with interventions: the collected activation is the replaced one, both backends
    _, c1 = core.collect(m, batch, ["blocks.0.hook_resid_post", "blocks.1.hook_resid_pre"], interventions=ivs)
    _, c2 = core.collect(
        m, batch, ["blocks.0.hook_resid_post", "blocks.1.hook_resid_pre"], interventions=ivs, backend="nnsight"
    )
    _, plain = core.collect(m, batch, ["blocks.0.hook_resid_post"], interventions=[ivs[1]])
    assert torch.equal(c1["blocks.0.hook_resid_post"], c2["blocks.0.hook_resid_post"])
    assert torch.allclose(c1["blocks.0.hook_resid_post"], plain["blocks.0.hook_resid_post"] * 1.5 + 1.0)
    assert torch.equal(c1["blocks.1.hook_resid_pre"], c1["blocks.0.hook_resid_post"])


@pytest.mark.parametrize("variant", ["baseline", "delayed", "lal", "ensemble"])
def test_blocking_audio_keys_equals_the_bare_llm(variant):
    m = model(variant)
    batch = make_qa_batch(variant)
    layout = m.token_layout(batch)
    text_pos = layout.position_ids.gather(1, layout.text_index)
    bare = m.decode(batch["input_ids"], position_ids=text_pos)
    for backend in core.BACKENDS:
        cut = core.run_with_interventions(m, batch, core.block_audio_interventions(m, batch), backend=backend)
        assert (cut - bare).abs().max() < 1e-5, backend
    assert (m(batch) - bare).abs().max() > 1e-3  # the audio did matter


def test_bad_inputs_give_clear_errors():
    m = model("lal")
    batch = make_qa_batch("lal")
    with pytest.raises(KeyError, match="unknown hook name 'blocks.0.attn.hook_patern'"):
        core.collect(m, batch, ["blocks.0.attn.hook_patern"])
    with pytest.raises(IndexError, match="out of range"):
        core.collect(m, batch, ["blocks.7.attn.hook_pattern"], backend="nnsight")
    with pytest.raises(KeyError, match="do not fire"):  # LAL starts at layer 1: no audio keys at layer 0
        core.run_with_interventions(m, batch, [("blocks.0.attn.hook_audio_k", torch.zeros_like)], backend="nnsight")
    with pytest.raises(ValueError, match="unknown backend 'pyvene'"):
        core.collect(m, batch, ["hook_embed"], backend="pyvene")
    with pytest.raises(KeyError, match=r"unknown encoder\(s\) \['clap'\]"):
        core.block_audio_interventions(m, batch, ["clap"])


def test_answer_scores_match_a_direct_computation():
    m = model("baseline")
    batch = make_qa_batch("baseline", lengths=(9, 8))
    logits = m(batch)
    lp = core.answer_logprob(m, batch, logits)
    for b in range(2):
        n = int(batch["attention_mask"][b].sum())
        ref = -F.cross_entropy(logits[b, PROMPT_LEN - 1 : n - 1], batch["input_ids"][b, PROMPT_LEN:n], reduction="sum")
        assert torch.allclose(lp[b], ref, atol=1e-5)
    assert torch.equal(core.last_prompt_index(batch), torch.full((2,), PROMPT_LEN - 1))
    no_len = {k: v for k, v in batch.items() if k != "prompt_len"}
    assert torch.equal(core.last_prompt_index(no_len), torch.full((2,), PROMPT_LEN - 1))
    diff = core.answer_logit_diff(logits, batch, correct_ids=torch.tensor([3, 4]), wrong_ids=5)
    assert torch.allclose(diff, logits[:, PROMPT_LEN - 1, [3, 4]].diagonal() - logits[:, PROMPT_LEN - 1, 5])


def test_load_for_analysis_names_the_missing_checkpoint_and_command(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"results/checkpoints/lal/final.*python -m workbench.train --config configs/lal.yaml"
    ):
        core.load_for_analysis(tmp_path / "results/checkpoints/lal/final")


def test_write_outputs_self_contained_and_atomic(tmp_path):
    import pandas as pd
    import plotly.graph_objects as go

    df = pd.DataFrame({"layer": [0, 1], "mass": [0.1, 0.2]})
    fig = go.Figure(go.Scatter(x=df.layer, y=df.mass)).update_layout(title="caption")
    out = core.write_outputs(df, fig, tmp_path / "run", "demo")
    assert pd.read_csv(out["csv"]).equals(df)
    html = out["html"].read_text()
    assert "plotly.js" in html.lower() or "plotly" in html and len(html) > 1_000_000  # plotly.js is inlined
    assert 'src="https://cdn.plot.ly' not in html
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no temp files left


def _small_fig():
    import plotly.graph_objects as go

    return go.Figure(go.Scatter(x=[0, 1, 2], y=[0.1, 0.3, 0.2])).update_layout(title="png")


def test_write_outputs_writes_png_through_one_persistent_browser(tmp_path, monkeypatch, caplog, capfd, recwarn):
    """Needs Chromium (Debian package `chromium`, in .ci/apt-packages.txt): fails, naming the fix, without it."""
    import logging
    import shutil

    import kaleido

    assert shutil.which("chromium") or shutil.which("google-chrome") or shutil.which("chromium-browser"), (
        "no Chromium for PNG export: apt-get install chromium (or ./run setup)"
    )
    monkeypatch.setattr(outputs, "_PNG_OK", None)
    caplog.set_level(logging.INFO)
    first = core.write_outputs(None, _small_fig(), tmp_path, "a")
    assert kaleido._global_server.is_running()  # one browser for the process, not one per image
    second = core.write_outputs(None, _small_fig().update_layout(title="again"), tmp_path, "b")
    for out in (first, second):
        assert out["png"].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not [r for r in caplog.records if r.name.split(".")[0] in outputs._KALEIDO_LOGGERS]
    assert not [w for w in recwarn if "kopts" in str(w.message)]
    text = "".join(capfd.readouterr())
    for noise in ("Cancelling tasks", "Exiting Kaleido", "PNG export skipped"):
        assert noise not in text


def test_png_export_falls_back_with_one_notice(tmp_path, monkeypatch, capsys):
    def no_browser():
        raise RuntimeError("no Chrome/Chromium found for kaleido: install it with `apt-get install chromium`")

    monkeypatch.setattr(outputs, "_PNG_OK", None)
    monkeypatch.setattr(outputs, "_start_png_server", no_browser)
    out = core.write_outputs(None, _small_fig(), tmp_path, "a")
    assert set(out) == {"html"} and not (tmp_path / "a.png").exists()
    assert core.write_outputs(None, _small_fig(), tmp_path, "b").keys() == {"html"}
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "note: PNG export skipped (RuntimeError: no Chrome/Chromium found for kaleido: install it with "
        "`apt-get install chromium`)"
    ]
