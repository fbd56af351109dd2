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

import os
from dataclasses import dataclass
from pathlib import Path

# the registry of claims, contrasts, variants, analyses and outputs
from workbench.claims.registry import VARIANTS, on_one_variant, registered
from workbench.common.constants import TOKEN_CACHE
from workbench.pipeline.demo_inside import InsideTheModel

COMMITTED = Path("results/checkpoints")
RETRAINED = Path("results/checkpoints-retrained")
TEST_DATA = Path("data/synth-tiny/test")


@dataclass(frozen=True)
class Sizes:
    """How much work each step does (``--quick`` shrinks all of it)."""

    test_clips: int = 120  # the tiny preset's test split (the committed evaluations used all of it)
    eval_rows: int = 48  # closed rows re-answered per variant to check the committed evaluation
    rows: int = 48  # task rows for attention, logit lens and ablations
    probe_suites: tuple[str, ...] = ("category", "word", "pitch", "noise_color")
    probe_clips: int | None = None  # None: every clip of the test split
    probe_layers: tuple[int, ...] = (0, 4, 8, 12, 16, 20, 24, 29)
    probe_kv_layers: tuple[int, ...] = (8, 16, 24)
    probe_bootstrap: int = 300
    pairs: int = 16  # clean/corrupted pairs for patching
    sweep_stride: int = 2  # ablation sweep over every k-th layer
    resamples: int = 1000  # bootstrap resamples of the comparison


QUICK = Sizes(
    eval_rows=4,
    rows=4,
    probe_suites=("category",),
    probe_clips=24,
    probe_layers=(0, 8, 29),
    probe_kv_layers=(8,),
    probe_bootstrap=50,
    pairs=2,
    sweep_stride=10,
    resamples=200,
)


