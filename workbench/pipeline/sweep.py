"""Training-time sweeps (claim 1: delayed integration): the runs of the injection-layer sweep and curve.

- :func:`sweep_configs`: the base config's preset with every encoder's ``integration.layer`` set to L (and
  ``integration.mode`` to a given mode; switching to LAL adds the per-layer adapter and gate as in configs/lal.yaml).
- :func:`injection_layer_sweep` (one mode, one seed): for each layer, ``OUT/L{L:02d}/config.yaml``, training with
  :func:`workbench.training.driver.train` into ``OUT/L{L:02d}`` and evaluation with
  :func:`workbench.evaluation.evaluator.evaluate_checkpoint` into ``OUT/L{L:02d}/eval/answers.csv``; resumable (a layer whose
  ``eval/answers.csv`` exists is skipped, one with ``final/`` only evaluated, one with checkpoints resumed); a changed
  setting for a finished layer is an error (use a fresh ``--out``). Returns the bootstrap table of
  :mod:`workbench.claims.sweep_table`.
- :func:`injection_layer_jobs` (the curve, ``--modes``/``--seeds``): one :class:`~workbench.training.jobs.Job` per
  (mode, layer, seed) in ``results/sweeps/injection-layer/MODE/LNN/seed-S`` (reproducible mode by default), a
  point equal to a finished run under ``results/checkpoints`` reusing it; :func:`run_curve` runs them and writes the
  curve.

The command is ``python -m workbench.sweep`` (:mod:`workbench.pipeline.sweep`).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import yaml

__all__ = [
    "sweep_configs",
    "injection_layer_sweep",
    "injection_layer_jobs",
    "run_curve",
    "run_sweep_command",
    "SweepError",
]


class SweepError(ValueError):
    """Bad sweep request (the message names the fix)."""


def _layer_dir(out: Path, layer: int) -> Path:
    return out / f"L{layer:02d}"


def sweep_configs(
    base_config: str | Path, preset: str, layers: Sequence[int], mode: str | None = None, max_steps: int | None = None
) -> dict[int, dict]:
    """{layer: {"note": str, "presets": {preset: ...}}}: only ``preset``, every encoder's integration layer
    replaced (the note becomes a comment line of the written config)."""
    from workbench.training.run_config import read_config_file

    doc = read_config_file(base_config)
    if preset not in doc["presets"]:
        raise SweepError(f"{base_config}: no preset {preset!r}; available: {sorted(doc['presets'])}")
    if mode is not None and mode not in ("plits", "lal"):
        raise SweepError(f"unknown --mode {mode!r}; choose plits or lal")
    bad = [l for l in layers if not isinstance(l, int) or l < 0]
    if bad or not layers:
        raise SweepError(f"--layers must be non-negative integers, got {list(layers)}")
    if len(set(layers)) != len(layers):
        raise SweepError(f"--layers has duplicates: {list(layers)}")
    base = doc["presets"][preset]
    encs = (base.get("model") or {}).get("encoders")
    if not encs:
        raise SweepError(f"{base_config} [preset {preset}]: model.encoders is empty: nothing to inject")
    out = {}
    for layer in layers:
        p = copy.deepcopy(base)
        for e in p["model"]["encoders"]:
            integ = dict(e.get("integration") or {})
            old_mode = integ.get("mode", "plits")
            new_mode = mode or old_mode
            integ["mode"], integ["layer"] = new_mode, int(layer)
            if new_mode == "plits":
                integ.pop("adapter", None), integ.pop("gate", None), integ.pop("adapter_rank", None)
            elif old_mode != "lal":
                integ.setdefault("adapter", True), integ.setdefault("gate", True)
            e["integration"] = integ
        if max_steps is not None:
            if max_steps < 1:
                raise SweepError(f"--max-steps must be >= 1, got {max_steps}")
            for s in p["training"]["stages"]:
                s["steps"] = min(int(s["steps"]), max_steps)
                s["warmup"] = min(int(s.get("warmup", 0)), s["steps"])
        note = (
            f"injection-layer sweep: {base_config} [preset {preset}] with integration layer {layer}"
            + (f", mode {mode}" if mode else "")
            + (f", stages capped at {max_steps} steps" if max_steps else "")
        )
        out[layer] = {"note": note, "presets": {preset: p}}
    return out


def _default_train(cfg_path: Path, preset: str, run_dir: Path, resume: bool, progress: bool):
    from workbench.training.driver import train
    from workbench.training.run_config import load_run_config

    return train(load_run_config(cfg_path, preset), run_dir, resume=resume, progress=progress)


def _default_evaluate(checkpoint: Path, data: Path, out_csv: Path, max_rows, cache_dir, progress: bool):
    from workbench.evaluation.evaluator import evaluate_checkpoint

    return evaluate_checkpoint(
        checkpoint, data, out_csv, max_rows=max_rows, cache_dir=cache_dir, meteor=False, progress=progress
    )


def _train_layer(d: Path, layer: int, cfg_path: Path, preset: str, train_fn: Callable, progress: bool, log) -> Path:
    """Train layer ``layer``'s run in ``d`` unless ``d/final`` holds a model (resuming from its checkpoints)
    -> ``d/final``; a clear error when training did not write it."""
    final = d / "final"
    if not (final / "config.json").is_file():
        resume = (d / "checkpoints").is_dir() and any((d / "checkpoints").iterdir())
        log(f"L{layer}: training{' (resuming)' if resume else ''} -> {d}")
        train_fn(cfg_path, preset, d, resume, progress)
        if not (final / "config.json").is_file():
            raise SweepError(f"training of layer {layer} did not write {final}; see {d / 'train_log.csv'}")
    return final


def injection_layer_sweep(
    layers: Sequence[int],
    *,
    preset: str = "tiny",
    mode: str | None = None,
    base_config: str | Path = "configs/delayed.yaml",
    out: str | Path = "results/sweep",
    max_steps: int | None = None,
    eval_data: str | Path | None = None,
    max_rows: int | None = None,
    resamples: int = 1000,
    progress: bool = True,
    train_fn: Callable | None = None,
    evaluate_fn: Callable | None = None,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Train + evaluate one run per layer (skipping finished ones), return :func:`sweep_table`.

    ``train_fn(config_path, preset, run_dir, resume, progress)`` and ``evaluate_fn(checkpoint, data, out_csv,
    max_rows, cache_dir, progress)`` default to the real trainer and evaluator (replaceable for tests)."""
    from workbench.training.run_config import load_run_config, resolve_path

    out = Path(out)
    docs = sweep_configs(base_config, preset, layers, mode, max_steps)
    train_fn = train_fn or _default_train
    evaluate_fn = evaluate_fn or _default_evaluate
    done = {}
    for layer, doc in docs.items():
        d = _layer_dir(out, layer)
        cfg_path = d / "config.yaml"
        _write_config(cfg_path, doc)
        answers = d / "eval" / "answers.csv"
        if answers.is_file():
            log(f"L{layer}: done (skipping; {answers})")
            done[layer] = answers
            continue
        final = _train_layer(d, layer, cfg_path, preset, train_fn, progress, log)
        cfg = load_run_config(cfg_path, preset)
        data = resolve_path(eval_data) if eval_data is not None else cfg.data.val
        if data is None:
            raise SweepError(f"{cfg_path} has no data.val: pass --eval-data DIR")
        log(f"L{layer}: evaluating on {data}")
        evaluate_fn(final, data, answers, max_rows, cfg.data.cache_dir, progress)
        done[layer] = answers
    from workbench.claims.sweep_table import sweep_table

    return sweep_table(done, resamples=resamples)


