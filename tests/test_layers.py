"""The package's layers (docs/architecture.md): commands at the top of ``workbench/`` are imported by nobody, every
import points down the stages (the import-linter contract in pyproject.toml), and no two modules import each other,
directly or around a loop (function-level imports count: grimp reads them too)."""

from __future__ import annotations

import ast
import importlib
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


def _command_tree(name: str) -> ast.Module:
    return ast.parse((ROOT / "workbench" / f"{name}.py").read_text())


def _calls(node: ast.AST) -> set[str]:
    return {
        (n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", ""))
        for n in ast.walk(node)
        if isinstance(n, ast.Call)
    }


@pytest.mark.parametrize("name", COMMANDS)
def test_a_command_is_a_parser_and_one_call(name):
    """A command file holds its usage docstring, ``build_parser()`` (and helpers that add arguments) and a ``main``
    that parses and makes one call into the library; no classes, no other logic."""
    tree = _command_tree(name)
    assert ast.get_docstring(tree), f"workbench/{name}.py: no usage docstring"
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "build_parser" in funcs and "main" in funcs, f"workbench/{name}.py needs build_parser() and main(argv)"
    assert not [n for n in tree.body if isinstance(n, ast.ClassDef)], f"workbench/{name}.py defines a class"
    body = [
        s
        for s in funcs["main"].body[bool(ast.get_docstring(funcs["main"])) :]
        if not isinstance(s, ast.Import | ast.ImportFrom)
    ]
    parse = body[:-1]  # at most `args = build_parser().parse_args(argv)` before the call
    assert len(parse) <= 1 and all(isinstance(s, ast.Assign) and "parse_args" in _calls(s) for s in parse), (
        f"workbench/{name}.py: main must parse its flags and make one call, nothing else"
    )
    assert isinstance(body[-1], ast.Return | ast.Expr) and isinstance(body[-1].value, ast.Call), (
        f"workbench/{name}.py: main must end in one call into the library"
    )
    for fname, f in funcs.items():
        if fname not in ("main", "build_parser"):
            assert "add_argument" in _calls(f), f"workbench/{name}.py: {fname} adds no argument (library code?)"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_builds_its_parser(name):
    """``python -m workbench.NAME --help`` works: the command imports and its parser names the command."""
    module = importlib.import_module(f"workbench.{name}")
    assert f"python -m workbench.{name}" in module.build_parser().format_help()


# Where a module or function may exceed the size limits, with the reason (none today).
SIZE_EXCEPTIONS: dict[str, str] = {}


def test_modules_and_functions_stay_small():
    """No module in workbench/ over 400 lines, no function over 60 (docs/architecture.md), except SIZE_EXCEPTIONS."""
    too_big = []
    for path in sorted((ROOT / "workbench").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > 400 and rel not in SIZE_EXCEPTIONS:
            too_big.append(f"{rel}: {len(text.splitlines())} lines")
        for n in ast.walk(ast.parse(text)):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60:
                if f"{rel}:{n.name}" not in SIZE_EXCEPTIONS:
                    too_big.append(f"{rel}:{n.name} (line {n.lineno}): {n.end_lineno - n.lineno + 1} lines")
    assert too_big == [], "split these (or add them to SIZE_EXCEPTIONS with the reason):\n" + "\n".join(too_big)
