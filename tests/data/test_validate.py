"""Bad input: each case is a clear error naming file + line, or skipped and listed with skip_bad."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from workbench.data.audiofolder import BAD_ROWS, METADATA, TASKS, DataError
from workbench.data.dataset import AudioTaskDataset
from workbench.data.validate import load_audiofolder


@pytest.fixture()
def ds(small_ds, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(small_ds, d)
    return d


def _meta_lines(d):
    return (d / METADATA).read_bytes().splitlines(keepends=True)


def _set_meta(d, lines):
    (d / METADATA).write_bytes(b"".join(lines))


def _corrupt(d):
    fn = json.loads(_meta_lines(d)[2])["file_name"]
    (d / fn).write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    return 3, fn


def _truncate(d):
    fn = json.loads(_meta_lines(d)[4])["file_name"]
    data = (d / fn).read_bytes()
    (d / fn).write_bytes(data[: len(data) // 2])
    return 5, fn


def _unsupported(d):
    lines = _meta_lines(d)
    row = json.loads(lines[6])
    src = d / row["file_name"]
    row["file_name"] = row["file_name"].replace(".wav", ".mid")
    src.rename(d / row["file_name"])
    lines[6] = (json.dumps(row) + "\n").encode()
    _set_meta(d, lines)
    return 7, row["file_name"]


def _missing(d):
    fn = json.loads(_meta_lines(d)[1])["file_name"]
    (d / fn).unlink()
    return 2, fn


def _duplicate(d):
    lines = _meta_lines(d)
    fn = json.loads(lines[0])["file_name"]
    lines.insert(9, lines[0])
    _set_meta(d, lines)
    return 10, fn


def _non_utf8(d):
    lines = _meta_lines(d)
    lines[7] = lines[7].replace(b'"category"', b'"cat\xe9gory"')
    _set_meta(d, lines)
    return 8, None


CASES = {
    "corrupt": _corrupt,
    "truncated": _truncate,
    "unsupported": _unsupported,
    "missing": _missing,
    "duplicate": _duplicate,
    "non_utf8": _non_utf8,
}
WORDS = {
    "corrupt": "corrupt",
    "truncated": "truncated",
    "unsupported": "unsupported",
    "missing": "not found",
    "duplicate": "duplicate",
    "non_utf8": "UTF-8",
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_row_raises_naming_row(ds, case):
    line, fn = CASES[case](ds)
    with pytest.raises(DataError) as ei:
        load_audiofolder(ds)
    msg = str(ei.value)
    assert f"{METADATA} line {line}" in msg, msg
    assert WORDS[case] in msg, msg
    if fn:
        assert fn in msg


@pytest.mark.parametrize("case", list(CASES))
def test_bad_row_skipped_and_reported(ds, case):
    line, fn = CASES[case](ds)
    n_meta = sum(1 for l in _meta_lines(ds) if l.strip())
    rep = load_audiofolder(ds, skip_bad=True)
    bad = [json.loads(l) for l in (ds / BAD_ROWS).read_text().splitlines()]
    meta_bad = [b for b in bad if b["file"].endswith(METADATA)]
    assert [b["line"] for b in meta_bad] == [line]
    assert WORDS[case] in meta_bad[0]["error"]
    assert len(rep.clips) == n_meta - 1
    # tasks of a skipped clip are listed too (nothing silently dropped), except for a duplicate's first copy
    n_tasks = sum(1 for l in (ds / TASKS).read_text().splitlines() if l.strip())
    task_bad = [b for b in bad if b["file"].endswith(TASKS)]
    assert len(rep.tasks) + len(task_bad) == n_tasks
    if case not in ("duplicate", "non_utf8"):
        named = fn.replace(".mid", ".wav")  # the unsupported case renamed the clip; its tasks keep the old name
        assert task_bad and all(b["file_name"] == named for b in task_bad)


def test_task_row_for_unknown_clip(ds):
    with open(ds / TASKS, "a", encoding="utf-8") as f:
        f.write(json.dumps({"file_name": "audio/nope.wav", "task": "qa", "question": "q", "answer": "a"}) + "\n")
    n = sum(1 for _ in open(ds / TASKS, encoding="utf-8"))
    with pytest.raises(DataError, match=rf"{TASKS} line {n}.*not in {METADATA}"):
        load_audiofolder(ds)


def test_cli_validate(ds):
    r = subprocess.run([sys.executable, "-m", "workbench.data.validate", str(ds)], capture_output=True, text=True)
    assert r.returncode == 0 and "24 clips" in r.stdout
    _missing(ds)
    r = subprocess.run([sys.executable, "-m", "workbench.data.validate", str(ds)], capture_output=True, text=True)
    assert r.returncode == 1 and "line 2" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "workbench.data.validate", str(ds), "--skip-bad"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "23 clips" in r.stdout and (ds / BAD_ROWS).exists()


def test_dataset_skip_bad(ds, tokenizer):
    _corrupt(ds)
    with pytest.raises(DataError, match="line 3"):
        AudioTaskDataset(ds, tokenizer)
    d = AudioTaskDataset(ds, tokenizer, skip_bad=True)
    assert len(d) == len(d.report.tasks) and d.report.bad


def test_truncated_real_recording_is_a_bad_row_with_frame_counts(ds, tmp_path):
    """A 3000-byte copy of a real espeak-ng recording: a bad row whose reason names declared vs read frames."""
    import soundfile as sf

    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    full = tmp_path / "speech.wav"
    subprocess.run([exe, "-w", str(full), "Hello, this is a real recording."], check=True, capture_output=True)
    fn = json.loads(_meta_lines(ds)[4])["file_name"]
    (ds / fn).write_bytes(full.read_bytes()[:3000])
    declared, read = sf.info(str(full)).frames, sf.info(str(ds / fn)).frames  # libsndfile reads what is there
    assert read < declared
    r = subprocess.run(
        [sys.executable, "-m", "workbench.data.validate", str(ds), "--skip-bad"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "23 clips" in r.stdout, r.stderr
    bad = [json.loads(line) for line in (ds / BAD_ROWS).read_text().splitlines()]
    meta_bad = [b for b in bad if b["file"].endswith(METADATA)]
    assert [(b["line"], b["file_name"]) for b in meta_bad] == [(5, fn)]
    reason = meta_bad[0]["error"]
    assert "truncated" in reason and fn in reason and f"declares {declared} frames but only {read}" in reason, reason
    assert all(b["file_name"] == fn for b in bad if b["file"].endswith(TASKS))
