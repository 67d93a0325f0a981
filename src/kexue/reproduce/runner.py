"""Run reproductions: a missing data set makes an entry ``not run``, an exception ``error``.

With ``jobs`` > 1 the entries run in that many worker processes (spawned, one torch thread each), except those whose
module sets ``EXCLUSIVE = True`` (they time code, and a neighbour on the same cores would skew it): these run
afterwards in this process, with nothing beside them. Entries whose modules set the same ``GROUP`` (they share runs
through a cache in the process, as realformer and talking_heads share their baseline) run one after the other in one
worker. Outcomes come back in the order of ``names``.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from ..data.registry import MissingData
from . import load
from .result import Post, Result


@dataclass
class Outcome:
    """What became of one entry: its result, or why there is none (``not_run``: the missing-data message).
    ``post`` is the entry module's ``POST``, so that the report can name the post of an entry without a result."""

    name: str
    seconds: float
    result: Result | None = None
    error: str | None = None
    not_run: str | None = None
    post: Post | None = None

    @property
    def verdict(self) -> str:
        """The result's verdict, else ``not run`` or ``error``."""
        if self.result is not None:
            return self.result.verdict
        return "not run" if self.not_run is not None else "error"


def run_one(name: str, quick: bool) -> Outcome:
    """Run one entry and classify what happened; never raises for the entry's own failures."""
    t0 = time.perf_counter()
    post = None
    try:
        module = load(name)
        post = getattr(module, "POST", None)
        result = module.run(quick=quick)
        if result.name != name:
            raise RuntimeError(f"reproduction {name!r} returned a result named {result.name!r}")
        return Outcome(name, time.perf_counter() - t0, result=result, post=post)
    except MissingData as e:
        return Outcome(name, time.perf_counter() - t0, not_run=str(e), post=post)
    except Exception:  # any failure of an entry: the report shows it; the run goes on
        return Outcome(name, time.perf_counter() - t0, error=traceback.format_exc(), post=post)


def _log(o: Outcome, log: Callable[[str], None]) -> None:
    if o.result is not None:
        log(f"[{o.name}] {o.verdict} in {o.seconds:.1f}s: {o.result.measured}")
    elif o.not_run is not None:
        log(f"[{o.name}] not run: {o.not_run}")
    else:
        log(f"[{o.name}] ERROR after {o.seconds:.1f}s\n{o.error}")


def exclusive(name: str) -> bool:
    """Whether entry ``name`` must run with nothing beside it (its module sets ``EXCLUSIVE = True``)."""
    return bool(getattr(load(name), "EXCLUSIVE", False))


def _run_group(names: list[str], quick: bool) -> list[Outcome]:
    return [run_one(n, quick) for n in names]


def _worker_init() -> None:
    from ..env import set_threads

    set_threads()


def run_all(names: list[str], quick: bool, log: Callable[[str], None] = print, jobs: int = 1) -> list[Outcome]:
    """Run each reproduction, logging one line per entry (the traceback too for an ``error``); ``jobs`` worker
    processes for the entries that may share the machine (module docstring)."""
    if jobs < 1:
        raise ValueError(f"expected jobs >= 1, got {jobs}")
    mode = "quick" if quick else "full"
    done: dict[str, Outcome] = {}
    alone = [n for n in names if jobs == 1 or exclusive(n)]
    shared = [n for n in names if n not in alone]
    if shared:
        log(f"running {len(shared)} entries ({mode}) in {jobs} processes: {', '.join(shared)}")
        ctx = multiprocessing.get_context("spawn")
        groups: dict[str, list[str]] = {}
        for n in shared:
            groups.setdefault(getattr(load(n), "GROUP", None) or n, []).append(n)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init) as pool:
            # the larger groups first, so that the longest task does not start last
            futures = {pool.submit(_run_group, group, quick): group
                       for group in sorted(groups.values(), key=len, reverse=True)}
            for fut in as_completed(futures):
                group = futures[fut]
                try:
                    outs = fut.result()
                except Exception:  # a worker that died (or a result that would not pickle)
                    outs = [Outcome(n, 0.0, error=traceback.format_exc()) for n in group]
                for o in outs:
                    done[o.name] = o
                    _log(o, log)
    for name in alone:
        log(f"[{name}] running ({mode}) ...")
        done[name] = run_one(name, quick)
        _log(done[name], log)
    return [done[n] for n in names]
