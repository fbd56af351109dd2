"""Three-stage training curriculum for the PAL audio-LLM variants (one command for CPU, one GPU, many processes).

    python -m workbench.train --config configs/pal.yaml --preset tiny --out runs/pal [--resume]
                              [--max-steps N] [--seed S] [--reproducible] [--no-progress]
    python -m workbench.train --all --preset tiny --out-root results/checkpoints   # every configs/{variant}.yaml
    python -m workbench.train --all --seeds 0,1,2 [--variants pal,lal] [--jobs 2]  # OUT_ROOT/VARIANT/seed-S, evaluated
    torchrun --nproc_per_node 2 -m workbench.train --config ... --out ...          # data-parallel, CPU (gloo) or GPU
    accelerate launch --multi_gpu --num_processes 4 -m workbench.train --config ... # data-parallel on 4 GPUs

Outputs under ``--out``: ``train_log.csv`` (one row per optimizer step), ``val_log.csv``, ``checkpoints/``
(atomic), ``final/`` and ``train_summary.json`` (with what the numbers depend on: versions, threads, CPU, vector
ISA, device, processes). ``--resume`` continues exactly (same rows as an uninterrupted run; a warning when the
thread count or ISA differ from the checkpoint's). ``--reproducible`` pins one thread, the AVX2 code paths of
MKL/ATen/oneDNN and deterministic algorithms (it re-launches itself with the variables set), so a run gives the
same numbers on any x86 CPU with AVX2; it is the default of ``--seeds`` (``--no-reproducible`` to opt out).
With several processes ``training.batch_size`` is the global batch; rank 0 alone prints and writes.
See :mod:`workbench.training.driver`.

Exit codes: 0 done (or stopped at ``--max-steps`` with a checkpoint), 1 a seed job failed, 2 bad config / data /
checkpoint / launch, 3 training diverged (non-finite loss or gradient norm).
"""

from __future__ import annotations

import argparse
import sys

from workbench.common.constants import VARIANTS  # light: no torch before --reproducible re-launches
from workbench.common.paths import PACKAGE_CHECKOUT

VARIANT_NAMES = ",".join(VARIANTS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workbench.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML config (presets: {NAME: {model, data, training}})")
    p.add_argument("--preset", default="tiny", help="preset name inside the config (default: tiny)")
    p.add_argument("--out", help="run folder (log, checkpoints, final/)")
    p.add_argument("--all", action="store_true", help=f"train every configs/{{{VARIANT_NAMES}}}.yaml")
    p.add_argument("--out-root", default="results/checkpoints", help="with --all: runs go to OUT_ROOT/VARIANT")
    p.add_argument(
        "--configs-dir", default=str(PACKAGE_CHECKOUT / "configs"), help="with --all: where the variant configs are"
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this global step (writes a checkpoint)")
    p.add_argument("--seed", type=int, default=None, help="override training.seed")
    p.add_argument(
        "--seeds",
        default=None,
        help="with --all: comma-separated training seeds; each run goes to OUT_ROOT/VARIANT/seed-S (seed 0: "
        "OUT_ROOT/VARIANT when that holds a seed-0 run) and is evaluated on every test split "
        "(workbench.training.runs.TEST_SPLITS); runs are separate processes, --jobs at a time",
    )
    p.add_argument("--variants", default=None, help=f"with --all: a comma-separated subset of {VARIANT_NAMES}")
    p.add_argument("--jobs", type=int, default=2, help="with --seeds: runs at a time (default 2)")
    p.add_argument("--threads", type=int, default=1, help="with --seeds --no-reproducible: torch threads per run")
    p.add_argument(
        "--reproducible",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one thread, AVX2 code paths of MKL/ATen/oneDNN, deterministic algorithms (default: on for "
        "--seeds, off otherwise)",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from workbench.training.train_command import run_train_command

    return run_train_command(build_parser().parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
