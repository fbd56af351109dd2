"""The main job (``./run demo``): from the committed tiny checkpoints to a report on the paper's three claims.

    python -m workbench.demo [--out results/demo] [--retrain] [--full-eval] [--quick] [--fresh]

Steps (each resumable: a finished step is reused when the command runs again, see :mod:`workbench.pipeline.steps`):

1. generate the held-out synthetic test split (tiny preset, 120 clips) unless it is there;
2. encode it once with every encoder the variants use (token cache ``cache/tokens``);
3. per variant (baseline, delayed, lal, ensemble, pal, hybrid): re-answer the first ``--eval-rows`` closed
   test rows with the checkpoint and check them against the checkpoint's committed evaluation of the whole
   test split, which the comparison then uses (``--full-eval``: re-answer every row instead);
4. compare the variants (bootstrap CIs) and the claim contrasts (paired differences);
5. attention to audio (pal, baseline), logit lens (pal);
6. ablations: audio blocked in the early vs late layers of the baseline (claim 1), FFN skipped at the audio
   positions of the delayed PLITS model (claim 2), one encoder blocked at a time in pal (claim 3), a layer
   sweep on pal;
7. linear probes (category, spoken word, pitch) on pal, with control tasks;
8. activation patching of pal's audio K/V; attribute lens, listening heads, steering, AtP (`demo_analyses`);
9. ``results/demo/report.html`` with every figure, and ``verdict.csv``: a three-line verdict per claim.

``--retrain`` first retrains every tiny variant into ``results/checkpoints-retrained`` (about 70 min on
2 cores, resumable) and evaluates the new checkpoints on the whole test split. ``--quick`` shrinks every
step (a smoke run, minutes; its numbers are not meaningful). Interrupt at any time (Ctrl-C): every output
is written atomically and the next run continues with the step that was interrupted.
"""

from __future__ import annotations

from pathlib import Path

# the registry of claims, contrasts, variants, analyses and outputs
from workbench.claims.registry import VARIANTS, on_one_variant, registered
from workbench.common.constants import TOKEN_CACHE
from workbench.pipeline.demo_job import COMMITTED as COMMITTED
from workbench.pipeline.demo_job import QUICK as QUICK
from workbench.pipeline.demo_job import RETRAINED as RETRAINED
from workbench.pipeline.demo_job import TEST_DATA as TEST_DATA
from workbench.pipeline.demo_job import Demo as Demo
from workbench.pipeline.demo_job import Sizes as Sizes


def retrain_steps(root: Path):
    from workbench.pipeline.steps import Step

    def train(variant):
        def run():
            from workbench.training.driver import run_one

            out = root / variant
            run_one(f"configs/{variant}.yaml", "tiny", out, resume=(out / "checkpoints").exists())
            return {"checkpoint": str(out / "final")}

        return Step(
            f"train-{variant}",
            f"retrain {variant} (tiny preset)",
            run,
            params={"variant": variant},
            outputs=[root / variant / "final" / "config.json"],
        )

    return [train(v) for v in VARIANTS]


def _eval_steps(demo: Demo, trained: list[str]) -> list:
    """The test corpus, its token cache, and one evaluation step per variant (after any retraining steps)."""
    from workbench.pipeline.steps import Step

    s = demo.sizes
    ck = str(demo.checkpoints)
    steps = [
        Step(
            "corpus",
            f"synthetic test split ({s.test_clips} clips, tiny preset) in {TEST_DATA}",
            demo.make_corpus,
            params={"clips": s.test_clips},
            outputs=[TEST_DATA / "tasks.jsonl"],
        ),
        Step(
            "encode",
            f"encode the test split once (token cache {TOKEN_CACHE})",
            demo.encode,
            deps=["corpus"],
            params={"checkpoints": ck},
        ),
    ]
    for v in VARIANTS:
        what = (
            "answer every test row"
            if demo.full_eval
            else f"re-answer {s.eval_rows} closed rows, check the committed evaluation"
        )
        steps.append(
            Step(
                f"eval-{v}",
                f"evaluate {v}: {what}",
                (lambda v=v: demo.evaluate(v)),
                params={"rows": s.eval_rows, "full": demo.full_eval, "checkpoints": ck},
                deps=["encode"] + trained,
            )
        )
    return steps


def _comparison_steps(demo: Demo, evals: list[str]) -> list:
    """The variants compared (paired contrasts) and the seed-aware statistics, from the evaluations used."""
    from workbench.claims.seeds import answers_fingerprint
    from workbench.pipeline.steps import Step
    from workbench.training.runs import SWEEP_ROOT

    s = demo.sizes
    out = demo.out

    def used() -> dict[str, str]:  # the evaluation of each variant the comparison uses (the eval steps' markers)
        from workbench.pipeline.steps import Pipeline

        return {v: Pipeline(out).read_marker(f"eval-{v}")["summary"]["used"] for v in VARIANTS}

    return [
        Step(
            "compare",
            "compare the variants, paired contrasts per claim (bootstrap 95% CIs)",
            lambda: demo.compare(used()),
            params={"resamples": s.resamples},
            deps=evals,
            outputs=[out / "compare.csv", out / "contrasts.csv"],
        ),
        Step(
            "seed-stats",
            "seed-aware contrasts over training seeds and both test splits; injection-layer curve",
            lambda: demo.seed_stats(used()),
            deps=evals,
            outputs=[out / "seed_accuracy.csv", out / "seed_contrasts.csv"],
            params={"resamples": s.resamples, "runs": answers_fingerprint(demo.checkpoints, SWEEP_ROOT)},
        ),
    ]


