"""ESC-50 importer. Source layout (as in the GitHub release): ``SRC/audio/*.wav`` + ``SRC/meta/esc50.csv``
(columns filename, fold, target, category, esc10, src_file, take).

Metadata columns: file_name (``audio/<filename>``), category (label with spaces, e.g. "crying baby"),
target, fold, esc10, split (fold 5 -> "test", else "train"; use ``fold`` for 5-fold CV).
Tasks per clip: ``cls``/category and a balanced ``qa`` yes/no (``is_category``).
"""

from __future__ import annotations

import random
from pathlib import Path

from workbench.data.importers.common import ImportWriter, read_csv

__all__ = ["import_esc50"]

QUESTIONS = ["What sound is this?", "Which sound event do you hear?", "Classify the sound in this clip."]


def import_esc50(src, out, skip_bad: bool = False, link: bool = False, check_audio: bool = True) -> Path:
    """Convert ESC-50 at ``src`` into an audiofolder at ``out``; returns ``out``."""
    src = Path(src)
    w = ImportWriter(out, "esc50", skip_bad, link, check_audio)
    csv_path = src / "meta" / "esc50.csv"
    rows = read_csv(csv_path, w.bad, required=("filename", "fold", "target", "category"))
    labels = sorted({r["category"].replace("_", " ") for _, r in rows})
    rng = random.Random(0)
    for line, r in rows:
        fn = f"audio/{r['filename']}"
        label = r["category"].replace("_", " ")
        p = src / "audio" / r["filename"]
        try:
            fold = int(r["fold"])
        except ValueError:
            w.bad.add(csv_path, line, fn, f"fold {r['fold']!r} is not an integer")
            continue
        attrs = {
            "category": label,
            "target": int(r["target"]),
            "fold": fold,
            "esc10": str(r.get("esc10", "")).lower() == "true",
            "split": "test" if fold == 5 else "train",
        }
        if w.add_clip(p if p.exists() else None, fn, attrs, (csv_path, line)):
            w.add_task(fn, "cls", "category", QUESTIONS[line % len(QUESTIONS)], label, True)
            ask = label if rng.random() < 0.5 else rng.choice([x for x in labels if x != label] or [label])
            w.add_task(fn, "qa", "is_category", f"Is this the sound of {ask}?", "yes" if ask == label else "no", True)
    return w.finish({"category": labels, "is_category": ["yes", "no"]}, {"source_dir": str(src)})
