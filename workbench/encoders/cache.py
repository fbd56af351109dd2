"""Cache of encoder tokens for an audiofolder dataset.

Layout under ``cache_dir``::

    {encoder}/{fingerprint}/{sha[:2]}/{sha}.safetensors   # tensor "tokens" [T, dim], trimmed to the mask
    {encoder}/current.json                                 # {"fingerprint": ...} of the last encode_dataset run

Keys are (sha256 of the audio file's bytes, encoder name + encoder fingerprint), so editing a file or
changing an encoder (weights, config) makes a new key; stale entries are simply never read. Entries are
written atomically (temp file + ``os.replace``) and carry a sha256 of their tensor bytes in the
safetensors metadata, so a truncated or corrupt entry is detected (treated as missing and recomputed).

CLI: ``python -m workbench.encoders.cache --data DIR --encoders whisper,mel --out CACHE_DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from workbench.common.audio_io import load_audio, pad_batch
from workbench.common.paths import atomic_write_bytes
from workbench.encoders.base import AudioEncoder

__all__ = ["TokenCache", "encode_dataset", "file_sha256", "read_audiofolder"]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def read_audiofolder(dataset_dir: str | os.PathLike) -> list[Path]:
    """Audio paths listed in ``dataset_dir/metadata.jsonl`` (column ``file_name``, relative to the folder)."""
    root = Path(dataset_dir)
    meta = root / "metadata.jsonl"
    if not meta.is_file():
        raise FileNotFoundError(f"{meta}: missing; an audiofolder dataset needs metadata.jsonl with a file_name column")
    paths = []
    for i, line in enumerate(meta.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if "file_name" not in row:
            raise KeyError(f"{meta}:{i}: row has no 'file_name' column: {sorted(row)}")
        paths.append(root / row["file_name"])
    return paths


class TokenCache:
    """Read/write cached tokens. ``encoder`` arguments are an ``AudioEncoder`` or a registered name.

    With a name, the fingerprint is the one recorded by the last ``encode_dataset`` run for that name
    (``{name}/current.json``); pass the encoder instance to pin an exact fingerprint.
    """

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.root = Path(cache_dir)
        self.root.mkdir(parents=True, exist_ok=True)

    def _ident(self, encoder: AudioEncoder | str) -> tuple[str, str]:
        if isinstance(encoder, AudioEncoder):
            return encoder.name, encoder.fingerprint()
        from workbench.encoders import canonical_encoder_name

        encoder = canonical_encoder_name(encoder)
        cur = self.root / encoder / "current.json"
        if not cur.is_file():
            raise KeyError(
                f"no cached tokens for encoder {encoder!r} in {self.root} (missing {cur}); run "
                f"`python -m workbench.encoders.cache --data DIR --encoders {encoder} --out {self.root}`"
            )
        return encoder, json.loads(cur.read_text())["fingerprint"]

    def set_current(self, encoder: AudioEncoder) -> None:
        """Record ``encoder``'s fingerprint as the one a name-only lookup reads."""
        atomic_write_bytes(
            self.root / encoder.name / "current.json",
            json.dumps({"fingerprint": encoder.fingerprint(), "config": encoder.config()}, default=str).encode(),
        )

    def entry_path(self, file_path: str | os.PathLike, encoder: AudioEncoder | str, sha: str | None = None) -> Path:
        name, fp = self._ident(encoder)
        sha = sha or file_sha256(file_path)
        return self.root / name / fp / sha[:2] / f"{sha}.safetensors"

    @staticmethod
    def _read(entry: Path) -> torch.Tensor | None:
        """The entry's tokens, or None if missing, truncated or corrupt."""
        if not entry.is_file():
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(entry), framework="pt") as f:
                meta = f.metadata() or {}
            tokens = load_file(str(entry))["tokens"].clone()  # detach from the mmapped file
        except Exception:
            return None
        if meta.get("sha256") != _tensor_digest(tokens):
            return None
        return tokens

    def has(self, file_path: str | os.PathLike, encoder: AudioEncoder | str) -> bool:
        """True if a valid (readable, checksum-matching) entry exists for this file content and encoder."""
        try:
            return self._read(self.entry_path(file_path, encoder)) is not None
        except KeyError:
            return False

    def load(self, file_path: str | os.PathLike, encoder: AudioEncoder | str) -> torch.Tensor:
        """Cached tokens ``[T, dim]`` of ``file_path`` (content-addressed). KeyError if missing or corrupt."""
        entry = self.entry_path(file_path, encoder)
        tokens = self._read(entry)
        if tokens is None:
            name = encoder if isinstance(encoder, str) else encoder.name
            why = "corrupt or truncated" if entry.exists() else "missing"
            raise KeyError(
                f"tokens of {file_path} for encoder {name!r} are {why} in {self.root} ({entry}); "
                f"(re)build with `python -m workbench.encoders.cache --data DATASET_DIR --encoders {name} --out {self.root}`"
            )
        return tokens

    def store(self, sha: str, encoder: AudioEncoder, tokens: torch.Tensor, file_name: str = "") -> Path:
        """Atomically write ``tokens [T, dim]`` for file content ``sha``."""
        tokens = tokens.detach().to(torch.float32).contiguous().cpu()
        entry = self.root / encoder.name / encoder.fingerprint() / sha[:2] / f"{sha}.safetensors"
        meta = {
            "sha256": _tensor_digest(tokens),
            "file_name": str(file_name),
            "encoder": encoder.name,
            "fingerprint": encoder.fingerprint(),
        }
        return atomic_write_bytes(entry, save({"tokens": tokens}, metadata=meta))


