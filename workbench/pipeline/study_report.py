"""The report of ``workbench.study``: one self-contained page read verdict-first.

    page = build_study_report(Path("results/study-pal"), steps, title="Study of results/checkpoints/pal/final")

First "At a glance": one sentence per step from its summary (the dict the step returned, kept in its marker
``.steps/<name>.json`` by :mod:`workbench.pipeline.steps`), or the step's error when it failed (its failure record);
the retrofit verdicts on claims 1 and 2 with their out-of-distribution caveat. Then one section per analysis
with its figures and tables, and the answers the model gave (question, reference answer, prediction). The page
is assembled with :func:`workbench.reporting.report.page_html` (style, plotly.js once, one caption per figure).
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

__all__ = ["SECTIONS", "glance_lines", "build_study_report"]

#: (heading, step names, output stems) in page order
SECTIONS = (
    ("Claims 1 and 2 as zero-shot retrofits", ("retrofit-claims",), ("retrofit_contrasts",)),
    ("Accuracy and the answers", ("accuracy",), ("scores",)),
    ("Attention to the audio", ("attention",), ("study_attention", "study_attention_heads")),
    ("Logit lens", ("logit-lens",), ("study_logit_lens",)),
    ("Attribute lens and critical layers", ("attribute-lens",), ("study_attribute_lens",)),
    ("Listening heads", ("listening",), ("study_listening_heads", "study_listening_ablation")),
    ("Steering along the audio direction", ("steering",), ("study_steering",)),
    ("Ablation sweep: audio blocked from layer L on", ("ablation-sweep",), ("study_ablation_sweep",)),
    ("Attribution patching over heads, checked by exact patching", ("atp-heads",), ("study_atp_heads",)),
)


def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _sentence(name: str, s: dict) -> str:
    """One sentence in words for a step's summary."""
    if name == "accuracy":
        lo, hi = s.get("ci") or (None, None)
        return (
            f"Accuracy {_f(s.get('accuracy'))} [95% CI {_f(lo)}, {_f(hi)}] on {s.get('closed_rows')} closed task "
            f"rows ({s.get('rows')} rows answered; the answers are listed below)."
        )
    if name == "attention":
        return (
            f"Attention to the audio peaks at layer {s['peak_layer']}: mass {_f(s['peak_mass'])} of the last prompt "
            f"token's attention (uniform attention would give {_f(s['uniform_at_peak'])})."
        )
    if name == "logit-lens":
        parts = ", ".join(f"{k.replace('_', ' ')} {_f(v)}" for k, v in s.items())
        return f"Logit lens: the answer token's probability at the last layer is {parts}."
    if name == "attribute-lens":
        return (
            f"Attribute lens: median critical layer {_f(s.get('critical_median'))} (fraction of rows resolved "
            f"{_f(s.get('resolved'))}; option accuracy at the last layer {_f(s.get('final_accuracy'))})."
        )
    if name == "listening":
        return (
            f"Listening heads {', '.join(s['top'])}: mean-ablating them changes the answer log-probability by "
            f"{_f(s['delta_top'])} nats, vs {_f(s['delta_random'])} for as many random heads."
        )
    if name == "steering":
        return (
            "Steering gain in option accuracy (alpha chosen on the other half of the clips): "
            + "; ".join(
                f"{mode}: {_f(v['gain'])} [95% CI {_f(v['ci'][0])}, {_f(v['ci'][1])}] at alpha {_f(v['alpha'])}"
                for mode, v in s.items()
            )
            + "."
        )
    if name == "ablation-sweep":
        return (
            "Audio blocked from layer L on changes the answer log-probability by: "
            + ", ".join(f"L{k}: {_f(v)}" for k, v in s.items())
            + " nats."
        )
    if name == "atp-heads":
        return (
            f"AtP over heads ({s['pairs']} pairs): top heads {', '.join(s['top'])}; exact patching agrees in sign "
            f"for a fraction {_f(s.get('same_sign'))} of them (exact effects {s['exact_of_top']})."
        )
    if name == "retrofit-claims":
        return (
            "Retrofit verdicts with the paper's direction: "
            + "; ".join(
                f"{'claim 1 (delayed PLITS)' if k == 'claim1' else 'claim 2 (LAL vs PLITS)'}: {str(v).upper()}"
                for k, v in s.items()
            )
            + "."
        )
    return f"{name}: {s}"


