"""Evaluate a PAL checkpoint on an audiofolder dataset: greedy answers for every task row, then scores.

```
python -m workbench.evaluate --checkpoint DIR --data DIR [--out CSV] [--max-rows N] [--batch-size B]
       [--tasks cls,qa,caption] [--cache-dir DIR] [--max-new-tokens 16] [--no-meteor]
```
Writes ``answers.csv`` (``row_id, file_name, task, attribute, question, answer, prediction, correct,
closed``; ``correct`` is empty on open rows), ``scores.csv`` (tidy: ``metric, task, attribute, value, n,
chance``, see :func:`workbench.evaluation.metrics.score_answers`) and ``run.json`` (checkpoint, data, variant name)
in one folder (default ``CHECKPOINT/eval/``; ``--out`` names the answers CSV) and prints a summary.

API: :func:`predict_rows` (any ``predict(batch) -> list[str]`` over an :class:`AudioTaskDataset`),
:func:`evaluate_predictor` (predict + score + write), :func:`evaluate_checkpoint` (the PAL model path), :func:`run_evaluate_command` (the command's body).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from workbench.common.paths import atomic_write_bytes, variant_of
from workbench.evaluation.metrics import ANSWER_COLUMNS, mark_correct, score_answers

__all__ = [
    "predict_rows",
    "evaluate_predictor",
    "evaluate_checkpoint",
    "load_answer_options",
    "write_results",
    "summarize",
    "check_data_dir",
    "check_checkpoint_dir",
    "run_evaluate_command",
]

Predictor = Callable[[dict], Sequence[str]]


class EvaluationError(ValueError):
    """Bad input to the evaluation (message names the file and the fix)."""


def check_data_dir(data_dir: str | os.PathLike) -> Path:
    root = Path(data_dir)
    if not root.is_dir():
        raise EvaluationError(
            f"{root}: data folder not found; pass --data with an audiofolder dataset "
            "(python -m workbench.data.synth --out DIR ... makes one)"
        )
    if not (root / "tasks.jsonl").is_file():
        raise EvaluationError(
            f"{root / 'tasks.jsonl'}: missing; evaluation needs the task rows. Generate the "
            "dataset with workbench.data.synth or an importer (python -m workbench.data.importers)"
        )
    return root


def check_checkpoint_dir(checkpoint: str | os.PathLike) -> Path:
    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise EvaluationError(
            f"{ckpt}: checkpoint folder not found; pass --checkpoint with a folder written by "
            "training (config.json + model.safetensors)"
        )
    if not (ckpt / "config.json").is_file():
        raise EvaluationError(
            f"{ckpt / 'config.json'}: missing; {ckpt} is not a PAL checkpoint folder "
            "(expected config.json + model.safetensors from PALModel.save_pretrained / training)"
        )
    return ckpt


def load_answer_options(data_dir: str | os.PathLike) -> dict[str, list[str]]:
    """``answer_options.json`` of a dataset (``{}`` if the dataset has none)."""
    p = Path(data_dir) / "answer_options.json"
    if not p.is_file():
        return {}
    try:
        opts = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise EvaluationError(f"{p}: invalid JSON ({e}); it must map attribute -> list of answers") from e
    if not isinstance(opts, dict) or not all(isinstance(v, list) for v in opts.values()):
        raise EvaluationError(f"{p}: must map attribute -> list of answers")
    return {str(k): [str(x) for x in v] for k, v in opts.items()}


def answer_length_order(dataset, n: int) -> list[int]:
    """Row indices 0..n-1 with the closed (short-answer) rows first, each group by question length: greedy decoding
    stops when every row of a batch has ended, so batches of one-word answers end after a few tokens instead of
    waiting for a caption in the same batch. Reads only the task rows (``dataset.rows``), no audio or tokens."""
    rows = getattr(dataset, "rows", None)
    row = (lambda i: rows[i]) if rows is not None else (lambda i: dataset[i]["row"])
    keys = [(not bool(row(i).get("closed", False)), len(str(row(i).get("question", ""))), i) for i in range(n)]
    return [i for *_, i in sorted(keys)]


def predict_rows(
    dataset,
    predict: Predictor,
    batch_size: int = 8,
    max_rows: int | None = None,
    collate_fn=None,
    progress: bool = True,
    group_by_answer_length: bool = False,
) -> pd.DataFrame:
    """Run ``predict`` over the rows of an ``AudioTaskDataset`` (prompt mode) -> answers DataFrame.

    ``predict(batch)`` gets a batch from ``collate_fn`` (default ``dataset.prompt_collate_fn()``) and
    returns one string per row. ``correct`` is left to :func:`workbench.evaluation.metrics.mark_correct`.
    ``group_by_answer_length``: batch rows in :func:`answer_length_order` (the answers come back in row order).
    """
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    n = len(dataset) if max_rows is None else min(int(max_rows), len(dataset))
    if n == 0:
        raise EvaluationError(f"{getattr(dataset, 'root', 'dataset')}: no task rows to evaluate (check --tasks)")
    order = answer_length_order(dataset, n) if group_by_answer_length else list(range(n))
    sub = Subset(dataset, order) if order != list(range(len(dataset))) else dataset
    loader = DataLoader(sub, batch_size=batch_size, shuffle=False, collate_fn=collate_fn or dataset.prompt_collate_fn())
    records = []
    with tqdm(total=n, desc="evaluate", unit="row", disable=not progress) as bar:
        for batch in loader:
            preds = list(predict(batch))
            if len(preds) != len(batch["row"]):
                raise RuntimeError(f"predictor returned {len(preds)} answers for a batch of {len(batch['row'])}")
            for row, pred in zip(batch["row"], preds):
                records.append(
                    {
                        "row_id": row["row_id"],
                        "file_name": row["file_name"],
                        "task": row["task"],
                        "attribute": row.get("attribute"),
                        "question": row["question"],
                        "answer": str(row["answer"]),
                        "prediction": str(pred).strip(),
                        "correct": None,
                        "closed": bool(row.get("closed", False)),
                    }
                )
            bar.update(len(preds))
    if group_by_answer_length:
        at = {row_index: k for k, row_index in enumerate(order)}
        records = [records[at[i]] for i in range(n)]
    return pd.DataFrame(records, columns=ANSWER_COLUMNS)


def write_results(
    answers: pd.DataFrame, scores: pd.DataFrame, out_csv: str | os.PathLike, info: dict | None = None
) -> tuple[Path, Path]:
    """Write ``answers.csv`` at ``out_csv`` and ``scores.csv`` (+ ``run.json``) beside it."""
    out = Path(out_csv)
    if out.suffix.lower() != ".csv":
        out = out / "answers.csv"
    # each file atomically (an interrupted run leaves the old file or none, never half a CSV); answers last, so
    # an answers.csv on disk always has its scores.csv and run.json beside it
    scores_path = out.parent / "scores.csv"
    atomic_write_bytes(scores_path, scores.to_csv(index=False).encode())
    if info is not None:
        atomic_write_bytes(out.parent / "run.json", (json.dumps(info, indent=2, default=str) + "\n").encode())
    atomic_write_bytes(out, answers[ANSWER_COLUMNS].to_csv(index=False).encode())
    return out, scores_path


def summarize(scores: pd.DataFrame) -> str:
    """A short text summary: overall + per-task accuracy vs chance, caption metrics."""
    lines = []
    acc = scores[(scores["metric"] == "accuracy") & (scores["attribute"] == "all")]
    for _, r in acc.iterrows():
        lines.append(f"accuracy  {r['task']:<8} {r['value']:.3f}  (chance {r['chance']:.3f}, n={int(r['n'])})")
    per_att = scores[(scores["metric"] == "accuracy") & (scores["task"] == "all") & (scores["attribute"] != "all")]
    if len(per_att):
        lines.append(
            "  per attribute: "
            + ", ".join(f"{r['attribute']} {r['value']:.2f}/{r['chance']:.2f}" for _, r in per_att.iterrows())
        )
    cap = scores[~scores["metric"].isin(["accuracy", "macro_accuracy"])]
    for (task, att), g in cap.groupby(["task", "attribute"], sort=True):
        vals = ", ".join(f"{r['metric']} {r['value']:.3f}" for _, r in g.iterrows())
        lines.append(f"{task}/{att} (n={int(g['n'].iloc[0])}): {vals}")
    return "\n".join(lines)


def evaluate_predictor(
    dataset,
    predict: Predictor,
    out_csv: str | os.PathLike | None = None,
    *,
    answer_options: dict | None = None,
    batch_size: int = 8,
    max_rows: int | None = None,
    meteor: bool = True,
    info: dict | None = None,
    progress: bool = True,
    group_by_answer_length: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predict every row, score, optionally write the CSVs. Returns ``(answers, scores)``."""
    if answer_options is None:
        answer_options = load_answer_options(dataset.root)
    answers = predict_rows(
        dataset,
        predict,
        batch_size=batch_size,
        max_rows=max_rows,
        progress=progress,
        group_by_answer_length=group_by_answer_length,
    )
    answers = mark_correct(answers, answer_options)[ANSWER_COLUMNS]
    scores = score_answers(answers, answer_options, meteor=meteor)
    if out_csv is not None:
        write_results(answers, scores, out_csv, info)
    return answers, scores


