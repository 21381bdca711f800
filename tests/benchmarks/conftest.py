"""The benchmark scripts, importable by name (they import each other as scripts do)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """``bench("bench_probe")``: the script as a module, run from its own folder's path."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module
