"""One variant's SAE study result, in memory (`VariantResult`) and on disk (``scores.csv``, ``summary.json``,
``oof.npz`` in the variant's folder), so the comparison of variants can run without recomputing them.

    save_variant_result(res, "results/sae/delayed")
    res = load_variant_result("results/sae/delayed")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["VariantResult", "load_variant_result", "save_variant_result"]


@dataclass
class VariantResult:
    """What the comparison needs from one variant: per attribute the held-out best-feature scores ``oof``
    [n_clips_kept, n_values] with ``labels``, the k-sparse per-clip correctness, and the summary frames."""

    name: str
    clips: np.ndarray
    labels: dict = field(default_factory=dict)
    oof: dict = field(default_factory=dict)
    sparse: dict = field(default_factory=dict)  # (attribute, k) -> per-clip correctness
    scores: pd.DataFrame | None = None
    summary: dict = field(default_factory=dict)


def save_variant_result(res: VariantResult, out: Path) -> None:
    """Write ``res`` into the folder ``out``: ``scores.csv``, ``summary.json`` and ``oof.npz`` (clips, held-out
    scores, labels and k-sparse correctness per attribute)."""
    assert res.scores is not None  # score_attributes always sets it
    res.scores.to_csv(out / "scores.csv", index=False)
    (out / "summary.json").write_text(json.dumps(res.summary, indent=1, default=float))
    # name -> array; typed Any because numpy's stub reads a ** of arrays as possibly its `allow_pickle: bool`
    # (naming that flag instead would save an array called allow_pickle under numpy < 2.1)
    arrays: dict[str, Any] = {
        "clips": res.clips,
        **{f"oof__{a}": v for a, v in res.oof.items()},
        **{f"labels__{a}": np.asarray(v, dtype=str) for a, v in res.labels.items()},
        **{f"sparse__{a}__{k}": v for (a, k), v in res.sparse.items()},
    }
    np.savez_compressed(out / "oof.npz", **arrays)


def load_variant_result(folder, name: str | None = None) -> VariantResult:
    """A `VariantResult` read back from a `workbench.analysis.sae.study.study_variant` folder (for the comparison
    without recomputing)."""
    folder = Path(folder)
    z = np.load(folder / "oof.npz", allow_pickle=False)
    res = VariantResult(name or folder.name, z["clips"])
    for key in z.files:
        parts = key.split("__")
        if parts[0] == "oof":
            res.oof[parts[1]] = z[key]
        elif parts[0] == "labels":
            res.labels[parts[1]] = z[key].astype(object)
        elif parts[0] == "sparse":
            res.sparse[(parts[1], int(parts[2]))] = z[key]
    res.scores = pd.read_csv(folder / "scores.csv")
    res.summary = json.loads((folder / "summary.json").read_text())
    return res
