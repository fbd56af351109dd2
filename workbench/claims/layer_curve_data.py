"""What the injection-layer curve reads: closed-task answers of every sweep point
(``SWEEPS/MODE/LNN/seed-S/{eval,eval-test-seed1,eval-SPLIT}/answers.csv``, :func:`workbench.training.runs.eval_dir`)
as per-clip scores, overall and per attribute family (:data:`FAMILIES`), and the splits and seeds behind each point;
the stem of the paired contrasts' table (:data:`CONTRASTS_STEM`)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from workbench.claims.registry import LAYER_CURVE_STEM
from workbench.training.runs import SWEEP_ROOT, split_of_eval_dir

#: attribute family shown in the figure -> the data's attribute names (answer_options.json keys)
FAMILIES: dict[str, tuple[str, ...]] = {
    "spoken word": ("word",),
    "pitch": ("pitch_class",),
    "category": ("category",),
    "count": ("count",),
}
ALL = "all attributes"
#: stem of the table of paired layer contrasts (:func:`layer_contrasts`) next to the curve
CONTRASTS_STEM = f"{LAYER_CURVE_STEM}_contrasts"
_POINT = re.compile(r"^L(\d+)$")
_SEED = re.compile(r"^seed-(\d+)$")


def _family_of(attribute: str) -> str | None:
    return next((f for f, names in FAMILIES.items() if attribute in names), None)


def load_sweep_clips(root: str | Path = SWEEP_ROOT) -> pd.DataFrame:
    """Per-clip closed-row sums of every evaluated sweep point: ``mode, layer, seed, split, family, clip, n,
    correct`` (family ``all attributes`` and each of :data:`FAMILIES`)."""
    from workbench.evaluation.answers import clip_scores, read_answers

    out = []
    for csv in sorted(Path(root).glob("*/L*/seed-*/*/answers.csv")):
        seed_dir, point, mode = csv.parent.parent, csv.parent.parent.parent, csv.parent.parent.parent.parent
        split = split_of_eval_dir(csv.parent.name)
        if split is None or not _POINT.match(point.name) or not _SEED.match(seed_dir.name):
            continue
        df = read_answers(csv, required=("file_name", "attribute", "correct"))
        key = dict(
            mode=mode.name,
            layer=int(_POINT.match(point.name).group(1)),
            seed=int(_SEED.match(seed_dir.name).group(1)),
            split=split,
        )
        out.append(clip_scores(df).assign(family=ALL, **key))
        fam = df["attribute"].map(_family_of)
        for f, g in df[fam.notna()].groupby(fam[fam.notna()]):
            out.append(clip_scores(g).assign(family=f, **key))
    cols = ["mode", "layer", "seed", "split", "family", "clip", "n", "correct"]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def seed_points(clips: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per ``mode, layer, seed, family`` on the splits every run shares (:func:`common_splits`, pooled):
    the per-seed points behind each curve point (what the figure draws next to the mean)."""
    clips = clips[clips["split"].isin(common_splits(clips))]
    g = clips.groupby(["mode", "layer", "seed", "family"], sort=True)[["n", "correct"]].sum().reset_index()
    return g.assign(accuracy=g["correct"] / g["n"])[["mode", "layer", "seed", "family", "accuracy"]]


def curve_seeds(clips: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per ``mode, layer, seed, split, family`` (the tidy per-run table)."""
    g = clips.groupby(["mode", "layer", "seed", "split", "family"], sort=True)[["n", "correct"]].sum().reset_index()
    g["accuracy"] = g["correct"] / g["n"]
    return g.rename(columns={"n": "n_rows"})[["mode", "layer", "seed", "split", "family", "accuracy", "n_rows"]]


def common_splits(clips: pd.DataFrame) -> list[str]:
    """The test splits every run (mode, layer, seed) of the curve was evaluated on, sorted."""
    per_run = clips.groupby(["mode", "layer", "seed"])["split"].agg(lambda s: frozenset(s))
    return sorted(frozenset.intersection(*per_run)) if len(per_run) else []
