"""Importers: a tiny fixture in each corpus's shipped layout, imported and validated."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from workbench.data.audiofolder import BAD_ROWS, DataError
from workbench.data.importers import import_audiocaps, import_clotho, import_esc50, import_openaqa
from workbench.data.validate import load_audiofolder

from .conftest import write_wav


def _tasks(d):
    return [json.loads(l) for l in (d / "tasks.jsonl").read_text(encoding="utf-8").splitlines()]


def test_esc50(tmp_path):
    src = tmp_path / "ESC-50-master"
    rows = [
        ("1-100032-A-0.wav", 1, 0, "dog", "True"),
        ("1-100038-A-14.wav", 1, 14, "chirping_birds", "False"),
        ("5-9032-A-0.wav", 5, 0, "dog", "True"),
    ]
    (src / "meta").mkdir(parents=True)
    with open(src / "meta" / "esc50.csv", "w") as f:
        f.write("filename,fold,target,category,esc10,src_file,take\n")
        for fn, fold, tgt, cat, e10 in rows:
            f.write(f"{fn},{fold},{tgt},{cat},{e10},{fn.split('-')[1]},A\n")
            write_wav(src / "audio" / fn, sr=44100, seconds=0.2)
    out = import_esc50(src, tmp_path / "out")
    rep = load_audiofolder(out)
    assert [c["category"] for c in rep.clips] == ["dog", "chirping birds", "dog"]
    assert [c["split"] for c in rep.clips] == ["train", "train", "test"]
    opts = json.loads((out / "answer_options.json").read_text())
    assert opts["category"] == ["chirping birds", "dog"]
    cls = [t for t in _tasks(out) if t["task"] == "cls"]
    assert [t["answer"] for t in cls] == ["dog", "chirping birds", "dog"]
    r = subprocess.run(
        [sys.executable, "-m", "workbench.data.importers", "esc50", "--src", str(src), "--out", str(tmp_path / "cli")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


def test_esc50_missing_audio(tmp_path):
    src = tmp_path / "esc"
    (src / "meta").mkdir(parents=True)
    (src / "meta" / "esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\na.wav,1,0,dog,True,1,A\nb.wav,1,0,dog,True,1,A\n"
    )
    write_wav(src / "audio" / "a.wav")
    with pytest.raises(DataError, match=r"esc50.csv line 3.*b\.wav"):
        import_esc50(src, tmp_path / "out")
    out = import_esc50(src, tmp_path / "out2", skip_bad=True)
    bad = [json.loads(l) for l in (out / BAD_ROWS).read_text().splitlines()]
    assert [b["line"] for b in bad] == [3]


def test_audiocaps(tmp_path):
    src = tmp_path / "audiocaps"
    (src / "audio" / "test").mkdir(parents=True)
    (src / "train.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n"
        "91139,r1nicOVtvkQ,130,A woman talks nearby as water pours\n"
        "58146,UDGBjjwyaqE,20,Multiple clanging and clanking sounds\n"
    )
    (src / "test.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n"
        "103549,--0w1YA1Hm4,30,A vehicle driving as a man speaks\n"
        "103548,--0w1YA1Hm4,30,High pitched speaking and a car engine\n"
    )
    write_wav(src / "audio" / "train" / "91139.wav")
    write_wav(src / "audio" / "train" / "UDGBjjwyaqE_20.wav")
    write_wav(src / "audio" / "test" / "Y--0w1YA1Hm4.wav")
    out = import_audiocaps(src, tmp_path / "out")
    rep = load_audiofolder(out)
    assert len(rep.clips) == 3
    test_clip = [c for c in rep.clips if c["split"] == "test"][0]
    assert len(test_clip["captions"]) == 2
    assert sorted(t["answer"] for t in rep.tasks if t["task"] == "caption")[0] == "A vehicle driving as a man speaks"


def test_clotho_with_non_utf8_caption(tmp_path):
    src = tmp_path / "clotho"
    (src / "development").mkdir(parents=True)
    lines = [
        b"file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n",
        b'Forest birds.wav,Birds chirp in a forest,Many birds sing,"Birds, wind",Chirping,Birdsong\n',
        b"rain 01.wav,Rain falls on a roof,Caf\xe9 rain,Rain,Drops,Water\n",
        b"Street.wav,Cars pass by,Traffic noise,A car,Cars,Street sounds\n",
    ]
    (src / "clotho_captions_development.csv").write_bytes(b"".join(lines))
    for fn in ["Forest birds.wav", "rain 01.wav", "Street.wav"]:
        write_wav(src / "development" / fn, sr=44100, seconds=0.2)
    with pytest.raises(DataError, match=r"clotho_captions_development.csv line 3.*UTF-8"):
        import_clotho(src, tmp_path / "out")
    out = import_clotho(src, tmp_path / "out2", skip_bad=True)
    rep = load_audiofolder(out)
    assert [c["file_name"] for c in rep.clips] == ["audio/train/Forest birds.wav", "audio/train/Street.wav"]
    assert rep.clips[0]["captions"][2] == "Birds, wind"
    assert len(rep.tasks) == 10
    bad = [json.loads(l) for l in (out / BAD_ROWS).read_text().splitlines()]
    assert [b["line"] for b in bad] == [3]


def test_openaqa(tmp_path):
    src = tmp_path / "openaqa"
    write_wav(src / "audioset" / "Y0a.wav")
    write_wav(src / "vggsound" / "b.flac".replace(".flac", ".wav"))
    entries = [
        {
            "instruction": "Classify the sound events.",
            "input": "",
            "output": "Speech; Music",
            "audio_id": "/data/sls/audioset/Y0a.wav",
            "dataset": "as_strong_train",
            "task": "cla_label",
        },
        {
            "instruction": "Write an audio caption describing the sound.",
            "input": "",
            "output": "A man talks.",
            "audio_id": "/data/sls/audioset/Y0a.wav",
            "dataset": "as_strong_train",
            "task": "caption",
        },
        {
            "instruction": "What might the man be doing?",
            "input": "",
            "output": "He is giving a speech.",
            "audio_id": "/data/sls/vggsound/b.wav",
            "dataset": "vggsound",
            "task": "open-ended question",
        },
        {
            "instruction": "What is it?",
            "input": "",
            "output": "x",
            "audio_id": "/data/sls/missing.wav",
            "dataset": "vggsound",
            "task": "open-ended question",
        },
    ]
    (src / "openaqa_5m.json").write_text(json.dumps(entries, indent=1))
    with pytest.raises(DataError, match="missing.wav"):
        import_openaqa(src / "openaqa_5m.json", tmp_path / "out")
    out = import_openaqa(src / "openaqa_5m.json", tmp_path / "out2", skip_bad=True)
    rep = load_audiofolder(out)
    assert len(rep.clips) == 2
    assert [t["task"] for t in rep.tasks] == ["cls", "caption", "qa"]
    assert [t["closed"] for t in rep.tasks] == [True, False, False]
    assert rep.tasks[2]["answer"] == "He is giving a speech."
    assert json.loads((out / "answer_options.json").read_text()) == {"cla_label": ["Speech; Music"]}
    assert len((out / BAD_ROWS).read_text().splitlines()) == 1
