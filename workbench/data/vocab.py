"""Attribute vocabularies of the synthetic corpus, and the helpers that turn raw values into classes.

Every closed-ended answer of the synthetic tasks comes from one of the lists in :data:`ANSWER_OPTIONS`
(written to ``answer_options.json`` beside each dataset, so chance level is ``1 / len(options)``).
Vocabularies are small and balanced so that a tiny model can learn them.
"""

from __future__ import annotations

import math

__all__ = [
    "SAMPLE_RATE",
    "CATEGORIES",
    "PRESET_CATEGORIES",
    "PITCH_CLASSES",
    "OCTAVE_OF_PITCH_CLASS",
    "DIRECTIONS",
    "COUNTS",
    "LOUDNESS_CLASSES",
    "LOUDNESS_TARGET_DBFS",
    "DURATION_CLASSES",
    "NOISE_COLORS",
    "MODULATIONS",
    "INSTRUMENTS",
    "WORDS",
    "SENTENCES",
    "VOICES",
    "GENDERS",
    "TEMPO_CLASSES",
    "SNR_CLASSES",
    "SNR_DB",
    "YES_NO",
    "ORDINALS",
    "ANSWER_OPTIONS",
    "midi_to_hz",
    "hz_to_midi",
    "note_name",
    "pitch_class_of_hz",
    "loudness_class_of_dbfs",
    "duration_class_of_s",
    "tempo_class_of_bpm",
    "snr_class_of_db",
]

SAMPLE_RATE = 16000

# The sound categories (the `category` column). `scene` = 2-3 events of the others in sequence or mixed
# over background noise.
CATEGORIES = ["tone", "chirp", "noise", "clicks", "buzz", "music", "speech", "scene"]
PRESET_CATEGORIES = {"tiny": ["tone", "chirp", "noise", "clicks", "speech"], "default": list(CATEGORIES)}

# Pitch: octave-spaced classes (scientific octave of the note) + exact Hz + note name.
PITCH_CLASSES = ["low", "medium", "high", "very high"]
OCTAVE_OF_PITCH_CLASS = {"low": 3, "medium": 4, "high": 5, "very high": 6}
DIRECTIONS = ["up", "down", "flat"]
COUNTS = ["1", "2", "3", "4", "5", "6"]

LOUDNESS_CLASSES = ["quiet", "medium", "loud"]
LOUDNESS_TARGET_DBFS = {"quiet": -38.0, "medium": -28.0, "loud": -18.0}  # +- 2 dB jitter when sampled
DURATION_CLASSES = ["short", "medium", "long"]  # < 2 s, 2-3 s, >= 3 s (whole clip)

NOISE_COLORS = ["white", "pink", "brown"]
MODULATIONS = ["none", "am", "fm"]

# instrument name -> General MIDI program number (0-based).
INSTRUMENTS = {"piano": 0, "organ": 19, "guitar": 24, "violin": 40, "trumpet": 56, "flute": 73}
TEMPO_CLASSES = ["slow", "fast"]  # < 110 bpm, >= 110 bpm

WORDS = ["zero", "one", "two", "three", "four", "five", "yes", "no", "stop", "go"]
DIGIT_WORDS = WORDS[:6]
SENTENCES = [
    "the cat is on the mat",
    "open the door",
    "turn the light off",
    "it is very cold today",
    "the dog runs fast",
    "please call me later",
    "we play music at night",
    "the bird sings in the tree",
]
# espeak-ng voice (language + variant) -> speaker gender.
VOICES = {"en-us+m1": "male", "en-us+f2": "female", "en-gb+m3": "male", "en-gb+f4": "female"}
GENDERS = ["male", "female"]

SNR_DB = [0.0, 10.0, 20.0]
SNR_CLASSES = ["low", "medium", "high"]  # 0, 10, 20 dB

YES_NO = ["yes", "no"]
ORDINALS = ["first", "second"]

# attribute (as in task rows' `attribute`) -> valid closed-ended answers.
ANSWER_OPTIONS: dict[str, list[str]] = {
    "category": CATEGORIES,
    "pitch_class": PITCH_CLASSES,
    "direction": DIRECTIONS,
    "count": COUNTS,
    "loudness_class": LOUDNESS_CLASSES,
    "duration_class": DURATION_CLASSES,
    "noise_color": NOISE_COLORS,
    "modulation": MODULATIONS,
    "instrument": list(INSTRUMENTS),
    "word": WORDS,
    "gender": GENDERS,
    "tempo_class": TEMPO_CLASSES,
    "snr_class": SNR_CLASSES,
    "first_event": [c for c in CATEGORIES if c != "scene"],
    "louder_event": ORDINALS,
    "has_speech": YES_NO,
    "has_music": YES_NO,
    "is_instrument": YES_NO,
    "is_loud": YES_NO,
    "melody_rises": YES_NO,
}

_NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def midi_to_hz(midi: float) -> float:
    """Equal-tempered frequency of a MIDI note number (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((midi - 69) / 12.0)


def hz_to_midi(hz: float) -> float:
    """Fractional MIDI note number of a frequency in Hz."""
    return 69.0 + 12.0 * math.log2(hz / 440.0)


def note_name(hz: float) -> str:
    """Nearest note name in scientific notation, e.g. 440.0 -> 'A4', 261.6 -> 'C4'."""
    m = int(round(hz_to_midi(hz)))
    return f"{_NOTE_NAMES[m % 12]}{m // 12 - 1}"


def pitch_class_of_hz(hz: float) -> str:
    """Octave class of a frequency: octave 3 -> 'low' ... octave 6 -> 'very high' (clamped)."""
    octave = int(round(hz_to_midi(hz))) // 12 - 1
    octave = min(max(octave, 3), 6)
    return PITCH_CLASSES[octave - 3]


def loudness_class_of_dbfs(dbfs: float) -> str:
    """'quiet' below -33 dBFS, 'loud' at or above -23 dBFS, else 'medium'."""
    if dbfs < -33.0:
        return "quiet"
    if dbfs >= -23.0:
        return "loud"
    return "medium"


def duration_class_of_s(seconds: float) -> str:
    """'short' below 2 s, 'long' at or above 3 s, else 'medium'."""
    if seconds < 2.0:
        return "short"
    if seconds >= 3.0:
        return "long"
    return "medium"


def tempo_class_of_bpm(bpm: float) -> str:
    """'slow' below 110 bpm, else 'fast'."""
    return "slow" if bpm < 110 else "fast"


def snr_class_of_db(snr_db: float) -> str:
    """'low' below 5 dB, 'high' at or above 15 dB, else 'medium'."""
    if snr_db < 5:
        return "low"
    if snr_db >= 15:
        return "high"
    return "medium"
