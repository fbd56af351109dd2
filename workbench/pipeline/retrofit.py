"""The paper's claims 1 and 2 as zero-shot retrofits of one model (no training), for ``workbench.study``.

The model's audio path is re-wired, untrained: PLITS@L (the connector's tokens enter the residual stream at
layer L, dead before it) and LAL@L (every layer from L on reads them as keys/values through its own norm and
W_K / W_V; they never form queries or pass an FFN), for L = 0 and a few evenly spaced layers. A released model
keeps its projector; a PAL checkpoint keeps its trained connectors and LoRA and drops its LAL adapters and
gates (trained parts of one integration). Each point answers the same rows (`item_metrics`: teacher-forced
answer log-probability, greedy answer -> correct on closed rows). The point that is the model as trained /
released (`trained_integration`: PLITS@0 of a released model) reuses it instead of loading it again.

Contrasts, paired on the same rows (`retrofit_contrasts`):

* claim 1 (delayed integration costs little or helps): PLITS@L - PLITS@0, each L > 0;
* claim 2 (attention-only reading matches or beats the input): LAL@L - PLITS@L, each L.

Interval: the sample-aware interval of :func:`workbench.stats.bootstrap.two_level_interval` with one model (one "seed"):
the per-clip summed differences resampled by clip (a clip's task rows are correlated), 95% percentile
interval. Verdict per contrast and claim: :func:`workbench.stats.bootstrap.decide_contrast` / ``decide_claim``.

Caveat (in every output): the model was trained (or released) with its own integration. A retrofit puts audio
where the model never saw it, so these are out-of-distribution measurements of *this* model's dependence on
its integration, not the paper's comparison of models trained each way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "CAVEAT",
    "load_model",
    "trained_integration",
    "retrofit_layers",
    "retrofit_items",
    "retrofit_contrasts",
    "retrofit_steps",
]

CAVEAT = (
    "Out of distribution: zero-shot retrofits of one model, no training. The model learned its own "
    "integration; these numbers say how much this model depends on it, not whether a model trained with "
    "PLITS@L or LAL@L would do better (the paper's claims are about trained models)."
)
CONTRASTS = "retrofit_contrasts.csv"


def load_model(source: str, integration: dict | None = None, *, device: str = "cpu", dtype: str = "float32"):
    """The model at ``source`` (PAL checkpoint folder, released folder or hub id), as trained/released
    (``integration`` None) or retrofitted to ``{"mode": "plits"|"lal", "layer": L}``, on ``device`` in ``dtype``."""
    import torch

    from workbench.model.pal import PALModel
    from workbench.model.released import is_released_source

    if is_released_source(source):
        return PALModel.from_pretrained(source, integration=integration, device=device, dtype=dtype).eval()
    model = PALModel.from_pretrained(source) if integration is None else _retrofit_checkpoint(Path(source), integration)
    from workbench.model.released.loading import DTYPES

    return model.to(device=torch.device(device), dtype=DTYPES[dtype]).eval()


def trained_integration(source: str) -> tuple[str, int] | None:
    """(mode, layer) when the retrofit to it is exactly the model as trained / released: a released model
    (PLITS@0), or a PAL checkpoint whose encoders all enter that way with no LAL adapter or gate; else None."""
    from workbench.model.released import is_released_source

    if is_released_source(source):
        return ("plits", 0)
    encs = [e["integration"] for e in json.loads((Path(source) / "config.json").read_text())["pal"]["encoders"]]
    ways = {(e["mode"], int(e["layer"])) for e in encs}
    if len(ways) == 1 and not any(e.get("adapter") or e.get("gate") for e in encs):
        return ways.pop()
    return None


def _retrofit_checkpoint(ckpt: Path, integration: dict):
    """A PAL checkpoint with every encoder re-wired to ``integration``: its connectors (and LoRA) as trained,
    no LAL adapters or gates."""
    from safetensors.torch import load_file

    from workbench.model.pal import PALModel
    from workbench.model.pal_checkpoint import legacy_encoder_names, rename_encoder_keys
    from workbench.model.pal_config import PALConfig

    meta = json.loads((ckpt / "config.json").read_text())
    cfg = json.loads(json.dumps(meta["pal"]))
    for enc in cfg["encoders"]:
        enc["integration"] = {
            **enc["integration"],
            "mode": integration["mode"],
            "layer": int(integration["layer"]),
            "adapter": False,
            "gate": False,
        }
    model = PALModel.from_config(PALConfig.from_dict(cfg))
    if meta.get("lora"):
        model.enable_lora(**meta["lora"])
    state = rename_encoder_keys(load_file(str(ckpt / "model.safetensors")), legacy_encoder_names(meta["pal"]))
    own = model.trainable_state_dict()
    model.load_trainable_state_dict({k: v for k, v in state.items() if k in own}, source=str(ckpt))
    return model


def retrofit_layers(n_layers: int, extra: int) -> list[int]:
    """0 and ``extra`` evenly spaced layers up to 3/4 of the depth (later entry leaves too few layers to read)."""
    top = max(1, (3 * n_layers) // 4)
    return sorted({0, *[int(round(x)) for x in np.linspace(0, top, extra + 1)[1:]]})


def _n_layers(study) -> int:
    from workbench.model.cost import model_config

    return model_config(study.source)["text"]["n_layers"]


def retrofit_items(study, mode: str, layer: int) -> dict:
    """Answer the study rows with the model retrofitted to ``mode``@``layer``; per-row results to a CSV."""
    from workbench.analysis.ablation import item_metrics

    integ = {"mode": mode, "layer": layer}
    model, ds = study.model(integ), study.dataset(integ)
    df = item_metrics(
        model,
        ds,
        None,
        batch_size=study.batch_size,
        accuracy=True,
        max_new_tokens=study.sizes.max_new_tokens,
        answer_options=study.answer_options(),
    )
    clips = {str(r.get("row_id")): str(r.get("file_name")) for r in ds.rows}
    df = df.assign(mode=mode, layer=layer, clip=df["row_id"].map(clips))
    study.write(df, None, f"retrofit_{mode}{layer}")
    closed = df[df["closed"]]
    return {
        "accuracy": round(float(closed["correct"].mean()), 4) if len(closed) else None,
        "logprob": round(float(df["logprob"].mean()), 4),
        "rows": int(len(df)),
    }


def _interval(a: pd.DataFrame, b: pd.DataFrame, value: str, key: tuple) -> dict:
    from workbench.stats.bootstrap import decide_contrast, two_level_interval

    m = a.merge(b, on=["row_id", "clip"], suffixes=("_a", "_b")).dropna(subset=[f"{value}_a", f"{value}_b"])
    m = m.assign(d=m[f"{value}_a"].astype(float) - m[f"{value}_b"].astype(float))
    per = m.groupby("clip")["d"].agg(["sum", "size"])
    if len(per) < 2:
        return {
            "diff": np.nan,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "n_rows": len(m),
            "n_clips": len(per),
            "verdict": "no data",
        }
    t = two_level_interval(per["sum"].to_numpy()[None], per["size"].to_numpy(), key=key)
    return {
        "diff": t.estimate,
        "ci_low": t.ci_low,
        "ci_high": t.ci_high,
        "n_rows": t.n_rows,
        "n_clips": t.n_clips,
        "method": f"clip bootstrap over {t.n_clips} clips (one model), 95% percentile interval",
        "verdict": decide_contrast(t.ci_low, t.ci_high),
    }


def retrofit_contrasts(out: Path, layers: list[int]) -> pd.DataFrame:
    """The claim-1 and claim-2 contrasts (module docstring) from the retrofit item CSVs in ``out``."""
    items = {
        (m, l): pd.read_csv(out / f"retrofit_{m}{l}.csv", dtype={"row_id": str, "clip": str})
        for m in ("plits", "lal")
        for l in layers
    }
    rows = []
    pairs = [("claim1", ("plits", l), ("plits", 0)) for l in layers if l > 0]
    pairs += [("claim2", ("lal", l), ("plits", l)) for l in layers]
    for claim, a, b in pairs:
        for metric, col in (("accuracy", "correct"), ("answer_logprob", "logprob")):
            r = _interval(items[a], items[b], col, (claim, *a, *b, metric))
            rows.append(
                {
                    "claim": claim,
                    "contrast": f"{a[0].upper()}@{a[1]} − {b[0].upper()}@{b[1]}",
                    "variant": f"{a[0]}{a[1]}",
                    "reference": f"{b[0]}{b[1]}",
                    "layer": a[1],
                    "metric": metric,
                    **r,
                }
            )
    return pd.DataFrame(rows)


def claims(study, layers: list[int]) -> dict:
    from workbench.stats.bootstrap import decide_claim

    table = retrofit_contrasts(study.out, layers).assign(caveat=CAVEAT)
    study.write(table, _figure(table), "retrofit_contrasts")
    acc = table[table["metric"] == "accuracy"]
    return {c: decide_claim(list(g["verdict"])) for c, g in acc.groupby("claim")}


def _figure(table: pd.DataFrame):
    from workbench.analysis.figures import add_caption
    from workbench.reporting.forest import forest_figure

    acc = table[table["metric"] == "accuracy"]
    rows = acc.assign(
        claim=acc["claim"].map({"claim1": "Claim 1 (retrofit)", "claim2": "Claim 2 (retrofit)"}),
        scope="one model, clips resampled",
    )[["claim", "contrast", "scope", "diff", "ci_low", "ci_high", "verdict"]]
    fig = forest_figure(
        rows.dropna(subset=["diff"]),
        title="Zero-shot retrofits: paired accuracy differences (95% clip-bootstrap intervals)",
    )
    return add_caption(fig, CAVEAT)


def retrofit_steps(study, params: dict) -> list:
    """One step per (mode, layer) point (each loads the retrofitted model once), then the contrasts."""
    from workbench.pipeline.steps import Step

    layers = retrofit_layers(_n_layers(study), study.sizes.retrofit_layers)
    steps, names = [], []
    for mode in ("plits", "lal"):
        for layer in layers:
            name = f"retrofit-{mode}{layer}"
            names.append(name)
            steps.append(
                Step(
                    name,
                    f"retrofit {mode.upper()}@{layer}: answer the rows",
                    (lambda m=mode, l=layer: retrofit_items(study, m, l)),
                    params=params,
                    outputs=[study.out / f"retrofit_{mode}{layer}.csv"],
                )
            )
    steps.append(
        Step(
            "retrofit-claims",
            "claims 1 and 2 as retrofits: paired contrasts, clip-bootstrap intervals",
            lambda: claims(study, layers),
            params={**params, "layers": layers},
            deps=names,
            outputs=[study.out / f"{CONTRASTS}"],
        )
    )
    return steps
