"""The suite's own shape: ``make test`` collects tests/unit, tests/integration and tests/deploy in
one pytest run, where two test modules with the same file name cannot both be imported."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_names_are_unique_across_the_suite() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert len(names) > 50  # the whole suite was found
    assert [name for name, count in names.items() if count > 1] == []
