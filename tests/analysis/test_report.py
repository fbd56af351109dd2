"""workbench.report: one self-contained page; claim summaries come from the CSVs present, 'no data' otherwise."""

from __future__ import annotations

import pandas as pd

from workbench import report as report_cli
from workbench.analysis import attention as A
from workbench.analysis import logit_lens as LL
from workbench.analysis.core import write_outputs
from workbench.reporting import report


def _attention_df():
    rows = []
    for layer in range(3):
        for head in range(2):
            for enc in ("mel", "whisper"):
                mass = 0.0 if layer == 0 else 0.1 * layer + 0.05 * head
                uni = 0.0 if layer == 0 else 0.1
                rows.append(
                    {
                        "layer": layer,
                        "head": head,
                        "encoder": enc,
                        "query_set": "after_slot",
                        "mass": mass,
                        "uniform_mass": uni,
                        "ratio": mass / uni if uni else float("nan"),
                        "n": 4,
                        "sem": 0.01,
                    }
                )
    return pd.DataFrame(rows)


def _lens_df():
    rows = []
    for ex in range(2):
        for layer in range(3):
            for cond, p in (("audio", 0.2 * layer + 0.1), ("no_audio", 0.05)):
                rows.append(
                    {
                        "example": ex,
                        "layer": layer,
                        "condition": cond,
                        "answer_id": 5,
                        "answer_token": "x",
                        "prob": p,
                        "logprob": 0.0,
                        "rank": 0,
                    }
                )
    return pd.DataFrame(rows)


