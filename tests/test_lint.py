"""Lint is pinned: `ruff check` (rules and widths in pyproject.toml) passes on the code, and no
function in src/ grows past 50 lines (STYLE.md: functions fit on a screen) beyond a named few."""
from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 50

# module:qualified name -> its length today, for a function that cannot be split yet (none: the
# issue-24 refactor split the last three, _loop, run_session and evaluate_run)
LONG_FUNCTIONS: dict[str, int] = {}


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff_check_passes():
    env = {**os.environ, "RAYON_NUM_THREADS": "1"}  # ruff's own threads: the suite runs on one core
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "src", "tests", "benchmarks", "examples"],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, f"ruff check found problems (`ruff check --fix` mends the safe ones):\n{done.stdout}"


def function_lengths(source: str, module: str) -> dict[str, int]:
    """`module:qualified name` -> lines from `def` to the function's last line (decorators not
    counted, docstring counted), for every function and method, nested ones included."""
    lengths = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    lengths[f"{module}:{name}"] = child.end_lineno - child.lineno + 1
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return lengths


def src_function_lengths() -> dict[str, int]:
    lengths = {}
    for path in sorted((ROOT / "src").rglob("*.py")):
        parts = path.relative_to(ROOT / "src").with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        lengths.update(function_lengths(path.read_text(), module))
    return lengths


def test_function_lengths_by_hand():
    source = (
        "@decorator\n"
        "def short():\n"
        "    return 1\n"
        "\n"
        "class Box:\n"
        "    def method(self):\n"
        '        """Doc."""\n'
        "        def inner():\n"
        "            pass\n"
        "        return inner\n"
    )
    assert function_lengths(source, "m") == {"m:short": 2, "m:Box.method": 5, "m:Box.method.inner": 2}


def test_no_new_function_over_50_lines():
    lengths = src_function_lengths()
    assert len(lengths) > 1000  # 1422 functions today: the walk read the whole package
    too_long = {name: n for name, n in lengths.items() if n > MAX_FUNCTION_LINES and name not in LONG_FUNCTIONS}
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines (split them): {too_long}"


def test_the_allowed_long_functions_only_shrink():
    lengths = src_function_lengths()
    for name, allowed in LONG_FUNCTIONS.items():
        assert name in lengths and lengths[name] > MAX_FUNCTION_LINES, (
            f"{name} is gone or fits in {MAX_FUNCTION_LINES} lines now: remove it from LONG_FUNCTIONS in tests/test_lint.py")
        assert lengths[name] <= allowed, f"{name} grew from {allowed} to {lengths[name]} lines: split it instead"
