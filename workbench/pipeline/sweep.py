"""Training-time sweeps (claim 1: delayed integration): the runs of the injection-layer curve.

- :func:`sweep_configs`: the base config's preset with every encoder's ``integration.layer`` set to L (and
  ``integration.mode`` to a given mode; switching to LAL adds the per-layer adapter and gate as in configs/lal.yaml).
- :func:`injection_layer_jobs`: one :class:`~workbench.training.jobs.Job` per (mode, layer, seed) in
  ``OUT/MODE/LNN/seed-S`` (default ``results/sweeps/injection-layer``; the point's config in
  ``OUT/MODE/LNN/config.yaml``, a changed setting for an existing point is an error), evaluated on the test splits or
  on ``--eval-data`` (reproducible mode by default), a point equal to a finished run under ``results/checkpoints``
  reusing it.
- :func:`run_curve`: runs them and writes the curve's tables and figure (:mod:`workbench.claims.layer_curve`).

Every call is the curve: ``--modes``/``--seeds`` name several modes and seeds; without them it has one mode
(``--mode``, else the base config's: :func:`base_mode`) and one seed (0), in the same layout and tables.

The command is ``python -m workbench.sweep`` (:func:`run_sweep_command`).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

__all__ = ["sweep_configs", "base_mode", "injection_layer_jobs", "run_curve", "run_sweep_command", "SweepError"]


class SweepError(ValueError):
    """Bad sweep request (the message names the fix)."""


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


def base_mode(base_config: str | Path, preset: str) -> str:
    """The integration mode of every encoder of ``base_config``'s ``preset`` (what a sweep without ``--mode``
    keeps); a clear error when its encoders differ."""
    from workbench.training.run_config import read_config_file

    doc = read_config_file(base_config)
    encs = ((doc.get("presets") or {}).get(preset) or {}).get("model", {}).get("encoders") or []
    modes = sorted({(e.get("integration") or {}).get("mode", "plits") for e in encs})
    if len(modes) != 1:
        raise SweepError(
            f"{base_config} [preset {preset}]: its encoders use the integration modes {modes}; pass --mode plits or lal"
        )
    return modes[0]


def _check_evaluation(splits: Sequence[str], eval_data: str | Path | None, max_rows: int | None) -> Path | None:
    """The evaluation settings checked (clear errors naming the fix); ``eval_data`` as an absolute path."""
    from workbench.training.run_config import resolve_path
    from workbench.training.runs import TEST_SPLITS

    bad_splits = [s for s in splits if s not in TEST_SPLITS]
    if bad_splits or not splits:
        raise SweepError(f"--splits must name test splits among {list(TEST_SPLITS)}, got {list(splits)}")
    if max_rows is not None and max_rows < 1:
        raise SweepError(f"--max-rows must be >= 1, got {max_rows}")
    if eval_data is None:
        return None
    folder = resolve_path(eval_data)
    if not (folder / "tasks.jsonl").is_file():
        raise SweepError(
            f"--eval-data {eval_data}: no tasks.jsonl in {folder}; pass an audiofolder (e.g. data/synth-tiny/val) "
            "or leave it out to evaluate on the test splits (--splits)"
        )
    return folder


def _check_evaluated_rows(job) -> None:
    """An existing evaluation of ``job`` must cover the rows this sweep asks for (``--max-rows``): its ``run.json``
    says which; a clear error otherwise (the curve pairs layers row for row)."""
    import json

    for _, answers in job.evaluations().values():
        info = answers.parent / "run.json"
        if answers.is_file() and info.is_file():
            had = json.loads(info.read_text()).get("max_rows")
            if had != job.max_rows:
                raise SweepError(
                    f"{answers} was evaluated with max_rows={had}, this sweep asks for max_rows={job.max_rows} "
                    "(--max-rows); use the same --max-rows, another --out, or delete that evaluation folder"
                )


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
    eval_data: str | Path | None = None,
    max_rows: int | None = None,
) -> list:
    """The curve's runs as :class:`workbench.training.jobs.Job` s (configs written to ``OUT/MODE/LNN/config.yaml``),
    each evaluated on the test ``splits`` (names of `workbench.training.runs.TEST_SPLITS`; default the committed
    split: the curve compares layers on one split, and a second split costs about a quarter more time per point), or
    on the audiofolder ``eval_data`` instead; ``max_rows``: only the first N task rows (an existing evaluation of
    other rows is an error)."""
    from workbench.training.jobs import Job
    from workbench.training.runs import SWEEP_ROOT, find_seed_runs, sweep_run_dir

    out = Path(out) if out is not None else SWEEP_ROOT
    bad = [m for m in modes if m not in ("plits", "lal")]
    if bad or not modes:
        raise SweepError(f"--mode/--modes must be plits and/or lal, got {list(modes)}")
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds must be distinct non-negative integers, got {list(seeds)}")
    folder = _check_evaluation(splits, eval_data, max_rows)
    reuse = [r.path for r in find_seed_runs(reuse_root)] if reuse_root is not None and Path(reuse_root).is_dir() else []
    jobs = []
    for mode in modes:
        for layer, doc in sweep_configs(base_config, preset, layers, mode, max_steps).items():
            cfg_path = out / mode / f"L{layer:02d}" / "config.yaml"
            _write_config(cfg_path, doc)
            for seed in seeds:
                job = Job(
                    f"{mode}@{layer}/seed-{seed}",
                    cfg_path,
                    preset,
                    seed,
                    sweep_run_dir(mode, layer, seed, out),
                    splits=tuple(splits),
                    reuse=reuse,
                    reproducible=reproducible,
                    eval_data=folder,
                    max_rows=max_rows,
                )
                _check_evaluated_rows(job)
                jobs.append(job)
    return jobs


def _modes_and_seeds(a) -> tuple[list[str], list[int]]:
    """``--modes``/``--seeds`` (the curve), or one mode (``--mode``, else the base config's) and seed 0."""
    from workbench.training.driver import parse_seeds

    if a.modes is not None and a.mode is not None:
        raise SweepError("--mode names the one mode of a sweep and --modes several: give one of them")
    if a.modes is not None:
        modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    else:
        modes = [a.mode or base_mode(a.base_config, a.preset)]
    return modes, parse_seeds(a.seeds or "0")


def run_curve(a, layers) -> int:
    """The curve: its jobs, run ``--jobs`` at a time, then the curve's tables and figure."""
    from workbench.claims.layer_curve import write_layer_curve
    from workbench.claims.registry import LAYER_CURVE_STEM
    from workbench.training.jobs import run_jobs
    from workbench.training.runs import SWEEP_ROOT

    modes, seeds = _modes_and_seeds(a)
    jobs = injection_layer_jobs(
        modes,
        layers,
        seeds,
        preset=a.preset,
        base_config=a.base_config,
        out=a.out,
        max_steps=a.max_steps,
        splits=[s.strip() for s in a.splits.split(",") if s.strip()],
        reproducible=a.reproducible is not False,
        eval_data=a.eval_data,
        max_rows=a.max_rows,
    )
    try:
        run_jobs(jobs, parallel=a.jobs, progress=not a.no_progress)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sweeps, tables = (Path(a.out), Path(a.out)) if a.out else (SWEEP_ROOT, Path("results"))
    sentence = write_layer_curve(sweeps, tables, resamples=a.resamples)
    print(sentence or "no evaluated sweep point yet")
    if sentence is not None:
        print(f"wrote {tables / LAYER_CURVE_STEM}.csv (+ _seeds.csv, _contrasts.csv, .html)")
    return 0


def run_sweep_command(a) -> int:
    """``python -m workbench.sweep injection-layer`` with parsed arguments ``a``; its exit code."""
    from workbench.training.run_config import ConfigError

    try:
        try:
            layers = [int(x) for x in a.layers.split(",") if x.strip()]
        except ValueError:
            raise SweepError(f"--layers must be comma-separated integers, got {a.layers!r}") from None
        return run_curve(a, layers)
    except (SweepError, ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