def _default_cache_dir() -> Path:
    """The token cache the configs and analyses use (``data.cache_dir: cache/tokens``), so nothing is encoded twice."""
    from workbench.common.constants import TOKEN_CACHE

    return TOKEN_CACHE


def _eval_dataset(model, data: Path, tasks: list[str] | None, cache_dir: str | os.PathLike | None, progress: bool):
    """The rows to answer, without answers: the model's own dataset (``task_dataset``) or, for any other model,
    an AudioTaskDataset over its encoders' token cache (filled here)."""
    from workbench.data.dataset import AudioTaskDataset

    if hasattr(model, "task_dataset"):  # a PALModel (token cache) or a released audio-LLM (waveforms)
        ds = model.task_dataset(data, tasks=tasks, with_answer=False, cache_dir=cache_dir, progress=progress)
    else:  # any model with a tokenizer, encoder_names and generate_answers(batch, max_new_tokens)
        names = list(getattr(model, "encoder_names", None) or [])
        ds_kw: dict = {"tasks": tasks, "with_answer": False}
        if names:
            from workbench.encoders import encoders_for
            from workbench.encoders.cache import encode_dataset

            cache = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
            encode_dataset(data, encoders_for(names), cache, progress=progress)
            ds_kw.update(encoders=names, cache_dir=cache)
        ds = AudioTaskDataset(data, model.tokenizer, **ds_kw)
    return ds


