"""Evaluate a checkpoint (PAL or released) on an audiofolder dataset: greedy answers for every task row, then scores.

```
python -m workbench.evaluate --checkpoint DIR --data DIR [--out CSV] [--max-rows N] [--batch-size B]
       [--tasks cls,qa,caption] [--cache-dir DIR] [--max-new-tokens 16] [--no-meteor]
```
What it writes: :mod:`workbench.evaluation.evaluator`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m workbench.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="PAL checkpoint folder (config.json + model.safetensors)")
    ap.add_argument("--data", required=True, help="audiofolder dataset (tasks.jsonl, answer_options.json)")
    ap.add_argument(
        "--out", default=None, help="answers CSV path (scores.csv goes beside it); default CHECKPOINT/eval/answers.csv"
    )
    ap.add_argument("--max-rows", type=int, default=None, help="evaluate only the first N task rows")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--tasks", default=None, help="comma-separated task types (cls,qa,caption); default all")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument(
        "--cache-dir", default=None, help="encoder token cache (default cache/tokens, as in configs/*.yaml)"
    )
    ap.add_argument("--no-meteor", action="store_true", help="skip METEOR (saves the ~10 s JVM start)")
    ap.add_argument(
        "--no-share-prefix",
        action="store_true",
        help="run every row's whole prompt (default: the shared system turn once per batch; same answers)",
    )
    ap.add_argument(
        "--in-order",
        action="store_true",
        help="batch rows in file order (default: short-answer rows batched together; same answers)",
    )
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: Sequence[str] | None = None) -> None:
    from workbench.evaluation.evaluator import run_evaluate_command

    run_evaluate_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
