"""The demo's inside-the-model steps (a mixin of :class:`workbench.demo.Demo`): attention to audio, the logit
lens, the per-claim ablations named in the claims registry, the ablation sweep, linear probes and patching.

Each method runs one analysis on the committed checkpoints with the demo's sizes (``self.sizes``), writes its CSV
+ figure into the demo folder (``self.write``) and returns a small dict for the step's marker and log line.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from workbench.claims.registry import Analysis, registered

PROBE_DIR = Path("probes")


class InsideTheModel:
    """Needs ``model(variant)``, ``dataset(variant, n)``, ``write(df, fig, name)``, ``answer_options()``,
    ``sizes``, ``batch_size`` and ``out`` from the class it is mixed into."""

    def attention(self, analysis: Analysis) -> dict:
        from workbench.analysis.attention import attention_to_audio, fig_heatmap, fig_layers
        from workbench.analysis.core import batches

        variant = analysis.variant
        model, ds = self.model(variant), self.dataset(variant, self.sizes.rows)
        df = attention_to_audio(model, batches(ds, self.batch_size), query_set="last_prompt")
        self.write(
            df,
            fig_layers(
                df,
                title=f"{variant}: attention mass of the last prompt token on audio keys per "
                f"layer (dashed: uniform attention)",
            ),
            analysis.stem,
        )
        self.write(
            None,
            fig_heatmap(df, title=f"{variant}: attention to audio per layer and head, relative to uniform attention"),
            f"{analysis.stem}_heads",
        )
        per = df.groupby("layer")["mass"].mean()
        return {"peak_layer": int(per.idxmax()), "peak_mass": round(float(per.max()), 4)}

    def logit_lens(self, analysis: Analysis) -> dict:
        from workbench.analysis import logit_lens as LL
        from workbench.analysis.core import batches

        variant = analysis.variant
        model, ds = self.model(variant), self.dataset(variant, self.sizes.rows)
        df = LL.logit_lens(model, batches(ds, self.batch_size))
        summary = LL.summarize(df)
        self.write(
            summary,
            LL.fig_logit_lens(
                df, title=f"{variant}: logit lens on the first answer token, with audio and with audio blocked"
            ),
            analysis.stem,
        )
        last = summary[summary["layer"] == summary["layer"].max()].set_index("condition")["prob"]
        return {k: round(float(v), 4) for k, v in last.items()}

    def _ablate_conditions(
        self, variant: str, conditions: list[tuple[str, list[int], str, str | None]], name: str, title: str
    ) -> dict:
        """Ablate ``variant`` under each (label, layers, mode, encoder) with one shared unablated run."""
        import pandas as pd

        from workbench.analysis.ablation import ablate, conditions_figure, item_metrics

        model, ds = self.model(variant), self.dataset(variant, self.sizes.rows)
        kw = dict(batch_size=self.batch_size, accuracy=True, max_new_tokens=8, answer_options=self.answer_options())
        base = item_metrics(model, ds, None, **kw)
        tables = []
        for label, layers, mode, enc in conditions:
            t, _ = ablate(model, ds, layers, mode, enc, base=base, **kw)
            tables.append(t.assign(condition=label))
        table = pd.concat(tables, ignore_index=True)
        self.write(table, conditions_figure(table, title=title), name)
        allrows = table[(table["task"] == "all") & (table["attribute"] == "all")]
        return {f"{r['condition']}:{r['metric']}": round(float(r["delta"]), 4) for r in allrows.to_dict("records")}

    def ablations(self, variant: str) -> dict:
        """The registered ablation analysis on ``variant`` (workbench.claims.registry: its conditions, output stem
        and figure title)."""
        _, analysis = registered(variant, "ablation")
        model = self.model(variant)
        return self._ablate_conditions(
            variant, analysis.conditions(model.cfg.n_layers, model.encoder_names), analysis.stem, analysis.plot_title
        )

    def ablation_sweep(self, analysis: Analysis) -> dict:
        from workbench.analysis.ablation import ablation_sweep, sweep_figure

        variant = analysis.variant
        model, ds = self.model(variant), self.dataset(variant, self.sizes.rows)
        # from the first layer where audio enters (blocking before it is the same as blocking from it)
        first = min(layer for _, layer in model.integration.values())
        layers = list(range(first, model.cfg.n_layers, self.sizes.sweep_stride))
        table = ablation_sweep(
            model, ds, "block", span="from", layers=layers, batch_size=self.batch_size, accuracy=False, progress=True
        )
        self.write(
            table,
            sweep_figure(table, title=f"{variant}: audio keys blocked from layer l to the last layer"),
            analysis.stem,
        )
        lp = table[(table["task"] == "all") & (table["attribute"] == "all") & (table["metric"] == "answer_logprob")]
        return {int(r["layer_start"]): round(float(r["delta"]), 4) for r in lp.to_dict("records")}

    def probes(self, analysis: Analysis, suite_name: str) -> dict:
        from workbench.analysis.probes import load_suite, run_suite

        s = self.sizes
        suite = load_suite(PROBE_DIR / f"{suite_name}.yaml")
        suite = replace(
            suite,
            bootstrap=min(suite.bootstrap, s.probe_bootstrap),
            sites={
                "encoders": "all",
                "connectors": "all",
                "resid": {"layers": list(s.probe_layers), "positions": ["last_prompt"]},
                "audio_kv": {"layers": list(s.probe_kv_layers), "which": ["k", "v"]},
            },
        )
        model = self.model(analysis.variant)  # writes probe_SUITE.*, the stems the registry's probe_* names
        df, _ = run_suite(
            suite,
            model,
            self.dataset(analysis.variant, None),
            out_dir=self.out,
            n=s.probe_clips,
            batch_size=self.batch_size,
            progress=True,
        )
        best = df.sort_values("value", ascending=False).iloc[0]
        return {
            "best_site": str(best["site"]),
            "best": round(float(best["value"]), 4),
            "majority": round(float(best["majority"]), 4),
        }

    def patching(self, analysis: Analysis) -> dict:
        from workbench.analysis.patching import make_pairs, patch_dataset, patching_figure, summarize_patching

        variant = analysis.variant
        model = self.model(variant)
        ds = self.dataset(variant, None)
        pairs = make_pairs(ds, None, self.sizes.pairs, seed=0, answer_options=self.answer_options())
        items = patch_dataset(model, ds, pairs, sites=["audio_kv"], batch_size=self.batch_size, progress=True)
        summary = summarize_patching(items)
        self.write(
            summary,
            patching_figure(
                summary, f"{variant}: patching clean audio keys/values into corrupted runs ({len(pairs)} pairs)"
            ),
            analysis.stem,
        )
        self.write(items, None, f"{analysis.stem}_items")
        best = summary[summary["layer"] >= 0].sort_values("restored", ascending=False).iloc[0]
        return {
            "best": f"{best['site']} L{int(best['layer'])} {best['encoder']}",
            "restored": round(float(best["restored"]), 4),
        }
