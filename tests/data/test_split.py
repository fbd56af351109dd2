"""workbench.data.split: one audiofolder -> one valid audiofolder per split, by column or at random by clip."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from workbench.data.audiofolder import METADATA, TASKS, DataError
from workbench.data.importers import import_esc50
from workbench.data.split import SplitError, main, parse_map, split_audiofolder
from workbench.data.validate import load_audiofolder

from .conftest import write_wav


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _clips(d):
    return [r["file_name"] for r in _rows(d / METADATA)]


@pytest.fixture(scope="module")
def synth_src(tmp_path_factory):
    """12 tiny-preset clips (one folder, like an importer's output), with an ESC-50-like ``fold`` column."""
    from workbench.data.synth import generate

    d = tmp_path_factory.mktemp("split") / "src"
    generate(d, n=12, split="train", preset="tiny", progress=False)
    rows = _rows(d / METADATA)
    for r in rows:
        r["fold"] = r["index"] % 5 + 1  # folds 1..5, as ints (like ESC-50)
    (d / METADATA).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return d


@pytest.fixture()
def src(synth_src, tmp_path):
    d = tmp_path / "src"
    shutil.copytree(synth_src, d)
    return d


def test_random_split_partitions_clips_and_tasks_follow(src, tmp_path):
    res = split_audiofolder(src, tmp_path / "out", seed=0)
    assert list(res) == ["train", "val", "test"]
    clips = {n: _clips(p) for n, p in res.items()}
    assert [len(clips[n]) for n in res] == [10, 1, 1]  # 9.6 / 1.2 / 1.2, largest remainder
    source = _clips(src)
    assert sorted(sum(clips.values(), [])) == sorted(source)  # nothing lost, nothing twice
    for a in res:
        for b in res:
            assert a == b or not set(clips[a]) & set(clips[b])
    src_tasks = _rows(src / TASKS)
    for name, d in res.items():
        tasks = _rows(d / TASKS)
        assert {t["file_name"] for t in tasks} <= set(clips[name])
        # every task row of the split's clips, unchanged and in source order
        assert tasks == [t for t in src_tasks if t["file_name"] in set(clips[name])]
        # metadata rows unchanged, in source order
        assert _rows(d / METADATA) == [r for r in _rows(src / METADATA) if r["file_name"] in set(clips[name])]
    assert sum(len(_rows(d / TASKS)) for d in res.values()) == len(src_tasks)


def test_random_split_is_deterministic_for_a_seed(src, tmp_path):
    a = split_audiofolder(src, tmp_path / "a", seed=3)
    b = split_audiofolder(src, tmp_path / "b", seed=3)
    c = split_audiofolder(src, tmp_path / "c", seed=4)
    for n in a:
        assert (a[n] / METADATA).read_bytes() == (b[n] / METADATA).read_bytes()
        assert (a[n] / TASKS).read_bytes() == (b[n] / TASKS).read_bytes()
    assert [_clips(a[n]) for n in a] != [_clips(c[n]) for n in c]
    # the assignment does not depend on the order of the metadata rows
    lines = (src / METADATA).read_text(encoding="utf-8").splitlines(keepends=True)
    (src / METADATA).write_text("".join(reversed(lines)), encoding="utf-8")
    d = split_audiofolder(src, tmp_path / "d", seed=3)
    assert [sorted(_clips(a[n])) for n in a] == [sorted(_clips(d[n])) for n in d]


def test_outputs_are_valid_audiofolders_with_side_files(src, tmp_path):
    res = split_audiofolder(src, tmp_path / "deep" / "out", fractions=(0.5, 0.5), names=("train", "val"))
    for name, d in res.items():
        rep = load_audiofolder(d)  # strict: raises on any bad row; decodes the audio through the links
        assert len(rep.clips) == 6 and not rep.bad
        assert len(rep.tasks) == len(_rows(d / TASKS))
        opts = json.loads((d / "answer_options.json").read_text())
        assert opts == json.loads((src / "answer_options.json").read_text())
        assert (d / "holdout.json").read_bytes() == (src / "holdout.json").read_bytes()
        info = json.loads((d / "dataset_info.json").read_text())
        assert info["split"] == name and info["n_clips"] == 6 and info["n_tasks"] == len(rep.tasks)
        assert info["generator"] == "workbench.data.synth"  # the source's info is kept
        assert info["split_from"]["by"] == "random" and info["split_from"]["n_clips_source"] == 12
        for fn in _clips(d):
            link = d / fn
            assert link.is_symlink() and not os.path.isabs(os.readlink(link))
            assert link.read_bytes() == (src / fn).read_bytes()
        assert not any(p.name.startswith(".") for p in d.parent.iterdir())  # no temp folders left
    # relative links survive moving source and outputs together
    moved = tmp_path / "moved"
    shutil.move(str(tmp_path / "deep"), str(moved / "deep"))
    shutil.move(str(src), str(moved / "src"))
    load_audiofolder(moved / "deep" / "out" / "train")


def test_copy_writes_real_files(src, tmp_path):
    res = split_audiofolder(src, tmp_path / "out", link=False)
    for d in res.values():
        for fn in _clips(d):
            assert (d / fn).is_file() and not (d / fn).is_symlink()
        load_audiofolder(d)


def test_split_inside_the_source_folder(src):
    res = split_audiofolder(src, src)  # data/esc50 -> data/esc50/{train,val,test}
    assert {p.name for p in res.values()} == {"train", "val", "test"}
    for d in res.values():
        load_audiofolder(d)
    again = split_audiofolder(src, src)  # re-running replaces the old split folders
    assert [_clips(d) for d in again.values()] == [_clips(d) for d in res.values()]


def test_by_column_with_and_without_map(src, tmp_path):
    res = split_audiofolder(src, tmp_path / "folds", by="fold")
    assert sorted(res) == ["1", "2", "3", "4", "5"]
    meta = {r["file_name"]: r for r in _rows(src / METADATA)}
    for name, d in res.items():
        assert all(str(meta[fn]["fold"]) == name for fn in _clips(d))
        load_audiofolder(d, check_audio=False)
    res = split_audiofolder(src, tmp_path / "esc", by="fold", mapping=parse_map(["1,2,3=train", "4=val", "5=test"]))
    assert list(res) == ["train", "val", "test"]
    want = {"train": {1, 2, 3}, "val": {4}, "test": {5}}
    for name, d in res.items():
        assert {meta[fn]["fold"] for fn in _clips(d)} == want[name]
        assert json.loads((d / "dataset_info.json").read_text())["split_from"]["by"] == "fold"
    assert sorted(sum((_clips(d) for d in res.values()), [])) == sorted(meta)
    res = split_audiofolder(src, tmp_path / "bysplit", by="split")  # the synthetic source is all "train"
    assert list(res) == ["train"] and len(_clips(res["train"])) == 12


def test_cli(src, tmp_path, capsys):
    assert main([str(src), "--out", str(tmp_path / "o"), "--fractions", "0.75,0.25", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "train: 9 clips" in out and "val: 3 clips" in out and not (tmp_path / "o" / "test").exists()
    assert (
        main(
            [
                str(src),
                "--out",
                str(tmp_path / "m"),
                "--by",
                "fold",
                "--map",
                "1,2,3=train",
                "4=val",
                "5=test",
                "--copy",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["test", "train", "val"]
    assert not any((tmp_path / "m" / "val" / fn).is_symlink() for fn in _clips(tmp_path / "m" / "val"))
    assert main([str(src), "--out", str(tmp_path / "x"), "--by", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no column 'nope'" in err and "available columns:" in err and "fold" in err
    assert main([str(src), "--out", str(tmp_path / "x"), "--fractions", "0.5,0.3"]) == 1
    assert "sum to 0.8, not 1" in capsys.readouterr().err
    assert main([str(src), "--out", str(tmp_path / "x"), "--by", "fold", "--fractions", "0.5,0.5"]) == 1
    assert "--fractions/--names are for the random split" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"by": "nope"}, r"no column 'nope'; available columns: .*category.*fold"),
        ({"fractions": (0.5, 0.3, 0.1)}, r"sum to 0.9, not 1"),
        ({"fractions": (0.5, 0.5)}, r"2 fractions .* for 3 split names"),
        ({"fractions": (1.2, -0.2), "names": ("a", "b")}, r"non-negative"),
        ({"fractions": (0.99, 0.01), "names": ("train", "val")}, r"\['val'\] would get no clips"),
        ({"fractions": (0.9, 0.1, 0.0)}, r"\['test'\] would get no clips"),
        ({"names": ("train", "train", "val")}, r"repeat"),
        ({"names": ("train", "../x", "val")}, r"cannot be a folder name"),
        (
            {"by": "fold", "mapping": {"1": "train", "2": "train", "3": "val", "4": "test"}},
            r"value\(s\) \['5'\] that --map does not name",
        ),
        (
            {"by": "fold", "mapping": {"1": "train", "2": "train", "3": "val", "4": "test", "5": "test", "9": "extra"}},
            r"\['extra'\] would get no clips",
        ),
        ({"mapping": {"1": "train"}}, r"--map\) needs a column"),
        ({"by": "pitch_hz"}, r"have no value in column 'pitch_hz'"),
    ],
)
def test_errors(src, tmp_path, kwargs, match):
    with pytest.raises(SplitError, match=match):
        split_audiofolder(src, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_output_equal_to_or_over_the_source_is_refused(src, tmp_path):
    with pytest.raises(SplitError, match="is the source folder"):
        split_audiofolder(src, tmp_path, names=("src", "val", "test"))
    with pytest.raises(SplitError, match="contains the source folder"):
        split_audiofolder(src, tmp_path.parent, names=(tmp_path.name, "val", "test"))
    with pytest.raises(SplitError, match="would overwrite the source's 'audio/"):
        split_audiofolder(src, src, names=("train", "audio", "test"))
    with pytest.raises(SplitError, match="would overwrite the source's 'metadata.jsonl'"):
        split_audiofolder(
            src, src, by="fold", mapping={"1": "train", "2": "train", "3": "val", "4": "test", "5": "metadata.jsonl"}
        )
    assert sorted(p.name for p in src.iterdir()) == [
        "answer_options.json",
        "audio",
        "dataset_info.json",
        "holdout.json",
        METADATA,
        TASKS,
    ]


def test_parse_map_errors():
    assert parse_map(["1,2=train", "3=val"]) == {"1": "train", "2": "train", "3": "val"}
    with pytest.raises(SplitError, match="expected VALUES=NAME"):
        parse_map(["train"])
    with pytest.raises(SplitError, match="mapped to both"):
        parse_map(["1=train", "1=val"])


def test_bad_source_leaves_old_output_untouched(src, tmp_path):
    old = split_audiofolder(src, tmp_path / "out")
    before = {n: (d / METADATA).read_bytes() for n, d in old.items()}
    victim = _clips(src)[-1]
    (src / victim).unlink()
    with pytest.raises(DataError, match="audio file not found"):
        split_audiofolder(src, tmp_path / "out", seed=5)
    assert {n: (d / METADATA).read_bytes() for n, d in old.items()} == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["test", "train", "val"]  # no temp folders
    (src / TASKS).write_text(
        (src / TASKS).read_text()
        + json.dumps({"file_name": "audio/ghost.wav", "task": "cls", "question": "q", "answer": "a"})
        + "\n"
    )
    with pytest.raises(DataError, match=r"tasks.jsonl line \d+ .*names a clip not in metadata.jsonl"):
        split_audiofolder(src, tmp_path / "out2")
    with pytest.raises(DataError, match="not an audiofolder"):
        split_audiofolder(tmp_path / "out", tmp_path / "out3")


def test_esc50_import_then_split_by_fold(tmp_path):
    """The guide's route: import (with --link: absolute links to the corpus) and split by fold."""
    corpus = tmp_path / "ESC-50-master"
    (corpus / "meta").mkdir(parents=True)
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for k, cat in enumerate(["dog", "rain"]):
            fn = f"{fold}-{k}00-A-{k}.wav"
            write_wav(corpus / "audio" / fn, seconds=0.1)
            lines.append(f"{fn},{fold},{k},{cat},True,{k}00,A")
    (corpus / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
    ds = import_esc50(corpus, tmp_path / "data" / "esc50", link=True)
    res = split_audiofolder(ds, ds, by="fold", mapping=parse_map(["1,2,3=train", "4=val", "5=test"]))
    counts = {n: (len(_clips(d)), len(_rows(d / TASKS))) for n, d in res.items()}
    assert counts == {"train": (6, 12), "val": (2, 4), "test": (2, 4)}
    for d in res.values():
        load_audiofolder(d)
        assert json.loads((d / "answer_options.json").read_text())["category"] == ["dog", "rain"]
    by_split = split_audiofolder(ds, tmp_path / "by_split", by="split")  # the importer's column: fold 5 = test
    assert {n: len(_clips(d)) for n, d in by_split.items()} == {"train": 8, "test": 2}
