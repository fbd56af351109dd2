"""The steps of ``python -m workbench.study``: the one-model suite on a trained PAL checkpoint or a released
audio-LLM (a transformers folder or hub id), each a resumable `workbench.pipeline.steps.Step` writing its CSV + figure
into the study folder.

    study = Study("results/checkpoints/pal/final", "data/synth-tiny/test", Path("results/study-pal"), STUDY_SIZES)
    Pipeline(study.out, keep_going=True).run(study_steps(study))

Rows. Every analysis reads the same seeded subset of ``sizes.rows`` task rows of ``--data`` (`sample_rows`).
Listening scores and steering directions need rows to choose on and rows to measure on: the dataset's clips are
split in two seeded halves (`split_by_clip`), scores / alpha chosen on one half, effects measured on the other.

Steps (the analyses are the library functions behind the ``--checkpoint`` CLIs):
``accuracy`` (`workbench.evaluation.evaluator.evaluate_checkpoint`: greedy answers, shown in the report), ``attention``
(`analysis.attention`), ``logit-lens``, ``attribute-lens`` (critical layers), ``listening`` (listening heads,
top-k vs random heads mean-ablated) and ``steering`` (audio-minus-silence along the residual and along the top
listening heads: the gain on the measuring half), ``ablation-sweep`` (audio blocked from layer L on), ``atp-heads``
(AtP over every head, the top ones checked by exact patching), then the retrofits of `workbench.pipeline.retrofit`.
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.pipeline.study_sizes import QUICK_STUDY as QUICK_STUDY
from workbench.pipeline.study_sizes import STUDY_SIZES as STUDY_SIZES
from workbench.pipeline.study_sizes import StudySizes as StudySizes

__all__ = ["StudySizes", "STUDY_SIZES", "QUICK_STUDY", "Study", "split_by_clip", "study_steps"]


def split_by_clip(dataset, seed: int = 0):
    """(choose, measure): two shallow copies of ``dataset`` whose rows come from disjoint seeded halves of its
    clips (``file_name``), so a choice made on one half is measured on clips it never saw."""
    import copy

    clips = sorted({str(r.get("file_name")) for r in dataset.rows})
    if len(clips) < 2:
        raise ValueError(
            f"need rows from at least 2 clips to choose on one half and measure on the other; got {len(clips)}"
        )
    rng = np.random.default_rng(seed)
    first = set(rng.permutation(clips)[: len(clips) // 2].tolist())
    a, b = copy.copy(dataset), copy.copy(dataset)
    a.rows = [r for r in dataset.rows if str(r.get("file_name")) in first]
    b.rows = [r for r in dataset.rows if str(r.get("file_name")) not in first]
    return a, b


class Study:
    """Where things go, which model, and the one model loaded so far (a retrofit replaces it)."""

    def __init__(
        self,
        source: str,
        data: Path,
        out: Path,
        sizes: StudySizes,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 8,
    ):
        self.source, self.data, self.out, self.sizes = str(source), Path(data), Path(out), sizes
        self.device, self.dtype, self.batch_size = device, dtype, batch_size
        self._model, self._model_key, self._dataset, self._full = None, None, None, None

    # ------------------------------------------------------------------------------------------ helpers
    def model(self, integration: dict | None = None):
        """The model as trained / released (None) or retrofitted to ``{"mode", "layer"}``; one held at a time."""
        from workbench.pipeline.retrofit import load_model, trained_integration

        key = None if integration is None else (integration["mode"], int(integration["layer"]))
        if key is not None and key == trained_integration(self.source):
            key, integration = None, None  # that retrofit is the model as trained / released: reuse it
        if self._model is None or self._model_key != key:
            import torch

            self._model, self._dataset, self._full = None, None, None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self._model = load_model(self.source, integration, device=self.device, dtype=self.dtype)
            self._model_key = key
        return self._model

    def dataset(self, integration: dict | None = None):
        """The seeded ``sizes.rows`` task rows of ``--data`` for that model (built once per model)."""
        from workbench.analysis.inputs import load_for_analysis

        model = self.model(integration)
        if self._dataset is None:
            self._dataset = load_for_analysis(data_dir=self.data, n=self.sizes.rows, seed=0, preset=None, model=model)[
                1
            ]
        return self._dataset

    def full_dataset(self):
        """Every task row of ``--data`` for the model as trained / released (pairs for patching are searched here)."""
        from workbench.analysis.inputs import load_for_analysis

        if self._full is None:
            self._full = load_for_analysis(data_dir=self.data, preset=None, model=self.model())[1]
        return self._full

    def answer_options(self) -> dict:
        from workbench.evaluation.evaluator import load_answer_options

        return load_answer_options(self.data)

    def write(self, df, fig, name: str) -> dict:
        from workbench.analysis.core import write_outputs

        return {k: str(v) for k, v in write_outputs(df, fig, self.out, name, png=False).items()}

    # ------------------------------------------------------------------------------------------ steps
    def accuracy(self) -> dict:
        """Greedy answers to ``eval_rows`` rows (every row: None), scored; the answers are kept for the report."""
        from workbench.evaluation.evaluator import evaluate_checkpoint
        from workbench.stats.bootstrap import bootstrap_ci

        answers, scores = evaluate_checkpoint(
            self.source,
            self.data,
            self.out / "answers.csv",
            max_rows=self.sizes.eval_rows,
            batch_size=self.batch_size,
            max_new_tokens=self.sizes.max_new_tokens,
            meteor=False,
            progress=True,
            model=self.model(),
        )
        self.write(scores, None, "scores")
        closed = answers[answers["closed"].astype(bool)]
        correct = closed["correct"].astype(float).to_numpy()
        lo, hi = bootstrap_ci(correct, self.sizes.resamples) if len(correct) > 1 else (float("nan"),) * 2
        return {
            "accuracy": round(float(correct.mean()), 4) if len(correct) else None,
            "ci": [lo, hi],
            "closed_rows": int(len(closed)),
            "rows": int(len(answers)),
        }

    def attention(self) -> dict:
        from workbench.analysis.attention import attention_to_audio, fig_heatmap, fig_layers
        from workbench.analysis.core import batches

        df = attention_to_audio(self.model(), batches(self.dataset(), self.batch_size), query_set="last_prompt")
        self.write(
            df,
            fig_layers(
                df,
                title="Attention mass of the last prompt token on the audio keys per layer (dashed: uniform attention)",
            ),
            "study_attention",
        )
        self.write(
            None,
            fig_heatmap(df, title="Attention to audio per layer and head, relative to uniform attention"),
            "study_attention_heads",
        )
        per = df.groupby("layer")[["mass", "uniform_mass"]].mean()
        return {
            "peak_layer": int(per["mass"].idxmax()),
            "peak_mass": round(float(per["mass"].max()), 4),
            "uniform_at_peak": round(float(per["uniform_mass"].loc[per["mass"].idxmax()]), 4),
        }

    def logit_lens(self) -> dict:
        from workbench.analysis import logit_lens as LL
        from workbench.analysis.core import batches

        df = LL.logit_lens(self.model(), batches(self.dataset(), self.batch_size))
        summary = LL.summarize(df)
        self.write(
            summary,
            LL.fig_logit_lens(df, title="Logit lens on the first answer token, with audio and with audio blocked"),
            "study_logit_lens",
        )
        last = summary[summary["layer"] == summary["layer"].max()].set_index("condition")["prob"]
        return {k: round(float(v), 4) for k, v in last.items()}

    def attribute_lens(self) -> dict:
        from workbench.analysis.attribute_lens import attribute_lens, attribute_lens_figure, summarize_lens

        df = attribute_lens(self.model(), self.dataset(), self.answer_options(), batch_size=self.batch_size)
        summary = summarize_lens(df)
        self.write(
            summary,
            attribute_lens_figure(df, "Attribute lens: the right option among the options, per layer"),
            "study_attribute_lens",
        )
        last = summary[
            (summary["position"] == "last_prompt") & (summary["split"] == "all") & (summary["condition"] == "audio")
        ].sort_values("layer")
        crit = last["critical_median"].dropna()
        return {
            "critical_median": float(crit.iloc[0]) if len(crit) else None,
            "resolved": round(float(last["resolved"].iloc[0]), 4) if len(last) else None,
            "final_accuracy": round(float(last["accuracy"].iloc[-1]), 4) if len(last) else None,
        }

    def listening(self) -> dict:
        from workbench.analysis.listening import (
            listening_ablation,
            listening_ablation_figure,
            listening_figure,
            listening_scores,
        )

        s = self.sizes
        choose, measure = split_by_clip(self.dataset())
        scores = listening_scores(self.model(), choose, batch_size=self.batch_size)
        self.write(
            scores,
            listening_figure(
                scores, "Listening heads: audio vs silence of the same length (rows of one half of the clips)"
            ),
            "study_listening_heads",
        )
        table = listening_ablation(
            self.model(),
            measure,
            scores,
            s.k,
            draws=s.draws,
            answer_options=self.answer_options(),
            batch_size=self.batch_size,
            resamples=s.resamples,
        )
        self.write(table, listening_ablation_figure(table), "study_listening_ablation")
        lp = table[table["metric"] == "answer_logprob"].set_index("condition")
        return {
            "top": [f"L{r.layer}H{r.head}" for r in scores.head(s.k).itertuples()],
            "delta_top": round(float(lp.loc["top-k", "delta"]), 4),
            "delta_random": round(float(lp.loc["random", "delta"]), 4),
        }

    def steering(self) -> dict:
        from workbench.analysis.listening import top_heads
        from workbench.analysis.steering import steer, steering_figure

        scores = pd.read_csv(self.out / "study_listening_heads.csv")
        heads = top_heads(scores, self.sizes.k)
        choose, measure = split_by_clip(self.dataset())
        table = steer(
            self.model(),
            choose,
            measure,
            self.answer_options(),
            alphas=self.sizes.alphas,
            modes=("resid", "heads"),
            heads=heads,
            batch_size=self.batch_size,
            resamples=self.sizes.resamples,
        )
        self.write(
            table,
            steering_figure(
                table, "Audio-minus-silence steering: alpha chosen on one half of the clips, gain measured on the other"
            ),
            "study_steering",
        )
        gain = table[(table["split"] == "gain") & (table["metric"] == "accuracy")]
        return {
            str(r["mode"]): {
                "alpha": float(r["alpha"]),
                "gain": round(float(r["gain"]), 4),
                "ci": [round(float(r["ci_low"]), 4), round(float(r["ci_high"]), 4)],
            }
            for r in gain.to_dict("records")
        }

    def ablation_sweep(self) -> dict:
        from workbench.analysis.ablation import ablation_sweep, sweep_figure

        model = self.model()
        first = min(layer for _, layer in model.integration.values())
        n = model.cfg.n_layers
        layers = sorted({int(x) for x in np.linspace(first, n - 1, min(self.sizes.sweep_points, n - first))})
        table = ablation_sweep(
            model,
            self.dataset(),
            "block",
            span="from",
            layers=layers,
            batch_size=self.batch_size,
            accuracy=False,
            progress=True,
        )
        self.write(
            table,
            sweep_figure(table, title="Audio keys blocked from layer L to the last layer"),
            "study_ablation_sweep",
        )
        lp = table[(table["task"] == "all") & (table["attribute"] == "all") & (table["metric"] == "answer_logprob")]
        return {int(r["layer_start"]): round(float(r["delta"]), 4) for r in lp.to_dict("records")}

    def atp_heads(self) -> dict:
        """AtP (with the QK fix) over every head's output; the layers of the top-k heads by |AtP| are patched
        exactly on the same pairs, and the estimate is compared with the exact effect on those heads."""
        from workbench.analysis.atp import atp_dataset, atp_figure, summarize_atp
        from workbench.analysis.patching import make_pairs, patch_dataset

        model, ds = self.model(), self.full_dataset()
        pairs = make_pairs(ds, None, self.sizes.pairs, seed=0, answer_options=self.answer_options())
        est = atp_dataset(model, ds, pairs, ["head_out"], batch_size=self.batch_size, progress=True)
        summary = summarize_atp(est)
        top = summary.assign(size=summary["atp_qk"].abs()).nlargest(self.sizes.k, "size")
        layers = sorted({int(x) for x in top["layer"]})
        exact = patch_dataset(model, ds, pairs, ["head_out"], layers=layers, batch_size=self.batch_size, progress=True)
        summary = summarize_atp(est, exact)
        summary["top_by_atp"] = summary.set_index(["layer", "head"]).index.isin(top.set_index(["layer", "head"]).index)
        self.write(
            summary,
            atp_figure(
                summary.dropna(subset=["exact"]),
                f"AtP over heads vs exact patching of the layers of the top {len(top)} heads ({len(pairs)} pairs)",
            ),
            "study_atp_heads",
        )
        checked = summary[summary["top_by_atp"]]
        same_sign = float((np.sign(checked["atp_qk"]) == np.sign(checked["exact"])).mean()) if len(checked) else None
        return {
            "pairs": int(len(pairs)),
            "top": [f"L{int(r.layer)}H{int(r.head)}" for r in checked.itertuples()],
            "same_sign": same_sign,
            "exact_of_top": [round(float(x), 4) for x in checked["exact"]],
        }


def study_steps(study: Study) -> list:
    """The `Step` list of the suite, ending with the retrofits and the report (always re-run)."""
    from workbench.pipeline.retrofit import retrofit_steps
    from workbench.pipeline.steps import Step

    out, s = study.out, study.sizes
    p = {"source": study.source, "data": str(study.data), "sizes": repr(s), "dtype": study.dtype}

    def step(name, title, run, outputs, deps=()):
        return Step(name, title, run, params=p, outputs=[out / o for o in outputs], deps=deps)

    steps = [
        step("accuracy", "greedy answers and accuracy (answers shown in the report)", study.accuracy, ["answers.csv"]),
        step("attention", "attention of the last prompt token to the audio", study.attention, ["study_attention.csv"]),
        step("logit-lens", "logit lens with and without audio", study.logit_lens, ["study_logit_lens.csv"]),
        step(
            "attribute-lens", "attribute lens and critical layers", study.attribute_lens, ["study_attribute_lens.csv"]
        ),
        step(
            "listening",
            "listening heads; top-k vs random heads mean-ablated",
            study.listening,
            ["study_listening_heads.csv", "study_listening_ablation.csv"],
        ),
        step(
            "steering",
            "audio-minus-silence steering (residual and top listening heads)",
            study.steering,
            ["study_steering.csv"],
            deps=["listening"],
        ),
        step(
            "ablation-sweep",
            "ablation sweep: audio blocked from layer L on",
            study.ablation_sweep,
            ["study_ablation_sweep.csv"],
        ),
        step(
            "atp-heads",
            f"AtP over heads, top {s.k} checked by exact patching",
            study.atp_heads,
            ["study_atp_heads.csv"],
        ),
    ]
    steps += retrofit_steps(study, p)
    return steps
