"""The bad-input matrix (issue 13, item 6): every public entry point of kexue, and a table of bad inputs each must
refuse, with the error type and the words that name the bad value.

An *entry point* is what a user calls: every function and class exported by a public package's ``__all__`` (its
constructor), every public method a class defines itself (``forward`` of a module, ``step`` and ``load_state_dict``
of an optimizer, and so on), every ``kexue`` subcommand, and the data fetcher. :func:`entry_points` lists them by
introspection, so a new export or method appears here by itself; ``test_coverage.py`` fails for one that has no row
in any ``test_*.py`` table of this folder. Not entry points (nothing there to refuse): ``Literal`` aliases and other
non-callables, exceptions and warnings, result types (``NamedTuple`` classes, and the dataclasses in
:data:`RESULT_TYPES`), and callables that take no argument.

A row is a :class:`Bad`: ``Bad("kexue.nn.pad", "ragged lengths", lambda: pad(...), ValueError, r"expected ...")``.
``call`` runs the entry point with one bad input; the test asserts it raises ``error`` whose message matches
``match`` (a regular expression searched in ``str(exc)``). For a CLI subcommand ``call`` returns the completed
process and :func:`check_cli` asserts one line on stderr, no traceback, the exit status and the words.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import os
import re
import subprocess
import sys
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: The public packages whose ``__all__`` names entry points (a subpackage is listed when users import from it).
PACKAGES = ("kexue.nn", "kexue.optim", "kexue.losses", "kexue.models", "kexue.embed", "kexue.classify", "kexue.data",
            "kexue.data.fetch", "kexue.data.shuffle", "kexue.stats", "kexue.train", "kexue.env", "kexue.generative",
            "kexue.heads")

#: Dataclasses that a function returns (its result, not something a user builds with inputs to check).
RESULT_TYPES = {
    "kexue.data.DataFile", "kexue.data.DataSet", "kexue.data.LabelledTexts", "kexue.data.STSPairs",
    "kexue.models.LoadReport", "kexue.models.TransformerOutput", "kexue.data.shuffle.ShuffleReport",
    "kexue.data.shuffle.Budget", "kexue.train.DroppedBatch", "kexue.train.Recorded", "kexue.models.Hypothesis",
}


@dataclass(frozen=True)
class Bad:
    """One row: ``entry`` (the name :func:`entry_points` gives), ``case`` (the bad input in words), ``call`` (runs the
    entry point with it), the ``error`` type it must raise and ``match``, a regex for the words naming the value."""

    entry: str
    case: str
    call: Callable[[], object]
    error: type[BaseException]
    match: str

    @property
    def id(self) -> str:
        return f"{self.entry}: {self.case}"


@dataclass(frozen=True)
class BadCLI:
    """One command-line row: ``entry`` (``"kexue CMD"``), ``case``, the ``args`` after ``kexue`` (a callable given
    a scratch folder returns them, so a row can point at files it makes there), the exit ``status`` and ``match``, a
    regex for the one line on stderr. ``env``: variables set on top of the inherited environment (the command runs
    in the scratch folder, so a relative path there names a file of it)."""

    entry: str
    case: str
    args: Callable[[Path], list[str]]
    status: int
    match: str
    env: dict[str, str] | None = None

    @property
    def id(self) -> str:
        return f"{self.entry}: {self.case}"


def check(row: Bad) -> None:
    """Run ``row`` and assert it raises ``row.error`` with a message matching ``row.match``."""
    with pytest.raises(row.error) as info:
        row.call()
    assert re.search(row.match, str(info.value)), f"{row.id}: message {str(info.value)!r} lacks {row.match!r}"


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    """``python -m kexue ARGS`` as a user types ``kexue ARGS``; text output captured."""
    return subprocess.run([sys.executable, "-m", "kexue", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600)


def check_cli(row: BadCLI, scratch: Path) -> subprocess.CompletedProcess:
    """Run ``row`` (``kexue ARGS`` in ``scratch``) and assert it is refused: exit ``row.status``, one line on stderr
    matching ``row.match``, no traceback. Returns the process for further checks (nothing written, say)."""
    env = {**os.environ, **row.env} if row.env else None
    proc = run_cli(*row.args(scratch), env=env, cwd=str(scratch))
    status, match = row.status, row.match
    err = proc.stderr.strip()
    assert proc.returncode == status, f"exit {proc.returncode}, stderr: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(err.splitlines()) == 1, f"expected one line on stderr, got {err!r}"
    assert re.search(match, err), f"stderr {err!r} lacks {match!r}"
    return proc


def _is_result_or_alias(name: str, obj: object) -> bool:
    if not callable(obj) or typing.get_origin(obj) is not None:  # Literal[...] aliases, constants
        return True
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return True
        if issubclass(obj, tuple) and hasattr(obj, "_fields"):
            return True
        if typing.is_typeddict(obj) or (dataclasses.is_dataclass(obj) and name in RESULT_TYPES):
            return True
    return False


def _takes_arguments(fn: Callable[..., object], bound: bool) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True
    if bound and params and params[0].name in ("self", "cls"):
        params = params[1:]
    return bool(params)


#: Methods torch calls itself (hooks), not entry points even where a kexue class overrides them.
TORCH_HOOKS = frozenset({"set_extra_state", "get_extra_state", "extra_repr", "reset_parameters", "state_dict"})

#: Exports that are not entry points, with the reason.
NOT_ENTRY_POINTS = {
    "kexue.data.fetch.add_parser": "builds the argparse parser of `kexue data`; its inputs are the `kexue data` rows",
}


def _own_methods(cls: type) -> Iterator[str]:
    """Public methods (and ``__call__``) that kexue itself defines on ``cls`` or a kexue base class of it."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("kexue"):
            continue
        for name, member in vars(klass).items():
            if name in seen or (name.startswith("_") and name != "__call__") or name in TORCH_HOOKS:
                continue
            seen.add(name)
            if isinstance(member, staticmethod):
                fn, bound = member.__func__, False
            elif isinstance(member, classmethod):
                fn, bound = member.__func__, True
                if not list(inspect.signature(fn).parameters)[1:]:
                    continue
            elif inspect.isfunction(member):
                fn, bound = member, True
            else:
                continue
            if _takes_arguments(fn, bound=bound):
                yield name


def cli_subcommands() -> list[str]:
    """``kexue CMD`` and, for a command with subcommands, ``kexue CMD SUB``, from the parser itself."""
    from kexue.cli import build_parser

    out: list[str] = []

    def walk(parser, prefix: str) -> None:
        for action in parser._actions:  # argparse keeps subparsers only here
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out.append(f"{prefix} {name}")
                    walk(sub, f"{prefix} {name}")

    walk(build_parser(), "kexue")
    return out


def entry_points() -> list[str]:
    """Every public entry point, by name: ``pkg.func``, ``pkg.Class``, ``pkg.Class.method``, ``kexue CMD``."""
    names: set[str] = set()
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        for export in mod.__all__:
            obj = getattr(mod, export)
            full = f"{pkg}.{export}"
            if full in NOT_ENTRY_POINTS or _is_result_or_alias(full, obj):
                continue
            if inspect.isclass(obj):
                if _takes_arguments(obj, bound=False):
                    names.add(full)
                names.update(f"{full}.{m}" for m in _own_methods(obj))
            elif _takes_arguments(obj, bound=False):
                names.add(full)
    names.update(cli_subcommands())
    return sorted(names)
