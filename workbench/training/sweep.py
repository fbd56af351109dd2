"""Training-time sweeps (claim 1: delayed integration): train + evaluate one model per injection layer.

```
python -m workbench.sweep injection-layer --layers 0,4,8,12,16 [--preset tiny] [--mode plits|lal]
       [--base-config configs/delayed.yaml] [--out results/sweep] [--max-steps N] [--eval-data DIR]
       [--max-rows N] [--resamples 1000] [--no-progress]
python -m workbench.sweep injection-layer --modes plits,lal --layers 0,4,8,12,16,20,24 --seeds 0,1,2 [--jobs 2]
```
With ``--modes``/``--seeds`` (the injection-layer curve of claim 1): one run per (mode, layer, seed) in
``results/sweeps/injection-layer/MODE/LNN/seed-S`` (``OUT/MODE/LNN/config.yaml`` holds the point's config), each
trained in its own single-thread process (``--jobs`` at a time) and evaluated on the test splits of ``--splits``
(default ``test``, the one every curve point shares; ``test,test-seed1`` adds the second); resumable; a point whose config and seed equal a finished run under
``results/checkpoints`` (e.g. PLITS@0 = baseline, PLITS@8 = delayed, LAL@8 = lal) reuses that run's logs and
evaluations. See :mod:`workbench.training.jobs`.

Without them (one mode, one seed): for each layer L: ``OUT/L{L:02d}/config.yaml`` (the base config's preset with every encoder's
``integration.layer`` set to L, and ``integration.mode`` to ``--mode`` if given; switching to LAL adds the
per-layer adapter and gate as in configs/lal.yaml), training with :func:`workbench.train.train` into
``OUT/L{L:02d}`` and evaluation with :func:`workbench.evaluate.evaluate_checkpoint` on ``--eval-data``
(default: the config's ``data.val``) into ``OUT/L{L:02d}/eval/answers.csv``.

Resumable: a layer whose ``eval/answers.csv`` exists is skipped; one with ``final/`` is only evaluated; one
with training checkpoints resumes training (``--resume``). Changing the sweep's settings for a finished
layer needs a fresh ``--out``: the written config is compared with the one on disk and a mismatch is an error.
``--max-steps N`` caps every stage at N steps (a quick run; the written config says so, the run completes).

Outputs: ``OUT/injection_layer.csv`` (tidy: ``layer, metric, task, attribute, value, ci_low, ci_high, n,
chance``; percentile bootstrap 95% CIs over rows via :mod:`workbench.compare`) and ``.html/.png``:
closed-task accuracy against the injection layer.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import yaml

__all__ = ["sweep_configs", "injection_layer_sweep", "sweep_table", "sweep_figure", "SweepError", "main"]


class SweepError(ValueError):
    """Bad sweep request (the message names the fix)."""


def _layer_dir(out: Path, layer: int) -> Path:
    return out / f"L{layer:02d}"


def sweep_configs(base_config: str | Path, preset: str, layers: Sequence[int], mode: str | None = None,
                  max_steps: int | None = None) -> dict[int, dict]:
    """{layer: {"note": str, "presets": {preset: ...}}}: only ``preset``, every encoder's integration layer
    replaced (the note becomes a comment line of the written config)."""
    from workbench.training.config import read_config_file

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
        note = (f"injection-layer sweep: {base_config} [preset {preset}] with integration layer {layer}"
                + (f", mode {mode}" if mode else "") + (f", stages capped at {max_steps} steps" if max_steps else ""))
        out[layer] = {"note": note, "presets": {preset: p}}
    return out


def _default_train(cfg_path: Path, preset: str, run_dir: Path, resume: bool, progress: bool):
    from workbench.train import train
    from workbench.training.config import load_run_config

    return train(load_run_config(cfg_path, preset), run_dir, resume=resume, progress=progress)


def _default_evaluate(checkpoint: Path, data: Path, out_csv: Path, max_rows, cache_dir, progress: bool):
    from workbench.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(checkpoint, data, out_csv, max_rows=max_rows, cache_dir=cache_dir, meteor=False,
                               progress=progress)


def injection_layer_sweep(layers: Sequence[int], *, preset: str = "tiny", mode: str | None = None,
                          base_config: str | Path = "configs/delayed.yaml", out: str | Path = "results/sweep",
                          max_steps: int | None = None, eval_data: str | Path | None = None,
                          max_rows: int | None = None, resamples: int = 1000, progress: bool = True,
                          train_fn: Callable | None = None, evaluate_fn: Callable | None = None,
                          log: Callable[[str], None] = print) -> pd.DataFrame:
    """Train + evaluate one run per layer (skipping finished ones), return :func:`sweep_table`.

    ``train_fn(config_path, preset, run_dir, resume, progress)`` and ``evaluate_fn(checkpoint, data, out_csv,
    max_rows, cache_dir, progress)`` default to the real trainer and evaluator (replaceable for tests)."""
    from workbench.training.config import load_run_config, resolve_path

    out = Path(out)
    docs = sweep_configs(base_config, preset, layers, mode, max_steps)
    train_fn = train_fn or _default_train
    evaluate_fn = evaluate_fn or _default_evaluate
    done = {}
    for layer, doc in docs.items():
        d = _layer_dir(out, layer)
        cfg_path = d / "config.yaml"
        text = f"# {doc['note']}\n" + yaml.safe_dump({"presets": doc["presets"]}, sort_keys=False)
        if cfg_path.is_file() and cfg_path.read_text() != text:
            raise SweepError(f"{cfg_path} exists with other settings than this sweep's (base config, mode, "
                             "--max-steps or preset changed); use another --out or delete that folder")
        d.mkdir(parents=True, exist_ok=True)
        if not cfg_path.is_file():
            cfg_path.write_text(text)
        answers = d / "eval" / "answers.csv"
        if answers.is_file():
            log(f"L{layer}: done (skipping; {answers})")
            done[layer] = answers
            continue
        final = d / "final"
        if not (final / "config.json").is_file():
            resume = (d / "checkpoints").is_dir() and any((d / "checkpoints").iterdir())
            log(f"L{layer}: training{' (resuming)' if resume else ''} -> {d}")
            train_fn(cfg_path, preset, d, resume, progress)
            if not (final / "config.json").is_file():
                raise SweepError(f"training of layer {layer} did not write {final}; see {d / 'train_log.csv'}")
        cfg = load_run_config(cfg_path, preset)
        data = resolve_path(eval_data) if eval_data is not None else cfg.data.val
        if data is None:
            raise SweepError(f"{cfg_path} has no data.val: pass --eval-data DIR")
        log(f"L{layer}: evaluating on {data}")
        evaluate_fn(final, data, answers, max_rows, cfg.data.cache_dir, progress)
        done[layer] = answers
    return sweep_table(done, resamples=resamples)


def _write_config(cfg_path: Path, doc: dict) -> None:
    text = f"# {doc['note']}\n" + yaml.safe_dump({"presets": doc["presets"]}, sort_keys=False)
    if cfg_path.is_file() and cfg_path.read_text() != text:
        raise SweepError(f"{cfg_path} exists with other settings than this sweep's (base config, mode, "
                         "--max-steps or preset changed); use another --out or delete that folder")
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    if not cfg_path.is_file():
        cfg_path.write_text(text)


def injection_layer_jobs(modes: Sequence[str], layers: Sequence[int], seeds: Sequence[int], *, preset: str = "tiny",
                         base_config: str | Path = "configs/delayed.yaml", out: str | Path | None = None,
                         max_steps: int | None = None, reuse_root: str | Path | None = "results/checkpoints",
                         splits: Sequence[str] = ("test",)) -> list:
    """The curve's runs as :class:`workbench.training.jobs.Job` s (configs written to ``OUT/MODE/LNN/config.yaml``),
    each evaluated on the test ``splits`` (names of `workbench.runs.TEST_SPLITS`; default the committed split: the
    curve compares layers on one split, and a second split costs about a quarter more time per point)."""
    from workbench.runs import SWEEP_ROOT, find_seed_runs, sweep_run_dir
    from workbench.training.jobs import Job

    out = Path(out) if out is not None else SWEEP_ROOT
    bad = [m for m in modes if m not in ("plits", "lal")]
    if bad or not modes:
        raise SweepError(f"--modes must be plits and/or lal, got {list(modes)}")
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds must be distinct non-negative integers, got {list(seeds)}")
    from workbench.runs import TEST_SPLITS

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
                jobs.append(Job(f"{mode}@{layer}/seed-{seed}", cfg_path, preset, seed,
                                sweep_run_dir(mode, layer, seed, out), splits=tuple(splits), reuse=reuse))
    return jobs


def sweep_table(answers: dict[int, Path], resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Bootstrap table (workbench.compare) over the evaluated layers, with a ``layer`` column."""
    from workbench.compare import _chances, bootstrap_table, item_scores, load_run
    from workbench.evaluate import load_answer_options

    items, chances = {}, None
    for layer, csv in sorted(answers.items()):
        _, df, path = load_run(f"L{layer}={csv}")
        items[str(layer)] = item_scores(df, caption_metrics=())
        if chances is None:
            info = path.parent / "run.json"
            opts = {}
            if info.is_file():
                import json

                data = json.loads(info.read_text()).get("data")
                opts = load_answer_options(data) if data and Path(data).is_dir() else {}
            chances = _chances(df, opts)
    table, _ = bootstrap_table(items, resamples=resamples, seed=seed, chances=chances)
    table.insert(0, "layer", table.pop("variant").astype(int))
    return table.sort_values(["metric", "task", "attribute", "layer"]).reset_index(drop=True)


