"""LTU OpenAQA importer. Source: a JSON list (or JSONL) of ``{"instruction", "input", "output", "audio_id",
"dataset", "task", ...}`` entries; ``audio_id`` is the authors' absolute path, resolved here as given, or
relative to ``--audio-root``, or by file name under ``--audio-root`` (default: the JSON's folder).

Task mapping: LTU ``task`` starting with "cla" -> ``cls`` (closed), containing "caption" -> ``caption``,
else ``qa`` (open). ``attribute`` keeps LTU's task name; question = instruction (+ input), answer = output.
Metadata columns: file_name (``audio/{dataset}/{name}``), dataset, audio_id.
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.data.audiofolder import BadRows, DataError, read_jsonl
from workbench.data.importers.common import ImportWriter, index_audio

__all__ = ["import_openaqa", "map_task"]


def map_task(ltu_task: str) -> str:
    """LTU task name -> our task type (cls / caption / qa)."""
    t = (ltu_task or "").lower()
    if t.startswith("cla"):
        return "cls"
    if "caption" in t:
        return "caption"
    return "qa"


def _has_bad_text(obj) -> bool:
    if isinstance(obj, str):
        return any("\udc80" <= ch <= "\udcff" for ch in obj)
    if isinstance(obj, dict):
        return any(_has_bad_text(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_bad_text(v) for v in obj)
    return False


def _read_entries(path: Path, bad: BadRows) -> list[tuple[int | None, dict]]:
    raw = path.read_bytes()
    if raw.lstrip()[:1] != b"[":
        return read_jsonl(path, bad)
    text = raw.decode("utf-8", errors="surrogateescape")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path} line {e.lineno}: invalid JSON ({e.msg})") from e
    bad_lines = []  # physical lines holding invalid UTF-8, in file order
    for i, ln in enumerate(raw.split(b"\n"), start=1):
        try:
            ln.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines.append(i)
    out, k = [], 0
    for n, e in enumerate(data):
        if not isinstance(e, dict):
            bad.add(path, None, None, f"entry #{n} is not an object")
            continue
        if _has_bad_text(e):
            line = bad_lines[min(k, len(bad_lines) - 1)] if bad_lines else None
            k += 1
            bad.add(path, line, e.get("audio_id"), f"entry #{n} is not valid UTF-8 text")
            continue
        out.append((n, e))
    return out


def import_openaqa(
    src, out, audio_root=None, skip_bad: bool = False, link: bool = False, check_audio: bool = True
) -> Path:
    """Convert an OpenAQA JSON (``src`` file, or the first *.json in folder ``src``) into an audiofolder."""
    src = Path(src)
    if src.is_dir():
        js = sorted(src.glob("*.json")) + sorted(src.glob("*.jsonl"))
        if not js:
            raise DataError(f"{src}: no *.json / *.jsonl file")
        src = js[0]
    audio_root = Path(audio_root) if audio_root else src.parent
    w = ImportWriter(out, "openaqa", skip_bad, link, check_audio)
    idx = index_audio(audio_root)
    cls_options: dict[str, set] = {}
    for n, e in _read_entries(src, w.bad):
        missing = [k for k in ("audio_id", "instruction", "output") if not e.get(k)]
        if missing:
            w.bad.add(src, n, e.get("audio_id"), f"entry lacks {missing}")
            continue
        aid = str(e["audio_id"])
        cand = [Path(aid), audio_root / aid.lstrip("/")]
        p = next((c for c in cand if c.is_file()), None)
        if p is None:
            hits = idx.get(Path(aid).name, [])
            p = next((h for h in hits if str(h).endswith(aid.lstrip("/"))), hits[0] if hits else None)
        ds = str(e.get("dataset") or "unknown").replace("/", "_")
        fn = f"audio/{ds}/{Path(aid).name}"
        if not w.add_clip(p, fn, {"dataset": ds, "audio_id": aid}, (src, n)):
            continue
        task = map_task(e.get("task", ""))
        q = e["instruction"] + (f"\n{e['input']}" if e.get("input") else "")
        w.add_task(fn, task, str(e.get("task") or task), q, e["output"], task == "cls")
        if task == "cls":
            cls_options.setdefault(str(e.get("task")), set()).add(e["output"])
    return w.finish(
        {k: sorted(v) for k, v in cls_options.items()}, {"source_file": str(src), "audio_root": str(audio_root)}
    )
