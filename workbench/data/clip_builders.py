"""The per-category builders of a synthetic clip's foreground parts (:data:`BUILDERS`: tone, buzz, chirp, noise,
clicks, speech, music), each drawing its attributes from the clip's rng (or the forced ones) and returning parts
(``{wave [S], label, events}``) for :func:`workbench.data.clips.make_clip` to lay out; the shared value ranges."""

from __future__ import annotations

import numpy as np

from workbench.data import music, sounds, speech
from workbench.data.synth_splits import matching_holdouts
from workbench.data.vocab import (
    INSTRUMENTS,
    MODULATIONS,
    NOISE_COLORS,
    OCTAVE_OF_PITCH_CLASS,
    PITCH_CLASSES,
    SAMPLE_RATE,
    SENTENCES,
    VOICES,
    WORDS,
    midi_to_hz,
    note_name,
    pitch_class_of_hz,
    tempo_class_of_bpm,
)

MUSIC_PITCH_CLASSES = PITCH_CLASSES[:3]
TEMPI = [72, 90, 120, 144]
SPEECH_RATES = [130, 175, 220]
SPEECH_PITCHES = [35, 50, 65]
SR = SAMPLE_RATE


def _pick(rng: np.random.Generator, options, forced=None):
    if forced is not None:
        return forced
    return options[int(rng.integers(len(options)))]


def _part(wave, label, events=None, **fields):
    """A foreground part: wave ``[S]`` + its events as (rel_onset, rel_offset, fields) (default: whole)."""
    if events is None:
        events = [(0.0, len(wave) / SR, fields)]
    return {"wave": np.asarray(wave, np.float32), "label": label, "events": events}


def _note_in_class(rng, pitch_class: str) -> int:
    octave = OCTAVE_OF_PITCH_CLASS[pitch_class]
    return 12 * (octave + 1) + int(rng.integers(12))


# Each returns (parts, attrs): parts are placed in sequence with silence gaps; attrs are row columns.
def _tone(rng, cfg, force, single=False):
    pc = _pick(rng, PITCH_CLASSES, force.get("pitch_class"))
    midi = _note_in_class(rng, pc)
    hz = midi_to_hz(midi)
    mod = _pick(rng, MODULATIONS, force.get("modulation"))
    count = 1 if single else int(rng.integers(1, 4))
    parts = [
        _part(sounds.tone(hz, rng.uniform(*cfg["burst"]), SR, mod, rng), "tone", pitch_hz=hz) for _ in range(count)
    ]
    return parts, {
        "pitch_hz": hz,
        "pitch_note": note_name(hz),
        "pitch_class": pc,
        "modulation": mod,
        "direction": "flat",
        "count": count,
    }


def _buzz(rng, cfg, force, single=False):
    pc = _pick(rng, PITCH_CLASSES, force.get("pitch_class"))
    hz = midi_to_hz(_note_in_class(rng, pc))
    count = 1 if single else int(rng.integers(1, 4))
    parts = [_part(sounds.buzz(hz, rng.uniform(*cfg["burst"]), SR), "buzz", pitch_hz=hz) for _ in range(count)]
    return parts, {"pitch_hz": hz, "pitch_note": note_name(hz), "pitch_class": pc, "direction": "flat", "count": count}


def _chirp(rng, cfg, force, single=False):
    direction = _pick(rng, ["up", "down"], force.get("direction"))
    lo = float(rng.uniform(200.0, 400.0))
    hi = lo * float(rng.uniform(2.0, 4.0))
    f0, f1 = (lo, hi) if direction == "up" else (hi, lo)
    dur = float(rng.uniform(0.4, 1.0)) if not single else float(rng.uniform(0.3, 0.6))
    return [_part(sounds.chirp(f0, f1, dur, SR), "chirp")], {"direction": direction, "count": 1}


def _noise(rng, cfg, force, single=False):
    color = _pick(rng, NOISE_COLORS, force.get("noise_color"))
    count = 1 if single else int(rng.integers(1, 4))
    parts = [_part(sounds.noise(color, rng.uniform(*cfg["burst"]), SR, rng), "noise") for _ in range(count)]
    return parts, {"noise_color": color, "count": count}


