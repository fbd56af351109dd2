"""Compare evaluated runs: variants x tasks x attributes with bootstrap 95% CIs and paired differences.

```
python -m workbench.compare RUN_DIR... --out results/compare.csv [--html results/compare.html]
       [--baseline baseline] [--resamples 1000] [--seed 0] [--metrics accuracy,cider_d,rouge_l]
```
The tables, their columns and the bootstrap: :mod:`workbench.claims.compare`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from workbench.claims.compare import CompareError, _find_answers, compare, comparison_figure, load_run


def _options_for(specs: Sequence[str]) -> dict | None:
    """answer_options.json of the data named in the first run's run.json (for chance levels), if any."""
    for s in specs:
        s = str(s).split("=", 1)[-1] if "=" in str(s) and not Path(str(s)).exists() else str(s)
        try:
            csv = _find_answers(Path(s))
        except CompareError:
            return None
        info = csv.parent / "run.json"
        if info.is_file():
            data = json.loads(info.read_text()).get("data")
            p = Path(data) / "answer_options.json" if data else None
            if p is not None and p.is_file():
                return json.loads(p.read_text())
    return None


def main(argv: Sequence[str] | None = None) -> None:
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
    args = ap.parse_args(argv)
    try:
        opts = json.loads(Path(args.answer_options).read_text()) if args.answer_options else _options_for(args.runs)
        baseline = args.baseline
        if baseline is None:
            baseline = load_run(args.runs[0])[0] if len(args.runs) > 1 else None
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
        table, diffs = compare(
            args.runs,
            baseline=baseline,
            resamples=args.resamples,
            seed=args.seed,
            caption_metrics=metrics,
            answer_options=opts,
        )
    except CompareError as e:
        raise SystemExit(f"error: {e}") from None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    diff_path = out.with_name(out.stem + "_diff.csv")
    diffs.to_csv(diff_path, index=False)
    print(f"{len(table)} cells -> {out}; {len(diffs)} paired differences -> {diff_path}")
    if args.html:
        html = Path(args.html)
        html.parent.mkdir(parents=True, exist_ok=True)
        comparison_figure(table, diffs).write_html(html, include_plotlyjs=True)
        print(f"figure -> {html}")
    overall = table[(table["metric"] == "accuracy") & (table["task"] == "all")]
    for _, r in overall.iterrows():
        print(f"  {r['variant']:<20} accuracy {r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
    for _, r in diffs[(diffs["metric"] == "accuracy") & (diffs["task"] == "all")].iterrows():
        print(
            f"  {r['variant']} - {r['baseline']}: {r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
            f" p={r['p_value']:.3g}"
        )


if __name__ == "__main__":
    main()
