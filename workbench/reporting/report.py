"""One self-contained HTML page for a run folder: every figure (``*.html``) and table (``*.csv``) in it, one
section per claim of the paper with its figures and a short summary computed from the CSVs that are there.

    python -m workbench.report --run results/pal [--out results/pal/report.html] [--title ...]

Figures written by plotly (``write_outputs``) are embedded as their figure div + script, with plotly.js
included once; other HTML files are embedded as sandboxed iframes (``srcdoc``).

The page opens with the verdicts (``verdict.csv``, workbench.verdict) and a forest plot of every claim's contrasts
(workbench.reporting.forest); then one section per claim of the registry :mod:`workbench.claims.registry` with its
verdict, a summary of its own contrasts and registered analyses (:mod:`workbench.reporting.summaries`: tables are
routed by their registered names, not guessed from their columns) and its figures (headings in words, each caption
once, under its figure), then every other figure and table. A claim with none of its tables says "no data".
Nothing in the summaries is hard-coded: every number is read from the CSVs.
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

import pandas as pd

from workbench.reporting.summaries import NO_DATA, claim_summaries

__all__ = [
    "build_report",
    "claim_summaries",
    "read_tables",
    "page_html",
    "embed_figure",
    "table_html",
    "REPORT_NAME",
    "NO_DATA",
    "run_report_command",
]

REPORT_NAME = "report.html"


# ---------------------------------------------------------------------------------------------- tables
def read_tables(run: Path) -> dict[str, pd.DataFrame]:
    """{stem: DataFrame} of every readable CSV directly in ``run`` (unreadable ones are skipped with a notice)."""
    out = {}
    for p in sorted(run.glob("*.csv")):
        try:
            out[p.stem] = pd.read_csv(p)
        except Exception as e:  # an empty or malformed CSV must not sink the whole report
            print(f"note: skipped {p} ({type(e).__name__}: {e})", file=sys.stderr)
    return out


# ---------------------------------------------------------------------------------------------- figures
_PLOTLY_DIV = re.compile(r'<div id="[^"]+" class="plotly-graph-div"[^>]*></div>\s*<script[^>]*>.*?</script>', re.S)


def embed_figure(text: str, seen: dict[str, str] | None = None, heading: str = "") -> tuple[str, bool]:
    """(html fragment, uses plotly.js) for one figure file: a <figure> with the plot and, when the figure has
    one (``layout.meta["caption"]``, workbench.analysis.figures.add_caption), its caption as <figcaption>."""
    from workbench.analysis.figures import caption_from_html

    found = _PLOTLY_DIV.findall(text)
    if found:
        body, uses = "\n".join(found), True
    else:
        body, uses = (
            (
                f'<iframe sandbox="allow-scripts" style="width:100%;height:600px;border:0" '
                f'srcdoc="{html.escape(text, quote=True)}"></iframe>'
            ),
            False,
        )
    caption = caption_from_html(text)
    if caption and seen is not None and caption in seen:  # the same builder's caption: shown once, referred to
        cap = (
            f"<figcaption>{html.escape(heading)}: read as the caption of “{html.escape(seen[caption])}” "
            "above.</figcaption>"
        )
    else:
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        if caption and seen is not None:
            seen[caption] = heading
    return f"<figure>{body}{cap}</figure>", uses


def _heading(stem: str) -> str:
    """A section heading in words for an output stem: the registered analysis's title (workbench.claims.registry), with
    the rest of the stem in words for pattern entries (``probe_*``, ``attention_pal*``)."""
    from fnmatch import fnmatch

    from workbench.claims.registry import CLAIMS, EXTRA

    for an in [a for c in CLAIMS.values() for a in c.analyses] + list(EXTRA):
        pat = an.stem if "*" in an.stem else an.stem + "*"
        if fnmatch(stem, pat):
            rest = stem[len(an.stem.rstrip("*")) :].strip("_").replace("_", " ")
            return f"{an.title}: {rest}" if rest else an.title
    words = stem.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


# the report shows each caption once, under its figure: the in-plot copy (add_caption's annotation) is dropped and
# the bottom margin it needed given back before plotly draws; fixed-width figures wider than the page shrink to it
_ONE_CAPTION_JS = """<script>(function(){if(!window.Plotly)return;var draw=Plotly.newPlot;
Plotly.newPlot=function(div,data,layout,config){layout=layout||{};var anns=layout.annotations||[];
var kept=anns.filter(function(a){return a.name!=="%s";});
if(kept.length<anns.length){layout.annotations=kept;var m=layout.margin||{};if(m.b>90){if(layout.height)layout.height-=m.b-90;m.b=90;layout.margin=m;}}
var el=typeof div==="string"?document.getElementById(div):div;
if(layout.width&&el&&el.parentElement&&layout.width>el.parentElement.clientWidth){delete layout.width;layout.autosize=true;}
return draw.call(Plotly,div,data,layout,config);};})();</script>"""


def _verdict_html(df: pd.DataFrame) -> str:
    """The verdict table of :mod:`workbench.claims.verdict` (``verdict.csv``), one block per claim."""
    items = []
    for r in df.to_dict("records"):
        items.append(
            f'<div class="verdict">{_verdict_words(r)} {html.escape(str(r.get("evidence", "")))}<br>'
            f"<i>inside the model:</i> {html.escape(str(r.get('inside', '')))}<br>"
            f"<small>{html.escape(str(r.get('scope', '')))}</small></div>"
        )
    return "".join(items)


_COLOUR = {"agree": "#1a7f37", "disagree": "#cf222e", "inconclusive": "#9a6700"}


def _verdict_words(r: dict) -> str:
    v = str(r.get("verdict", ""))
    one = r.get("verdict_one_seed")
    side = (
        f' (seed 0 alone: <span style="color:{_COLOUR.get(str(one), "#555")}">{html.escape(str(one).upper())}</span>)'
        if isinstance(one, str) and one and one != v
        else ""
    )
    return (
        f'<b>{html.escape(str(r.get("title", r["claim"])))}: <span style="color:{_COLOUR.get(v, "#555")}">'
        f"{html.escape(v.upper())}</span> with the paper's direction{side}.</b>"
    )


def table_html(stem: str, df: pd.DataFrame) -> str:
    preview = df.head(12).to_html(index=False, float_format=lambda x: f"{x:.4g}", border=0, classes="tbl")
    return (
        f"<details><summary>Table: {html.escape(_heading(stem).lower())} ({len(df)} rows x {len(df.columns)} "
        f'columns, first 12 shown; <code>{html.escape(stem)}.csv</code>)</summary><div class="wide">{preview}'
        "</div></details>"
    )


def build_report(run: str | Path, title: str | None = None) -> str:
    """The report page for a run folder (see the module docstring): the verdicts and their forest plot first, then
    one section per claim of :mod:`workbench.claims.registry` with its figures, then the other analyses."""
    from fnmatch import fnmatch

    from workbench.claims.registry import CLAIMS

    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(
            f"run folder {run} does not exist; write analyses into it first, e.g. "
            f"python -m workbench.attention --out-dir {run}"
        )
    tables = read_tables(run)
    figures = {p.stem: p for p in sorted(run.glob("*.html")) if p.name != REPORT_NAME}
    captions: dict[str, str] = {}  # caption -> heading of the figure that shows it

    def figure(stem: str) -> str:
        nonlocal need_plotly
        frag, uses = embed_figure(figures[stem].read_text(errors="replace"), captions, _heading(stem))
        need_plotly |= uses
        return f"<h3>{html.escape(_heading(stem))}</h3>\n{frag}"

    used: set[str] = set()
    verdicts = tables.get("verdict")
    verdicts = verdicts if verdicts is not None and {"claim", "verdict"} <= set(verdicts.columns) else None
    section, need_plotly = _verdict_section(run, verdicts)
    parts = [section] if section else []
    claims = claim_summaries(tables)
    by_claim = {r["claim"]: r for r in verdicts.to_dict("records")} if verdicts is not None else {}
    for key, claim in CLAIMS.items():
        body = [f"<h2>{html.escape(claim.title)}: {html.escape(claim.statement)}</h2>"]
        if key in by_claim:
            body.append(f"<p>{_verdict_words(by_claim[key])}</p>")
        lines = claims.get(key, [])
        body.append("<ul>" + "".join(f"<li>{html.escape(ln)}</li>" for ln in lines) + "</ul>" if lines else "")
        for pattern in claim.figures:
            for stem in [s for s in figures if fnmatch(s, pattern) and s not in used]:
                used.add(stem)
                body.append(figure(stem))
        for stem in [s for s in tables if any(fnmatch(s, p) for p in claim.figures) and s not in used | {"verdict"}]:
            used.add(f"table:{stem}")
            body.append(table_html(stem, tables[stem]))
        parts.append(f"<section>{''.join(body)}</section>")
    rest = [figure(s) for s in figures if s not in used]
    rest += [table_html(s, df) for s, df in tables.items() if s not in used and f"table:{s}" not in used]
    if rest:
        parts.append(f"<section><h2>Further analyses and tables</h2>{''.join(rest)}</section>")
    if not figures and not tables:
        parts.append("<p>This run folder has no figures or CSVs yet.</p>")
    return page_html(title or f"pal-workbench report: {run.name}", parts, need_plotly)


def _verdict_section(run: Path, verdicts: pd.DataFrame | None) -> tuple[str, bool]:
    """(html, uses plotly.js) of the opening section: the rule, the forest plot of every registered contrast and the
    verdict table; ("", False) when the folder has neither."""
    from workbench.reporting.forest import forest_figure, forest_rows
    from workbench.stats.bootstrap import VERDICT_RULE

    rows = forest_rows(run)
    if not len(rows) and verdicts is None:
        return "", False
    parts = [
        f"<section><h2>Verdicts at a glance</h2><p>Rule fixed in advance: {html.escape(VERDICT_RULE)} "
        "(workbench.verdict).</p>"
    ]
    if len(rows):
        parts.append(embed_figure(forest_figure(rows).to_html(full_html=False, include_plotlyjs=False))[0])
    if verdicts is not None:
        parts.append(_verdict_html(verdicts))
    parts.append("</section>")
    return "".join(parts), bool(len(rows))


def page_html(title: str, parts: list[str], need_plotly: bool) -> str:
    """The whole HTML document around the sections (plotly.js inlined once when a figure needs it)."""
    plotly_js = ""
    if need_plotly:
        from plotly.offline import get_plotlyjs

        from workbench.analysis.figures import CAPTION_NAME

        plotly_js = f'<script type="text/javascript">{get_plotlyjs()}</script>' + _ONE_CAPTION_JS % CAPTION_NAME
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;overflow-wrap:anywhere}"
        ".verdict{margin:0.6em 0;padding:0.5em;border-left:4px solid #888;background:#f6f8fa}"
        ".tbl{border-collapse:collapse;font-size:12px}.tbl td,.tbl th{padding:2px 6px;border-bottom:1px solid #ddd}"
        ".wide{overflow-x:auto;max-width:100%}"
        "figure{margin:0 0 1.5em;max-width:100%;overflow-x:auto}"
        "figcaption{font-size:13px;color:#444;max-width:60em;margin-top:.3em}"
        "section{border-top:1px solid #ddd;margin-top:1.5em}"
    )
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style>{plotly_js}</head><body><h1>{html.escape(title)}</h1>{''.join(parts)}</body></html>"
    )


def run_report_command(a) -> int:
    """``python -m workbench.report`` with parsed arguments ``a``: the page of ``a.run`` written atomically to
    ``a.out`` (default ``RUN/report.html``); exit code 0, or 2 when the run folder is missing."""
    from workbench.common.paths import atomic_write_bytes

    try:
        page = build_report(a.run, a.title)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out) if a.out else Path(a.run) / REPORT_NAME
    atomic_write_bytes(out, page.encode())
    print(f"wrote {out}")
    return 0
