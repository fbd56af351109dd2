"""Token cache: hits and misses, invalidation by content and by encoder, atomic and corruption-safe entries."""

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from workbench.encoders import load_encoder
from workbench.encoders.cache import TokenCache, encode_dataset, main


@pytest.fixture()
def dataset(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i, secs in enumerate([0.5, 1.0, 1.7]):
        name = f"clip{i}.wav"
        sf.write(d / name, (0.1 * rng.standard_normal(int(secs * 16000))).astype(np.float32), 16000)
        rows.append({"file_name": name, "label": i})
    (d / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return d


def test_hit_miss_and_values(dataset, tmp_path, mel):
    out = tmp_path / "cache"
    stats = encode_dataset(dataset, [mel], out, batch_size=2, progress=False)
    assert stats == {"mel": {"computed": 3, "cached": 0}}
    assert encode_dataset(dataset, [mel], out, progress=False) == {"mel": {"computed": 0, "cached": 3}}
    cache = TokenCache(out)
    tok = cache.load(dataset / "clip1.wav", "mel")
    direct, mask = mel.encode_files([dataset / "clip1.wav"])
    assert tok.shape == (int(mask.sum()), mel.dim) == (25, 256)
    torch.testing.assert_close(tok, direct[0][mask[0]])
    assert cache.has(dataset / "clip1.wav", mel) and cache.has(dataset / "clip1.wav", "mel")
    assert not cache.has(dataset / "clip1.wav", "whisper")
    with pytest.raises(KeyError, match="whisper"):
        cache.load(dataset / "clip1.wav", "whisper")


def test_changed_file_and_changed_encoder_invalidate(dataset, tmp_path, mel):
    out = tmp_path / "cache"
    encode_dataset(dataset, [mel], out, progress=False)
    cache = TokenCache(out)
    sf.write(dataset / "clip0.wav", np.zeros(8000, np.float32) + 0.01, 16000)  # edit one file
    assert not cache.has(dataset / "clip0.wav", mel)
    with pytest.raises(KeyError, match="clip0.wav.*missing"):
        cache.load(dataset / "clip0.wav", mel)
    assert encode_dataset(dataset, [mel], out, progress=False)["mel"] == {"computed": 1, "cached": 2}
    mel80 = load_encoder("mel", n_mels=80)  # same name, different config -> different fingerprint
    assert mel80.fingerprint() != mel.fingerprint()
    assert not cache.has(dataset / "clip1.wav", mel80)
    assert encode_dataset(dataset, [mel80], out, progress=False)["mel"] == {"computed": 3, "cached": 0}
    assert cache.load(dataset / "clip1.wav", "mel").shape[1] == 320  # name lookup follows the latest run


def test_corrupt_entry_is_detected_and_recomputed(dataset, tmp_path, mel):
    out = tmp_path / "cache"
    encode_dataset(dataset, [mel], out, progress=False)
    cache = TokenCache(out)
    good = cache.load(dataset / "clip2.wav", mel)
    entry = cache.entry_path(dataset / "clip2.wav", mel)
    raw = entry.read_bytes()
    entry.write_bytes(raw[: len(raw) // 2])  # truncated (as after a crash of a non-atomic writer)
    assert not cache.has(dataset / "clip2.wav", mel)
    with pytest.raises(KeyError, match="corrupt"):
        cache.load(dataset / "clip2.wav", mel)
    flipped = bytearray(raw)
    flipped[-5] ^= 0xFF  # a flipped bit in the tensor data, header intact
    entry.write_bytes(bytes(flipped))
    assert not cache.has(dataset / "clip2.wav", mel)
    assert encode_dataset(dataset, [mel], out, progress=False)["mel"] == {"computed": 1, "cached": 2}
    torch.testing.assert_close(cache.load(dataset / "clip2.wav", mel), good)


def test_atomic_write_leaves_no_partial_entry(dataset, tmp_path, mel, monkeypatch):
    """A crash while writing leaves no file under the entry's name and no temp litter."""
    import workbench.common.paths as paths

    out = tmp_path / "cache"

    def crash(*a, **k):
        raise OSError("disk died")

    monkeypatch.setattr(paths.os, "replace", crash)
    with pytest.raises(OSError, match="disk died"):
        encode_dataset(dataset, [mel], out, progress=False)
    monkeypatch.undo()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files == []
    assert not TokenCache(out).has(dataset / "clip0.wav", mel)


def test_cli(dataset, tmp_path, capsys):
    out = tmp_path / "cli_cache"
    main(["--data", str(dataset), "--encoders", "mel", "--out", str(out)])
    assert "mel: computed 3, cached 0" in capsys.readouterr().out
    assert TokenCache(out).load(dataset / "clip0.wav", "mel").shape == (13, 256)
    assert os.path.isfile(out / "mel" / "current.json")
