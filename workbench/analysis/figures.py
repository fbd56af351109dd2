"""Shared figure conventions: every figure carries a caption (what is plotted, n, how to read it) below its plot
area, and the same text in ``fig.layout.meta["caption"]`` so that reports and notebooks can show it as text.

    fig = add_caption(fig, "Mean attention mass per layer over 32 examples; dashed: uniform-attention reference.")
    caption_of(fig)               # -> the text
    caption_from_html(html_text)  # -> the text, read from a figure written by plotly (write_html / write_outputs)

Axis titles name their unit in parentheses ("layer (index)", "Δ log p(answer) (nats)"), and colour bars are
titled with units; tests/analysis/test_figures.py checks both for every figure builder.
"""

from __future__ import annotations

import json
import numbers
import re
import textwrap

__all__ = ["CAPTION_NAME", "add_caption", "caption_of", "caption_from_html"]

CAPTION_NAME = "caption"  # the caption annotation's ``name``
_DEFAULT_WIDTH, _DEFAULT_HEIGHT = 700, 450  # plotly's defaults when layout.width / height are unset
_FONT = 11
_LINE_PX = 15  # height of one caption line at font size 11
_CHAR_PX = 6.2  # mean width of one character at font size 11 (sans-serif), generous for wrapping
_TICK_CHAR_PX = 5.0  # mean width of one tick-label character at plotly's default font size 12


def _bottom_xaxes(fig) -> list[str]:
    """Layout keys ("xaxis", "xaxis2", ...) of the x axes whose subplot touches the bottom of the plot area."""
    keys = [k for k in fig.layout if k.startswith("xaxis")] or ["xaxis"]
    out = []
    for k in keys:
        anchor = fig.layout[k].anchor
        ykey = "yaxis" if anchor in (None, "y", "free") else "yaxis" + str(anchor)[1:]
        dom = fig.layout[ykey].domain if ykey in fig.layout else None
        if dom is None or dom[0] <= 0.01:
            out.append(k)
    return out


def _tick_label_px(fig) -> int:
    """Rough height of the bottom x axes' tick labels. Plotly rotates category labels that would overlap side by
    side: by 30 degrees (about half their length high), or to vertical when even that is too tight."""
    width = fig.layout.width or _DEFAULT_WIDTH
    margins = (fig.layout.margin.l if fig.layout.margin.l is not None else 80) + (
        fig.layout.margin.r if fig.layout.margin.r is not None else 80
    )
    best = 18
    for k in _bottom_xaxes(fig):
        ref = "x" + k[5:]
        labels: list[str] = []
        for tr in fig.data:
            if (getattr(tr, "xaxis", None) or "x") == ref and getattr(tr, "x", None) is not None:
                xs = list(tr.x)
                if xs and not all(isinstance(v, numbers.Number) for v in xs):
                    labels += [str(v) for v in xs]
        ax = fig.layout[k] if k in fig.layout else None
        if ax is not None and ax.ticktext:
            labels += [str(t) for t in ax.ticktext]
        if not labels:
            continue
        dom = ax.domain if ax is not None and ax.domain else (0, 1)
        span = max(60.0, (width - margins) * (dom[1] - dom[0]))
        longest = max(len(s) for s in labels) * _TICK_CHAR_PX
        n = len(set(labels))
        if n * longest <= span:
            continue  # side by side
        best = max(best, int(min(longest, 220)) + 10 if n * 26 > span else int(0.5 * min(longest, 220)) + 16)
    return best


def add_caption(fig, text: str, *, below_px: int | None = None, grow: bool = True):
    """Write ``text`` (plain text: ``<``, ``>`` and ``&`` are shown as they are) as a caption under the plot
    area of ``fig`` (a paper-anchored, left-aligned annotation, wrapped to the figure width) and store it in
    ``fig.layout.meta["caption"]``. The bottom margin is set to fit tick labels, axis title and caption; with
    ``grow`` the figure's height grows by the caption's height so the plot area keeps its size. Calling it
    again replaces the caption. Returns ``fig``.

    below_px: pixels between the bottom of the plot area and the caption (default: estimated from the tick
    labels of the bottom x axes plus room for the axis title)."""
    plain = " ".join(str(text).split())
    if not plain:
        raise ValueError("a figure caption must not be empty")
    width = fig.layout.width or _DEFAULT_WIDTH
    chars = max(50, int((width - 40) / _CHAR_PX))
    lines = textwrap.wrap(plain, chars, break_long_words=False, break_on_hyphens=False) or [plain]
    if below_px is None:
        has_title = any(fig.layout[k].title.text for k in _bottom_xaxes(fig) if k in fig.layout)
        below_px = _tick_label_px(fig) + (32 if has_title else 8) + 10
    block = len(lines) * _LINE_PX + 12
    old = [a for a in (fig.layout.annotations or ()) if a.name != CAPTION_NAME]
    had = any(a.name == CAPTION_NAME for a in (fig.layout.annotations or ()))
    fig.layout.annotations = old
    escaped = [ln.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for ln in lines]
    fig.add_annotation(
        text="<br>".join(escaped),
        name=CAPTION_NAME,
        xref="paper",
        yref="paper",
        x=0,
        y=0,
        xanchor="left",
        yanchor="top",
        yshift=-below_px,
        showarrow=False,
        align="left",
        font={"size": _FONT, "color": "#444"},
    )
    meta = (
        dict(fig.layout.meta)
        if isinstance(fig.layout.meta, dict)
        else ({} if fig.layout.meta is None else {"value": fig.layout.meta})
    )
    meta["caption"] = plain
    layout: dict = {"meta": meta, "margin": {"b": below_px + block + 8}}
    if grow and not had:
        layout["height"] = (fig.layout.height or _DEFAULT_HEIGHT) + block
    fig.update_layout(**layout)
    return fig


def caption_of(fig) -> str | None:
    """The caption stored by `add_caption` (None if the figure has none)."""
    meta = fig.layout.meta
    return meta.get("caption") if isinstance(meta, dict) else None


_META_CAPTION = re.compile(r'"meta"\s*:\s*\{[^{}]*?"caption"\s*:\s*("(?:[^"\\]|\\.)*")')


def caption_from_html(text: str) -> str | None:
    """The caption of a figure written by plotly (``write_html`` / ``write_outputs``), read from the layout
    JSON in the page; None if it has none."""
    m = _META_CAPTION.search(text)
    if not m:
        return None
    try:
        return json.loads(m.group(1)) or None
    except ValueError:
        return None
