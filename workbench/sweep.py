"""Training-time sweeps (claim 1: delayed integration): train + evaluate one model per injection layer.

```
python -m workbench.sweep injection-layer --layers 0,4,8,12,16 [--preset tiny] [--mode plits|lal]
       [--base-config configs/delayed.yaml] [--out results/sweep] [--max-steps N] [--eval-data DIR]
       [--max-rows N] [--resamples 1000] [--no-progress]
python -m workbench.sweep injection-layer --modes plits,lal --layers 0,4,8,12,16,20,24 --seeds 0,1,2 [--jobs 2]
       [--splits test,test-seed1] [--no-reproducible]
```
With ``--modes``/``--seeds`` (the injection-layer curve of claim 1): one run per (mode, layer, seed) in
``results/sweeps/injection-layer/MODE/LNN/seed-S`` (``OUT/MODE/LNN/config.yaml`` holds the point's config), each
trained in its own single-thread process in the reproducible mode (``--jobs`` at a time; ``--no-reproducible``
leaves the AVX2 pins out) and evaluated on the test splits of ``--splits``
(default ``test``, the one every curve point shares; ``test,test-seed1`` adds the second); resumable; a point whose config and seed equal a finished run under
``results/checkpoints`` (e.g. PLITS@0 = baseline, PLITS@8 = delayed, LAL@8 = lal) reuses that run's logs and
evaluations. See :mod:`workbench.training.jobs` and :mod:`workbench.pipeline.sweep` (the library code).

Without them (one mode, one seed): for each layer L: ``OUT/L{L:02d}/config.yaml`` (the base config's preset with every encoder's
``integration.layer`` set to L, and ``integration.mode`` to ``--mode`` if given; switching to LAL adds the
per-layer adapter and gate as in configs/lal.yaml), training with :func:`workbench.training.driver.train` into
``OUT/L{L:02d}`` and evaluation with :func:`workbench.evaluation.evaluator.evaluate_checkpoint` on ``--eval-data``
(default: the config's ``data.val``) into ``OUT/L{L:02d}/eval/answers.csv``.

Resumable: a layer whose ``eval/answers.csv`` exists is skipped; one with ``final/`` is only evaluated; one
with training checkpoints resumes training (``--resume``). Changing the sweep's settings for a finished
layer needs a fresh ``--out``: the written config is compared with the one on disk and a mismatch is an error.
``--max-steps N`` caps every stage at N steps (a quick run; the written config says so, the run completes).

Outputs: ``OUT/injection_layer.csv`` (tidy: ``layer, metric, task, attribute, value, ci_low, ci_high, n,
chance``; percentile bootstrap 95% CIs over rows via :mod:`workbench.claims.compare`) and ``.html/.png``:
closed-task accuracy against the injection layer.
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
    s.add_argument("--mode", default=None, help="plits or lal (default: the base config's)")
    s.add_argument("--modes", default=None, help="the curve: comma-separated modes (plits,lal), with --seeds")
    s.add_argument("--seeds", default=None, help="the curve: comma-separated training seeds (default 0)")
    s.add_argument("--jobs", type=int, default=2, help="the curve: runs at a time, one thread each (default 2)")
    s.add_argument(
        "--splits",
        default="test",
        help="the curve: test splits each point is evaluated on (default test; add test-seed1 for the second split)",
    )
    s.add_argument("--base-config", default="configs/delayed.yaml")
    s.add_argument(
        "--out", default=None, help="default results/sweep (one mode) or results/sweeps/injection-layer (--modes)"
    )
    s.add_argument("--max-steps", type=int, default=None, help="cap every stage at N steps (quick run)")
    s.add_argument("--eval-data", default=None, help="evaluation audiofolder (default: the config's data.val)")
    s.add_argument("--max-rows", type=int, default=None, help="evaluate only the first N task rows")
    s.add_argument("--resamples", type=int, default=1000)
    s.add_argument(
        "--reproducible",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the curve: one thread + AVX2 pins + deterministic algorithms per run (default: on)",
    )
    s.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.pipeline.sweep import run_sweep_command

    return run_sweep_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