def encode_dataset(
    dataset_dir: str | os.PathLike,
    encoders: Sequence[AudioEncoder | str],
    cache_dir: str | os.PathLike,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, dict[str, int]]:
    """Encode every clip of an audiofolder with each encoder; skip clips already cached (valid entries).

    Args:
        dataset_dir: folder with ``metadata.jsonl`` (``file_name`` column) and the audio files.
        encoders: ``AudioEncoder`` instances or registered names (built with default arguments).
        cache_dir: where ``TokenCache`` keeps the entries.

    Returns:
        ``{encoder_name: {"computed": n, "cached": m}}``.
    """
    from workbench.encoders import load_encoder

    cache = TokenCache(cache_dir)
    paths = read_audiofolder(dataset_dir)
    shas = [file_sha256(p) for p in paths] if paths else []
    stats: dict[str, dict[str, int]] = {}
    for enc in encoders:
        enc = load_encoder(enc) if isinstance(enc, str) else enc
        todo = [(p, s) for p, s in zip(paths, shas) if cache._read(cache.entry_path(p, enc, s)) is None]
        stats[enc.name] = {"computed": len(todo), "cached": len(paths) - len(todo)}
        bar = tqdm(total=len(todo), desc=f"encode[{enc.name}]", unit="clip", disable=not progress)
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            waves = [load_audio(p, target_sr=enc.sample_rate, max_seconds=enc.max_seconds)[0] for p, _ in chunk]
            batch, lengths = pad_batch(waves)
            with torch.no_grad():
                tokens, mask = enc(batch, lengths)
            for j, (p, sha) in enumerate(chunk):
                cache.store(sha, enc, tokens[j][mask[j]], file_name=str(Path(p).relative_to(dataset_dir)))
            bar.update(len(chunk))
        bar.close()
        cache.set_current(enc)
    return stats


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m workbench.encoders.cache", description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="audiofolder dataset (metadata.jsonl + audio files)")
    ap.add_argument("--encoders", default="whisper,mel", help="comma-separated encoder names")
    ap.add_argument("--out", required=True, help="cache folder")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.encoders.split(",") if n.strip()]
    stats = encode_dataset(args.data, names, args.out, batch_size=args.batch_size)
    for name, s in stats.items():
        print(f"{name}: computed {s['computed']}, cached {s['cached']}")


if __name__ == "__main__":
    main()
