"""Split one audiofolder into one audiofolder per split (train/val/test), by a column or at random by clip.

CLI::

    python -m workbench.data.split SRC --out OUT [--by COLUMN [--map 1,2,3=train 4=val 5=test]]
        [--fractions 0.8,0.1,0.1] [--names train,val,test] [--seed 0] [--copy]

The importers write ONE folder (some with a ``split`` column, OpenAQA without), while training reads
``data.train`` and ``data.val`` as separate folders. This writes ``OUT/{name}`` for every split:

- ``--by COLUMN``: one folder per distinct value of that ``metadata.jsonl`` column (``split`` for AudioCaps /
  Clotho / ESC-50); ``--map VALUES=NAME ...`` groups values (ESC-50 folds: ``--by fold --map 1,2,3=train 4=val
  5=test``). Every clip needs a value (and, with ``--map``, a mapped one).
- otherwise a seeded random split *by clip*: the clips (sorted by ``file_name``) are shuffled with ``--seed``
  and cut by ``--fractions`` (largest-remainder rounding), so the split is the same for the same seed and data.

Every task row goes to its clip's split, so no clip is in two splits. Each output holds ``metadata.jsonl`` and
``tasks.jsonl`` (rows in source order), the source's other ``*.json`` files (``answer_options.json``,
``holdout.json``, ...; ``dataset_info.json`` gets ``split``, ``n_clips``, ``n_tasks`` and a ``split_from``
note), and the audio at the same ``file_name`` paths: relative symlinks to the source's files (default) or
copies (``--copy``). ``bad_rows.jsonl`` is not carried over (its line numbers are the source's). Each output
folder is built in a temporary folder beside it and moved into place with :func:`workbench.common.paths.replace_dir`
once every split is built, so an old ``OUT/{name}`` is replaced whole or not at all.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from workbench.common.paths import replace_dir
from workbench.data.audiofolder import METADATA, TASKS, DataError, read_jsonl, write_json, write_jsonl
from workbench.data.split_assignment import SplitError as SplitError
from workbench.data.split_assignment import _check_name as _check_name
from workbench.data.split_assignment import column_assignment as column_assignment
from workbench.data.split_assignment import parse_map as parse_map
from workbench.data.split_assignment import random_assignment as random_assignment

__all__ = ["SplitError", "split_audiofolder", "random_assignment", "column_assignment", "parse_map", "main"]

DEFAULT_NAMES = ("train", "val", "test")


def _inside(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def _check_targets(src: Path, targets: dict[str, Path], source_files: list[str]) -> None:
    """No output folder may be the source, hold it, or hold any file of it (its audio, metadata, side files)."""
    for name, t in targets.items():
        if _inside(src, t):
            what = "is the source folder" if t == src else "contains the source folder"
            raise SplitError(f"output folder {t} for split {name!r} {what}; pick another --out")
        if _inside(t, src):
            prefix = t.relative_to(src).as_posix() + "/"
            hit = next((f for f in source_files if f == prefix[:-1] or f.startswith(prefix)), None)
            if hit is not None:
                raise SplitError(
                    f"output folder {t} for split {name!r} would overwrite the source's {hit!r}; "
                    f"pick another --out or another split name"
                )


def _load(src: Path) -> tuple[list[dict], list[tuple[int, dict]] | None]:
    if not (src / METADATA).is_file():
        raise DataError(f"{src}: no {METADATA}; not an audiofolder (expected {METADATA} + audio files)")
    clips, seen = [], {}
    for line, row in read_jsonl(src / METADATA, required=("file_name",)):
        fn = row["file_name"]
        if not isinstance(fn, str):
            raise DataError(f"{src / METADATA} line {line}: file_name must be a string")
        if fn in seen:
            raise DataError(
                f"{src / METADATA} line {line} (file_name {fn!r}): duplicate file_name "
                f"(first on line {seen[fn]}); run python -m workbench.data.validate {src}"
            )
        p = Path(fn)
        if p.is_absolute() or ".." in p.parts:
            raise DataError(
                f"{src / METADATA} line {line} (file_name {fn!r}): file_name must be a relative path "
                f"inside the dataset folder"
            )
        seen[fn] = line
        clips.append(row)
    if not clips:
        raise SplitError(f"{src / METADATA}: no clips to split")
    tasks = None
    if (src / TASKS).is_file():
        tasks = read_jsonl(src / TASKS, required=("file_name",))
        for line, row in tasks:
            if row["file_name"] not in seen:
                raise DataError(
                    f"{src / TASKS} line {line} (file_name {row['file_name']!r}): names a clip not in "
                    f"{METADATA}; fix the row or run python -m workbench.data.validate {src} --skip-bad"
                )
    return clips, tasks


def _place_audio(src_file: Path, dst: Path, final_dir: Path, link: bool) -> None:
    if not src_file.is_file():
        raise DataError(f"{src_file}: audio file not found (it is named in the source's {METADATA})")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:  # relative to where the link will live once the folder is in place (same depth as the temp folder)
        os.symlink(os.path.relpath(src_file, final_dir), dst)
    else:
        shutil.copyfile(src_file, dst)


def _assign_splits(
    src: Path, clips: list[dict], by: str | None, mapping: dict[str, str] | None, names, fractions, seed: int
) -> tuple[dict[str, str], list[str]]:
    """({file_name: split name}, the split names in order): by the column ``by`` or at random."""
    if by is not None:
        assign = column_assignment(clips, by, mapping, where=str(src / METADATA))
        order: dict[str, None] = {}
        for c in clips:
            order.setdefault(assign[c["file_name"]], None)
        split_names = list(order)
    else:
        split_names = [_check_name(n, "split name") for n in names]
        if len(set(split_names)) != len(split_names):
            raise SplitError(f"split names {split_names} repeat a name")
        assign = random_assignment([c["file_name"] for c in clips], fractions, split_names, seed)
    if mapping is not None:  # every named split must get clips
        empty = sorted(set(mapping.values()) - set(split_names))
        if empty:
            raise SplitError(f"split(s) {empty} would get no clips: no clip has a value that --map sends there")
    return assign, split_names


def _split_provenance(
    src: Path,
    clips: list[dict],
    tasks,
    by: str | None,
    mapping: dict[str, str] | None,
    seed: int,
    fractions,
    split_names: list[str],
) -> tuple[dict, dict]:
    """(the source's dataset_info.json as a dict, the ``split_from`` record of how the splits were made)."""
    info_src = src / "dataset_info.json"
    info = json.loads(info_src.read_text(encoding="utf-8")) if info_src.is_file() else {}
    if not isinstance(info, dict):
        info = {"source_info": info}
    how = {
        "source": str(src),
        "by": by or "random",
        "n_clips_source": len(clips),
        "n_tasks_source": len(tasks) if tasks is not None else None,
    }
    if by is None:
        how.update(seed=seed, fractions=[float(f) for f in fractions], names=split_names)
    elif mapping is not None:
        how["map"] = mapping
    return info, how


def _write_split(
    tmp: Path,
    name: str,
    src: Path,
    target: Path,
    clips: list[dict],
    tasks,
    assign: dict[str, str],
    side: list[Path],
    info: dict,
    how: dict,
    link: bool,
) -> None:
    """Fill the temporary folder ``tmp`` with split ``name``: its audio, metadata, tasks and side files."""
    rows = [c for c in clips if assign[c["file_name"]] == name]
    for c in rows:
        fn = c["file_name"]
        _place_audio(src / fn, tmp / fn, (target / fn).parent, link)
    write_jsonl(tmp / METADATA, rows)
    n_tasks = None
    if tasks is not None:
        trows = [t for _, t in tasks if assign[t["file_name"]] == name]
        write_jsonl(tmp / TASKS, trows)
        n_tasks = len(trows)
    for p in side:
        if p.name != "dataset_info.json":
            shutil.copyfile(p, tmp / p.name)
    write_json(
        tmp / "dataset_info.json", {**info, "split": name, "n_clips": len(rows), "n_tasks": n_tasks, "split_from": how}
    )
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; give it the usual mode


def split_audiofolder(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    by: str | None = None,
    fractions=(0.8, 0.1, 0.1),
    names=DEFAULT_NAMES,
    seed: int = 0,
    link: bool = True,
    mapping: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Write ``out/{name}`` for every split of the audiofolder ``src``; returns ``{name: folder}``.

    ``by``: a metadata column (one split per value, or per ``mapping[value text]``; ``fractions``, ``names``
    and ``seed`` are then unused). Without it, a seeded random split of the clips by ``fractions`` into
    ``names``. ``link=True``: audio as relative symlinks to the source's files; ``False``: copies.
    Raises :class:`SplitError` (bad arguments) or :class:`~workbench.data.audiofolder.DataError` (bad source).
    """
    src = Path(src)
    if not src.is_dir():
        raise SplitError(f"{src}: source folder not found")
    src = src.resolve()
    if mapping is not None and by is None:
        raise SplitError("a value mapping (--map) needs a column to split by (--by COLUMN)")
    clips, tasks = _load(src)
    assign, split_names = _assign_splits(src, clips, by, mapping, names, fractions, seed)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    targets = {n: out / n for n in split_names}
    source_files = [Path(c["file_name"]).as_posix() for c in clips] + [p.name for p in src.iterdir() if p.is_file()]
    _check_targets(src, targets, source_files)

    side = sorted(p for p in src.glob("*.json") if p.is_file() and not p.name.startswith("."))
    info, how = _split_provenance(src, clips, tasks, by, mapping, seed, fractions, split_names)
    temps: dict[str, Path] = {}
    try:
        for name in split_names:
            tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".{name}.", suffix=".tmp"))
            temps[name] = tmp
            _write_split(tmp, name, src, targets[name], clips, tasks, assign, side, info, how, link)
        for name in split_names:
            replace_dir(temps.pop(name), targets[name])
    finally:
        for tmp in temps.values():
            shutil.rmtree(tmp, ignore_errors=True)
    return targets


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fractions(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SplitError(f"--fractions {text!r}: expected comma-separated numbers, e.g. 0.8,0.1,0.1") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workbench.data.split", description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="the audiofolder to split (an importer's --out)")
    p.add_argument("--out", required=True, help="where to write OUT/{split} (may be SRC itself)")
    p.add_argument(
        "--by", default=None, metavar="COLUMN", help="metadata column: one output folder per value (e.g. split, fold)"
    )
    p.add_argument(
        "--map",
        nargs="+",
        default=None,
        metavar="VALUES=NAME",
        help="with --by: group column values into splits, e.g. --map 1,2,3=train 4=val 5=test",
    )
    p.add_argument("--fractions", default=None, help="random split: fractions of the clips (default 0.8,0.1,0.1)")
    p.add_argument(
        "--names", default=None, help="random split: split names (default train,val,test, as many as fractions)"
    )
    p.add_argument("--seed", type=int, default=0, help="random split: shuffle seed (default 0)")
    p.add_argument("--copy", action="store_true", help="copy the audio (default: relative symlinks to SRC's files)")
    a = p.parse_args(argv)
    try:
        if a.by is not None and (a.fractions is not None or a.names is not None):
            raise SplitError(
                "--fractions/--names are for the random split; with --by the column's values name the "
                "splits (use --map to group them)"
            )
        fractions = _fractions(a.fractions) if a.fractions is not None else [0.8, 0.1, 0.1]
        if a.names is not None:
            names = [n.strip() for n in a.names.split(",") if n.strip()]
        elif len(fractions) <= len(DEFAULT_NAMES):
            names = list(DEFAULT_NAMES[: len(fractions)])
        else:
            raise SplitError(f"{len(fractions)} fractions but only {len(DEFAULT_NAMES)} default names; pass --names")
        mapping = parse_map(a.map) if a.map is not None else None
        res = split_audiofolder(
            a.src, a.out, by=a.by, fractions=fractions, names=names, seed=a.seed, link=not a.copy, mapping=mapping
        )
    except (SplitError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, path in res.items():
        info = json.loads((path / "dataset_info.json").read_text(encoding="utf-8"))
        tasks = f", {info['n_tasks']} task rows" if info.get("n_tasks") is not None else ""
        print(f"{name}: {info['n_clips']} clip{'' if info['n_clips'] == 1 else 's'}{tasks} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
