"""Task rows (the curriculum) built from a clip's metadata row.

Each task row is a dict::

    {"row_id": "train-000003-2", "file_name": "audio/train-000003.wav", "task": "cls"|"caption"|"qa",
     "attribute": "instrument", "question": "...", "answer": "violin", "closed": true}

``closed`` rows have a short exact-match answer from ``answer_options.json[attribute]``; open rows
(``caption``, ``text``) are free text. Per clip: 2-3 ``cls`` rows (category, loudness, one
category-specific attribute), 1 ``caption`` row, 2-4 ``qa`` rows (counting, order, comparison, pitch
direction, spoken word, instrument, yes/no, ...). Wording is drawn from several templates with a seeded rng.
"""

from __future__ import annotations

import numpy as np

from workbench.data.vocab import ANSWER_OPTIONS, CATEGORIES, INSTRUMENTS

__all__ = ["make_tasks", "caption", "TASK_TYPES"]

TASK_TYPES = ["cls", "caption", "qa"]
_NUM = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
_TIMES = {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times", 6: "six times"}
_LOUD_ADV = {"quiet": "quietly", "medium": "at a moderate level", "loud": "loudly"}
_NOUN = {
    "tone": "tone",
    "chirp": "sweep",
    "noise": "noise burst",
    "clicks": "click",
    "buzz": "buzz",
    "music": "music",
    "speech": "speech",
}
_A = lambda w: ("an " if w[0] in "aeiou" else "a ") + w  # noqa: E731


def _choice(rng, xs):
    return xs[int(rng.integers(len(xs)))]


def _pitch_adj(pc):
    return {"low": "low-pitched", "medium": "mid-pitched", "high": "high-pitched", "very high": "very high-pitched"}[pc]


def _event_phrase(e):
    lab = e["label"]
    if lab == "speech":
        return f'a voice saying "{e["text"]}"'
    if lab == "music":
        return f"{_A(e['instrument'])} note"
    return _A(_NOUN[lab])


def _tone_captions(row: dict, adv: str) -> list[str]:
    """Caption templates of a ``tone`` or ``buzz`` clip (pitch class, modulation, count)."""
    c = row["category"]
    mod = {"am": "pulsing ", "fm": "wavering ", "none": "", None: ""}[row.get("modulation")]
    noun = "tone" if c == "tone" else "buzz"
    n = row["count"]
    return [
        f"{_A(_pitch_adj(row['pitch_class']))} {mod}{noun} sounds {_TIMES[n]}, {adv}.".capitalize(),
        f"{_NUM[n].capitalize()} {mod}{noun}{'s' if n > 1 and noun == 'tone' else ('es' if n > 1 else '')} at about {round(row['pitch_hz'])} Hz, played {adv}.",
        f"You hear {_A(_pitch_adj(row['pitch_class']))} {mod}{noun} {_TIMES[n]}.",
    ]


def _chirp_captions(row: dict, adv: str) -> list[str]:
    """Caption templates of a ``chirp`` clip (sweep direction)."""
    d = "rising" if row["direction"] == "up" else "falling"
    return [
        f"A {d} sweep, played {adv}.",
        f"{_A(d).capitalize()} chirp glides {row['direction']} in pitch.",
        f"You hear a tone sweeping {row['direction']}, {adv}.",
    ]


def _noise_captions(row: dict, adv: str) -> list[str]:
    """Caption templates of a ``noise`` clip (colour, count)."""
    n = row["count"]
    b = "burst" if n == 1 else "bursts"
    return [
        f"{_NUM[n].capitalize()} {b} of {row['noise_color']} noise, {adv}.",
        f"{_A(row['noise_color']).capitalize()} noise sounds {_TIMES[n]}.",
        f"You hear {row['noise_color']} noise {_TIMES[n]}, {adv}.",
    ]


def _clicks_captions(row: dict, adv: str) -> list[str]:
    """Caption templates of a ``clicks`` clip (count, rate)."""
    n = row["count"]
    k = "click" if n == 1 else "clicks"
    return [
        f"{_NUM[n].capitalize()} {k} at {row['rate_hz']:g} per second." if n > 1 else "A single click.",
        f"A short train of {_NUM[n]} {k}, {adv}." if n > 1 else f"A single click, {adv}.",
        f"You hear {_NUM[n]} {k}.",
    ]


def _speech_captions(row: dict, adv: str) -> list[str]:
    """Caption templates of a ``speech`` clip (speaker gender, text)."""
    who = "man" if row["gender"] == "male" else "woman"
    return [
        f'A {who} says "{row["text"]}".',
        f'A {who} speaks {adv}: "{row["text"]}".',
        f'Someone says "{row["text"]}" in a {row["gender"]} voice.',
    ]


def _music_captions(row: dict, adv: str) -> list[str]:
    """Caption templates of a ``music`` clip: a melody (direction, tempo) or a single note/chord (pitch)."""
    inst, kind = row["instrument"], row["music_kind"]
    if kind == "melody":
        mv = {"up": "rising", "down": "falling", "flat": "repeated"}[row["direction"]]
        return [
            f"{_A(inst).capitalize()} plays {_NUM[row['count']]} {mv} notes at a {row['tempo_class']} tempo.",
            f"A {row['tempo_class']} {mv} melody on the {inst}.",
            f"You hear a short {inst} melody that goes {row['direction']}.",
        ]
    what = "chord" if kind == "chord" else "note"
    return [
        f"{_A(inst).capitalize()} plays {_A(_pitch_adj(row['pitch_class']))} {what}, {adv}.",
        f"A single {row['pitch_class']} {what} on the {inst}.",
        f"You hear {_A(inst)} {what} around {row['pitch_note']}.",
    ]


def _scene_captions(row: dict, adv: str) -> list[str]:
    """Caption templates of a ``scene`` clip: its events listed in order, in sequence or overlapping."""
    evs = [_event_phrase(e) for e in row["events"]]
    lst = evs[0] if len(evs) == 1 else ", ".join(evs[:-1]) + " and " + evs[-1]
    bg = f"over {row['background']} background noise"
    if row["scene_mode"] == "sequence":
        return [
            f"{lst[0].upper() + lst[1:]}, one after another, {bg}.",
            f"A sequence of {_NUM[len(evs)]} sounds {bg}: {lst}.",
            f"First {evs[0]}, then {' and then '.join(evs[1:])}, {bg}.",
        ]
    return [f"{lst[0].upper() + lst[1:]} at the same time, {bg}.", f"Overlapping sounds, {lst}, {bg}."]


# category -> (row, loudness adverb) -> the caption templates one is drawn from
_CAPTIONS = {
    "tone": _tone_captions,
    "buzz": _tone_captions,
    "chirp": _chirp_captions,
    "noise": _noise_captions,
    "clicks": _clicks_captions,
    "speech": _speech_captions,
    "music": _music_captions,
    "scene": _scene_captions,
}


def caption(row: dict, rng: np.random.Generator) -> str:
    """A grammatical, templated one-sentence caption of a synthetic clip (several wordings, one draw from ``rng``)."""
    c = row["category"]
    adv = _LOUD_ADV[row["loudness_class"]]
    if c not in _CAPTIONS:
        raise ValueError(f"no caption template for category {c!r}")
    return _choice(rng, _CAPTIONS[c](row, adv))


def _row(r, task, attribute, question, answer, closed=True):
    answer = str(answer)
    if closed and attribute in ANSWER_OPTIONS and answer not in ANSWER_OPTIONS[attribute]:
        raise AssertionError(f"answer {answer!r} not in options for {attribute}")
    return {
        "file_name": r["file_name"],
        "task": task,
        "attribute": attribute,
        "question": question,
        "answer": answer,
        "closed": closed,
    }


_CAT_Q = [
    "What kind of sound is this? Answer with one word.",
    "Classify the sound: tone, chirp, noise, clicks, buzz, music, speech or scene?",
    "Which category best describes this audio clip?",
]
_LOUD_Q = ["How loud is the sound: quiet, medium or loud?", "Is this clip quiet, medium or loud?"]
_CAP_Q = [
    "Describe the audio.",
    "Write a short caption for this audio clip.",
    "What do you hear? Answer in one sentence.",
]


def _cls_rows(r, rng):
    rows = [
        _row(r, "cls", "category", _choice(rng, _CAT_Q), r["category"]),
        _row(r, "cls", "loudness_class", _choice(rng, _LOUD_Q), r["loudness_class"]),
    ]
    c = r["category"]
    if c in ("tone", "buzz"):
        rows.append(_row(r, "cls", "pitch_class", "Is the pitch low, medium, high or very high?", r["pitch_class"]))
    elif c == "chirp":
        rows.append(_row(r, "cls", "direction", "Does the sweep go up or down?", r["direction"]))
    elif c == "noise":
        rows.append(_row(r, "cls", "noise_color", "Is this white, pink or brown noise?", r["noise_color"]))
    elif c == "clicks":
        rows.append(_row(r, "cls", "count", "How many clicks? Answer with a number.", r["count"]))
    elif c == "music":
        rows.append(_row(r, "cls", "instrument", "Which instrument is this?", r["instrument"]))
    elif c == "speech" and r["text_kind"] == "word":
        rows.append(_row(r, "cls", "word", "Which word is spoken?", r["word"]))
    elif c == "speech":
        rows.append(_row(r, "cls", "gender", "Is the speaker male or female?", r["gender"]))
    elif c == "scene":
        rows.append(_row(r, "cls", "snr_class", "Is the signal-to-noise ratio low, medium or high?", r["snr_class"]))
    return rows


# Each family helper below returns its QA rows in a fixed order and draws from ``rng`` only in the order the rows
# are built; :func:`_qa_candidates` calls them in a fixed order, so the task stream is the same for a fixed seed.


def _count_qa(r, rng):
    """How-many questions about the repeated events of a ``tone``, ``buzz``, ``noise`` or ``clicks`` clip."""
    c = r["category"]
    if c in ("tone", "buzz", "noise"):
        noun = {"tone": "beeps", "buzz": "buzzes", "noise": "noise bursts"}[c]
        question = _choice(rng, [f"How many {noun} do you hear?", f"Count the {noun}. Answer with a number."])
        return [_row(r, "qa", "count", question, r["count"])]
    if c == "clicks":
        question = _choice(rng, ["How many times does it click?", "Count the clicks."])
        return [_row(r, "qa", "count", question, r["count"])]
    return []


def _melody_qa(r):
    """Note count, rise (only for up/down melodies, to keep yes/no balanced) and tempo of a music melody."""
    if r["category"] != "music" or r["music_kind"] != "melody":
        return []
    out = [_row(r, "qa", "count", "How many notes are played?", r["count"])]
    if r["direction"] != "flat":  # keep yes/no balanced
        rises = "yes" if r["direction"] == "up" else "no"
        out.append(_row(r, "qa", "melody_rises", "Does the melody end higher than it starts?", rises))
    out.append(_row(r, "qa", "tempo_class", "Is the tempo slow or fast?", r["tempo_class"]))
    return out


def _scene_qa(r, rng, labels):
    """Event count of a scene; for a sequence also its first event and (2 events >= 3 dB apart) the louder one."""
    if r["category"] != "scene":
        return []
    out = [_row(r, "qa", "count", "How many different sounds are there?", r["count"])]
    if r["scene_mode"] != "sequence":
        return out
    question = _choice(rng, ["Which sound comes first? Answer with one word.", "What kind of sound do you hear first?"])
    out.append(_row(r, "qa", "first_event", question, labels[0]))
    if len(labels) == 2:
        a, b = r["events"][0]["loudness_dbfs"], r["events"][1]["loudness_dbfs"]
        if abs(a - b) >= 3.0:
            louder = "first" if a > b else "second"
            out.append(_row(r, "qa", "louder_event", "Which is louder, the first sound or the second?", louder))
    return out


def _direction_qa(r, rng):
    """Pitch direction (up/down/flat) of a chirp or a music melody."""
    if r.get("direction") not in ("up", "down", "flat") or r["category"] not in ("chirp", "music"):
        return []
    question = _choice(
        rng, ["Does the pitch go up, down, or stay flat?", "Which way does the pitch move: up, down or flat?"]
    )
    return [_row(r, "qa", "direction", question, r["direction"])]


def _speech_qa(r, rng):
    """Spoken word (speech or a scene with a voice), sentence text (open answer) and speaker gender."""
    out = []
    if r.get("word") is not None:
        question = _choice(rng, ["What word is spoken?", "Which word does the speaker say?"])
        out.append(_row(r, "qa", "word", question, r["word"]))
    if r["category"] == "speech" and r["text_kind"] == "sentence":
        out.append(_row(r, "qa", "text", "What does the speaker say?", r["text"], closed=False))
    if r["category"] == "speech":
        out.append(_row(r, "qa", "gender", "Is the voice male or female?", r["gender"]))
    return out


def _instrument_qa(r, rng):
    """Which instrument, and a yes/no "is this a X?" (X the true instrument or another one, 50/50)."""
    inst = r.get("instrument")
    if inst is None:
        return []
    question = _choice(rng, ["Which instrument is playing?", "What instrument do you hear?"])
    out = [_row(r, "qa", "instrument", question, inst)]
    ask = inst if rng.random() < 0.5 else _choice(rng, [i for i in INSTRUMENTS if i != inst])
    out.append(_row(r, "qa", "is_instrument", f"Is this a {ask}?", "yes" if ask == inst else "no"))
    return out


def _pitch_qa(r):
    """Pitch class (tone, buzz, music) and the modulation of a tone."""
    c, out = r["category"], []
    if c in ("tone", "buzz", "music") and r.get("pitch_class"):
        question = "How high is the pitch: low, medium, high or very high?"
        out.append(_row(r, "qa", "pitch_class", question, r["pitch_class"]))
    if c == "tone":
        question = "Is the tone steady (none), amplitude-modulated (am) or frequency-modulated (fm)?"
        out.append(_row(r, "qa", "modulation", question, r["modulation"]))
    return out


def _presence_qa(r, rng, labels):
    """Is there speech / music: ``(specific, generic)``.

    A speech (music) clip gets a guaranteed "yes" among its specific questions; other clips are asked as a
    generic question when the label occurs, in every scene, and otherwise with probability 0.15.
    """
    c, specific, generic = r["category"], [], []
    if c == "speech":  # a guaranteed "yes" among the specific questions
        specific.append(_row(r, "qa", "has_speech", "Is someone speaking?", "yes"))
    elif "speech" in labels or c == "scene" or rng.random() < 0.15:
        question = _choice(rng, ["Is someone speaking?", "Is there speech in this clip?"])
        generic.append(_row(r, "qa", "has_speech", question, "yes" if "speech" in labels else "no"))
    if c == "music":
        specific.append(_row(r, "qa", "has_music", "Is there music in this clip?", "yes"))
    elif "music" in labels or c == "scene" or rng.random() < 0.15:
        generic.append(_row(r, "qa", "has_music", "Is there music in this clip?", "yes" if "music" in labels else "no"))
    return specific, generic


def _qa_candidates(r, rng):
    """The clip's QA rows: ``(specific, generic)``; generic rows (presence, loudness, duration) fill up last."""
    labels = [e["label"] for e in r["events"]]
    out = _count_qa(r, rng)
    out += _melody_qa(r)
    out += _scene_qa(r, rng, labels)
    out += _direction_qa(r, rng)
    out += _speech_qa(r, rng)
    out += _instrument_qa(r, rng)
    out += _pitch_qa(r)
    # generic questions (the last GENERIC rows), asked so that yes and no stay roughly balanced
    present, generic = _presence_qa(r, rng, labels)
    out += present
    if r["loudness_class"] != "medium":
        generic.append(_row(r, "qa", "is_loud", "Is the sound loud?", "yes" if r["loudness_class"] == "loud" else "no"))
    generic.append(_row(r, "qa", "duration_class", "Is the clip short, medium or long?", r["duration_class"]))
    return out, generic


def make_tasks(row: dict, rng: np.random.Generator, n_qa: tuple[int, int] = (2, 4)) -> list[dict]:
    """All task rows of one clip (see module docstring), with ``row_id = f"{clip_id}-{k}"``."""
    rows = _cls_rows(row, rng)
    rows.append(_row(row, "caption", "caption", _choice(rng, _CAP_Q), caption(row, rng), closed=False))
    specific, generic = _qa_candidates(row, rng)
    cands = specific + generic
    # specific questions first (in random order), then fill up with the generic ones
    k = int(rng.integers(n_qa[0], n_qa[1] + 1))
    order = list(rng.permutation(len(specific))) + [len(specific) + int(i) for i in rng.permutation(len(generic))]
    picked = [cands[i] for i in order[:k]]
    rows.extend(picked)
    for i, t in enumerate(rows):
        t["row_id"] = f"{row['clip_id']}-{i}"
    return [{"row_id": t.pop("row_id"), **t} for t in rows]


assert set(CATEGORIES) >= {"tone", "scene"}