class Demo(InsideTheModel):
    """The demo's state: where things go, which checkpoints, and the models loaded so far (reused by steps)."""

    def __init__(self, out: Path, checkpoints: Path, sizes: Sizes, full_eval: bool, batch_size: int = 8):
        self.out, self.checkpoints, self.sizes, self.full_eval = out, checkpoints, sizes, full_eval
        self.batch_size = batch_size
        self._models: dict = {}
        self._datasets: dict = {}

    # ------------------------------------------------------------------------------------------ helpers
    def checkpoint(self, variant: str) -> Path:
        return self.checkpoints / variant / "final"

    def model(self, variant: str):
        if variant not in self._models:
            from workbench.model.pal import PALModel

            self._models[variant] = PALModel.from_pretrained(self.checkpoint(variant)).eval()
        return self._models[variant]

    def dataset(self, variant: str, n: int | None):
        """The test split for ``variant``'s encoders (built once), or its seeded subset of ``n`` rows (the rows
        ``load_for_analysis(n=n, seed=0)`` picks)."""
        from workbench.analysis.core import load_for_analysis, sample_rows

        if variant not in self._datasets:
            self._datasets[variant] = load_for_analysis(
                data_dir=TEST_DATA, split="test", seed=0, cache_dir=TOKEN_CACHE, model=self.model(variant)
            )[1]
        full = self._datasets[variant]
        return full if n is None else sample_rows(full, n, seed=0)

    def answer_options(self) -> dict:
        from workbench.evaluation.evaluator import load_answer_options

        return load_answer_options(TEST_DATA)

    def write(self, df, fig, name: str) -> dict:
        from workbench.analysis.core import write_outputs

        return {k: str(v) for k, v in write_outputs(df, fig, self.out, name).items()}

    # ------------------------------------------------------------------------------------------ steps
    def make_corpus(self) -> dict:
        from workbench.common.paths import replace_dir
        from workbench.data.synth import generate

        if (TEST_DATA / "tasks.jsonl").exists() and (TEST_DATA / "dataset_info.json").exists():
            return {"generated": False, "path": str(TEST_DATA)}
        tmp = TEST_DATA.with_name(f".{TEST_DATA.name}.tmp-{os.getpid()}")
        generate(tmp, self.sizes.test_clips, seed=0, split="test", preset="tiny", progress=True)
        replace_dir(tmp, TEST_DATA)
        return {"generated": True, "path": str(TEST_DATA)}

    def encode(self) -> dict:
        import json

        from workbench.encoders import encoders_for
        from workbench.encoders.cache import encode_dataset
        from workbench.model.pal_config import PALConfig

        specs = []
        for v in VARIANTS:  # read the checkpoints' configs (no model load): which encoders, with which options
            specs += PALConfig.from_dict(json.loads((self.checkpoint(v) / "config.json").read_text())["pal"]).encoders
        encoders = encoders_for(specs)
        stats = encode_dataset(TEST_DATA, encoders, TOKEN_CACHE, progress=True)
        return {"encoders": [e.name for e in encoders], "stats": stats}

    def evaluate(self, variant: str) -> dict:
        """Fresh answers for a check subset (or every row with --full-eval); which evaluation the comparison uses."""
        from workbench.evaluation.evaluator import evaluate_checkpoint

        committed = self.checkpoints / variant / "eval" / "answers.csv"
        here = self.out / "eval" / variant
        if self.full_eval or not committed.exists():
            answers, _ = evaluate_checkpoint(
                self.checkpoint(variant),
                TEST_DATA,
                here / "answers.csv",
                cache_dir=TOKEN_CACHE,
                meteor=False,
                model=self.model(variant),
            )
            return {"used": str(here / "answers.csv"), "fresh_rows": len(answers), "checked": None}
        import pandas as pd

        fresh, _ = evaluate_checkpoint(
            self.checkpoint(variant),
            TEST_DATA,
            here / "check.csv",
            tasks=["cls", "qa"],
            max_rows=self.sizes.eval_rows,
            cache_dir=TOKEN_CACHE,
            meteor=False,
            model=self.model(variant),
        )
        old = pd.read_csv(committed, dtype={"prediction": str}, keep_default_na=False)
        merged = fresh.merge(old[["row_id", "prediction"]], on="row_id", suffixes=("", "_committed"))
        same = int((merged["prediction"].astype(str).str.strip() == merged["prediction_committed"].str.strip()).sum())
        if len(merged) < len(fresh):
            print(f"      warning: {len(fresh) - len(merged)} re-answered rows are not in {committed}")
        print(f"      {same}/{len(fresh)} re-answered rows identical to the committed evaluation ({committed})")
        return {"used": str(committed), "fresh_rows": len(fresh), "checked": len(merged), "identical": same}

    def compare(self, used: dict[str, str]) -> dict:
        import pandas as pd

        from workbench.claims.compare import compare, comparison_figure
        from workbench.claims.registry import contrast_pairs

        specs = [f"{v}={p}" for v, p in used.items()]
        opts = self.answer_options()
        table, diffs = compare(specs, baseline="baseline", resamples=self.sizes.resamples, answer_options=opts)
        self.write(
            table,
            comparison_figure(
                table, diffs, title="Closed-task accuracy and caption scores per variant (held-out test split)"
            ),
            "compare",
        )
        self.write(diffs, None, "compare_diff")
        contrasts = []
        for _claim, a, b in contrast_pairs():
            _, d = compare(
                [f"{a}={used[a]}", f"{b}={used[b]}"], baseline=b, resamples=self.sizes.resamples, answer_options=opts
            )
            contrasts.append(d[d["variant"] == a])
        contrasts = pd.concat(contrasts, ignore_index=True)
        self.write(contrasts, None, "contrasts")
        acc = table[(table["metric"] == "accuracy") & (table["task"] == "all") & (table["attribute"] == "all")]
        return {r["variant"]: round(float(r["value"]), 4) for r in acc.to_dict("records")}

    def seed_stats(self, used: dict[str, str]) -> dict:
        """Seed-aware contrasts over every training seed and both test splits (seed 0 on the test split: the
        evaluation the comparison used), and the injection-layer curve when its runs exist."""
        from workbench.claims.seeds import write_seed_stats
        from workbench.training.runs import SWEEP_ROOT

        return write_seed_stats(
            self.checkpoints,
            self.out,
            list(VARIANTS),
            {(v, 0, "test"): p for v, p in used.items()},
            resamples=self.sizes.resamples,
            sweeps=SWEEP_ROOT,
        )

    def report(self) -> dict:
        from workbench.claims.verdict import write_verdicts
        from workbench.common.paths import atomic_write_bytes
        from workbench.reporting.report import REPORT_NAME, build_report

        verdicts, _ = write_verdicts(self.out)
        page = build_report(self.out, title="pal-workbench demo: the three claims of PAL on the tiny checkpoints")
        atomic_write_bytes(self.out / REPORT_NAME, page.encode())
        return {r["claim"]: r["verdict"] for r in verdicts.to_dict("records")}


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
