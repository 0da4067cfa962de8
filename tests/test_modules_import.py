"""Every module under src/negaug imports, so the fast subset (`pytest -m "not slow"`) touches each
one even where its behaviour is tested only by slow end-to-end tests."""
from __future__ import annotations

import importlib
import pkgutil
import runpy
import sys
from pathlib import Path

import pytest

import negaug

SRC = Path(negaug.__file__).resolve().parent


def walked_modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(negaug.__path__, prefix="negaug."))


def module_files() -> list[str]:
    """The module name of every .py file under the package, packages by their __init__."""
    names = []
    for path in SRC.rglob("*.py"):
        parts = ("negaug", *path.relative_to(SRC).with_suffix("").parts)
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def test_the_walk_finds_every_file_regression_a_folder_without_init_is_never_imported():
    """pkgutil skips a folder without __init__.py: every file must be a module the walk reaches."""
    assert walked_modules() == [name for name in module_files() if name != "negaug"]
    assert len(walked_modules()) > 100  # 137 today: the walk reached the whole package


@pytest.mark.parametrize("name", [name for name in walked_modules() if name != "negaug.__main__"])
def test_module_imports(name):
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().is_relative_to(SRC)  # this checkout's code, not an installed copy


def test_python_dash_m_negaug_runs_the_cli(monkeypatch, capsys):
    """negaug.__main__ runs the CLI when imported, so it is run as `python -m negaug --help`."""
    monkeypatch.setattr(sys, "argv", ["negaug", "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("negaug", run_name="__main__")
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "train" in out and "repro" in out
