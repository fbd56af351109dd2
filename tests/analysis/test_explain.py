"""Asking a trained model about a recording (workbench.analysis.explain, python -m workbench.ask).

The model is the committed checkpoint ``results/checkpoints/pal/final`` (SmolLM2 + whisper, yamnet, mel, all
LAL); the clip is real espeak-ng speech converted to 44.1 kHz stereo (the encoders want 16 kHz mono).
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from tests.analysis.test_figures import check_figure
from tests.analysis.tiny_pal import DIMS, fresh_model
from tests.encoders.conftest import espeak
from workbench.analysis.explain import load_clip
from workbench.analysis.explain_view import fig_audio_attention, page_html
from workbench.common.audio_io import AudioError

CHECKPOINT = "results/checkpoints/pal/final"
QUESTION = "Is someone speaking?"


@pytest.fixture(scope="module")
def pal():
    from workbench.model.pal import PALModel

    torch.set_num_threads(1)
    return PALModel.from_pretrained(CHECKPOINT)


@pytest.fixture(scope="module")
def stereo_44k(tmp_path_factory):
    """espeak-ng speech (22.05 kHz mono) resampled to 44.1 kHz and written as 2 channels of different gain."""
    d = tmp_path_factory.mktemp("ask")
    mono, sr = sf.read(str(espeak("The quick brown fox jumps over the lazy dog.", d / "speech.wav")), dtype="float32")
    assert sr == 22050
    up = soxr.resample(mono, sr, 44100)
    path = d / "speech_44k_stereo.wav"
    sf.write(str(path), np.stack([up, 0.5 * up], 1), 44100, subtype="PCM_16")
    info = sf.info(str(path))
    assert (info.samplerate, info.channels) == (44100, 2)
    return path


@pytest.fixture(scope="module")
def explanation(pal, stereo_44k):
    from workbench.analysis.explain import explain

    return explain(pal, stereo_44k, QUESTION)


def test_ask_on_a_44k_stereo_recording(pal, stereo_44k):
    answer = pal.ask(stereo_44k, QUESTION)
    assert answer == "yes"
    # the same clip as a channels-first waveform with its rate gives the same answer
    data, sr = sf.read(str(stereo_44k), dtype="float32", always_2d=True)
    assert pal.ask(data.T, QUESTION, sample_rate=sr) == answer
    # each encoder sees the clip, on the model's own waveform path, as its own file loader would give it
    from workbench.analysis.explain import encoder_frames
    from workbench.model.inference import answer_clip

    wave, rate, _ = load_clip(stereo_44k)
    assert rate == 44100 and wave.ndim == 1
    for name, (frames, mask) in encoder_frames(pal, answer_clip(pal, stereo_44k, QUESTION).batch).items():
        ref, ref_mask = pal.encoders[name].encoder().encode_files([stereo_44k])
        assert torch.equal(mask.cpu(), ref_mask)
        torch.testing.assert_close(frames.float().cpu(), ref, rtol=1e-5, atol=1e-5)


def test_explanation_is_consistent(pal, explanation):
    ex = explanation
    assert ex.answer == "yes" and ex.sample_rate == 44100
    # greedy decoding picked the first answer token: the last layer's lens ranks it first (with audio)
    last = ex.lens[(ex.lens.layer == pal.cfg.n_layers - 1) & (ex.lens.condition == "audio")]
    assert len(last) == 1 and int(last["rank"].iloc[0]) == 0 and last["answer_token"].iloc[0].strip() == "yes"
    # attention mass is conserved from per-head sums (attention_to_audio) to tokens to frames
    seen = ex.attention_layers[ex.attention_layers.uniform_mass > 0]
    assert sorted(seen.layer.unique()) == list(range(8, pal.cfg.n_layers))  # LAL from layer 8
    for enc in pal.encoder_names:
        per_layer = seen[seen.encoder == enc].set_index("layer")["mass"]
        tok = ex.token_attention[ex.token_attention.encoder == enc].groupby("layer")["weight"].sum()
        np.testing.assert_allclose(tok.to_numpy(), per_layer.loc[tok.index].to_numpy(), rtol=1e-4, atol=1e-7)
        frames = ex.time_attention[ex.time_attention.encoder == enc]
        np.testing.assert_allclose(frames.weight.sum(), per_layer.mean(), rtol=1e-4, atol=1e-7)
        # frames tile the clip; MLP tokens cover consecutive segments of it
        duration = len(ex.wave) / ex.sample_rate
        hop = 1 / pal.encoders[enc].encoder().frames_per_second
        assert frames.start_s.min() == 0 and duration - hop <= frames.end_s.max() <= duration
        np.testing.assert_allclose(np.diff(frames.start_s.to_numpy()), hop)
        spans = ex.token_attention[(ex.token_attention.encoder == enc) & (ex.token_attention.layer == 8)]
        assert (np.diff(spans.center_s.to_numpy()) > 0).all() and (spans.start_s >= 0).all()
        assert (spans.end_s <= duration + 1e-9).all()


def test_page_has_the_playable_clip_and_the_figures(explanation):
    ex = explanation
    check_figure("explain_view.fig_audio_attention", fig_audio_attention(ex))
    page = page_html(ex)
    m = re.search(r'<audio controls src="data:audio/wav;base64,([A-Za-z0-9+/=]+)"', page)
    assert m, "no playable audio in the page"
    wave, sr = sf.read(io.BytesIO(base64.b64decode(m.group(1))), dtype="float32")
    assert sr == 44100 and wave.ndim == 1 and len(wave) == len(ex.wave)
    assert QUESTION in page and "Where the answer" in page and page.count("Plotly.newPlot") == 3


def test_non_audio_file_is_a_clear_error(pal, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("these are meeting notes, not audio\n")
    with pytest.raises(AudioError, match=r"notes\.txt.*(re-encode|sox)"):
        pal.ask(notes, QUESTION)
    with pytest.raises(AudioError, match="sample_rate"):
        pal.ask(np.zeros(16000, dtype=np.float32), QUESTION)
    from workbench.ask import main

    assert main(["--checkpoint", CHECKPOINT, str(notes), QUESTION]) == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "re-encode" in err


def test_cli_prints_the_answer_and_the_explanation(stereo_44k, tmp_path, capsys):
    from workbench.ask import main

    out_html = tmp_path / "view.html"
    assert main(["--checkpoint", CHECKPOINT, str(stereo_44k), QUESTION, "--html", str(out_html)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "yes"
    assert "attention of the answer to each encoder's audio" in text and "logit lens" in text
    assert out_html.read_text().startswith("<!DOCTYPE html>")


def test_connector_frame_weights():
    """Each audio token's weights over the encoder frames: MLP = its pooling segment (weights @ frames is the
    pooled input the connector reads); Q-Former = cross-attention over the real frames, rows summing to 1."""
    from workbench.model.connectors import masked_adaptive_pool

    m = fresh_model("ensemble")
    g = torch.Generator().manual_seed(0)
    for name in ("mel", "whisper"):
        frames = torch.randn(2, 7, DIMS[name], generator=g)
        mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
        w = m.connectors[name].frame_weights(frames, mask)  # [B, N, T]
        assert w.shape == (2, m.connectors[name].n_tokens, 7)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, w.shape[1]))
        assert float(w[1, :, 4:].abs().max()) == 0.0  # padding frames get nothing
        if name == "mel":
            torch.testing.assert_close(w @ frames, masked_adaptive_pool(frames, mask, w.shape[1]))
