"""One self-contained HTML page for a run folder: every figure (``*.html``) and table (``*.csv``) in it, one
section per claim of the paper with its figures and a short summary computed from the CSVs that are there.

    python -m workbench.report --run results/pal [--out results/pal/report.html] [--title ...]

Figures written by plotly (``write_outputs``) are embedded as their figure div + script, with plotly.js
included once; other HTML files are embedded as sandboxed iframes (``srcdoc``). CSVs are recognised by
their columns, not their names:

* comparison tables (``variant, metric, value[, ci_low, ci_high]``; workbench.compare) -> claims 2 and 3;
* paired differences (``variant, baseline, diff, ci_low, ci_high``) -> claims 2 and 3;
* injection-layer sweeps (``layer, metric, value`` without ``variant``; workbench.sweep) -> claim 1;
* attention to audio (``layer, head, encoder, mass, uniform_mass``) -> claims 1 and 3;
* logit lens (``layer, condition, prob``) -> claim 1;
* probes (``probe_*.csv``) -> claim 3.

The page opens with the verdicts (``verdict.csv``, workbench.verdict) and a forest plot of every claim's contrasts
(workbench.forest); then one section per claim of the registry :mod:`workbench.claims` with its figures (headings
in words, each caption once, under its figure), then every other figure and table. A claim with no matching CSV
says "no data". Nothing in the summaries is hard-coded: every number is read
from the CSVs.
"""

from __future__ import annotations

import argparse
import html
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.paths import atomic_write_bytes

__all__ = ["CLAIMS", "build_report", "page_html", "embed_figure", "table_html", "claim_summaries", "read_tables", "main"]

CLAIMS = {
    "claim1": "Claim 1 - delayed integration: audio entering later in the LLM costs little or helps",
    "claim2": "Claim 2 - attention-only integration (LAL) matches or beats putting audio in the input (PLITS)",
    "claim3": "Claim 3 - an ensemble of encoders beats a single encoder; each encoder carries different information",
}
LAL_VARIANTS = ("lal", "pal")
PLITS_VARIANTS = ("baseline", "delayed")
ENSEMBLE_VARIANTS = ("ensemble", "pal", "hybrid")
SINGLE_VARIANTS = ("baseline", "delayed", "lal")
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


def _kind(stem: str, df: pd.DataFrame) -> str | None:
    c = set(df.columns)
    if stem.startswith("probe_") or {"site", "kind", "selectivity"} <= c:  # probe tables also have layer/metric/value
        return "probe"
    if {"variant", "baseline", "diff"} <= c:
        return "diff"
    if {"variant", "metric", "value"} <= c:
        return "compare"
    if {"layer", "head", "encoder", "mass", "uniform_mass"} <= c:
        return "attention"
    if {"layer", "condition", "prob"} <= c:
        return "logit_lens"
    if {"layer", "metric", "value"} <= c:
        return "injection"
    return None


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.3g}" if isinstance(x, (float, np.floating)) else str(x)


def _ci(row) -> str:
    lo, hi = row.get("ci_low"), row.get("ci_high")
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return _fmt(row.get("value", row.get("diff")))
    return f"{_fmt(row.get('value', row.get('diff')))} [95% CI {_fmt(lo)}, {_fmt(hi)}]"