def _write_config(cfg_path: Path, doc: dict) -> None:
    text = f"# {doc['note']}\n" + yaml.safe_dump({"presets": doc["presets"]}, sort_keys=False)
    if cfg_path.is_file() and cfg_path.read_text() != text:
        raise SweepError(
            f"{cfg_path} exists with other settings than this sweep's (base config, mode, "
            "--max-steps or preset changed); use another --out or delete that folder"
        )
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    if not cfg_path.is_file():
        cfg_path.write_text(text)


def injection_layer_jobs(
    modes: Sequence[str],
    layers: Sequence[int],
    seeds: Sequence[int],
    *,
    preset: str = "tiny",
    base_config: str | Path = "configs/delayed.yaml",
    out: str | Path | None = None,
    max_steps: int | None = None,
    reuse_root: str | Path | None = "results/checkpoints",
    splits: Sequence[str] = ("test",),
    reproducible: bool = True,
) -> list:
    """The curve's runs as :class:`workbench.training.jobs.Job` s (configs written to ``OUT/MODE/LNN/config.yaml``),
    each evaluated on the test ``splits`` (names of `workbench.training.runs.TEST_SPLITS`; default the committed split: the
    curve compares layers on one split, and a second split costs about a quarter more time per point)."""
    from workbench.training.jobs import Job
    from workbench.training.runs import SWEEP_ROOT, find_seed_runs, sweep_run_dir

    out = Path(out) if out is not None else SWEEP_ROOT
    bad = [m for m in modes if m not in ("plits", "lal")]
    if bad or not modes:
        raise SweepError(f"--modes must be plits and/or lal, got {list(modes)}")
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds must be distinct non-negative integers, got {list(seeds)}")
    from workbench.training.runs import TEST_SPLITS

    bad_splits = [s for s in splits if s not in TEST_SPLITS]
    if bad_splits or not splits:
        raise SweepError(f"--splits must name test splits among {list(TEST_SPLITS)}, got {list(splits)}")
    reuse = [r.path for r in find_seed_runs(reuse_root)] if reuse_root is not None and Path(reuse_root).is_dir() else []
    jobs = []
    for mode in modes:
        for layer, doc in sweep_configs(base_config, preset, layers, mode, max_steps).items():
            cfg_path = out / mode / f"L{layer:02d}" / "config.yaml"
            _write_config(cfg_path, doc)
            for seed in seeds:
                jobs.append(
                    Job(
                        f"{mode}@{layer}/seed-{seed}",
                        cfg_path,
                        preset,
                        seed,
                        sweep_run_dir(mode, layer, seed, out),
                        splits=tuple(splits),
                        reuse=reuse,
                        reproducible=reproducible,
                    )
                )
    return jobs


