"""The main job (``./run demo``): from the committed tiny checkpoints to a report on the paper's three claims.

    python -m workbench.demo [--out results/demo] [--retrain] [--full-eval] [--quick] [--fresh]

The steps (each resumable): :mod:`workbench.pipeline.demo`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from workbench.claims.registry import VARIANTS
from workbench.pipeline.demo import COMMITTED, QUICK, RETRAINED, Demo, Sizes, build_steps


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


def _browser_check(report: Path) -> None:
    from workbench.reporting.browser_check import check_report

    try:
        res = check_report(report)
    except Exception as e:  # a missing browser must not fail the demo; the report is already written
        print(f"      note: headless-Chromium check not run ({type(e).__name__}: {e})")
        return
    errs = res.get("console_errors") or []
    print(
        f"      headless Chromium: {res.get('figures_rendered')}/{res.get('figures_expected')} figures rendered, "
        f"{len(errs)} console error(s)" + (f": {errs[:3]}" if errs else "")
    )


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    sizes = QUICK if a.quick else Sizes()
    if a.eval_rows is not None:
        if a.eval_rows < 1:
            print(f"error: --eval-rows must be >= 1, got {a.eval_rows}", file=sys.stderr)
            return 2
        sizes = replace(sizes, eval_rows=a.eval_rows)
    checkpoints = Path(a.checkpoints) if a.checkpoints else (RETRAINED if a.retrain else COMMITTED)
    if not a.retrain:
        missing = [v for v in VARIANTS if not (checkpoints / v / "final" / "config.json").exists()]
        if missing:
            print(
                f"error: no checkpoint for {missing} under {checkpoints} (expected <variant>/final/config.json). "
                f"Use the committed ones (results/checkpoints, from git), or retrain: ./run demo --retrain",
                file=sys.stderr,
            )
            return 2
    out = Path(a.out)
    demo = Demo(out, checkpoints, sizes, full_eval=a.full_eval or a.retrain)
    from workbench.pipeline.steps import Pipeline, StepFailed

    t0 = time.time()
    print(
        f"pal-workbench demo -> {out}/ (checkpoints: {checkpoints}{'; quick smoke run' if a.quick else ''}; "
        f"{torch.get_num_threads()} CPU threads)",
        flush=True,
    )
    try:
        Pipeline(out, fresh=a.fresh).run(build_steps(demo, a.retrain))
    except StepFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    report = out / "report.html"
    if not a.no_browser_check:
        _browser_check(report)
    from workbench.claims.verdict import claim_verdicts, format_verdicts

    print("\n" + format_verdicts(claim_verdicts(out)))
    print(f"\nreport: {report}   tables: {out}/*.csv   ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
