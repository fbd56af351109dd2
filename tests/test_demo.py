"""The demo end to end (``--quick`` sizes) on the committed checkpoints: interrupted half-way with Ctrl-C, then
run again, it continues where it stopped, redoes no finished step and leaves no corrupt output."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
INTERRUPT_AT = 12  # the step whose start line triggers Ctrl-C


def _demo(out: Path, interrupt_at: int | None = None, timeout: float = 900) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "workbench.demo", "--quick", "--out", str(out), "--no-browser-check", "--threads", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines, t0 = [], time.time()
    for line in proc.stdout:
        lines.append(line)
        if interrupt_at is not None and line.startswith(f"[{interrupt_at}/"):
            time.sleep(1.0)  # let the step get going
            proc.send_signal(signal.SIGINT)
        if time.time() - t0 > timeout:
            proc.kill()
            break
    return proc.wait(), "".join(lines)


def test_demo_resumes_after_interrupt(tmp_path):
    out = tmp_path / "demo"
    rc, log = _demo(out, interrupt_at=INTERRUPT_AT)
    assert rc == 130, log[-3000:]
    assert "interrupted during step" in log
    markers = out / ".steps"
    done = {p.stem for p in markers.glob("*.json")}
    assert {"corpus", "encode", "compare", "eval-pal"} <= done, done
    assert len(done) == INTERRUPT_AT - 1, sorted(done)
    assert not list(out.rglob("*.tmp")), "an interrupted write left a temp file"
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.csv")}

    rc, log2 = _demo(out)
    assert rc == 0, log2[-3000:]
    for i in range(1, INTERRUPT_AT):
        assert any(l.startswith(f"[{i}/") and "reused" in l for l in log2.splitlines()), f"step {i} was redone:\n{log2}"
    for name, mtime in before.items():  # finished steps' outputs untouched
        assert (out / name).stat().st_mtime_ns == mtime, name

    # every output is complete and readable
    for csv in out.glob("*.csv"):
        assert len(pd.read_csv(csv)) > 0, csv
    verdict = pd.read_csv(out / "verdict.csv")
    assert list(verdict["claim"]) == ["claim1", "claim2", "claim3"]
    assert set(verdict["verdict"]) <= {"agree", "disagree", "inconclusive"}
    report = (out / "report.html").read_text()
    assert "Verdicts" in report and report.count('class="plotly-graph-div"') >= 8
    for claim in ("Claim 1, delayed integration", "Claim 2, attention-only", "Claim 3, encoder ensemble"):
        assert claim in log2
    # the check of the committed evaluations ran and found them reproducible
    for v in ("baseline", "pal"):
        s = json.loads((markers / f"eval-{v}.json").read_text())["summary"]
        assert s["checked"] == s["fresh_rows"] > 0 and s["identical"] == s["checked"], s


def test_bad_demo_arguments_name_the_fix(tmp_path, capsys):
    from workbench.demo import main

    assert main(["--eval-rows", "0", "--out", str(tmp_path / "d")]) == 2
    assert "--eval-rows must be >= 1, got 0" in capsys.readouterr().err
    assert main(["--checkpoints", str(tmp_path / "none"), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint for ['baseline', 'delayed', 'lal', 'ensemble', 'pal', 'hybrid']" in err
    assert "./run demo --retrain" in err
    assert not (tmp_path / "d").exists()
