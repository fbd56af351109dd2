"""Causal checks of SAE features through the hook: does the model *use* what a feature holds?

    ranked = attribute_features(F_clips, labels, 16)                       # the attribute's features, best first
    df = ablation_curve(model, sae, ds, hook, "audio", options, "pitch_class", ranked, counts=(1, 4, 16))
    st = steer_feature(model, sae, ds, hook, "audio", options, feature, "pitch_class", "high", alphas=(0, 4, 8))

- :func:`ablation_curve`: subtract the top-n features of one attribute (their decoder contributions; the SAE error
  stays, so only those features change) at the role's positions of every closed task row, and measure each
  attribute's first-token option accuracy (`workbench.analysis.listening.option_correct`, rows from
  `workbench.analysis.audio_conditions.closed_rows_with_options`). The target attribute's accuracy should fall,
  the others should not; ``n_to_erase`` says how many features bring the target to chance.
- :func:`steer_feature`: add alpha x the feature's unit decoder direction at the role's positions of the rows asking
  about the attribute whose answer is another value; the share of rows whose chosen option becomes the feature's
  value, and the mean log-probability of that value's first token, per alpha.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from workbench.analysis.sae.metrics import splice

__all__ = ["ablation_curve", "attribute_features", "features_to_erase", "option_accuracy", "steer_feature"]


def attribute_features(F: np.ndarray, labels: np.ndarray, n: int = 16) -> list[int]:
    """The ``n`` features whose per-clip activations separate the attribute's values best (ANOVA F), best first."""
    from workbench.analysis.sae.scores import _safe_f

    keep = np.array([v is not None for v in labels])
    f, _ = _safe_f(F[keep], labels[keep].astype(str))
    return [int(i) for i in np.argsort(-f, kind="stable")[:n]]


@torch.no_grad()
def option_accuracy(
    model, dataset, answer_options: dict, interventions=None, *, batch_size: int = 8, rows: Sequence[int] | None = None
) -> pd.DataFrame:
    """Per closed row with options: row, attribute, answer, chosen option, correct (first-token readout), the
    log-probability of every option's first token (``logp`` dict)."""
    from workbench.analysis.audio_conditions import closed_rows_with_options
    from workbench.analysis.core import last_prompt_index, run_with_interventions

    idx, toks = closed_rows_with_options(dataset, answer_options)
    if rows is not None:
        wanted = set(rows)
        idx = [i for i in idx if i in wanted]
    out = []
    for s in range(0, len(idx), batch_size):
        chunk = idx[s : s + batch_size]
        batch = dataset.collate_fn([dataset[j] for j in chunk])
        ivs = interventions(batch) if interventions else []
        logits = run_with_interventions(model, batch, ivs) if ivs else model(batch)
        lp = last_prompt_index(batch).to(logits.device)
        logp = torch.log_softmax(logits[torch.arange(len(chunk)), lp].double(), -1)
        for b, j in enumerate(chunk):
            opts = toks[j]
            scores = {o: float(logp[b, t]) for o, t in opts.items()}
            answer = next(o for o in opts if o.lower() == str(dataset.rows[j]["answer"]).strip().lower())
            chosen = max(scores, key=lambda o: scores[o])
            out.append(
                {
                    "row": j,
                    "attribute": dataset.rows[j]["attribute"],
                    "answer": answer,
                    "chosen": chosen,
                    "correct": float(chosen == answer and sum(v == scores[chosen] for v in scores.values()) == 1),
                    "logp": scores,
                }
            )
    return pd.DataFrame(out)


def ablation_curve(
    model,
    sae,
    dataset,
    hook: str,
    role: str,
    answer_options: dict,
    target: str,
    ranked: Sequence[int],
    counts: Sequence[int] = (1, 2, 4, 8, 16),
    *,
    batch_size: int = 8,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per (n features ablated, attribute asked): accuracy, its change from clean, n rows."""
    clean = option_accuracy(model, dataset, answer_options, batch_size=batch_size)
    base = clean.groupby("attribute")["correct"].mean()
    frames = []
    todo = [n for n in counts if n <= len(ranked)]
    if progress:
        from tqdm import tqdm

        todo = tqdm(todo, desc=f"ablate {target}", unit="n")
    for n in todo:
        feats = list(ranked[:n])
        acc = option_accuracy(
            model,
            dataset,
            answer_options,
            batch_size=batch_size,
            interventions=lambda bt, f=feats: [splice(model, sae, hook, role, bt, "ablate", features=f)],
        )
        g = acc.groupby("attribute")["correct"].agg(["mean", "size"]).reset_index()
        frames.append(g.assign(n_features=n))
    df = pd.concat(frames, ignore_index=True).rename(columns={"mean": "accuracy", "size": "n_rows"})
    df["clean"] = df["attribute"].map(base)
    df["delta"] = df["accuracy"] - df["clean"]
    df.insert(0, "target", target)
    df["is_target"] = df["attribute"] == target
    return df


def features_to_erase(curve: pd.DataFrame, answer_options: dict) -> float:
    """The smallest number of ablated features at which the target attribute's accuracy is at or below chance
    (1 / its number of options); NaN when no ablation gets there."""
    t = curve[curve["is_target"]].sort_values("n_features")
    if t.empty:
        return float("nan")
    chance = 1.0 / len(answer_options[t["target"].iloc[0]])
    hit = t[t["accuracy"] <= chance + 1e-9]
    return float(hit["n_features"].iloc[0]) if len(hit) else float("nan")


def steer_feature(
    model,
    sae,
    dataset,
    hook: str,
    role: str,
    answer_options: dict,
    feature: int,
    attribute: str,
    value: str,
    alphas: Sequence[float] = (0, 2, 4, 8),
    *,
    scale: float = 1.0,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Per alpha: share of the attribute's rows (answer != value) whose chosen option becomes ``value``, and the
    mean log-probability of ``value``'s first token. The step added is ``alpha * scale`` along the unit decoder
    direction (``scale``: e.g. the feature's largest activation times its decoder norm, so alpha 1 adds what the
    feature's strongest firing adds)."""
    rows = [
        i
        for i, r in enumerate(dataset.rows)
        if r.get("closed")
        and r.get("attribute") == attribute
        and str(r.get("answer")).strip().lower() != str(value).lower()
    ]
    if not rows:
        raise ValueError(f"no closed rows ask about {attribute!r} with an answer other than {value!r}")
    out = []
    for a in alphas:
        acc = option_accuracy(
            model,
            dataset,
            answer_options,
            batch_size=batch_size,
            rows=rows,
            interventions=lambda bt, a=a: [
                splice(model, sae, hook, role, bt, "steer", features=[feature], alpha=a * scale)
            ],
        )
        key = next((o for o in answer_options[attribute] if str(o).lower() == str(value).lower()), value)
        out.append(
            {
                "feature": feature,
                "attribute": attribute,
                "value": value,
                "alpha": float(a),
                "step": a * scale,
                "to_value": float((acc["chosen"].str.lower() == str(value).lower()).mean()),
                "value_logp": float(np.mean([d.get(key, np.nan) for d in acc["logp"]])),
                "n_rows": len(acc),
            }
        )
    return pd.DataFrame(out)