def _clicks(rng, cfg, force, single=False):
    count = int(rng.integers(2, 5)) if single else int(rng.integers(1, 7))
    rate = float(_pick(rng, [3.0, 4.0, 5.0, 6.0, 8.0]))
    wave, onsets = sounds.click_train(count, rate, SR)
    if single:  # inside a scene: the train is one event
        part = _part(wave, "clicks")
    else:
        part = _part(wave, "clicks", events=[(o, o + sounds.CLICK_SECONDS, {}) for o in onsets])
    return [part], {"count": count, "rate_hz": rate}


def _speech(rng, cfg, force, single=False):
    voice = _pick(rng, list(VOICES), force.get("voice"))
    sentence = cfg["sentences"] and not single and rng.random() < 0.3
    text = _pick(rng, SENTENCES) if sentence else _pick(rng, WORDS, force.get("word"))
    rate = int(_pick(rng, SPEECH_RATES))
    pitch = int(_pick(rng, SPEECH_PITCHES))
    wave = speech.speak(text, voice, rate, pitch, SR)
    return [_part(wave, "speech", text=text)], {
        "text": text,
        "text_kind": "sentence" if sentence else "word",
        "word": None if sentence else text,
        "voice": voice,
        "gender": VOICES[voice],
        "speech_rate_wpm": rate,
        "speech_pitch": pitch,
    }


def _music(rng, cfg, force, single=False):
    instrument = _pick(rng, list(INSTRUMENTS), force.get("instrument"))
    pcs = MUSIC_PITCH_CLASSES
    if force.get("_avoid_holdout"):
        pcs = [
            c for c in pcs if not matching_holdouts({"category": "music", "instrument": instrument, "pitch_class": c})
        ]
    pc = _pick(rng, pcs, force.get("pitch_class"))
    root = _note_in_class(rng, pc)
    kind = "note" if single else _pick(rng, ["note", "chord", "melody", "melody"], force.get("music_kind"))
    bpm = int(_pick(rng, TEMPI))
    beat = 60.0 / bpm
    direction = None
    if kind == "note":
        midis, notes = [root], [music.Note(root, 0.0, 2 * beat if not single else beat)]
        events = [(0.0, notes[0].end, {"pitch_hz": midi_to_hz(root)})]
    elif kind == "chord":
        third = 4 if rng.random() < 0.5 else 3
        midis = [root, root + third, root + 7]
        notes = [music.Note(m, 0.0, 2 * beat) for m in midis]
        events = [(0.0, 2 * beat, {"pitch_hz": midi_to_hz(root)})]
    else:
        direction = _pick(rng, ["up", "down", "flat"], force.get("direction"))
        n = int(rng.integers(3, 6))
        step = {"up": 1, "down": -1, "flat": 0}[direction]
        midis = [root]
        steps = [int(rng.integers(2, 5)) for _ in range(n - 1)]
        if root + step * sum(steps) > 93:  # keep every note inside all instruments' soundfont range
            steps = [1] * (n - 1)
        for s in steps:
            midis.append(midis[-1] + step * s)
        notes = [music.Note(m, i * beat, i * beat + 0.9 * beat) for i, m in enumerate(midis)]
        events = [(nt.start, nt.end, {"pitch_hz": midi_to_hz(nt.midi)}) for nt in notes]
    wave = music.render_from_bank(INSTRUMENTS[instrument], notes, SR, tail_s=0.15)
    hz = midi_to_hz(root)
    part = _part(wave, "music", events=[(a, b, {**f, "instrument": instrument}) for a, b, f in events])
    return [part], {
        "instrument": instrument,
        "music_kind": kind,
        "notes": midis,
        "tempo_bpm": bpm,
        "tempo_class": tempo_class_of_bpm(bpm),
        "pitch_hz": hz,
        "pitch_note": note_name(hz),
        "pitch_class": pitch_class_of_hz(hz),
        "direction": direction,
        "count": len(midis) if kind == "melody" else 1,
    }


BUILDERS = {
    "tone": _tone,
    "buzz": _buzz,
    "chirp": _chirp,
    "noise": _noise,
    "clicks": _clicks,
    "speech": _speech,
    "music": _music,
}
