"""The standard SAE metrics: reconstruction (explained variance, L0, dead / dense features) on stored rows, and the
model's answer loss with the SAE spliced in through the hook (loss recovered).

    rec = reconstruction_metrics(sae, X)                      # dict
    lr = loss_recovered(model, sae, dataset, "connectors.whisper.hook_out", "audio")

Loss recovered = (L_zero - L_sae) / (L_zero - L_clean), with L the mean answer cross-entropy (nats per answer
token, teacher-forced, over the dataset's task rows): clean; with the hook's rows at the role's positions replaced
by the SAE's reconstruction; and with those rows zeroed. 1 = the SAE loses nothing the model uses, 0 = as bad as
removing the rows.

`splice` builds the intervention every causal check uses: ``reconstruct``, ``zero``, ``ablate`` (subtract chosen
features' decoder contributions, the SAE error kept), ``steer`` (add alpha x a feature's unit decoder direction).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from workbench.analysis.sae.activations import _audio_index, _kind

__all__ = [
    "DENSE_FRACTION",
    "answer_loss",
    "feature_frequencies",
    "loss_recovered",
    "reconstruction_metrics",
    "role_positions",
    "splice",
]

DENSE_FRACTION = 0.1  # a feature firing on more than 10% of rows counts as dense


@torch.no_grad()
def feature_frequencies(sae, X: np.ndarray, batch: int = 4096) -> np.ndarray:
    """[d_sae] share of rows of ``X`` [n, d_in] on which each feature fires."""
    count = torch.zeros(sae.d_sae)
    for i in range(0, len(X), batch):
        count += (sae.encode(torch.as_tensor(np.asarray(X[i : i + batch], np.float32))) > 0).sum(0)
    return (count / max(1, len(X))).numpy()


@torch.no_grad()
def reconstruction_metrics(sae, X: np.ndarray, batch: int = 4096) -> dict:
    """explained_variance (1 - SSE / total sum of squares about the mean), nmse, l0 (mean active features per row),
    dead (share of features that never fire on X), dense (share firing on > 10% of rows), n_rows."""
    X = np.asarray(X, np.float32)
    mean = X.mean(0)
    sse = sst = l0 = 0.0
    for i in range(0, len(X), batch):
        x = torch.as_tensor(X[i : i + batch])
        f = sae.encode(x)
        sse += float(((x - sae.decode(f)) ** 2).sum())
        sst += float(((x - torch.as_tensor(mean)) ** 2).sum())
        l0 += float((f > 0).sum())
    freq = feature_frequencies(sae, X, batch)
    return {
        "explained_variance": 1 - sse / max(sst, 1e-12),
        "nmse": sse / max(sst, 1e-12),
        "l0": l0 / len(X),
        "dead": float((freq == 0).mean()),
        "dense": float((freq > DENSE_FRACTION).mean()),
        "n_rows": len(X),
    }


def role_positions(model, hook: str, role: str, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch row b [n], token index t [n]) of the role's positions on ``hook``'s token axis for ``batch`` (the same
    rows `workbench.analysis.sae.activations.extract_rows` stores)."""
    layout = model.token_layout(batch)
    kind = _kind(hook)[0]
    if role == "audio":
        masks = {f"connectors.{e}.hook_mask": layout.audio[e].mask for e in layout.audio}
        masks.update(
            {f"encoders.{e}.hook_mask": batch["audio_token_mask"][e] for e in batch.get("audio_token_mask", {})}
        )
        index, mask, _, _ = _audio_index(model, hook, layout, masks)
        b, c = torch.nonzero(mask.cpu(), as_tuple=True)
        return b, index.cpu()[b, c]
    if kind != "resid":
        raise ValueError(f"positions {role!r} need a residual-shaped hook, not {hook}")
    plen = batch["prompt_len"].long().cpu()
    ti = layout.text_index.cpu()
    if role == "answer":
        b = torch.arange(ti.shape[0])
        return b, ti[b, plen - 1]
    tt = torch.arange(ti.shape[1])[None]
    b, t = torch.nonzero((tt < plen[:, None]) & layout.text_mask.cpu(), as_tuple=True)
    return b, ti[b, t]


def splice(
    model,
    sae,
    hook: str,
    role: str,
    batch: dict,
    mode: str = "reconstruct",
    *,
    features: Sequence[int] = (),
    alpha: float = 0.0,
):
    """An intervention ``(hook, fn)`` acting on the role's rows of ``batch``: ``reconstruct`` (SAE output in place of
    the rows), ``zero``, ``ablate`` (rows minus ``features``' contributions a_f * W_dec[f]; the error term stays),
    ``steer`` (rows plus ``alpha`` * the unit decoder direction of ``features[0]``)."""
    if mode not in ("reconstruct", "zero", "ablate", "steer"):
        raise ValueError(f"mode must be reconstruct, zero, ablate or steer; got {mode!r}")
    b, t = role_positions(model, hook, role, batch)
    feats = torch.as_tensor(list(features), dtype=torch.long)

    def fn(act: torch.Tensor) -> torch.Tensor:
        shape = act.shape
        flat = act.reshape(shape[0], shape[1], -1).clone()
        rows = flat[b.to(act.device), t.to(act.device)].float()
        with torch.no_grad():
            if mode == "reconstruct":
                new = sae(rows)
            elif mode == "zero":
                new = torch.zeros_like(rows)
            elif mode == "ablate":
                f = sae.encode(rows)[:, feats]
                new = rows - f @ sae.W_dec[feats]
            else:
                new = rows + alpha * sae.decoder_directions()[feats[0]]
        flat[b.to(act.device), t.to(act.device)] = new.to(flat.dtype)
        return flat.reshape(shape)

    return hook, fn


@torch.no_grad()
def answer_loss(
    model,
    dataset,
    interventions=None,
    *,
    batch_size: int = 8,
    max_rows: int | None = None,
    backend: str = "transformer_lens",
) -> float:
    """Mean answer cross-entropy (nats per answer token) over ``dataset``'s task rows; ``interventions(batch)`` ->
    list of (hook, fn) applied on each batch."""
    from workbench.analysis.core import answer_logprob, batches, run_with_interventions

    total, tokens, seen = 0.0, 0, 0
    for batch in batches(dataset, batch_size):
        ivs = interventions(batch) if interventions else []
        logits = run_with_interventions(model, batch, ivs, backend=backend) if ivs else model(batch)
        total -= float(answer_logprob(model, batch, logits).sum())
        tokens += int((batch["labels"][:, 1:] != -100).sum())
        seen += batch["input_ids"].shape[0]
        if max_rows is not None and seen >= max_rows:
            break
    return total / max(1, tokens)


def loss_recovered(
    model, sae, dataset, hook: str, role: str = "audio", *, batch_size: int = 8, max_rows: int | None = None
) -> dict:
    """{loss_clean, loss_sae, loss_zero, loss_recovered} (see the module docstring)."""

    def loss(interventions) -> float:
        return answer_loss(model, dataset, interventions, batch_size=batch_size, max_rows=max_rows)

    clean = loss(None)
    with_sae = loss(lambda bt: [splice(model, sae, hook, role, bt, "reconstruct")])
    zero = loss(lambda bt: [splice(model, sae, hook, role, bt, "zero")])
    rec = (zero - with_sae) / (zero - clean) if abs(zero - clean) > 1e-9 else float("nan")
    return {"loss_clean": clean, "loss_sae": with_sae, "loss_zero": zero, "loss_recovered": rec}
