"""Compare evaluated runs: variants x tasks x attributes with bootstrap 95% CIs and paired differences.

```
python -m workbench.compare RUN_DIR... --out results/compare.csv [--html results/compare.html]
       [--baseline baseline] [--resamples 1000] [--seed 0] [--metrics accuracy,cider_d,rouge_l]
```
The tables, their columns and the bootstrap: :mod:`workbench.claims.compare`; the command's body:
:func:`workbench.claims.compare_command.run_compare_command`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m workbench.compare", description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="evaluated run folders or answers CSVs, optionally NAME=PATH")
    ap.add_argument("--out", default="results/compare.csv", help="table CSV (the paired diffs go to *_diff.csv)")
    ap.add_argument("--html", default=None, help="self-contained plotly HTML figure")
    ap.add_argument("--baseline", default=None, help="variant to compare against (default: the first run)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--metrics", default="cider_d,rouge_l", help="caption metrics to bootstrap (pycocoevalcap)")
    ap.add_argument(
        "--answer-options",
        default=None,
        help="answer_options.json for chance levels (default: from the data named in run.json)",
    )
    return ap


def main(argv: Sequence[str] | None = None) -> None:
    from workbench.claims.compare_command import run_compare_command

    run_compare_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
