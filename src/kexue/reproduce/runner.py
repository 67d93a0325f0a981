"""Run reproductions one after another: a missing data set makes an entry ``not run``, an exception ``error``."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Callable

from ..data.registry import MissingData
from . import load
from .result import Result


@dataclass
class Outcome:
    """What became of one entry: its result, or why there is none (``not_run``: the missing-data message)."""

    name: str
    seconds: float
    result: Result | None = None
    error: str | None = None
    not_run: str | None = None

    @property
    def verdict(self) -> str:
        """The result's verdict, else ``not run`` or ``error``."""
        if self.result is not None:
            return self.result.verdict
        return "not run" if self.not_run is not None else "error"


def run_one(name: str, quick: bool) -> Outcome:
    """Run one entry and classify what happened; never raises for the entry's own failures."""
    t0 = time.perf_counter()
    try:
        result = load(name).run(quick=quick)
        if result.name != name:
            raise RuntimeError(f"reproduction {name!r} returned a result named {result.name!r}")
        return Outcome(name, time.perf_counter() - t0, result=result)
    except MissingData as e:
        return Outcome(name, time.perf_counter() - t0, not_run=str(e))
    except Exception:  # noqa: BLE001 - the report shows it; the run goes on
        return Outcome(name, time.perf_counter() - t0, error=traceback.format_exc())


def run_all(names: list[str], quick: bool, log: Callable[[str], None] = print) -> list[Outcome]:
    """Run each reproduction in turn, logging one line per entry (the traceback too for an ``error``)."""
    outcomes = []
    for name in names:
        log(f"[{name}] running ({'quick' if quick else 'full'}) ...")
        o = run_one(name, quick)
        if o.result is not None:
            log(f"[{name}] {o.verdict} in {o.seconds:.1f}s: {o.result.measured}")
        elif o.not_run is not None:
            log(f"[{name}] not run: {o.not_run}")
        else:
            log(f"[{name}] ERROR after {o.seconds:.1f}s\n{o.error}")
        outcomes.append(o)
    return outcomes