def _headline(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the overall cell: metric accuracy (else the first metric), task/attribute 'all' where present."""
    metric = "accuracy" if "accuracy" in set(df["metric"]) else df["metric"].iloc[0]
    sub = df[df["metric"] == metric]
    for col in ("task", "attribute"):
        if col in sub.columns and (sub[col] == "all").any():
            sub = sub[sub[col] == "all"]
    return sub


def _variant_lines(df: pd.DataFrame, left: tuple, right: tuple) -> list[str]:
    sub = _headline(df)
    metric = sub["metric"].iloc[0] if len(sub) else "metric"
    have = {str(v): r for v, r in zip(sub["variant"], sub.to_dict("records"))}
    lines = []
    for group in (left, right):
        for v in group:
            if v in have:
                lines.append(f"{v}: {metric} {_ci(have[v])} (n={_fmt(have[v].get('n'))})")
    return lines if any(v in have for v in left) and any(v in have for v in right) else []


def _diff_lines(df: pd.DataFrame, variants: tuple, baselines: tuple) -> list[str]:
    sub = df[df["variant"].isin(variants) & df["baseline"].isin(baselines)]
    if "metric" in sub.columns and len(sub):
        sub = _headline(sub.rename(columns={"diff": "value"})).rename(columns={"value": "diff"})
    lines = []
    for r in sub.to_dict("records"):
        p = f", p={_fmt(r['p_value'])}" if "p_value" in r and not pd.isna(r["p_value"]) else ""
        lines.append(f"{r['variant']} - {r['baseline']}: {r.get('metric', 'diff')} difference {_ci(r)}{p}")
    return lines


def _injection_lines(df: pd.DataFrame) -> list[str]:
    sub = _headline(df).sort_values("layer")
    if not len(sub):
        return []
    metric = sub["metric"].iloc[0]
    pts = "; ".join(f"L{int(r['layer'])}: {_ci(r)}" for r in sub.to_dict("records"))
    best = sub.loc[sub["value"].idxmax()]
    first = sub.iloc[0]
    verdict = (f"best at layer {int(best['layer'])}; layer {int(first['layer'])} -> {int(best['layer'])} changes {metric} by "
               f"{_fmt(float(best['value'] - first['value']))}")
    return [f"{metric} vs injection layer: {pts}", verdict]


def _attention_lines(df: pd.DataFrame, stem: str) -> list[str]:
    lines = []
    qs = df["query_set"].iloc[0] if "query_set" in df.columns else None
    sub = df[df["query_set"] == qs] if qs is not None else df
    for enc, g in sub.groupby("encoder", sort=False):
        per = g.groupby("layer")[["mass", "uniform_mass"]].mean()
        per = per[per["uniform_mass"] > 0]
        if not len(per):
            lines.append(f"{stem}: encoder {enc}: no audio keys visible at any layer")
            continue
        ratio = per["mass"] / per["uniform_mass"]
        top = g.dropna(subset=["ratio"]).sort_values("ratio", ascending=False).iloc[0] if g["ratio"].notna().any() else None
        lines.append(f"{stem}: encoder {enc} (queries {qs}): audio visible from layer {int(per.index.min())}; mean mass "
                     f"{_fmt(float(per['mass'].mean()))} vs uniform {_fmt(float(per['uniform_mass'].mean()))}; layer with the "
                     f"largest mass/uniform ratio: {int(ratio.idxmax())} ({_fmt(float(ratio.max()))}x)"
                     + (f"; top head L{int(top['layer'])}H{int(top['head'])} ({_fmt(float(top['ratio']))}x)" if top is not None else ""))
    return lines


def _logit_lens_lines(df: pd.DataFrame) -> list[str]:
    if "n" not in df.columns:  # per-example rows: summarise
        df = df.groupby(["layer", "condition"]).agg(prob=("prob", "mean"), n=("prob", "size")).reset_index()
    piv = df.pivot_table(index="layer", columns="condition", values="prob")
    if not {"audio", "no_audio"} <= set(piv.columns):
        return []
    gap = piv["audio"] - piv["no_audio"]
    last = piv.index.max()
    return [f"logit lens: answer probability at the last layer {_fmt(float(piv.loc[last, 'audio']))} with audio vs "
            f"{_fmt(float(piv.loc[last, 'no_audio']))} with audio cut; the audio gap is largest at layer "
            f"{int(gap.idxmax())} ({_fmt(float(gap.max()))}) and first exceeds half its final value at layer "
            f"{int(gap.index[(gap >= 0.5 * gap.loc[last]).to_numpy()].min()) if gap.loc[last] > 0 else 'n/a'}"]


def _probe_lines(df: pd.DataFrame, stem: str) -> list[str]:
    metric = next((c for c in ("accuracy", "r2", "metric_value", "value", "score") if c in df.columns), None)
    if metric is None or not len(df):
        return [f"{stem}: {len(df)} rows (no recognised metric column)"]
    site = next((c for c in ("site", "hook", "name") if c in df.columns), None)
    best = df.loc[df[metric].astype(float).idxmax()]
    line = f"{stem}: best {metric} {_fmt(float(best[metric]))}" + (f" at {best[site]}" if site else "")
    if "encoder" in df.columns:
        per = df.groupby("encoder")[metric].max()
        line += "; best per encoder: " + ", ".join(f"{e} {_fmt(float(v))}" for e, v in per.items())
    return [line]


def claim_summaries(tables: dict[str, pd.DataFrame]) -> dict[str, list[str]]:
    """{claim key: bullet lines} computed from the tables; ["no data ..."] where nothing fits."""
    out: dict[str, list[str]] = {k: [] for k in CLAIMS}
    for stem, df in tables.items():
        kind = _kind(stem, df)
        if not len(df) or kind is None:
            continue
        try:
            if kind == "injection":
                out["claim1"] += _injection_lines(df)
            elif kind == "attention":
                lines = _attention_lines(df, stem)
                out["claim1"] += lines
                if df["encoder"].nunique() > 1:
                    out["claim3"] += lines
            elif kind == "logit_lens":
                if stem.endswith("_summary") or f"{stem}_summary" not in tables:
                    out["claim1"] += _logit_lens_lines(df)
            elif kind == "compare":
                out["claim2"] += _variant_lines(df, LAL_VARIANTS, PLITS_VARIANTS)
                out["claim3"] += _variant_lines(df, ENSEMBLE_VARIANTS, SINGLE_VARIANTS)
            elif kind == "diff":
                out["claim2"] += _diff_lines(df, LAL_VARIANTS, PLITS_VARIANTS)
                out["claim3"] += _diff_lines(df, ENSEMBLE_VARIANTS, SINGLE_VARIANTS)
            elif kind == "probe":
                out["claim3"] += _probe_lines(df, stem)
        except (KeyError, ValueError, TypeError, IndexError) as e:
            out["claim1" if kind in ("injection", "logit_lens") else "claim3"].append(f"{stem}: could not summarise ({e})")
    for k, lines in out.items():
        if not lines:
            out[k] = ["no data: no CSV in this run folder bears on this claim"]
    return out


# ---------------------------------------------------------------------------------------------- figures
_PLOTLY_DIV = re.compile(r'<div id="[^"]+" class="plotly-graph-div"[^>]*></div>\s*<script[^>]*>.*?</script>', re.S)


def _embed_figure(text: str, seen: dict[str, str] | None = None, heading: str = "") -> tuple[str, bool]:
    """(html fragment, uses plotly.js) for one figure file: a <figure> with the plot and, when the figure has
    one (``layout.meta["caption"]``, workbench.analysis.figures.add_caption), its caption as <figcaption>."""
    from workbench.analysis.figures import caption_from_html

    found = _PLOTLY_DIV.findall(text)
    if found:
        body, uses = "\n".join(found), True
    else:
        body, uses = (f'<iframe sandbox="allow-scripts" style="width:100%;height:600px;border:0" '
                      f'srcdoc="{html.escape(text, quote=True)}"></iframe>'), False
    caption = caption_from_html(text)
    if caption and seen is not None and caption in seen:  # the same builder's caption: shown once, referred to
        cap = (f"<figcaption>{html.escape(heading)}: read as the caption of “{html.escape(seen[caption])}” "
               "above.</figcaption>")
    else:
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        if caption and seen is not None:
            seen[caption] = heading
    return f"<figure>{body}{cap}</figure>", uses


def _heading(stem: str) -> str:
    """A section heading in words for an output stem: the registered analysis's title (workbench.claims), with
    the rest of the stem in words for pattern entries (``probe_*``, ``attention_pal*``)."""
    from fnmatch import fnmatch

    from workbench.claims import CLAIMS, EXTRA

    for an in [a for c in CLAIMS.values() for a in c.analyses] + list(EXTRA):
        pat = an.stem if "*" in an.stem else an.stem + "*"
        if fnmatch(stem, pat):
            rest = stem[len(an.stem.rstrip("*")):].strip("_").replace("_", " ")
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
    """The verdict table of :mod:`workbench.verdict` (``verdict.csv``), one block per claim."""
    items = []
    for r in df.to_dict("records"):
        items.append(f'<div class="verdict">{_verdict_words(r)} {html.escape(str(r.get("evidence", "")))}<br>'
                     f'<i>inside the model:</i> {html.escape(str(r.get("inside", "")))}<br>'
                     f'<small>{html.escape(str(r.get("scope", "")))}</small></div>')
    return "".join(items)


_COLOUR = {"agree": "#1a7f37", "disagree": "#cf222e", "inconclusive": "#9a6700"}


def _verdict_words(r: dict) -> str:
    v = str(r.get("verdict", ""))
    one = r.get("verdict_one_seed")
    side = (f' (seed 0 alone: <span style="color:{_COLOUR.get(str(one), "#555")}">{html.escape(str(one).upper())}</span>)'
            if isinstance(one, str) and one and one != v else "")
    return (f'<b>{html.escape(str(r.get("title", r["claim"])))}: <span style="color:{_COLOUR.get(v, "#555")}">'
            f'{html.escape(v.upper())}</span> with the paper\'s direction{side}.</b>')


def _table_html(stem: str, df: pd.DataFrame) -> str:
    preview = df.head(12).to_html(index=False, float_format=lambda x: f"{x:.4g}", border=0, classes="tbl")
    return (f"<details><summary>Table: {html.escape(_heading(stem).lower())} ({len(df)} rows x {len(df.columns)} "
            f"columns, first 12 shown; <code>{html.escape(stem)}.csv</code>)</summary><div class=\"wide\">{preview}"
            "</div></details>")


def build_report(run: str | Path, title: str | None = None) -> str:
    """The report page for a run folder (see the module docstring): the verdicts and their forest plot first, then
    one section per claim of :mod:`workbench.claims` with its figures, then the other analyses."""
    from fnmatch import fnmatch

    from workbench.claims import CLAIMS, LAYER_CURVE_STEM
    from workbench.stats import VERDICT_RULE

    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist; write analyses into it first, e.g. "
                                f"python -m workbench.attention --out-dir {run}")
    tables = read_tables(run)
    figures = {p.stem: p for p in sorted(run.glob("*.html")) if p.name != REPORT_NAME}
    need_plotly = False

    captions: dict[str, str] = {}  # caption -> heading of the figure that shows it

    def figure(stem: str) -> str:
        nonlocal need_plotly
        frag, uses = _embed_figure(figures[stem].read_text(errors="replace"), captions, _heading(stem))
        need_plotly |= uses
        return f"<h3>{html.escape(_heading(stem))}</h3>\n{frag}"

    parts, used = [], set()
    verdicts = tables.get("verdict")
    verdicts = verdicts if verdicts is not None and {"claim", "verdict"} <= set(verdicts.columns) else None
    from workbench.forest import forest_figure, forest_rows

    rows = forest_rows(run)
    if len(rows) or verdicts is not None:
        parts.append(f"<section><h2>Verdicts at a glance</h2><p>Rule fixed in advance: {html.escape(VERDICT_RULE)} "
                     "(workbench.verdict).</p>")
        if len(rows):
            frag, _ = _embed_figure(forest_figure(rows).to_html(full_html=False, include_plotlyjs=False))
            need_plotly = True
            parts.append(frag)
        if verdicts is not None:
            parts.append(_verdict_html(verdicts))
        parts.append("</section>")
    claims = claim_summaries(tables)
    seen_lines: set[str] = set()
    by_claim = {r["claim"]: r for r in verdicts.to_dict("records")} if verdicts is not None else {}
    for key, claim in CLAIMS.items():
        body = [f"<h2>{html.escape(claim.title)}: {html.escape(claim.statement)}</h2>"]
        if key in by_claim:
            body.append(f"<p>{_verdict_words(by_claim[key])}</p>")
        lines = [ln for ln in claims.get(key, []) if ln not in seen_lines or ln.startswith("no data")]
        seen_lines.update(lines)
        if key == "claim1" and LAYER_CURVE_STEM in tables:
            from workbench.layer_curve import CONTRASTS_STEM, shape_sentence

            sentence = shape_sentence(tables[LAYER_CURVE_STEM], tables.get(CONTRASTS_STEM))
            lines = ["injection-layer curve: " + sentence] + \
                [ln for ln in lines if not ln.startswith("no data")]
        body.append("<ul>" + "".join(f"<li>{html.escape(ln)}</li>" for ln in lines) + "</ul>" if lines else "")
        for pattern in claim.figures:
            for stem in [s for s in figures if fnmatch(s, pattern) and s not in used]:
                used.add(stem)
                body.append(figure(stem))
        for stem in [s for s in tables if any(fnmatch(s, p) for p in claim.figures) and s not in used | {"verdict"}]:
            used.add(f"table:{stem}")
            body.append(_table_html(stem, tables[stem]))
        parts.append(f"<section>{''.join(body)}</section>")
    rest = [figure(s) for s in figures if s not in used]
    rest += [_table_html(s, df) for s, df in tables.items() if s not in used and f"table:{s}" not in used]
    if rest:
        parts.append(f"<section><h2>Further analyses and tables</h2>{''.join(rest)}</section>")
    if not figures and not tables:
        parts.append("<p>This run folder has no figures or CSVs yet.</p>")
    return page_html(title or f"pal-workbench report: {run.name}", parts, need_plotly)


def page_html(title: str, parts: list[str], need_plotly: bool) -> str:
    """The report page around its sections (``parts``: HTML strings): the style, plotly.js once when a part
    embeds a plotly figure (``need_plotly``), the one-caption script, the title as <h1>."""
    plotly_js = ""
    if need_plotly:
        from plotly.offline import get_plotlyjs

        from workbench.analysis.figures import CAPTION_NAME

        plotly_js = f'<script type="text/javascript">{get_plotlyjs()}</script>' + _ONE_CAPTION_JS % CAPTION_NAME
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;overflow-wrap:anywhere}"
             ".verdict{margin:0.6em 0;padding:0.5em;border-left:4px solid #888;background:#f6f8fa}"
             ".tbl{border-collapse:collapse;font-size:12px}.tbl td,.tbl th{padding:2px 6px;border-bottom:1px solid #ddd}"
             ".wide{overflow-x:auto;max-width:100%}"
             "figure{margin:0 0 1.5em;max-width:100%;overflow-x:auto}"
             "figcaption{font-size:13px;color:#444;max-width:60em;margin-top:.3em}"
             "section{border-top:1px solid #ddd;margin-top:1.5em}")
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{style}</style>{plotly_js}</head><body><h1>{html.escape(title)}</h1>{''.join(parts)}</body></html>")


#: the figure embedder and table preview of the page, for other pages (workbench.study_report)
def embed_figure(text: str, seen: dict[str, str] | None = None, heading: str = "") -> tuple[str, bool]:
    """(html fragment, uses plotly.js) for one figure file's text (see `_embed_figure`)."""
    return _embed_figure(text, seen, heading)


def table_html(stem: str, df: pd.DataFrame) -> str:
    """A collapsed preview (first 12 rows) of one table."""
    return _table_html(stem, df)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workbench.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run folder with the analyses' *.csv / *.html (e.g. results/pal)")
    p.add_argument("--out", default=None, help=f"output file (default RUN/{REPORT_NAME})")
    p.add_argument("--title", default=None)
    a = p.parse_args(argv)
    try:
        page = build_report(a.run, a.title)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out) if a.out else Path(a.run) / REPORT_NAME
    atomic_write_bytes(out, page.encode())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
