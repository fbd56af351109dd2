"""Music rendering: MIDI written with `mido`, rendered by the `fluidsynth` CLI with the General MIDI
soundfont from Debian (`fluid-soundfont-gm`, /usr/share/sounds/sf2/FluidR3_GM.sf2).

Reverb and chorus are off so that pitch is clean; fluidsynth renders float samples that are read back
and mixed to mono, so the result is deterministic for the same notes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

from workbench.common.audio_io import resample

__all__ = [
    "MusicError",
    "Note",
    "soundfont_path",
    "fluidsynth_available",
    "render_notes",
    "note_bank",
    "render_from_bank",
]

SOUNDFONT_CANDIDATES = [
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
]


class MusicError(RuntimeError):
    """fluidsynth or the soundfont is missing, or rendering failed."""


@dataclass(frozen=True)
class Note:
    """One MIDI note: ``midi`` number, ``start``/``end`` in seconds, ``velocity`` 1-127."""

    midi: int
    start: float
    end: float
    velocity: int = 100


def soundfont_path() -> Path:
    """The GM soundfont: ``$PAL_SOUNDFONT`` or the first Debian location that exists."""
    env = os.environ.get("PAL_SOUNDFONT")
    for c in ([env] if env else []) + SOUNDFONT_CANDIDATES:
        if c and Path(c).exists():
            return Path(c)
    raise MusicError(
        "no General MIDI soundfont found: install `fluid-soundfont-gm` (apt) or set PAL_SOUNDFONT to an .sf2 file."
    )


def fluidsynth_available() -> bool:
    """True when the `fluidsynth` binary and a GM soundfont are present."""
    if shutil.which("fluidsynth") is None:
        return False
    try:
        soundfont_path()
    except MusicError:
        return False
    return True


def _write_midi(path: str, program: int, notes: list[Note]) -> None:
    tpb, tempo = 480, 500000  # 120 bpm: 1 s = 960 ticks
    tick_per_s = tpb * 1e6 / tempo
    events = []
    for n in notes:
        events.append((int(round(n.start * tick_per_s)), 1, mido.Message("note_on", note=n.midi, velocity=n.velocity)))
        events.append((int(round(n.end * tick_per_s)), 0, mido.Message("note_off", note=n.midi, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    mid = mido.MidiFile(ticks_per_beat=tpb)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    tr.append(mido.Message("program_change", program=program, time=0))
    now = 0
    for tick, _, msg in events:
        tr.append(msg.copy(time=tick - now))
        now = tick
    mid.save(path)


def render_notes(program: int, notes: list[Note], sr: int, tail_s: float = 0.3) -> np.ndarray:
    """Render ``notes`` on General MIDI ``program`` (0-based); returns mono float32 ``[S]`` at ``sr`` Hz,
    starting at t = 0 and cut ``tail_s`` seconds after the last note-off."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise MusicError("fluidsynth not found: install it (`apt-get install fluidsynth fluid-soundfont-gm`).")
    sf2 = soundfont_path()
    tmp = tempfile.mkdtemp(prefix="pal-fluid-")
    try:
        mid, wav = os.path.join(tmp, "in.mid"), os.path.join(tmp, "out.wav")
        _write_midi(mid, program, notes)
        render_sr = 16000 if sr <= 16000 else 44100
        cmd = [
            exe,
            "-ni",
            "-q",
            "-R",
            "0",
            "-C",
            "0",
            "-g",
            "1.0",
            "-r",
            str(render_sr),
            "-O",
            "float",
            "-T",
            "wav",
            "-F",
            wav,
            str(sf2),
            mid,
        ]
        r = subprocess.run(cmd, capture_output=True, timeout=120)
        if r.returncode != 0 or not os.path.exists(wav):
            raise MusicError(f"fluidsynth failed ({' '.join(cmd)}): {r.stderr.decode(errors='replace')}")
        x, file_sr = sf.read(wav, dtype="float32", always_2d=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    x = resample(x.mean(axis=1), file_sr, sr)
    end = int(round((max(n.end for n in notes) + tail_s) * sr))
    if len(x) < end:
        x = np.pad(x, (0, end - len(x)))
    return np.ascontiguousarray(x[:end], dtype=np.float32)


# ---------------------------------------------------------------- note bank (fast path)
# One fluidsynth call per instrument renders every note once (held BANK_HOLD_S seconds); clips are then
# assembled from these notes with numpy, so generating a music clip costs milliseconds instead of a
# fluidsynth start (~0.3-0.5 s, mostly loading the 148 MB soundfont). Banks are cached on disk.

BANK_LOW, BANK_HIGH = 28, 104  # MIDI notes rendered (inclusive)
BANK_HOLD_S, BANK_TAIL_S, BANK_STRIDE_S = 2.0, 0.3, 3.0
_BANK_VERSION = 1
_banks: dict[tuple[int, int], np.ndarray] = {}


def _bank_path(program: int, sr: int) -> Path:
    import hashlib

    from workbench.common.paths import cache_dir

    sf2 = soundfont_path()
    st = sf2.stat()
    key = f"{_BANK_VERSION}|{sf2.resolve()}|{st.st_size}|{program}|{sr}|{BANK_LOW}|{BANK_HIGH}|{BANK_HOLD_S}|{BANK_TAIL_S}"
    h = hashlib.sha1(key.encode()).hexdigest()[:16]
    return cache_dir() / "notebank" / f"program{program:03d}-{sr}-{h}.npy"


def note_bank(program: int, sr: int) -> np.ndarray:
    """All notes BANK_LOW..BANK_HIGH of GM ``program``: float32 ``[n_notes, (HOLD+TAIL)*sr]``, each held
    BANK_HOLD_S seconds from t = 0 (row ``midi - BANK_LOW``). Cached in memory and on disk."""
    key = (int(program), int(sr))
    if key in _banks:
        return _banks[key]
    path = _bank_path(program, sr)
    bank = None
    if path.exists():
        try:
            bank = np.load(path)
        except Exception:  # a corrupt cache file is rebuilt
            bank = None
    if bank is None:
        midis = list(range(BANK_LOW, BANK_HIGH + 1))
        notes = [Note(m, k * BANK_STRIDE_S, k * BANK_STRIDE_S + BANK_HOLD_S) for k, m in enumerate(midis)]
        full = render_notes(program, notes, sr, tail_s=BANK_STRIDE_S - BANK_HOLD_S)
        n = int(round((BANK_HOLD_S + BANK_TAIL_S) * sr))
        bank = np.stack([full[int(round(k * BANK_STRIDE_S * sr)) :][:n] for k in range(len(midis))]).astype(np.float32)
        import io

        from workbench.common.paths import atomic_write_bytes

        buf = io.BytesIO()
        np.save(buf, bank)
        atomic_write_bytes(path, buf.getvalue())
    _banks[key] = bank
    return bank


def render_from_bank(program: int, notes: list[Note], sr: int, tail_s: float = 0.15) -> np.ndarray:
    """Like :func:`render_notes` but assembled from :func:`note_bank`: each note is the bank note cut at
    its duration with a ``tail_s`` cosine release. Durations up to BANK_HOLD_S. Returns float32 ``[S]``."""
    bank = note_bank(program, sr)
    end = int(round((max(n.end for n in notes) + tail_s) * sr))
    out = np.zeros(end, np.float32)
    nt = int(round(tail_s * sr))
    ramp = (0.5 + 0.5 * np.cos(np.pi * np.arange(nt) / max(nt, 1))).astype(np.float32)
    for n in notes:
        if not BANK_LOW <= n.midi <= BANK_HIGH:
            raise MusicError(f"note {n.midi} outside the bank range {BANK_LOW}-{BANK_HIGH}")
        dur = n.end - n.start
        if dur > BANK_HOLD_S + 1e-9:
            raise MusicError(f"note of {dur:.2f} s is longer than the bank's {BANK_HOLD_S} s hold")
        nd = int(round(dur * sr))
        y = bank[n.midi - BANK_LOW][: nd + nt].copy()
        y[nd:] *= ramp[: len(y) - nd]
        y *= n.velocity / 100.0
        a = int(round(n.start * sr))
        y = y[: end - a]
        out[a : a + len(y)] += y
    return out