def run_curve(a, layers) -> int:
    """The curve (``--modes``/``--seeds``): its jobs, run ``--jobs`` at a time, then the curve's table and figure."""
    from workbench.training.driver import parse_seeds
    from workbench.training.jobs import run_jobs

    modes = [m.strip() for m in (a.modes or a.mode or "plits").split(",") if m.strip()]
    seeds = parse_seeds(a.seeds or "0")
    splits = [s.strip() for s in a.splits.split(",") if s.strip()]
    jobs = injection_layer_jobs(
        modes,
        layers,
        seeds,
        preset=a.preset,
        base_config=a.base_config,
        out=a.out,
        max_steps=a.max_steps,
        splits=splits,
        reproducible=a.reproducible is not False,
    )
    try:
        run_jobs(jobs, parallel=a.jobs)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from workbench.claims.layer_curve import write_layer_curve

    root = Path(a.out) if a.out else None
    sentence = write_layer_curve(root or "results/sweeps/injection-layer", root or "results")
    print(sentence or "no evaluated sweep point yet")
    return 0


def run_sweep_command(a) -> int:
    """``python -m workbench.sweep injection-layer`` with parsed arguments ``a``; its exit code."""
    from workbench.analysis.core import write_outputs
    from workbench.evaluation.evaluator import EvaluationError
    from workbench.training.checkpoint import CheckpointError
    from workbench.training.run_config import ConfigError

    try:
        try:
            layers = [int(x) for x in a.layers.split(",") if x.strip()]
        except ValueError:
            raise SweepError(f"--layers must be comma-separated integers, got {a.layers!r}") from None
        if a.modes is not None or a.seeds is not None:
            return run_curve(a, layers)
        a.out = a.out or "results/sweep"
        table = injection_layer_sweep(
            layers,
            preset=a.preset,
            mode=a.mode,
            base_config=a.base_config,
            out=a.out,
            max_steps=a.max_steps,
            eval_data=a.eval_data,
            max_rows=a.max_rows,
            resamples=a.resamples,
            progress=not a.no_progress,
        )
    except (SweepError, ConfigError, CheckpointError, EvaluationError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from workbench.claims.sweep_table import sweep_figure

    written = write_outputs(table, sweep_figure(table), a.out, "injection_layer")
    acc = table[(table["metric"] == "accuracy") & (table["task"] == "all") & (table["attribute"] == "all")]
    print(acc[["layer", "value", "ci_low", "ci_high", "n"]].to_string(index=False))
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0
