"""The package's layers (docs/architecture.md): commands at the top of ``workbench/`` are imported by nobody, every
import points down the stages (the import-linter contract in pyproject.toml), and no two modules import each other,
directly or around a loop (function-level imports count: grimp reads them too)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(p.stem for p in (ROOT / "workbench").glob("*.py") if p.stem != "__init__")


def _lint_imports(repo: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` (import-linter) on ``repo``'s pyproject.toml, importing ``repo``'s workbench."""
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = (
        [str(exe)]
        if exe.exists()
        else [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    )
    return subprocess.run(
        cmd + ["--no-cache"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"},
    )


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    return out


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("workbench", include_external_packages=False)


def test_layers_point_down():
    r = _lint_imports(ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 kept, 0 broken" in r.stdout


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def test_commands_are_imported_by_nobody(graph):
    assert COMMANDS, "no commands found at the top of workbench/"
    for c in COMMANDS:
        importers = sorted(graph.find_modules_that_directly_import(f"workbench.{c}"))
        assert importers == [], f"workbench.{c} is a command (python -m workbench.{c}) but {importers} import it"


def test_the_layer_check_fails_when_the_model_imports_an_analysis(tmp_path):
    """The contract can fail: a copy of the package where a module under model/ imports analysis/ breaks it."""
    shutil.copytree(ROOT / "workbench", tmp_path / "workbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "workbench" / "model" / "pal_config.py"
    target.write_text(target.read_text() + "\nfrom workbench.analysis import core  # noqa: E402,F401\n")
    r = _lint_imports(tmp_path)
    assert r.returncode != 0
    assert "workbench.model is not allowed to import workbench.analysis" in r.stdout
    assert "workbench.model.pal_config -> workbench.analysis.core" in r.stdout
