"""The demo job's state and actions: where it reads and writes (:data:`COMMITTED`, :data:`RETRAINED`,
:data:`TEST_DATA`), how big each step is (:class:`Sizes`, :data:`QUICK`), and :class:`Demo`, what the steps of
:mod:`workbench.pipeline.demo` call: load a checkpoint, make and encode the test split, evaluate, compare, seed
statistics, report (the analyses come from :class:`~workbench.pipeline.demo_inside.InsideTheModel`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from workbench.claims.registry import VARIANTS
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
