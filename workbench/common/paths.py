"""Where the workbench keeps derived files (converted weights, token caches)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["cache_dir", "atomic_write_bytes", "replace_dir", "variant_of", "repo_root"]


def cache_dir() -> Path:
    """``$PAL_WORKBENCH_CACHE`` or ``~/.cache/pal-workbench``; created on demand."""
    env = os.environ.get("PAL_WORKBENCH_CACHE")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "pal-workbench"
    path.mkdir(parents=True, exist_ok=True)
    return path


#: the folder that holds this ``workbench`` package (the checkout, for the editable install everything here uses)
PACKAGE_CHECKOUT = Path(__file__).resolve().parents[2]


def _is_repo_root(path: Path) -> bool:
    return (path / "pyproject.toml").is_file() and (path / "workbench" / "__init__.py").is_file()


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The workbench checkout: the nearest folder at or above ``start`` (default: the current directory) that
    holds ``pyproject.toml`` and the ``workbench`` package; failing that, the checkout this package was
    imported from (an editable install). Notebooks ``os.chdir`` here, because Jupyter starts kernels in the
    notebook's folder while every default path (``results/``, ``data/``, ``configs/``) is relative to the root.
    Raises FileNotFoundError when neither is a checkout (e.g. a non-editable install run outside the repo)."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for cand in (here, *here.parents):
        if _is_repo_root(cand):
            return cand
    package_parent = PACKAGE_CHECKOUT
    if _is_repo_root(package_parent):
        return package_parent
    raise FileNotFoundError(
        f"no pal-workbench checkout (pyproject.toml + workbench/) at or above {here}, and the "
        f"imported package ({package_parent}) is not in one; run from inside the repository"
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, then ``os.replace``.

    A crash leaves either the old file or the new one, never a half-written file under ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give them the usual mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def variant_of(checkpoint: str | os.PathLike) -> str:
    """The variant a checkpoint folder belongs to: training writes ``OUT/final``, so ``final`` names its parent;
    a seed run (``VARIANT/seed-S/final``, see :mod:`workbench.training.runs`) belongs to ``VARIANT``."""
    checkpoint = Path(checkpoint)
    run = checkpoint.parent if checkpoint.name == "final" else checkpoint
    return run.parent.name if run.name.startswith("seed-") and run.name[5:].isdigit() else run.name


def replace_dir(tmp: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Move the finished folder ``tmp`` to ``target`` (same filesystem), replacing any old ``target``.

    The old folder is renamed aside first and deleted only after the new one is in place, so at every
    moment ``target`` is either the complete old folder or the complete new one (or, for an instant, absent).
    """
    import shutil

    tmp, target = Path(tmp), Path(target)
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
    return target
