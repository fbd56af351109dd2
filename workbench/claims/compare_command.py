"""The body of ``python -m workbench.compare`` (:func:`run_compare_command`, given the parsed arguments): the
chance levels of the runs' data, the comparison of :func:`workbench.claims.compare.compare`, its two CSVs, the
figure and a summary of the overall accuracies and their paired differences."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from workbench.claims.compare import CompareError, _find_answers, compare, comparison_figure, load_run

__all__ = ["run_compare_command"]


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


def run_compare_command(args: argparse.Namespace) -> None:
    """``python -m workbench.compare`` with parsed arguments ``args``: writes the table and its ``*_diff.csv`` (and
    the figure with ``--html``), prints the overall accuracies; bad input exits with ``error: ...``."""
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