def _load_eval_model(checkpoint, model):
    """``model`` or ``PALModel.from_pretrained(checkpoint)`` (a local folder checked first), in eval mode."""
    if model is None:
        from workbench.model.pal import PALModel
        from workbench.model.released import is_hub_id

        ckpt = checkpoint if is_hub_id(checkpoint) else check_checkpoint_dir(checkpoint)

        model = PALModel.from_pretrained(ckpt)
    if hasattr(model, "eval"):
        model.eval()
    return model


def _greedy_predictor(model, max_new_tokens: int, share_prefix: bool):
    """batch -> greedy answers of ``model`` (any model with ``generate_answers(batch, max_new_tokens)``; the
    shared prefix is run once per batch where the model supports it and ``share_prefix``)."""
    import inspect

    import torch

    kw = (
        {"share_prefix": True}
        if share_prefix and "share_prefix" in inspect.signature(model.generate_answers).parameters
        else {}
    )

    def predict(batch):
        with torch.no_grad():
            return model.generate_answers(batch, max_new_tokens=max_new_tokens, **kw)

    return predict


def _eval_info(model, checkpoint, data, tasks, max_rows, max_new_tokens) -> dict:
    """The run description written beside the answers (``n_rows`` filled in later), with the environment."""
    variant = variant_of(checkpoint) if checkpoint is not None else "model"
    from workbench.training.environment import with_environment  # versions, threads, CPU, ISA; relative paths

    return with_environment(
        {
            "variant": variant,
            "checkpoint": str(checkpoint),
            "data": str(data),
            "tasks": list(tasks or []),
            "max_rows": max_rows,
            "max_new_tokens": max_new_tokens,
            "n_rows": None,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
        device=str(getattr(model, "device", "cpu")),
    )


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_csv: str | os.PathLike | None = None,
    *,
    tasks: Sequence[str] | None = None,
    max_rows: int | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 16,
    cache_dir: str | os.PathLike | None = None,
    meteor: bool = True,
    progress: bool = True,
    model=None,
    share_prefix: bool = True,
    group_by_answer_length: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load ``PALModel.from_pretrained(checkpoint)`` (or use ``model``), answer greedily, score, write.

    Speed (same answers, checked against the committed evaluations): ``share_prefix`` runs the system turn that
    every prompt shares once per batch (:mod:`workbench.model.shared_prefix`); ``group_by_answer_length``
    batches the one-word answers together (:func:`answer_length_order`)."""
    data = check_data_dir(data_dir)
    model = _load_eval_model(checkpoint, model)
    tasks = list(tasks) if tasks else None
    ds = _eval_dataset(model, data, tasks, cache_dir, progress)
    predict = _greedy_predictor(model, max_new_tokens, share_prefix)
    if out_csv is None and checkpoint is not None:
        out_csv = Path(checkpoint) / "eval" / "answers.csv"
    info = _eval_info(model, checkpoint, data, tasks, max_rows, max_new_tokens)
    answers, scores = evaluate_predictor(
        ds,
        predict,
        None,
        answer_options=load_answer_options(data),
        batch_size=batch_size,
        max_rows=max_rows,
        meteor=meteor,
        info=None,
        progress=progress,
        group_by_answer_length=group_by_answer_length,
    )
    if out_csv is not None:
        info["n_rows"] = len(answers)
        write_results(answers, scores, out_csv, info)
    return answers, scores


def run_evaluate_command(args) -> None:
    """``python -m workbench.evaluate`` with parsed arguments ``args``: answers + scores written, a summary printed;
    bad input exits with ``error: ...``."""
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    try:
        check_checkpoint_dir(args.checkpoint)
        check_data_dir(args.data)
        out = args.out or str(Path(args.checkpoint) / "eval" / "answers.csv")
        answers, scores = evaluate_checkpoint(
            args.checkpoint,
            args.data,
            out,
            tasks=tasks,
            max_rows=args.max_rows,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            cache_dir=args.cache_dir,
            meteor=not args.no_meteor,
            progress=not args.no_progress,
            share_prefix=not args.no_share_prefix,
            group_by_answer_length=not args.in_order,
        )
    except EvaluationError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{len(answers)} rows -> {out} (+ scores.csv, run.json)")
    print(summarize(scores))
