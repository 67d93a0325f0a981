"""``kexue reproduce``: one module per post, each with ``run(quick: bool) -> Result``.

Modules are found by name in this package (every public module except the framework's own), so adding a
reproduction is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from .result import Kind, Post, Result, Table, Verdict

_FRAMEWORK = {"result", "report", "common", "rules", "runner"}


def available() -> list[str]:
    """Names of every reproduction, sorted."""
    return sorted(
        m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name not in _FRAMEWORK
    )


def load(name: str) -> ModuleType:
    names = available()
    if name not in names:
        raise ValueError(f"unknown reproduction {name!r}; available: {', '.join(names)}")
    return importlib.import_module(f"{__name__}.{name}")


__all__ = ["Kind", "Post", "Result", "Table", "Verdict", "available", "load"]
