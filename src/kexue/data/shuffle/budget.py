"""Sizes: ``parse_size`` for ``--memory``-style strings, :class:`Budget`, how a memory budget is spent, and
:func:`fit_memory`, the budget a run can use on this machine for its input."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .errors import InputError
from .reader import RECORD_COST

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_MIN_MEMORY = 128


def parse_size(value: str | int, name: str | None = None) -> int:
    """Bytes from ``"512M"``, ``"1G"``, ``"1.5G"``, ``"64KiB"`` or an int (binary units: 1K = 1024); ``name``, the
    argument it came as, is named in the error (an :class:`InputError`, also a ``ValueError``)."""
    what = f"{name} to be a" if name else "a"
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        n = int(value)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(value), re.IGNORECASE)
        if not m:
            raise InputError(f"expected {what} size such as 512M, 1G or 1048576, got {value!r}")
        n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if n <= 0:
        raise InputError(f"expected {what} positive size, got {value!r}")
    return n


@dataclass(frozen=True)
class Budget:
    """How a memory budget is spent.

    ``staging``: the output gather buffer (memory / 16, at most 8 MiB); ``block``: bytes read per call, also
    reserved for the separator scan's temporaries (memory / 16, at most 16 MiB); ``capacity``: one in-memory
    chunk, its bytes plus ``RECORD_COST`` per record, so the longest record is ``capacity - RECORD_COST``. A
    further 2 ``staging`` bytes are reserved for per-batch index temporaries (:func:`~.sinks.emit` batches at most
    ``max_batch`` records, about 130 bytes of temporaries each) and memory / 16 as slack for the allocator. Merge
    read windows and their indexes take at most half of ``capacity`` (the chunk buffer is freed before the
    merge). Budgets down to 128 bytes are accepted so that tests can force many chunks with a few records.
    """

    memory: int
    staging: int
    block: int
    capacity: int
    window_min: int
    max_batch: int

    @classmethod
    def of(cls, memory: int) -> Budget:
        if memory < _MIN_MEMORY:
            raise InputError(f"expected memory >= {_MIN_MEMORY} bytes, got {memory}")
        staging = min(max(memory // 16, 16), 8 << 20)
        block = min(max(memory // 16, 16), 16 << 20)
        # memory / 16 more is left as slack for the allocator (freed arrays are not always returned at once)
        capacity = memory - 3 * staging - block - memory // 16
        window_min = min(max(memory // 64, 16), 64 << 10)
        return cls(memory, staging, block, capacity, window_min, max(1, staging // 256))

    @property
    def max_record(self) -> int:
        return self.capacity - RECORD_COST

    def window(self, m: int) -> int:
        """Read buffer per chunk when merging ``m`` chunks: clamp(capacity / (3 m), window_min, 4 MiB).

        The spec's rule is clamp(B / (2 m), 64 KiB, 4 MiB). Here a window's record index (up to half its bytes) is
        counted too, hence a third of the chunk capacity per window rather than half the budget, and the floor
        scales down for budgets below 4 MiB (``window_min``), so tiny test budgets still merge.
        """
        return max(self.window_min, min(self.capacity // (3 * m), 4 << 20))

    @property
    def max_fan_in(self) -> int:
        """The most chunks one merge can read at once with windows of at least ``window_min`` bytes."""
        return max(2, self.capacity // (3 * self.window_min))


def machine_memory() -> int | None:
    """Bytes of memory this process may still take: Linux's ``MemAvailable``, lowered to the room its cgroup (v2
    ``memory.max`` less ``memory.current``) leaves; where /proc cannot tell, the physical memory
    (``SC_PHYS_PAGES * SC_PAGE_SIZE``); None if nothing can."""
    found: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                found.append(max(0, int(limit) - int(f.read())))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(found)


def input_memory(input_bytes: int, files: int) -> int:
    """A budget (>= 128 bytes) whose one in-memory chunk holds ``input_bytes`` of input in ``files`` files, however
    short the records: at most ``input_bytes + files`` bytes (a separator added to each file) in as many records of
    ``RECORD_COST`` bytes of index each, plus one byte so that reading reaches the end of the input."""
    need = (RECORD_COST + 1) * (input_bytes + files) + 1
    memory = max(_MIN_MEMORY, need * 16 // 11 + 256)  # capacity is about 11/16 of small budgets, more of large ones
    while Budget.of(memory).capacity < need:
        memory += memory // 16 + 64
    return memory


class MemoryFit(NamedTuple):
    """What :func:`fit_memory` chose: ``memory``, the budget, and ``machine``, the machine's share when that is what
    lowered it (else None)."""

    memory: int
    machine: int | None


def fit_memory(memory: int, input_bytes: int | None, files: int) -> MemoryFit:
    """The budget a run uses: the smallest of ``memory`` (the user's, already checked by :meth:`Budget.of`),
    :func:`input_memory` when the input's size is known, and 3/4 of :func:`machine_memory` (the rest is left to
    the interpreter, numpy, the page cache and the allocator's slack), never below 128 bytes. The first two
    depend on the inputs and ``memory`` only, so the output stays reproducible (an input that fits one chunk is
    shuffled the same way whatever the budget); the machine's share lowers the budget only when ``memory`` asks
    for more than the machine has."""
    wanted = memory if input_bytes is None else min(memory, input_memory(input_bytes, files))
    free = machine_memory()
    share = None if free is None else max(_MIN_MEMORY, free * 3 // 4)
    if share is not None and share < wanted:
        return MemoryFit(share, share)
    return MemoryFit(wanted, None)


__all__ = ["Budget", "MemoryFit", "fit_memory", "input_memory", "machine_memory", "parse_size"]
