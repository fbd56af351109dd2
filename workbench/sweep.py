"""Training-time sweeps (claim 1: delayed integration): train + evaluate one model per injection layer.

```
python -m workbench.sweep injection-layer --layers 0,4,8,12,16 [--preset tiny] [--mode plits|lal]
       [--base-config configs/delayed.yaml] [--out results/sweeps/injection-layer] [--max-steps N]
       [--splits test,test-seed1 | --eval-data DIR] [--max-rows N] [--resamples 2000] [--jobs 2]
       [--no-reproducible] [--no-progress]
python -m workbench.sweep injection-layer --modes plits,lal --layers 0,4,8,12,16,20,24 --seeds 0,1,2 [...]
```
Every call is the injection-layer curve of claim 1 (:mod:`workbench.pipeline.sweep`, :mod:`workbench.training.jobs`):
one run per (mode, layer, seed) in ``OUT/MODE/LNN/seed-S`` (default OUT ``results/sweeps/injection-layer``), its
config in ``OUT/MODE/LNN/config.yaml`` (the base config's preset with every encoder's ``integration.layer`` set to
L and ``integration.mode`` to MODE; switching to LAL adds the per-layer adapter and gate as in configs/lal.yaml;
``--max-steps N`` caps every stage at N steps, and the config says so). ``--modes``/``--seeds`` name the modes and
training seeds; without them the sweep has one mode (``--mode``, else the base config's) and one seed (0).

Each run is trained in its own single-thread process in the reproducible mode (``--jobs`` at a time;
``--no-reproducible`` leaves the AVX2 pins out) and evaluated on the test splits of ``--splits`` (default ``test``,
the one every curve point shares; ``test,test-seed1`` adds the second), or on the audiofolder ``--eval-data DIR``
instead (answers in ``seed-S/eval-NAME/``, :func:`workbench.training.runs.custom_split`), its first ``--max-rows``
task rows if given. Resumable: a run with its answers is kept, one with ``final/`` is only evaluated, one with
training checkpoints resumes; a point whose config and seed equal a finished run under ``results/checkpoints``
(e.g. PLITS@0 = baseline, PLITS@8 = delayed, LAL@8 = lal) reuses that run's logs and evaluations. Changing the
settings of an existing point needs a fresh ``--out``: the written config is compared with the one on disk and a
mismatch is an error.

Outputs (:func:`workbench.claims.layer_curve.write_layer_curve`, over every evaluated point under OUT): in OUT (in
``results`` without ``--out``) ``injection_layer_curve.csv`` (``mode, layer, family, accuracy, ci_low, ci_high,
n_seeds, seeds, n_clips, n_rows, splits, method``; the interval is seed-aware, and with one seed a clip bootstrap
that says so in ``method``), ``injection_layer_curve_seeds.csv``, ``injection_layer_curve_contrasts.csv`` (layers
paired by seed and clip) and the figure ``injection_layer_curve.html`` (+ ``.png``); the report
(``python -m workbench.report --run OUT``) shows them under claim 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workbench.sweep",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="kind", required=True)
    s = sub.add_parser("injection-layer", help="train + evaluate one model per injection layer")
    s.add_argument("--layers", required=True, help="comma-separated injection layers, e.g. 0,4,8,12,16")
    s.add_argument("--preset", default="tiny")
    s.add_argument("--mode", default=None, help="plits or lal: the one mode (default: the base config's)")
    s.add_argument("--modes", default=None, help="several modes, comma-separated (plits,lal); instead of --mode")
    s.add_argument("--seeds", default=None, help="comma-separated training seeds (default 0)")
    s.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each (default 2)")
    s.add_argument(
        "--splits",
        default="test",
        help="test splits each point is evaluated on (default test; add test-seed1 for the second split)",
    )
    s.add_argument("--base-config", default="configs/delayed.yaml")
    s.add_argument(
        "--out",
        default=None,
        help="runs and tables (default: runs in results/sweeps/injection-layer, tables in results)",
    )
    s.add_argument("--max-steps", type=int, default=None, help="cap every stage at N steps (quick run)")
    s.add_argument(
        "--eval-data", default=None, help="evaluate on this audiofolder instead of the test splits of --splits"
    )
    s.add_argument("--max-rows", type=int, default=None, help="evaluate only the first N task rows")
    s.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of one-seed intervals")
    s.add_argument(
        "--reproducible",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one thread + AVX2 pins + deterministic algorithms per run (default: on)",
    )
    s.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.pipeline.sweep import run_sweep_command

    return run_sweep_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
