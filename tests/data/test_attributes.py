"""Recorded attributes agree with measurements of the written audio."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from workbench.data import music, speech
from workbench.data.clips import make_clip
from workbench.data.sounds import rms_dbfs, spans_mask
from workbench.data.synth import wav_bytes
from workbench.data.vocab import loudness_class_of_dbfs, midi_to_hz

SR = 16000


def _written(wave):
    """Round-trip through the 16-bit wav writer, as stored on disk."""
    import io

    x, sr = sf.read(io.BytesIO(wav_bytes(wave)), dtype="float64")
    assert sr == SR
    return x


def _fft_peak(x):
    w = x * np.hanning(len(x))
    spec = np.abs(np.fft.rfft(w, n=len(x) * 4))
    return np.fft.rfftfreq(len(x) * 4, 1 / SR)[int(np.argmax(spec))]


def _f0_autocorr(x, fmin=60.0, fmax=1500.0):
    x = x - x.mean()
    n = len(x)
    ac = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * n)) ** 2)[:n]
    lo, hi = int(SR / fmax), int(SR / fmin)
    lag = lo + int(np.argmax(ac[lo:hi]))
    # prefer the shortest lag with a peak close to the best (avoids octave-down errors)
    for cand in range(lo, lag):
        if ac[cand] > 0.95 * ac[lag] and ac[cand] >= ac[cand - 1] and ac[cand] >= ac[cand + 1]:
            lag = cand
            break
    return SR / lag


@pytest.mark.parametrize("i", range(6))
def test_tone_pitch_duration_loudness(i):
    wave, row = make_clip(i, 11, "train", force={"category": "tone", "modulation": "none"})
    x = _written(wave)
    assert len(x) / SR == pytest.approx(row["duration_s"], abs=1e-3)
    ev = row["events"]
    assert len(ev) == row["count"]
    seg = x[int(ev[0]["onset"] * SR) : int(ev[0]["offset"] * SR)]
    assert _fft_peak(seg) == pytest.approx(row["pitch_hz"], rel=0.01)
    mask = spans_mask(len(x), SR, [(e["onset"], e["offset"]) for e in ev])
    assert rms_dbfs(x, mask) == pytest.approx(row["loudness_dbfs"], abs=0.2)
    assert loudness_class_of_dbfs(rms_dbfs(x, mask)) == row["loudness_class"]
    assert rms_dbfs(x, ~mask) < row["loudness_dbfs"] - 40  # silence gaps are silent


def _onsets(x, thresh_ratio=0.3, refractory_s=0.05):
    env = np.abs(x)
    thr = thresh_ratio * env.max()
    out, last = [], -1e9
    for k in np.flatnonzero(env > thr):
        if k - last > refractory_s * SR:
            out.append(k / SR)
        last = k
    return out


@pytest.mark.parametrize("i", range(8))
def test_click_count_by_onset_detection(i):
    wave, row = make_clip(i, 12, "train", force={"category": "clicks"})
    x = _written(wave)
    on = _onsets(x)
    assert len(on) == row["count"]
    assert np.allclose(on, [e["onset"] for e in row["events"]], atol=0.003)
    assert np.allclose(np.diff(on), 1.0 / row["rate_hz"], atol=0.003)


@pytest.mark.parametrize("i", range(4))
def test_chirp_direction(i):
    wave, row = make_clip(i, 13, "train", force={"category": "chirp"})
    x = _written(wave)
    e = row["events"][0]
    seg = x[int(e["onset"] * SR) : int(e["offset"] * SR)]
    q = len(seg) // 4
    f_start, f_end = _fft_peak(seg[:q]), _fft_peak(seg[-q:])
    assert (f_end > f_start * 1.3) == (row["direction"] == "up")
    assert (f_start > f_end * 1.3) == (row["direction"] == "down")


def test_scene_snr():
    for i in range(30):
        wave, row = make_clip(i, 14, "train", force={"category": "scene"})
        if row["scene_mode"] == "sequence":
            break
    x = _written(wave)
    mask = spans_mask(len(x), SR, [(e["onset"], e["offset"]) for e in row["events"]])
    bg = rms_dbfs(x, ~mask)  # background alone (outside events)
    assert bg == pytest.approx(row["loudness_dbfs"] - row["snr_db"], abs=1.5)


@pytest.mark.skipif(not speech.espeak_available(), reason="espeak-ng not installed")
@pytest.mark.parametrize("i", range(3))
def test_speech_text_is_what_was_spoken(i):
    wave, row = make_clip(i, 15, "train", force={"category": "speech"})
    x = _written(wave)
    e = row["events"][0]
    assert e["text"] == row["text"]
    seg = x[int(round(e["onset"] * SR)) : int(round(e["offset"] * SR))]

    def corr(ref):
        n = min(len(ref), len(seg))
        a, b = seg[:n], ref[:n]
        return (
            abs(np.dot(a, b))
            / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)
            * min(len(ref), len(seg))
            / max(len(ref), len(seg))
        )

    same = speech.speak(row["text"], row["voice"], row["speech_rate_wpm"], row["speech_pitch"], SR)
    other_text = "stop" if row["text"] != "stop" else "go"
    other = speech.speak(other_text, row["voice"], row["speech_rate_wpm"], row["speech_pitch"], SR)
    assert corr(same) > 0.98
    assert corr(other) < 0.5


@pytest.mark.skipif(not music.fluidsynth_available(), reason="fluidsynth / GM soundfont not installed")
@pytest.mark.parametrize("program,midi", [(73, 69), (19, 60), (56, 72)])
def test_fluidsynth_note_pitch(program, midi):
    x = music.render_notes(program, [music.Note(midi, 0.0, 0.6)], SR)
    seg = x[int(0.15 * SR) : int(0.5 * SR)].astype(np.float64)
    assert _f0_autocorr(seg) == pytest.approx(midi_to_hz(midi), rel=0.03)


@pytest.mark.skipif(not music.fluidsynth_available(), reason="fluidsynth / GM soundfont not installed")
@pytest.mark.parametrize("i", range(3))
def test_music_clip_pitch(i):
    wave, row = make_clip(i, 16, "train", force={"category": "music", "music_kind": "note", "instrument": "flute"})
    x = _written(wave)
    e = row["events"][0]
    seg = x[int((e["onset"] + 0.1) * SR) : int((e["offset"] - 0.05) * SR)]
    assert _f0_autocorr(seg) == pytest.approx(row["pitch_hz"], rel=0.03)
    assert row["instrument"] == "flute" and e["instrument"] == "flute"
