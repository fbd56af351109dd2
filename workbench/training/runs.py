"""Where training runs and their evaluations live: one home for the run layout (seeds, sweeps, test splits).

Layout (``ROOT`` is ``results/checkpoints`` for the six tiny variants):

- ``ROOT/VARIANT/``            seed 0 of a variant: the committed checkpoint (``final/`` weights, logs, evals);
- ``ROOT/VARIANT/seed-S/``     seed S >= 1 (logs and evaluations committed, weights not);
- ``results/sweeps/injection-layer/MODE/LNN/seed-S/``  one point of the injection-layer curve.

Every run folder holds ``train_log.csv``, ``val_log.csv``, ``train_summary.json`` and one evaluation folder per
test split, ``EVAL_DIRS[split]/answers.csv`` (+ ``scores.csv``, ``run.json``):

- ``test``        ``data/synth-tiny/test``: 120 clips, data seed 0 (the split the committed evaluations use);
- ``test-seed1``  ``data/synth-tiny/test-seed1``: 120 fresh clips of the same preset, data seed 1;
- any other audiofolder (``workbench.sweep --eval-data DIR``): split :func:`custom_split` of it, evaluated into
  ``eval-SPLIT/`` (:func:`eval_dir`).

A seed-0 run is looked up first as ``ROOT/VARIANT/seed-0`` and then as ``ROOT/VARIANT`` itself, so the committed
checkpoints count as seed 0 without being moved or retrained.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from workbench.common.paths import PACKAGE_CHECKOUT

__all__ = [
    "TEST_SPLITS",
    "EVAL_DIRS",
    "SEED_DIR",
    "SeedRun",
    "run_dir",
    "find_seed_runs",
    "eval_answers",
    "eval_dir",
    "split_of_eval_dir",
    "custom_split",
    "SWEEP_ROOT",
    "sweep_run_dir",
]

#: test split name -> (folder, number of clips, data seed) of the tiny synthetic corpus
TEST_SPLITS: dict[str, tuple[Path, int, int]] = {
    "test": (Path("data/synth-tiny/test"), 120, 0),
    "test-seed1": (Path("data/synth-tiny/test-seed1"), 120, 1),
}
#: test split name -> evaluation folder inside a run folder
EVAL_DIRS: dict[str, str] = {"test": "eval", "test-seed1": "eval-test-seed1"}
SEED_DIR = re.compile(r"^seed-(\d+)$")
SWEEP_ROOT = Path("results/sweeps/injection-layer")


@dataclass(frozen=True)
class SeedRun:
    """One training run: ``variant`` (or sweep point name), training ``seed`` and its folder."""

    variant: str
    seed: int
    path: Path

    def answers(self, split: str = "test") -> Path:
        """``path/EVAL_DIRS[split]/answers.csv`` (may not exist yet)."""
        return eval_answers(self.path, split)


def eval_answers(run: str | Path, split: str = "test") -> Path:
    if split not in EVAL_DIRS:
        raise KeyError(f"unknown test split {split!r}; known: {sorted(EVAL_DIRS)}")
    return Path(run) / EVAL_DIRS[split] / "answers.csv"


def eval_dir(split: str) -> str:
    """The evaluation folder of ``split`` inside a run folder: :data:`EVAL_DIRS` for the test splits,
    ``eval-SPLIT`` for an audiofolder of the user's (:func:`custom_split`)."""
    return EVAL_DIRS.get(split, f"eval-{split}")


def split_of_eval_dir(name: str) -> str | None:
    """The split whose evaluation folder is called ``name`` (the inverse of :func:`eval_dir`; None: not one)."""
    known = {d: s for s, d in EVAL_DIRS.items()}
    if name in known:
        return known[name]
    return name[len("eval-") :] if name.startswith("eval-") and len(name) > len("eval-") else None


def custom_split(folder: str | Path) -> str:
    """The split name of an evaluation audiofolder (a relative path is taken from the repository root): a test
    split's own name when ``folder`` is that split's folder, else its path as one name (``data/synth-tiny/val`` ->
    ``data-synth-tiny-val``; the absolute path when it lies outside the repository), prefixed ``custom-`` if that
    would be a test split's name."""
    folder = (PACKAGE_CHECKOUT / folder).resolve()
    for s, (f, _, _) in TEST_SPLITS.items():
        if folder == (PACKAGE_CHECKOUT / f).resolve():
            return s
    try:
        rel = folder.relative_to(PACKAGE_CHECKOUT)
    except ValueError:
        rel = folder
    name = re.sub(r"[^A-Za-z0-9._]+", "-", rel.as_posix()).strip("-.") or "data"
    return f"custom-{name}" if name in TEST_SPLITS else name


def run_dir(root: str | Path, variant: str, seed: int) -> Path:
    """Where seed ``seed`` of ``variant`` is (or will be) trained: ``ROOT/VARIANT/seed-S``, except that seed 0 is
    ``ROOT/VARIANT`` itself when that folder already holds a seed-0 run (the committed checkpoints)."""
    base = Path(root) / variant
    if seed == 0 and not (base / "seed-0").exists() and _summary_seed(base) == 0:
        return base
    return base / f"seed-{seed}"


def _summary_seed(folder: Path) -> int | None:
    f = folder / "train_summary.json"
    if not f.is_file():
        return None
    try:
        return int(json.loads(f.read_text()).get("seed", 0))
    except (ValueError, TypeError, json.JSONDecodeError):
        return None


def find_seed_runs(root: str | Path, variants: list[str] | None = None) -> list[SeedRun]:
    """Every finished-or-not run under ``root``: ``ROOT/VARIANT`` (seed from its train_summary.json) and
    ``ROOT/VARIANT/seed-S``. Sorted by (variant, seed). A variant folder without runs is left out."""
    root = Path(root)
    out: list[SeedRun] = []
    names = (
        variants
        if variants is not None
        else sorted(p.name for p in root.iterdir() if p.is_dir())
        if root.is_dir()
        else []
    )
    for v in names:
        base = root / v
        seeds: dict[int, Path] = {}
        for child in sorted(base.glob("seed-*")):
            m = SEED_DIR.match(child.name)
            if m and child.is_dir():
                seeds[int(m.group(1))] = child
        top = _summary_seed(base)
        if top is not None and top not in seeds:
            seeds[top] = base
        out += [SeedRun(v, s, p) for s, p in sorted(seeds.items())]
    return out


def sweep_run_dir(mode: str, layer: int, seed: int, root: str | Path = SWEEP_ROOT) -> Path:
    """``ROOT/MODE/LNN/seed-S``: one point of the injection-layer curve."""
    return Path(root) / mode / f"L{layer:02d}" / f"seed-{seed}"
