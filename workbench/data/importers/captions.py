"""Caption-corpus importers: AudioCaps and Clotho.

AudioCaps (``SRC/{train,val,test}.csv``: audiocap_id, youtube_id, start_time, caption; audio anywhere
under SRC named ``{audiocap_id}``, ``{youtube_id}``, ``Y{youtube_id}`` or ``{youtube_id}_{start_time}``
plus an audio extension). Clotho (``SRC/clotho_captions_{development,validation,evaluation}.csv``:
file_name, caption_1..caption_5; audio anywhere under SRC, preferably in a folder named after the split).

Metadata columns: file_name (``audio/{split}/{name}``), split (train/val/test), captions (list), and
youtube_id/start_time (AudioCaps). One ``caption`` task row per caption (open answer).
"""

from __future__ import annotations

from pathlib import Path

from workbench.data.importers.common import ImportWriter, index_audio, read_csv

__all__ = ["import_audiocaps", "import_clotho"]

CAPTION_QUESTIONS = [
    "Describe the audio.",
    "Write a short caption for this audio clip.",
    "What do you hear? Answer in one sentence.",
]
CLOTHO_SPLITS = {"development": "train", "validation": "val", "evaluation": "test"}


def _pick(idx, names, prefer: str | None = None):
    for n in names:
        hits = idx.get(n, [])
        if prefer:
            pref = [h for h in hits if prefer in h.parts]
            hits = pref or hits
        if hits:
            return hits[0]
    return None


def import_audiocaps(src, out, skip_bad: bool = False, link: bool = False, check_audio: bool = True) -> Path:
    """Convert AudioCaps CSVs + downloaded audio at ``src`` into an audiofolder at ``out``."""
    src = Path(src)
    w = ImportWriter(out, "audiocaps", skip_bad, link, check_audio)
    idx = index_audio(src)
    found = False
    for split in ["train", "val", "test"]:
        csv_path = src / f"{split}.csv"
        if not csv_path.exists():
            continue
        found = True
        for line, r in read_csv(csv_path, w.bad, required=("audiocap_id", "youtube_id", "start_time", "caption")):
            yid, st = r["youtube_id"], r["start_time"]
            p = _pick(idx, [r["audiocap_id"], yid, f"Y{yid}", f"{yid}_{st}", f"{yid}_{st}.000"], prefer=split)
            fn = f"audio/{split}/{p.name if p else yid + '.wav'}"
            attrs = {"split": split, "youtube_id": yid, "start_time": st, "captions": []}
            if w.add_clip(p, fn, attrs, (csv_path, line)):
                w.clips[fn]["captions"].append(r["caption"])
                w.add_task(fn, "caption", "caption", CAPTION_QUESTIONS[line % 3], r["caption"], False)
    if not found:
        from workbench.data.audiofolder import DataError

        raise DataError(f"{src}: no AudioCaps CSV (train.csv / val.csv / test.csv) found")
    return w.finish({}, {"source_dir": str(src)})


def import_clotho(src, out, skip_bad: bool = False, link: bool = False, check_audio: bool = True) -> Path:
    """Convert Clotho caption CSVs + audio at ``src`` into an audiofolder at ``out``."""
    src = Path(src)
    w = ImportWriter(out, "clotho", skip_bad, link, check_audio)
    idx = index_audio(src)
    found = False
    for cs, split in CLOTHO_SPLITS.items():
        csv_path = src / f"clotho_captions_{cs}.csv"
        if not csv_path.exists():
            hits = sorted(src.rglob(f"clotho_captions_{cs}.csv"))
            if not hits:
                continue
            csv_path = hits[0]
        found = True
        for line, r in read_csv(csv_path, w.bad, required=("file_name", "caption_1")):
            caps = [r[k].strip() for k in sorted(r) if k.startswith("caption_") and r[k].strip()]
            p = _pick(idx, [r["file_name"]], prefer=cs)
            fn = f"audio/{split}/{r['file_name']}"
            if w.add_clip(p, fn, {"split": split, "captions": caps}, (csv_path, line)):
                for k, c in enumerate(caps):
                    w.add_task(fn, "caption", "caption", CAPTION_QUESTIONS[k % 3], c, False)
    if not found:
        from workbench.data.audiofolder import DataError

        raise DataError(f"{src}: no clotho_captions_{{development,validation,evaluation}}.csv found")
    return w.finish({}, {"source_dir": str(src)})
