"""Helpers shared by reproductions: matplotlib set-up and seeded generators."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fmt(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}"