def test_report_embeds_figures_once_and_summarises_claims(tmp_path):
    run = tmp_path / "run"
    att = _attention_df()
    write_outputs(att, A.fig_heatmap(att), run, "attention_to_audio")
    lens = _lens_df()
    write_outputs(lens, LL.fig_logit_lens(lens), run, "logit_lens")
    curve = pd.DataFrame(  # the injection-layer curve of one mode and one seed (workbench.sweep without --modes)
        {
            "mode": "plits",
            "layer": [0, 4, 8],
            "family": "all attributes",
            "accuracy": [0.5, 0.7, 0.6],
            "ci_low": [0.4, 0.6, 0.5],
            "ci_high": [0.6, 0.8, 0.7],
            "n_seeds": 1,
            "seeds": "0",
            "n_clips": 100,
            "n_rows": 200,
            "splits": "test",
            "method": "clip bootstrap (1 training seed: seed variance not covered)",
        }
    )
    write_outputs(curve, None, run, "injection_layer_curve")
    cmp = pd.DataFrame(
        {
            "variant": ["delayed", "lal"],
            "metric": "accuracy",
            "task": "all",
            "attribute": "all",
            "value": [0.61, 0.66],
            "ci_low": [0.55, 0.6],
            "ci_high": [0.67, 0.72],
            "n": 120,
            "chance": 0.1,
        }
    )
    write_outputs(cmp, None, run, "compare")
    assert report_cli.main(["--run", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert page.count("plotly.js v") == 1  # the library once, whatever the number of figures
    assert page.count('class="plotly-graph-div"') == 2
    assert page.count("<figcaption>") == 2  # each figure's caption (layout.meta["caption"]) under it, as text
    assert "<figcaption>Colour: attention mass on the encoder&#x27;s audio keys divided by" in page
    assert "injection-layer curve: PLITS peaks at layer 4 (0.700 [0.600, 0.800], 1 seed)" in page  # claim 1
    assert "lal: accuracy 0.66 [95% CI 0.6, 0.72]" in page and "delayed: accuracy 0.61" in page  # claim 2
    assert "encoder whisper (queries after_slot): audio visible from layer 1" in page
    assert "with audio vs 0.05 with audio cut" in page  # logit lens
    claims = report.claim_summaries(report.read_tables(run))
    # routed by registered name: the stand-alone commands' tables bear on claim 1; claim 2 reads only its own
    # contrast (lal - delayed), claim 3 (pal - lal, ensemble - baseline) has none of its variants in compare.csv
    assert claims["claim3"] == [report.NO_DATA]
    assert claims["claim2"] == [
        "lal: accuracy 0.66 [95% CI 0.6, 0.72] (n=120)",
        "delayed: accuracy 0.61 [95% CI 0.55, 0.67] (n=120)",
    ]
    # data-driven: change the CSV, the summary follows
    curve.loc[2, "accuracy"] = 0.9
    write_outputs(curve, None, run, "injection_layer_curve")
    assert any("PLITS peaks at layer 8" in line for line in report.claim_summaries(report.read_tables(run))["claim1"])


def test_missing_data_says_no_data(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    (run / "broken.csv").write_text("")  # unreadable CSVs are skipped, not fatal
    claims = report.claim_summaries(report.read_tables(run))
    assert all(lines == ["no data: no CSV in this run folder bears on this claim"] for lines in claims.values())
    page = report.build_report(run)
    assert page.count("no data") == 3 and "plotly.js v" not in page
    assert report_cli.main(["--run", str(tmp_path / "nope")]) == 2


def test_tables_are_routed_by_registered_name_not_by_columns(tmp_path):
    """fit_probes tables also carry layer/metric/value columns (layer NaN at encoder sites); ``probe_*`` is
    registered as claim 3's probes, so they are read as probes (not as a layer table of claim 1); the
    same table under a name the registry does not know bears on no claim (it is listed with the other tables)."""
    rows = [
        {
            "site": "encoders.whisper.hook_out",
            "kind": "encoder",
            "layer": float("nan"),
            "encoder": "whisper",
            "metric": "accuracy",
            "value": 0.9,
            "selectivity": 0.7,
        },
        {
            "site": "encoders.mel.hook_out",
            "kind": "encoder",
            "layer": float("nan"),
            "encoder": "mel",
            "metric": "accuracy",
            "value": 0.6,
            "selectivity": 0.4,
        },
        {
            "site": "blocks.3.hook_resid_post@last_prompt",
            "kind": "resid",
            "layer": 3.0,
            "encoder": None,
            "metric": "accuracy",
            "value": 0.8,
            "selectivity": 0.6,
        },
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "probe_pitch.csv", index=False)
    pd.DataFrame(rows).to_csv(tmp_path / "probes_renamed.csv", index=False)  # not a registered name
    claims = report.claim_summaries(report.read_tables(tmp_path))
    assert claims["claim1"] == claims["claim2"] == [report.NO_DATA]
    assert claims["claim3"] == [
        "probe_pitch: best value 0.9 at encoders.whisper.hook_out; best per encoder: mel 0.6, whisper 0.9"
    ]
    page = report.build_report(tmp_path)
    assert page.index("<h2>Further analyses and tables</h2>") < page.index("<code>probes_renamed.csv</code>")


def test_each_claim_is_summarised_with_the_registry_contrasts(tmp_path):
    """compare.csv and contrasts.csv hold every variant; each claim shows the two variants of each of its registered
    contrasts and their paired difference, and nothing else (claim 2: lal - delayed, not lal/pal vs baseline)."""
    from workbench.claims.registry import CLAIMS

    acc = {"baseline": 0.45, "delayed": 0.6, "lal": 0.65, "ensemble": 0.5, "pal": 0.7, "hybrid": 0.68}
    pd.DataFrame(
        [
            {
                "variant": v,
                "metric": "accuracy",
                "task": "all",
                "attribute": "all",
                "value": x,
                "ci_low": x - 0.04,
                "ci_high": x + 0.04,
                "n": 692,
            }
            for v, x in acc.items()
        ]
    ).to_csv(tmp_path / "compare.csv", index=False)
    pairs = [(a, b) for a in acc for b in acc if a != b]  # every pair, registered or not
    pd.DataFrame(
        [
            {
                "variant": a,
                "baseline": b,
                "metric": "accuracy",
                "task": "all",
                "attribute": "all",
                "diff": round(acc[a] - acc[b], 2),
                "ci_low": round(acc[a] - acc[b], 2) - 0.03,
                "ci_high": round(acc[a] - acc[b], 2) + 0.03,
                "p_value": 0.01,
                "n": 692,
            }
            for a, b in pairs
        ]
    ).to_csv(tmp_path / "contrasts.csv", index=False)
    claims = report.claim_summaries(report.read_tables(tmp_path))
    for key, claim in CLAIMS.items():
        diffs = [ln.split(":")[0] for ln in claims[key] if " - " in ln]
        assert diffs == [f"{a} - {b}" for a, b in claim.contrasts], key
        shown = [ln.split(":")[0] for ln in claims[key] if " - " not in ln]
        assert shown == list(dict.fromkeys(v for pair in claim.contrasts for v in pair)), key
    assert claims["claim2"] == [
        "lal: accuracy 0.65 [95% CI 0.61, 0.69] (n=692)",
        "delayed: accuracy 0.6 [95% CI 0.56, 0.64] (n=692)",
        "lal - delayed: accuracy difference 0.05 [95% CI 0.02, 0.08], p=0.01",
    ]


def test_verdicts_forest_plot_first_then_one_section_per_claim_with_headings_in_words(tmp_path):
    from tests.analysis.test_figures import layer_curve_summary
    from workbench.claims.layer_curve import curve_figure

    run = tmp_path / "run"
    diffs = pd.DataFrame(
        [
            {
                "variant": a,
                "baseline": b,
                "metric": "accuracy",
                "task": "all",
                "attribute": "all",
                "diff": d,
                "ci_low": d - 0.03,
                "ci_high": d + 0.03,
                "p_value": 0.01,
                "n": 692,
            }
            for a, b, d in (
                ("delayed", "baseline", 0.15),
                ("lal", "delayed", 0.02),
                ("pal", "lal", 0.05),
                ("ensemble", "baseline", 0.1),
            )
        ]
    )
    write_outputs(diffs, None, run, "contrasts")
    att = _attention_df()
    write_outputs(att, A.fig_heatmap(att), run, "attention_pal_heads")
    curve = layer_curve_summary()
    write_outputs(curve, curve_figure(curve), run, "injection_layer_curve")
    page = report.build_report(run)
    order = [
        page.index(h)
        for h in (
            "<h2>Verdicts at a glance</h2>",
            "<h2>Claim 1, delayed integration",
            "<h3>Accuracy against the injection layer (PLITS and LAL)</h3>",
            "<h2>Claim 2, attention-only",
            "<h2>Claim 3, encoder ensemble",
            "<h3>pal: attention to each encoder&#x27;s audio: heads</h3>",
        )
    ]
    assert order == sorted(order)
    assert "injection-layer curve: LAL peaks at layer 16" in page  # the generated sentence, under claim 1
    assert page.count('class="plotly-graph-div"') == 3  # forest plot + the two figures
    assert "Claim 2, attention-only reading (LAL): lal \\u2212 delayed, one run (test rows resampled)" in page
    assert "<h3>attention_pal_heads" not in page and ".html</h3>" not in page
    assert page.count("<figcaption>") == 3
