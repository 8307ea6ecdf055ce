"""Every script in scripts/ still imports against the package as it is laid out now (the scripts
reproduce BENCHMARKS.md's numbers and the shipped files; a move in the package must not break them)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
HELPERS = {"common", "residual_store"}  # imported by other scripts, not run on their own


@pytest.mark.parametrize("name", sorted(p.stem for p in SCRIPTS.glob("*.py")))
def test_script_imports(name, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    monkeypatch.setattr(sys, "argv", [name])
    module = importlib.import_module(name)
    if name not in HELPERS:
        assert callable(getattr(module, "main", None)), f"scripts/{name}.py has no main()"
