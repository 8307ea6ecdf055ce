"""Every script in scripts/ still imports against the package as it is laid out now (the scripts
reproduce BENCHMARKS.md's numbers and the shipped files; a move in the package must not break them)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
HELPERS = {"common", "quality_sets", "residual_store"}  # imported by other scripts, not run on their own


@pytest.mark.parametrize("name", sorted(p.stem for p in SCRIPTS.glob("*.py")))
def test_script_imports(name, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    monkeypatch.setattr(sys, "argv", [name])
    module = importlib.import_module(name)
    if name not in HELPERS:
        assert callable(getattr(module, "main", None)), f"scripts/{name}.py has no main()"


@pytest.mark.parametrize("path", sorted(SCRIPTS.glob("*.py")), ids=lambda p: p.stem)
def test_scripts_share_code_only_through_the_helpers(path):
    """A script imports the package and the helper modules, never another script or tests/ (what
    two benchmarks share lives in one helper, not in whichever script had it first)."""
    import ast

    scripts = {p.stem for p in SCRIPTS.glob("*.py")}
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
    assert not (imported & scripts) - HELPERS, f"{path.name} imports another script"
    assert "conftest" not in imported and "tests" not in imported, f"{path.name} imports the tests"
    assert "sys.path.insert" not in path.read_text(encoding="utf-8"), f"{path.name} edits sys.path"
