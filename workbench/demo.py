"""The main job (``./run demo``): from the committed tiny checkpoints to a report on the paper's three claims.

    python -m workbench.demo [--out results/demo] [--retrain] [--full-eval] [--quick] [--fresh]

The steps (each resumable): :mod:`workbench.pipeline.demo`.
"""

from __future__ import annotations

import argparse

from workbench.pipeline.demo import COMMITTED, RETRAINED, Sizes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workbench.demo",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--out", default="results/demo", help="output folder (default results/demo)")
    p.add_argument(
        "--retrain", action="store_true", help=f"retrain every tiny variant into {RETRAINED} first (~70 min)"
    )
    p.add_argument(
        "--checkpoints",
        default=None,
        help=f"folder with <variant>/final checkpoints (default {COMMITTED}; {RETRAINED} with --retrain)",
    )
    p.add_argument(
        "--full-eval",
        action="store_true",
        help="re-answer every test row instead of checking the committed evaluations on a subset",
    )
    p.add_argument(
        "--eval-rows", type=int, default=None, help=f"closed rows re-answered per variant (default {Sizes.eval_rows})"
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: every step shrunk (numbers not meaningful)")
    p.add_argument("--fresh", action="store_true", help="ignore finished steps and redo everything")
    p.add_argument("--no-browser-check", action="store_true", help="skip opening the report in headless Chromium")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    return p


def main(argv: list[str] | None = None) -> int:
    from workbench.pipeline.demo import run_demo_command

    return run_demo_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