def sweep_figure(table: pd.DataFrame, title: str | None = None):
    """Closed-task accuracy (overall and per task) against the injection layer, with 95% CIs."""
    import plotly.graph_objects as go

    from workbench.analysis.figures import add_caption

    fig = go.Figure()
    t = table[(table["metric"] == "accuracy") & (table["attribute"] == "all")]
    for task, g in t.groupby("task", sort=True):
        g = g.sort_values("layer")
        fig.add_trace(go.Scatter(
            x=g["layer"], y=g["value"] * 100, mode="lines+markers", name=f"{task}",
            error_y=dict(type="data", symmetric=False, array=(g["ci_high"] - g["value"]) * 100,
                         arrayminus=(g["value"] - g["ci_low"]) * 100)))
        ch = g["chance"].dropna() if "chance" in g else g["value"].iloc[:0]
        if task == "all" and len(ch):
            fig.add_hline(y=float(ch.iloc[0]) * 100, line_dash="dot", annotation_text="chance (all)")
    fig.update_layout(title=title or "Injection-layer sweep (claim 1: delayed integration)", template="plotly_white",
                      xaxis_title="injection layer (first LLM layer that sees audio; layer index)",
                      yaxis_title="closed-task accuracy (%)", height=520)
    all_n = t.loc[t["task"] == "all", "n"] if "n" in t else t["value"].iloc[:0]
    n = f"{int(all_n.max())} closed task rows" if len(all_n) else "the closed task rows"
    return add_caption(fig, f"One model trained per injection layer with the same data and schedule; greedy answers on "
                            f"the evaluation set ({n} per layer; one line per task, 'all' = every task). Error bars: "
                            "percentile bootstrap 95% CI over task rows; dotted line: chance.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workbench.sweep", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="kind", required=True)
    s = sub.add_parser("injection-layer", help="train + evaluate one model per injection layer")
    s.add_argument("--layers", required=True, help="comma-separated injection layers, e.g. 0,4,8,12,16")
    s.add_argument("--preset", default="tiny")
    s.add_argument("--mode", default=None, help="plits or lal (default: the base config's)")
    s.add_argument("--modes", default=None, help="the curve: comma-separated modes (plits,lal), with --seeds")
    s.add_argument("--seeds", default=None, help="the curve: comma-separated training seeds (default 0)")
    s.add_argument("--jobs", type=int, default=2, help="the curve: runs at a time, one thread each (default 2)")
    s.add_argument("--splits", default="test", help="the curve: test splits each point is evaluated on (default "
                   "test; add test-seed1 for the second split)")
    s.add_argument("--base-config", default="configs/delayed.yaml")
    s.add_argument("--out", default=None, help="default results/sweep (one mode) or results/sweeps/injection-layer (--modes)")
    s.add_argument("--max-steps", type=int, default=None, help="cap every stage at N steps (quick run)")
    s.add_argument("--eval-data", default=None, help="evaluation audiofolder (default: the config's data.val)")
    s.add_argument("--max-rows", type=int, default=None, help="evaluate only the first N task rows")
    s.add_argument("--resamples", type=int, default=1000)
    s.add_argument("--no-progress", action="store_true")
    return p


