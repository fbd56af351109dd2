"""One synthetic clip: sample its attributes from a seeded rng, render the audio, measure and record.

:func:`make_clip` returns ``(wave, row)``: ``wave`` is float32 mono ``[S]`` at :data:`SAMPLE_RATE` in
[-1, 1]; ``row`` is the metadata dict with every column of :data:`COLUMNS` (``None`` where not applicable).
``events`` is a list of ``{label, onset, offset, loudness_dbfs, pitch_hz, text, instrument}`` dicts
(seconds from the clip start; loudness measured from the final audio over the event span).
"""

from __future__ import annotations

import numpy as np

from workbench.data import sounds
from workbench.data.clip_builders import BUILDERS as BUILDERS
from workbench.data.clip_builders import MUSIC_PITCH_CLASSES as MUSIC_PITCH_CLASSES
from workbench.data.clip_builders import SPEECH_PITCHES as SPEECH_PITCHES
from workbench.data.clip_builders import SPEECH_RATES as SPEECH_RATES
from workbench.data.clip_builders import SR as SR
from workbench.data.clip_builders import TEMPI as TEMPI
from workbench.data.clip_builders import _pick as _pick
from workbench.data.synth_splits import SPLIT_CODES, holdout_for_preset, matching_holdouts
from workbench.data.vocab import (
    LOUDNESS_CLASSES,
    LOUDNESS_TARGET_DBFS,
    NOISE_COLORS,
    PRESET_CATEGORIES,
    SNR_DB,
    duration_class_of_s,
    loudness_class_of_dbfs,
    snr_class_of_db,
)

__all__ = ["PRESETS", "COLUMNS", "make_clip", "sample_clip", "clip_rng"]

PRESETS = {
    # tiny: no external synths except espeak (fast), short clips, words only.
    "tiny": {
        "categories": PRESET_CATEGORIES["tiny"],
        "clip_seconds": (1.0, 1.5),
        "burst": (0.12, 0.3),
        "sentences": False,
    },
    "default": {
        "categories": PRESET_CATEGORIES["default"],
        "clip_seconds": (1.0, 4.0),
        "burst": (0.15, 0.45),
        "sentences": True,
    },
}

COLUMNS = [
    "file_name",
    "clip_id",
    "split",
    "seed",
    "index",
    "preset",
    "category",
    "duration_s",
    "duration_class",
    "loudness_dbfs",
    "loudness_class",
    "events",
    "count",
    "pitch_hz",
    "pitch_note",
    "pitch_class",
    "direction",
    "rate_hz",
    "noise_color",
    "modulation",
    "text",
    "text_kind",
    "word",
    "voice",
    "gender",
    "speech_rate_wpm",
    "speech_pitch",
    "instrument",
    "music_kind",
    "notes",
    "tempo_bpm",
    "tempo_class",
    "snr_db",
    "snr_class",
    "scene_mode",
    "background",
    "holdout",
]


