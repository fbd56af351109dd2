"""The body of ``python -m workbench.study`` (:func:`run_study_command`, given the parsed arguments): check the
arguments, make the data (``--synth``), print the cost estimate, run the steps of :mod:`workbench.pipeline.study`
plus the report resumably, then check the report in headless Chromium and print memory, failures and where the
outputs are."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

__all__ = ["run_study_command"]


def _default_out(checkpoint: str) -> Path:
    parts = [x for x in Path(checkpoint).parts if x not in ("final", ".", "/")]
    return Path("results/study") / re.sub(r"[^\w.-]+", "-", "-".join(parts[-2:]) or "model")


def _data(a) -> Path:
    data = Path(a.data)
    if (data / "tasks.jsonl").is_file():
        return data
    if a.synth is None:
        raise FileNotFoundError(
            f"{data / 'tasks.jsonl'} not found: --data needs an audiofolder with task rows. Make "
            f"the synthetic test split there with --synth 120, or: python -m workbench.data.synth "
            f"--out {data} --n 120 --split test --preset tiny"
        )
    from workbench.common.paths import replace_dir
    from workbench.data.synth import generate

    print(f"writing {a.synth} clips of the synthetic test split (tiny preset) into {data}", flush=True)
    tmp = data.with_name(f".{data.name}.tmp-{os.getpid()}")
    generate(tmp, a.synth, seed=0, split="test", preset="tiny", progress=True)
    replace_dir(tmp, data)
    return data


def _peak_bytes(device: str) -> tuple[float, str]:
    import resource

    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return float(torch.cuda.max_memory_allocated()), "GPU memory allocated by PyTorch"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0, "peak resident memory of this process"


def run_study_command(a: argparse.Namespace) -> int:
    """``python -m workbench.study`` with parsed arguments ``a``; its exit code (0 done, 1 a step failed, 2 bad
    input, 130 interrupted)."""
    import torch

    from workbench.analysis.cli import BAD_INPUT, fail
    from workbench.model.cost import estimate_cost, format_cost
    from workbench.pipeline.steps import Pipeline, Step
    from workbench.pipeline.study import QUICK_STUDY, STUDY_SIZES, Study, study_steps

    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    if a.batch_size < 1 or (a.rows is not None and a.rows < 2):
        return fail(f"--batch-size must be >= 1 and --rows >= 2; got {a.batch_size} and {a.rows}")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        return fail(f"--device {a.device}: PyTorch sees no CUDA device here; use --device cpu")
    sizes = QUICK_STUDY if a.quick else STUDY_SIZES
    sizes = replace(sizes, **{k: v for k, v in (("rows", a.rows), ("eval_rows", a.eval_rows)) if v is not None})
    out = Path(a.out) if a.out else _default_out(a.checkpoint)
    try:
        data = _data(a)
        cost = estimate_cost(a.checkpoint, data, a.batch_size, a.dtype)
    except BAD_INPUT as e:
        return fail(str(e))
    print(
        f"pal-workbench study of {a.checkpoint} on {data} -> {out}/ ({a.device}, {a.dtype}, batch {a.batch_size}"
        f"{'; quick smoke run' if a.quick else ''})\n{format_cost(cost)}",
        flush=True,
    )
    if a.device.startswith("cuda"):
        _gpu_fit(cost, a.batch_size)
    study = Study(a.checkpoint, data, out, sizes, device=a.device, dtype=a.dtype, batch_size=a.batch_size)
    t0 = time.time()
    try:
        steps = study_steps(study)
    except BAD_INPUT as e:
        return fail(str(e))
    steps.append(
        Step(
            "report",
            "report",
            lambda: _write_report(study, steps, a.checkpoint),
            always=True,
            outputs=[out / "report.html"],
        )
    )
    pipe = Pipeline(out, fresh=a.fresh, keep_going=True)
    try:
        pipe.run(steps)
    except KeyboardInterrupt:
        return 130
    return _finish(a, out, pipe, cost, t0)


def _finish(a, out: Path, pipe, cost: dict, t0: float) -> int:
    """After the steps: check the report in a browser, print memory, failures and where things are -> exit code."""
    from workbench.reporting.browser_check import print_browser_check

    report = out / "report.html"
    if not a.no_browser_check and report.is_file():
        print_browser_check(report)
    peak, what = _peak_bytes(a.device)
    print(
        f"\nmemory: estimated {cost['total'] / 1e9:.3g} GB (+ the process itself); measured {peak / 1e9:.3g} GB "
        f"({what})"
    )
    if pipe.failed:
        print(
            f"{len(pipe.failed)} step(s) failed (named in the report): "
            + "; ".join(f"{k}: {v[:160]}" for k, v in pipe.failed.items()),
            file=sys.stderr,
        )
    print(f"report: {report}   tables: {out}/*.csv   ({time.time() - t0:.0f} s)")
    return 1 if pipe.failed else 0


def _gpu_fit(cost: dict, batch_size: int) -> None:
    """Print the largest batch size whose estimate fits this GPU's memory; warn when --batch-size is above it."""
    import torch

    from workbench.model.cost import largest_batch

    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    fits = largest_batch(cost, 0.95 * total)
    print(
        f"  this GPU has {total / 1e9:.3g} GB: the estimate fits batch size {fits} or less"
        + (
            ""
            if batch_size <= fits
            else f"; --batch-size {batch_size} may run out of memory (a step that does is "
            "recorded as failed and the others go on)"
        ),
        flush=True,
    )


def _write_report(study, steps, checkpoint: str) -> dict:
    from workbench.common.paths import atomic_write_bytes
    from workbench.pipeline.study_report import build_study_report

    page = build_study_report(study.out, steps, title=f"Study of {checkpoint}")
    atomic_write_bytes(study.out / "report.html", page.encode())
    return {"bytes": len(page)}