def _run_curve(a, layers) -> int:
    from workbench.train import parse_seeds
    from workbench.training.jobs import run_jobs

    modes = [m.strip() for m in (a.modes or a.mode or "plits").split(",") if m.strip()]
    seeds = parse_seeds(a.seeds or "0")
    splits = [s.strip() for s in a.splits.split(",") if s.strip()]
    jobs = injection_layer_jobs(modes, layers, seeds, preset=a.preset, base_config=a.base_config, out=a.out,
                                max_steps=a.max_steps, splits=splits)
    try:
        run_jobs(jobs, parallel=a.jobs)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from workbench.layer_curve import write_layer_curve

    root = Path(a.out) if a.out else None
    sentence = write_layer_curve(root or "results/sweeps/injection-layer", root or "results")
    print(sentence or "no evaluated sweep point yet")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.analysis.core import write_outputs
    from workbench.evaluate import EvaluationError
    from workbench.training.checkpoint import CheckpointError
    from workbench.training.config import ConfigError

    a = build_parser().parse_args(argv)
    try:
        try:
            layers = [int(x) for x in a.layers.split(",") if x.strip()]
        except ValueError:
            raise SweepError(f"--layers must be comma-separated integers, got {a.layers!r}") from None
        if a.modes is not None or a.seeds is not None:
            return _run_curve(a, layers)
        a.out = a.out or "results/sweep"
        table = injection_layer_sweep(layers, preset=a.preset, mode=a.mode, base_config=a.base_config, out=a.out,
                                      max_steps=a.max_steps, eval_data=a.eval_data, max_rows=a.max_rows,
                                      resamples=a.resamples, progress=not a.no_progress)
    except (SweepError, ConfigError, CheckpointError, EvaluationError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    written = write_outputs(table, sweep_figure(table), a.out, "injection_layer")
    acc = table[(table["metric"] == "accuracy") & (table["task"] == "all") & (table["attribute"] == "all")]
    print(acc[["layer", "value", "ci_low", "ci_high", "n"]].to_string(index=False))
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
