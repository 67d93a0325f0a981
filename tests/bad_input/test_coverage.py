"""Every public entry point has rows in the bad-input matrix, and every row names an entry point that exists."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

from _matrix import Bad, BadCLI, entry_points

HERE = Path(__file__).parent


def all_rows() -> list[Bad | BadCLI]:
    """The ``ROWS`` and ``CLI_ROWS`` of every table (``test_*.py`` here but this file)."""
    rows: list[Bad | BadCLI] = []
    for path in sorted(HERE.glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        spec = importlib.util.spec_from_file_location(f"_bad_input_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        rows.extend(getattr(module, "ROWS", []))
        rows.extend(getattr(module, "CLI_ROWS", []))
    return rows


def test_every_entry_point_has_rows():
    covered = Counter(row.entry for row in all_rows())
    missing = [e for e in entry_points() if e not in covered]
    assert not missing, f"{len(missing)} public entry points have no row in tests/bad_input: {missing}"


def test_every_row_names_an_entry_point():
    known = set(entry_points())
    stale = sorted({row.entry for row in all_rows()} - known)
    assert not stale, f"rows name entry points that do not exist (renamed or no longer public?): {stale}"


def test_rows_are_told_apart():
    ids = Counter(row.id for row in all_rows())
    assert not [i for i, n in ids.items() if n > 1], "two rows with one entry and case"
