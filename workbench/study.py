"""Study one model: the workbench's one-model suite on a trained PAL checkpoint or a released audio-LLM, as one
resumable command, ending in a report read verdict-first.

    python -m workbench.study --checkpoint DIR_OR_HUB_ID --data DIR [--out DIR] [--device cpu|cuda]
        [--dtype float32|bfloat16] [--batch-size 8] [--rows 48] [--quick] [--fresh] [--synth N]

DIR_OR_HUB_ID: a PAL checkpoint (``results/checkpoints/<variant>/final``), a released model's transformers folder
(Qwen2-Audio, Voxtral, Audio Flamingo 3, GLM-ASR) or its hub id. --data: an audiofolder with ``tasks.jsonl``
(``--synth N`` first writes N clips of the synthetic test split there when it has none).

Before it starts it prints what it will cost (parameters, tokens per item, weight and activation memory at
--batch-size; :mod:`workbench.model.cost`). Steps (:mod:`workbench.pipeline.study`, :mod:`workbench.pipeline.retrofit`):
accuracy with the answers, attention to audio, logit lens, attribute lens with critical layers, listening heads,
steering gain, the ablation sweep (audio blocked from layer L on), AtP over heads checked by exact patching, and
the paper's claims 1 and 2 as zero-shot retrofits (PLITS@L, LAL@L; out of distribution, said so). Then
``OUT/report.html`` (:mod:`workbench.pipeline.study_report`), checked in headless Chromium when one is installed.

Every step is resumable (:mod:`workbench.pipeline.steps`): interrupt at any time (Ctrl-C) and run the same command
again to continue. A step that fails is recorded in the report and the others go on; rerunning retries it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workbench.study",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--checkpoint", required=True, help="PAL checkpoint folder, released model folder or hub id")
    p.add_argument("--data", required=True, help="audiofolder with tasks.jsonl (e.g. data/synth-tiny/test)")
    p.add_argument("--out", default=None, help="output folder (default results/study/<checkpoint name>)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rows", type=int, default=None, help="task rows per analysis (default 48; --quick 6)")
    p.add_argument("--eval-rows", type=int, default=None, help="rows answered for the accuracy (default: all)")
    p.add_argument("--quick", action="store_true", help="a smoke run: every step shrunk (numbers not meaningful)")
    p.add_argument("--fresh", action="store_true", help="ignore finished steps and redo everything")
    p.add_argument(
        "--synth",
        type=int,
        default=None,
        metavar="N",
        help="when --data has no tasks.jsonl, first write N clips of the synthetic test split there",
    )
    p.add_argument("--no-browser-check", action="store_true", help="skip opening the report in headless Chromium")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    return p


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


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
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
    report = out / "report.html"
    if not a.no_browser_check and report.is_file():
        _browser_check(report)
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


def _browser_check(report: Path) -> None:
    from workbench.reporting.browser_check import check_report

    try:
        res = check_report(report)
    except Exception as e:  # a missing browser must not fail the study; the report is already written
        print(f"note: headless-Chromium check not run ({type(e).__name__}: {e})")
        return
    errs = res.get("console_errors") or []
    print(
        f"headless Chromium: {res.get('figures_rendered')}/{res.get('figures_expected')} figures rendered, "
        f"{len(errs)} console error(s)" + (f": {errs[:3]}" if errs else "")
    )


if __name__ == "__main__":
    raise SystemExit(main())
