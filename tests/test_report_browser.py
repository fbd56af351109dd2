"""The report opens in headless Chromium: no JavaScript errors, every plotly figure drawn, a screenshot that is not
blank; and the check itself catches a page that breaks (workbench.browser_check).

Needs Chromium (Debian package ``chromium``, in .ci/apt-packages.txt): without it these tests fail with an error
that names the fix; they are not skipped.
"""

from __future__ import annotations

import pytest

from tests.analysis.test_figures import ablation_table, compare_tables, one_seed_curve, probe_frame
from tests.analysis.test_report import _attention_df, _lens_df
from workbench import browser_check as browser_check_cli
from workbench import report as report_cli
from workbench.analysis import ablation as AB
from workbench.analysis import attention as A
from workbench.analysis import core, outputs
from workbench.analysis import logit_lens as LL
from workbench.analysis import probes as PR
from workbench.claims import compare as C
from workbench.claims import layer_curve as LC
from workbench.reporting import browser_check as B
from workbench.reporting import report


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    """A run folder with six real figures (heatmaps with a shared colour axis, subplots, bars, lines) and its
    report, written with the CLI. PNG export is off here: it is not what is tested."""
    run = tmp_path_factory.mktemp("browser") / "run"
    att, lens = _attention_df(), _lens_df()
    table, diffs = compare_tables()
    figs = {
        "attention_to_audio": (att, A.fig_heatmap(att)),
        "attention_layers": (None, A.fig_layers(att)),
        "logit_lens": (lens, LL.fig_logit_lens(lens)),
        "probe_pitch": (None, PR.probe_figure(probe_frame())),
        "ablation": (None, AB.ablation_figure(ablation_table())),
        "compare_fig": (None, C.comparison_figure(table, diffs)),
        "injection_layer_curve": (one_seed_curve(), LC.curve_figure(one_seed_curve())),
    }
    saved = outputs._PNG_OK
    outputs._PNG_OK = False
    try:
        for name, (df, fig) in figs.items():
            core.write_outputs(df, fig, run, name)
    finally:
        outputs._PNG_OK = saved
    assert report_cli.main(["--run", str(run)]) == 0
    return run / "report.html", len(figs)


def test_report_renders_in_headless_chromium_without_errors(report_page, tmp_path):
    page, n_figs = report_page
    assert page.read_text().count("<figcaption>") == n_figs
    r = B.check_report(page, screenshot=tmp_path / "shot.png")
    assert r["console_errors"] == [], r["console_errors"]
    assert r["figures_expected"] == r["figures_rendered"] == n_figs, r["figures"]
    assert all(f["traces"] >= 1 and f["width"] > 300 and f["height"] > 300 for f in r["figures"]), r["figures"]
    shot = (tmp_path / "shot.png").read_bytes()
    assert shot.startswith(b"\x89PNG") and r["screenshot_size"] == (1400, 4000)
    # a report people read: no sideways scroll at 1400 px, headings in words, each caption once
    assert not r["horizontal_overflow"] and r["page_width"] <= 1400, r["page_width"]
    assert r["file_headings"] == [] and r["duplicate_captions"] == [] and r["captions_in_plot"] == []
    assert not r["blank"] and r["colours"] > 200 and r["background_fraction"] < 0.98
    assert r["ok"]


def test_the_check_catches_script_errors_and_undrawn_figures(report_page, tmp_path, capsys):
    page, n_figs = report_page
    html = page.read_text()
    i = html.index("Plotly.newPlot(")
    broken = html[:i] + "Plotly.newPlotTypo(" + html[i + len("Plotly.newPlot(") :]  # one figure never drawn
    broken = broken.replace("</body>", "<script>console.error('boom'); undefinedFunction();</script></body>")
    bad = tmp_path / "broken.html"
    bad.write_text(broken)
    assert browser_check_cli.main([str(bad), "--screenshot", str(tmp_path / "bad.png")]) == 1
    out = capsys.readouterr().out
    assert f"{n_figs - 1}/{n_figs} figures rendered" in out and "FAILED" in out
    assert "Uncaught TypeError" in out and "newPlotTypo" in out
    assert "Uncaught ReferenceError: undefinedFunction is not defined" in out and "console.error: boom" in out
    assert "not rendered: figure div" in out


def test_the_check_catches_file_name_headings_repeated_captions_and_sideways_scroll(report_page, tmp_path, capsys):
    page, _ = report_page
    html = page.read_text()
    i = html.index("<figcaption>")
    j = html.index("</figcaption>", i) + len("</figcaption>")
    bad = html.replace(
        "<body>", "<body><h2>ablation_baseline_early_late.html</h2><div style='width:2400px'>wide</div>", 1
    )
    bad = bad.replace("</body>", html[i:j] + "</body>")  # the first caption a second time
    bad = bad.replace("Plotly.newPlot=function", "Plotly.newPlotUnused=function")  # captions drawn in the plots too
    path = tmp_path / "unreadable.html"
    path.write_text(bad)
    assert browser_check_cli.main([str(path), "--screenshot", str(tmp_path / "u.png")]) == 1
    out = capsys.readouterr().out
    assert (
        "page scrolls sideways" in out and "heading reads like a file name: 'ablation_baseline_early_late.html'" in out
    )
    assert out.count("caption shown twice") >= 2, out


def test_a_missing_browser_or_page_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-chrome"))
    with pytest.raises(B.BrowserCheckError, match=r"apt-get install chromium.*\./run setup"):
        B.find_chromium()
    monkeypatch.delenv("BROWSER_PATH")
    monkeypatch.setattr(B, "BROWSER_NAMES", ())
    from choreographer.browsers.chromium import Chromium

    monkeypatch.setattr(Chromium, "find_browser", classmethod(lambda cls, **kw: None))
    with pytest.raises(B.BrowserCheckError, match=r"no Chrome/Chromium found.*apt-get install chromium"):
        B.check_report(_write(tmp_path / "p.html", "<html><body>x</body></html>"))
    with pytest.raises(B.BrowserCheckError, match="no such page.*workbench.report"):
        B.check_report(tmp_path / "missing.html", browser="/usr/bin/true")
    assert browser_check_cli.main([str(tmp_path / "missing.html")]) == 2


def _write(path, text):
    path.write_text(text)
    return path


def test_figure_count_ignores_figures_inside_sandboxed_iframes(tmp_path):
    # not a plotly export (no script after the div): the report embeds it as an escaped iframe srcdoc
    (tmp_path / "custom_view.html").write_text('<html><body><div class="plotly-graph-div"></div></body></html>')
    page = tmp_path / "r.html"
    page.write_text(report.build_report(tmp_path))
    assert "<iframe" in page.read_text() and B._PLOTLY_DIV.findall(page.read_text()) == []