def clip_rng(seed: int, split: str, index: int, attempt: int = 0) -> np.random.Generator:
    """The clip's private random stream (disjoint across seeds, splits, indices and attempts)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_CODES[split], int(index), int(attempt)]))


# ---------------------------------------------------------------- assembly


def _layout(rng, parts, min_len, gap=(0.1, 0.3)):
    """Place parts in sequence with random silence gaps and margins; returns (foreground [S], events)."""
    gaps = [float(rng.uniform(*gap)) for _ in range(len(parts) - 1)]
    active = sum(len(p["wave"]) for p in parts) / SR + sum(gaps)
    dur = max(min_len, active + 0.2)
    dur = round(dur, 2)
    start = float(rng.uniform(0.05, max(0.05, dur - active - 0.05)))
    n = int(round(dur * SR))
    fg = np.zeros(n, np.float32)
    events = []
    t = start
    for i, p in enumerate(parts):
        a = int(round(t * SR))
        w = p["wave"][: max(0, n - a)]
        fg[a : a + len(w)] += w
        for on, off, fields in p["events"]:
            t0 = a / SR  # exact sample position of the part
            events.append(
                {"label": p["label"], "onset": round(t0 + on, 6), "offset": round(min(t0 + off, dur), 6), **fields}
            )
        t = (a + len(p["wave"])) / SR + (gaps[i] if i < len(gaps) else 0.0)
    return fg, events


def _finish_events(events, wave):
    out = []
    for e in events:
        m = sounds.spans_mask(len(wave), SR, [(e["onset"], e["offset"])])
        out.append(
            {
                "label": e["label"],
                "onset": e["onset"],
                "offset": e["offset"],
                "loudness_dbfs": round(sounds.rms_dbfs(wave, m), 2),
                "pitch_hz": round(e["pitch_hz"], 3) if e.get("pitch_hz") is not None else None,
                "text": e.get("text"),
                "instrument": e.get("instrument"),
            }
        )
    return out


def _scale_to(fg, mask, target_dbfs, peak_cap=0.95):
    level = sounds.rms_dbfs(fg, mask)
    gain = 10 ** ((target_dbfs - level) / 20.0)
    peak = float(np.abs(fg).max()) * gain
    if peak > peak_cap:
        gain *= peak_cap / peak
    return (fg * gain).astype(np.float32)


def _target_dbfs(rng, category, attrs, avoid, forced_class):
    """Draw the loudness class (``forced_class`` if given; with ``avoid``, only classes that make no held-out
    combination with ``category`` and ``attrs``) and return its target level in dBFS, jittered by +-2 dB."""
    options = LOUDNESS_CLASSES
    if avoid:
        options = [
            c for c in LOUDNESS_CLASSES if not matching_holdouts({"category": category, **attrs, "loudness_class": c})
        ]
    loud_class = _pick(rng, options, forced_class)
    return LOUDNESS_TARGET_DBFS[loud_class] + float(rng.uniform(-2.0, 2.0))


def _measured(wave, events, fg_level):
    """Duration, loudness and final events of a rendered clip ``wave [S]``.

    The loudness is ``fg_level`` where given (a scene's foreground, background excluded), else the level of
    ``wave`` over the event spans.
    """
    mask = sounds.spans_mask(len(wave), SR, [(e["onset"], e["offset"]) for e in events])
    loud = fg_level if fg_level is not None else sounds.rms_dbfs(wave, mask)
    dur = len(wave) / SR
    return {
        "duration_s": round(dur, 3),
        "duration_class": duration_class_of_s(dur),
        "loudness_dbfs": round(loud, 2),
        "loudness_class": loudness_class_of_dbfs(loud),
        "events": _finish_events(events, wave),
    }


def make_clip(
    index: int, seed: int, split: str, preset: str = "default", force: dict | None = None, attempt: int = 0
) -> tuple[np.ndarray, dict]:
    """Generate clip ``index`` of ``split`` for ``seed`` (deterministic).

    ``force``: attribute values to impose (used for the compositional split, e.g.
    ``{"category": "music", "instrument": "violin", "pitch_class": "low"}``).
    Returns ``(wave float32 [S] at 16 kHz, row dict with all COLUMNS)``.
    """
    cfg = PRESETS[preset]
    force = dict(force or {})
    rng = clip_rng(seed, split, index, attempt)
    category = _pick(rng, cfg["categories"], force.get("category"))
    min_len = float(rng.uniform(*cfg["clip_seconds"]))
    avoid = split != "test_comp"  # train/val/test: steer free choices away from held-out combinations
    force.setdefault("_avoid_holdout", avoid)
    if category == "scene":
        wave, attrs = _scene(rng, cfg, min_len, _target_dbfs(rng, category, {}, avoid, force.get("loudness_class")))
        events = attrs.pop("_events")
        fg_level = attrs.pop("_fg_dbfs")  # foreground level (background excluded)
    else:
        parts, attrs = BUILDERS[category](rng, cfg, force)
        fg, events = _layout(rng, parts, min_len)
        mask = sounds.spans_mask(len(fg), SR, [(e["onset"], e["offset"]) for e in events])
        wave = _scale_to(fg, mask, _target_dbfs(rng, category, attrs, avoid, force.get("loudness_class")))
        fg_level = None
    row = {c: None for c in COLUMNS}
    row["events"], row["holdout"] = [], []
    row.update(attrs)
    row.update(_measured(wave, events, fg_level))
    row.update({"category": category, "split": split, "seed": int(seed), "index": int(index), "preset": preset})
    if row["pitch_hz"] is not None:
        row["pitch_hz"] = round(float(row["pitch_hz"]), 3)
    row["holdout"] = matching_holdouts(row)
    return wave, row


def _scene_parts(rng, cfg, cats):
    """One single-event part per category of ``cats``, each set to a random level (-6, 0 or +6 dB re -20 dBFS)
    and reduced to one event spanning the whole part."""
    parts = []
    for c in cats:
        p, _ = BUILDERS[c](rng, cfg, {}, single=True)
        part = p[0]
        lvl = float(_pick(rng, [-6.0, 0.0, 6.0]))
        w = part["wave"]
        level = sounds.rms_dbfs(w, sounds.spans_mask(len(w), SR, [(a, b) for a, b, _ in part["events"]]))
        part["wave"] = (w * 10 ** ((lvl - 20.0 - level) / 20.0)).astype(np.float32)
        part["events"] = [(0.0, len(w) / SR, part["events"][0][2])]
        parts.append(part)
    return parts


def _mix(rng, parts, min_len):
    """Overlay ``parts`` at random onsets in a clip of at least ``min_len`` s; returns (foreground [S], events
    sorted by onset)."""
    longest = max(len(p["wave"]) for p in parts) / SR
    dur = round(max(min_len, longest + 0.3), 2)
    nS = int(round(dur * SR))
    fg = np.zeros(nS, np.float32)
    events = []
    for p in parts:
        ln = len(p["wave"]) / SR
        on = float(rng.uniform(0.05, max(0.05, dur - ln - 0.05)))
        a = int(round(on * SR))
        w = p["wave"][: nS - a]
        fg[a : a + len(w)] += w
        events.append(
            {
                "label": p["label"],
                "onset": round(a / SR, 6),
                "offset": round(min(a / SR + ln, dur), 6),
                **p["events"][0][2],
            }
        )
    events.sort(key=lambda e: e["onset"])
    return fg, events


def _add_background(rng, fg, fg_level):
    """Add noise of a drawn colour at a drawn SNR below ``fg_level`` to ``fg [S]``, scaled down if it would clip.

    Returns ``(wave [S], fg_level after that scaling, snr_db, colour)``.
    """
    snr = float(_pick(rng, SNR_DB))
    color = _pick(rng, NOISE_COLORS)
    bg = sounds.noise(color, len(fg) / SR, SR, rng)[: len(fg)]
    bg = bg * 10 ** ((fg_level - snr - sounds.rms_dbfs(bg)) / 20.0)
    wave = fg + bg.astype(np.float32)
    peak = float(np.abs(wave).max())
    if peak > 0.99:
        wave *= 0.99 / peak
        fg_level += 20 * np.log10(0.99 / peak)
    return wave, fg_level, snr, color


def _scene(rng, cfg, min_len, target):
    """2-3 events of other categories, in sequence or mixed, over background noise at a known SNR."""
    pool = [c for c in cfg["categories"] if c != "scene"]
    n = int(rng.integers(2, 4))
    mode = _pick(rng, ["sequence", "mix"])
    if mode == "mix":
        n = 2
    cats = [pool[int(i)] for i in rng.choice(len(pool), size=n, replace=False)]
    parts = _scene_parts(rng, cfg, cats)
    if mode == "sequence":
        fg, events = _layout(rng, parts, min_len, gap=(0.1, 0.25))
    else:
        fg, events = _mix(rng, parts, min_len)
    mask = sounds.spans_mask(len(fg), SR, [(e["onset"], e["offset"]) for e in events])
    fg = _scale_to(fg, mask, target, peak_cap=0.8)
    wave, fg_level, snr, color = _add_background(rng, fg, sounds.rms_dbfs(fg, mask))
    attrs = {
        "_events": events,
        "_fg_dbfs": fg_level,
        "count": len(events),
        "snr_db": snr,
        "snr_class": snr_class_of_db(snr),
        "scene_mode": mode,
        "background": color,
    }
    # carry the attributes of speech / music events so QA can ask about them
    for e in events:
        if e["label"] == "speech":
            attrs.update({"text": e.get("text"), "word": e.get("text"), "text_kind": "word"})
        if e["label"] == "music":
            attrs.update({"instrument": e.get("instrument")})
    return wave.astype(np.float32), attrs


def sample_clip(index: int, seed: int, split: str, preset: str = "default") -> tuple[np.ndarray, dict]:
    """:func:`make_clip` with the split's hold-out rule applied.

    train/val/test: re-draw (next ``attempt``) until the clip matches no held-out combination.
    test_comp: force the combination ``holdout[index % len(holdout)]`` of the preset's hold-out list.
    """
    cats = PRESETS[preset]["categories"]
    if split == "test_comp":
        hold = holdout_for_preset(cats)
        combo = hold[index % len(hold)]
        for attempt in range(50):
            wave, row = make_clip(index, seed, split, preset, force=combo, attempt=attempt)
            if combo in row["holdout"]:
                return wave, row
        raise RuntimeError(f"could not realise held-out combination {combo} for clip {index}")
    for attempt in range(50):
        wave, row = make_clip(index, seed, split, preset, attempt=attempt)
        if not row["holdout"]:
            return wave, row
    raise RuntimeError(f"clip {index} of {split} kept matching held-out combinations")