def build_steps(demo: Demo, retrain: bool) -> list:
    """Every step of the demo, in order (the pipeline runs them by their deps); the report comes last."""
    from workbench.pipeline.demo_analyses import (
        analysis_steps,  # attribute lens, listening heads, steering, AtP (cheap)
    )
    from workbench.pipeline.steps import Step

    steps = retrain_steps(demo.checkpoints) if retrain else []
    trained = [st.name for st in steps]
    steps += _eval_steps(demo, trained)
    evals = [f"eval-{v}" for v in VARIANTS]
    steps += _comparison_steps(demo, evals)
    steps += inside_steps(demo)
    steps += analysis_steps(demo)
    analyses = [st.name for st in steps if st.name not in ("corpus", "encode", *trained, *evals)]
    # the report always re-runs (a few seconds): it reads whatever the other steps left in the folder
    steps.append(
        Step(
            "report",
            "report and verdicts",
            demo.report,
            deps=analyses,
            always=True,
            outputs=[demo.out / "report.html", demo.out / "verdict.csv"],
        )
    )
    return steps


def inside_steps(demo: Demo) -> list:
    """The inside-the-model steps of the registry's analyses that run on one variant (workbench.claims.registry):
    attention, logit lens, each claim's ablation, the ablation sweep, probes and patching, with their outputs."""
    from workbench.pipeline.steps import Step

    s, out = demo.sizes, demo.out
    common = {"rows": s.rows, "checkpoints": str(demo.checkpoints)}
    steps = []

    def step(name, title, run, an, params=common, csv=None):
        steps.append(Step(name, title, run, params=params, deps=["encode"], outputs=[out / f"{csv or an.stem}.csv"]))

    for an in on_one_variant("attention"):
        step(f"attention-{an.variant}", f"attention to audio: {an.variant}", lambda an=an: demo.attention(an), an)
    for an in on_one_variant("logit_lens"):
        step(f"logit-lens-{an.variant}", f"logit lens: {an.variant}", lambda an=an: demo.logit_lens(an), an)
    for an in on_one_variant("ablation"):
        claim, _ = registered(an.variant, "ablation")
        step(
            f"ablate-{an.variant}",
            f"{claim.title.split(',')[0].lower()} inside: {an.title}",
            lambda an=an: demo.ablations(an.variant),
            an,
        )
    for an in on_one_variant("ablation_sweep"):
        step(
            "ablate-sweep",
            f"ablation sweep over layers (every {s.sweep_stride} from the audio's entry): {an.variant}",
            lambda an=an: demo.ablation_sweep(an),
            an,
            {**common, "stride": s.sweep_stride, "from": "entry"},
        )
    for an in on_one_variant("probe"):
        for suite in s.probe_suites:
            step(
                f"probe-{suite}",
                f"linear probes ({suite}) on {an.variant}, with a control task",
                lambda an=an, suite=suite: demo.probes(an, suite),
                an,
                {
                    "clips": s.probe_clips,
                    "layers": s.probe_layers,
                    "kv": s.probe_kv_layers,
                    "bootstrap": s.probe_bootstrap,
                    "checkpoints": common["checkpoints"],
                },
                csv=f"probe_{suite}",
            )
    for an in on_one_variant("patching"):
        step(
            "patching",
            f"activation patching of {an.variant}'s audio K/V ({s.pairs} pairs)",
            lambda an=an: demo.patching(an),
            an,
            {"pairs": s.pairs, "checkpoints": common["checkpoints"]},
        )
    return steps


def _demo_inputs(a) -> tuple[Sizes, Path] | int:
    """(sizes, checkpoints folder) of the demo command's arguments ``a``, or the exit code 2 after the error."""
    import sys
    from dataclasses import replace

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
    return sizes, checkpoints


def run_demo_command(a) -> int:
    """``python -m workbench.demo`` with parsed arguments ``a``: every step resumably, then the browser check of
    the report and the verdicts; its exit code (0 done, 1 a step failed, 2 bad input, 130 interrupted)."""
    import os
    import sys
    import time

    import torch

    from workbench.pipeline.steps import Pipeline, StepFailed

    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    inputs = _demo_inputs(a)
    if isinstance(inputs, int):
        return inputs
    sizes, checkpoints = inputs
    out = Path(a.out)
    demo = Demo(out, checkpoints, sizes, full_eval=a.full_eval or a.retrain)
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
        from workbench.reporting.browser_check import print_browser_check

        print_browser_check(report, indent="      ")
    from workbench.claims.verdict import claim_verdicts, format_verdicts

    print("\n" + format_verdicts(claim_verdicts(out)))
    print(f"\nreport: {report}   tables: {out}/*.csv   ({time.time() - t0:.0f} s)")
    return 0