def glance_lines(out: Path, steps) -> list[tuple[str, str, bool]]:
    """[(step title, sentence, failed)] for every step but the report, in step order."""
    from workbench.pipeline.steps import Pipeline

    pipe = Pipeline(out)
    lines = []
    for st in steps:
        if st.name == "report" or st.name.startswith("retrofit-") and st.name != "retrofit-claims":
            continue
        fail = pipe.read_failure(st.name)
        if fail is not None:
            lines.append((st.title, f"FAILED: {fail['error']}", True))
            continue
        marker = pipe.read_marker(st.name)
        if marker is None:
            lines.append((st.title, "not run yet", True))
            continue
        try:
            lines.append((st.title, _sentence(st.name, marker.get("summary") or {}), False))
        except (KeyError, TypeError, IndexError) as e:
            lines.append((st.title, f"finished; its summary could not be read ({type(e).__name__}: {e})", False))
    failed_points = [st.name for st in steps if st.name.startswith("retrofit-") and pipe.read_failure(st.name)]
    if failed_points:
        first = pipe.read_failure(failed_points[0])["error"]
        lines.append(("retrofit points", f"FAILED: {', '.join(failed_points)} (first error: {first})", True))
    return lines


def _answers_html(out: Path, n: int = 40) -> str:
    path = out / "answers.csv"
    if not path.is_file():
        return ""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    cols = [c for c in ("task", "attribute", "question", "answer", "prediction", "correct") if c in df.columns]
    table = df[cols].head(n).to_html(index=False, border=0, classes="tbl", escape=True)
    return (
        f"<h3>The model's answers (first {min(n, len(df))} of {len(df)} rows; all in answers.csv)</h3>"
        f'<div class="wide">{table}</div>'
    )


def _section(out: Path, heading: str, stems: tuple[str, ...], captions: dict) -> tuple[str, bool]:
    from workbench.reporting.report import embed_figure, table_html

    body, uses = [f"<h2>{html.escape(heading)}</h2>"], False
    for stem in stems:
        fig = out / f"{stem}.html"
        if fig.is_file():
            frag, u = embed_figure(fig.read_text(errors="replace"), captions, heading)
            body.append(frag)
            uses |= u
        csv = out / f"{stem}.csv"
        if csv.is_file():
            try:
                body.append(table_html(stem, pd.read_csv(csv)))
            except (pd.errors.EmptyDataError, pd.errors.ParserError):
                body.append(f"<p>{html.escape(csv.name)} could not be read.</p>")
    if len(body) == 1:
        body.append("<p>No output: the step failed or has not run yet (see At a glance).</p>")
    return "".join(body), uses


def build_study_report(out: Path, steps, title: str) -> str:
    """The page (module docstring) for the study folder ``out`` and its step list."""
    from workbench.pipeline.retrofit import CAVEAT
    from workbench.reporting.report import page_html

    out = Path(out)
    glance = "".join(
        f'<div class="verdict"><b>{html.escape(t)}</b>: '
        f"{'<span style=color:#cf222e>' if bad else ''}{html.escape(s)}{'</span>' if bad else ''}</div>"
        for t, s, bad in glance_lines(out, steps)
    )
    parts = [f"<section><h2>At a glance</h2>{glance}<p><i>Retrofits:</i> {html.escape(CAVEAT)}</p></section>"]
    need_plotly, captions = False, {}
    for heading, _names, stems in SECTIONS:
        frag, uses = _section(out, heading, stems, captions)
        need_plotly |= uses
        if heading.startswith("Accuracy"):
            frag += _answers_html(out)
        parts.append(f"<section>{frag}</section>")
    return page_html(title, parts, need_plotly)
