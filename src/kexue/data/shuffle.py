"""Global shuffle of line-based files far larger than memory: exact, bounded in memory and open files, crash-safe.

From 苏剑林, "有限内存下全局打乱几百G文件（Python）" (*Globally shuffling hundreds of GB of files with limited memory
(Python)*), 2021-09-08, https://kexue.fm/archives/8662.

Records are byte strings ended by a separator (``\\n``, or ``\\0`` with ``sep=b"\\0"``); they are never decoded, so
any encoding, invalid UTF-8 and CRLF (the ``\\r`` stays with its line) pass through untouched, and empty lines are
records. A file whose last record has no separator gets one appended (``final_newline="add"``), otherwise that
record would be glued to whatever record follows it in the output; ``final_newline="error"`` refuses such input.

Methods (N records, memory budget B bytes):

* ``"merge"`` (default, exact). Split the input into chunks of at most ~B bytes, shuffle each in memory
  (Fisher-Yates) and write it to a temporary file; then merge: at every output step pick chunk j with probability
  r_j / sum_i r_i, r_j being its remaining record count, and emit its next record. *Proof of uniformity:* the output
  is fixed by the word of chunk labels (r_j copies of label j) and the in-chunk orders. A given word has probability
  prod_j r_j! / N! (the numerators run through r_j, ..., 1 for each j, the denominators through N, ..., 1), the
  in-chunk orders are independent and uniform over prod_j r_j! possibilities, and each permutation is exactly one
  (word, orders) pair, so each has probability 1/N!, whatever the chunk sizes. The labels are drawn a batch at a
  time: the composition of the next b labels is multivariate hypergeometric, and given it their order is a uniform
  shuffle, which is the same distribution as b proportional draws. When there are more chunks than the open-file
  limit (or the memory for read buffers) allows, groups of chunks are merged into larger shuffled chunks first;
  by the same proof each is a uniform shuffle of its group, so every level stays exact.
* ``"scatter"`` (exact, Rao-Sandelius). Send each record to one of K temporary bucket files chosen independently
  and uniformly, then shuffle each bucket in memory and append the buckets in order. For a fixed permutation,
  summing over the bucket sizes gives sum K^-N prod_j 1/b_j! = K^-N K^N / N! = 1/N! (multinomial theorem). A bucket
  that comes out larger than memory is scattered again with fresh randomness, which keeps it exact.
* ``"naive"``: the post's own scheme, kept for comparison, **not a uniform permutation**: shuffle each chunk, then
  for r = 1, 2, ... write record r of every not yet exhausted chunk in a random order. Output block r holds exactly
  one record of each chunk, so e.g. the first two outputs never come from the same chunk; for 2 chunks of 2 lines
  only 16 of the 24 permutations can occur. Item-position marginals are uniform when chunks are equal in size, and
  a short last chunk lands in front.

Guarantees: memory for data stays within ``memory`` (chunk bytes plus 24 bytes of index per record, read windows,
one staging buffer); open files stay under ``min(max_open, RLIMIT_NOFILE - 16)``; the input is never modified;
the output is written under a temporary name in its own folder, fsynced and renamed only when complete (shards:
a temporary folder renamed last); temporary files live in ``tempfile.mkdtemp(dir=tmp_dir)`` (default: the output's
folder, not ``/tmp``, which is often RAM) and are removed on success, error, SIGINT and SIGTERM; free space is
checked before starting; a full disk mid-run is an :class:`InsufficientSpace` error with no partial output. The
same inputs (in the same order), ``memory``, ``method``, ``seed`` and library version give byte-identical output;
changing ``memory`` changes the chunking and so the output, which stays uniform. Uniformity is a property of the
algorithm given ideal randomness: no PRNG reaches all n! orders of a large chunk, which is harmless in practice.
"""

from __future__ import annotations

import math
import os
import re
import resource
import secrets
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator, Literal, Sequence

import numpy as np

from ._records import gather
from ._shuffle_io import (
    RECORD_COST,
    Chunk,
    ChunkReader,
    FileSink,
    InputError,
    InsufficientSpace,
    Interrupted,
    RecordTooLong,
    ShardSink,
    ShuffleError,
    Source,
    VerifyError,
    Window,
    checksum,
    emit,
    open_sources,
)

Method = Literal["merge", "scatter", "naive"]
METHODS: tuple[str, ...] = ("merge", "scatter", "naive")
ProgressHook = Callable[[str, int, "int | None"], None]

__all__ = [
    "Budget",
    "InputError",
    "InsufficientSpace",
    "Interrupted",
    "RecordTooLong",
    "ShuffleError",
    "ShuffleReport",
    "VerifyError",
    "add_parser",
    "external_shuffle",
    "merge_shuffle",
    "naive_rowwise_shuffle",
    "parse_size",
    "scatter_shuffle",
]

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_MIN_MEMORY = 128
_HYPERGEOM_MAX = 10**9  # numpy's multivariate_hypergeometric(method="marginals") needs sum(colors) < 1e9


def parse_size(value: str | int) -> int:
    """Bytes from ``"512M"``, ``"1G"``, ``"1.5G"``, ``"64KiB"`` or an int (binary units: 1K = 1024)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        n = int(value)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(value), re.IGNORECASE)
        if not m:
            raise InputError(f"expected a size such as 512M, 1G or 1048576, got {value!r}")
        n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if n <= 0:
        raise InputError(f"expected a positive size, got {value!r}")
    return n


@dataclass(frozen=True)
class Budget:
    """How a memory budget is spent.

    ``staging``: the output gather buffer; ``block``: bytes read per call, also reserved for the separator
    scan's temporaries; ``capacity``: one in-memory chunk, its bytes plus ``RECORD_COST`` per record. A further
    2 ``staging`` bytes are reserved for per-batch index temporaries (:func:`emit` batches at most ``max_batch``
    records, about 130 bytes of temporaries each), and memory / 16 as slack. Merge read windows and their indexes take at most half of
    ``capacity`` (the chunk buffer is freed before the merge).
    """

    memory: int
    staging: int
    block: int
    capacity: int
    window_min: int
    max_batch: int

    @classmethod
    def of(cls, memory: int) -> "Budget":
        if memory < _MIN_MEMORY:
            raise InputError(f"memory must be at least {_MIN_MEMORY} bytes, got {memory}")
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
        """Read buffer per chunk when merging ``m`` chunks: clamp(capacity / (3 m), window_min, 4 MiB)."""
        return max(self.window_min, min(self.capacity // (3 * m), 4 << 20))

    @property
    def max_fan_in(self) -> int:
        """The most chunks one merge can read at once with windows of at least ``window_min`` bytes."""
        return max(2, self.capacity // (3 * self.window_min))


@dataclass
class ShuffleReport:
    """What :func:`external_shuffle` did."""

    method: str
    seed: int
    memory: int
    records: int
    bytes_in: int
    bytes_out: int
    added_separators: int
    chunks: int  # in-memory chunks (merge, naive) or first-level buckets (scatter); 1 when it all fit in memory
    levels: int  # extra merge levels (merge) or re-scattered buckets (scatter)
    outputs: list[str]
    seconds: float
    peak_rss: int  # bytes, the process's high-water mark so far
    max_open: int
    verified: bool | None = None
    checksum: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return self.bytes_in / 1e6 / self.seconds if self.seconds > 0 else float("inf")


# --------------------------------------------------------------------------------------------------------------
# In-memory references (the tests and the reproduction check them, and the file-based code, against enumeration)


def naive_rowwise_shuffle(chunks: Sequence[Sequence[Any]], rng: np.random.Generator) -> list[Any]:
    """The post's scheme on in-memory chunks: shuffle each chunk, then for r = 0, 1, ... emit item r of every chunk
    that still has one, in a uniformly random order. Not a uniform permutation (see the module docstring)."""
    shuffled = [[c[i] for i in rng.permutation(len(c))] for c in chunks]
    out: list[Any] = []
    for r in range(max((len(c) for c in shuffled), default=0)):
        row = [c[r] for c in shuffled if r < len(c)]
        out.extend(row[i] for i in rng.permutation(len(row)))
    return out


def merge_shuffle(chunks: Sequence[Sequence[Any]], rng: np.random.Generator) -> list[Any]:
    """Exact merge, one draw per item: shuffle each chunk, then repeatedly take the next item of chunk j with
    probability (remaining in j) / (remaining in all)."""
    shuffled = [[c[i] for i in rng.permutation(len(c))] for c in chunks]
    left = np.array([len(c) for c in shuffled], dtype=np.int64)
    pos = [0] * len(shuffled)
    out: list[Any] = []
    while left.sum():
        j = int(rng.choice(len(left), p=left / left.sum()))
        out.append(shuffled[j][pos[j]])
        pos[j] += 1
        left[j] -= 1
    return out


def scatter_shuffle(records: Sequence[Any], K: int, rng: np.random.Generator) -> list[Any]:
    """Rao-Sandelius: send each item to one of ``K`` buckets uniformly at random, shuffle each bucket, concatenate."""
    if K < 1:
        raise ValueError(f"expected K >= 1 buckets, got {K}")
    labels = rng.integers(K, size=len(records))
    out: list[Any] = []
    for j in range(K):
        bucket = [records[i] for i in np.flatnonzero(labels == j)]
        out.extend(bucket[i] for i in rng.permutation(len(bucket)))
    return out


# --------------------------------------------------------------------------------------------------------------
# Label sources for the merge phase: which chunk each next output record comes from.


def draw_composition(rng: np.random.Generator, remaining: np.ndarray, b: int) -> np.ndarray:
    """How many of the next ``b`` records of a uniformly random arrangement come from each chunk (multivariate
    hypergeometric). numpy's sampler needs fewer than 1e9 records in all; above that, the same law is drawn as the
    chunk counts of a uniformly random b-subset of the record positions."""
    total = int(remaining.sum())
    if total < _HYPERGEOM_MAX:
        return rng.multivariate_hypergeometric(remaining, b, method="marginals")
    picks = rng.choice(total, size=b, replace=False)
    return np.bincount(np.searchsorted(np.cumsum(remaining), picks, side="right"), minlength=remaining.size)


class _ProportionalLabels:
    """Exact merge labels: each batch's composition is hypergeometric, its order a uniform shuffle."""

    def __init__(self, counts: np.ndarray, rng: np.random.Generator) -> None:
        self.left = counts.astype(np.int64).copy()
        self.rng = rng

    def draw(self, b: int) -> np.ndarray:
        b = min(b, int(self.left.sum()))
        comp = draw_composition(self.rng, self.left, b)
        self.left -= comp
        labels = np.repeat(np.arange(self.left.size, dtype=np.int32), comp)
        self.rng.shuffle(labels)
        return labels


class _RowwiseLabels:
    """The post's scheme: round r emits one record of every chunk not yet exhausted, in a random order."""

    def __init__(self, counts: np.ndarray, rng: np.random.Generator) -> None:
        self.left = counts.astype(np.int64).copy()
        self.rng = rng

    def draw(self, b: int) -> np.ndarray:
        active = np.flatnonzero(self.left > 0).astype(np.int32)
        rounds = max(1, min(int(self.left[active].min()), -(-b // active.size)))
        self.left[active] -= rounds
        return self.rng.permuted(np.tile(active, (rounds, 1)), axis=1).ravel()


# --------------------------------------------------------------------------------------------------------------
# The run: context, progress, the three methods.


class _Progress:
    """A tqdm bar per pass on stderr (``True``), a hook ``(phase, done, total)`` (a callable), or nothing."""

    def __init__(self, progress: bool | ProgressHook | None) -> None:
        self.progress = progress
        self.bar: Any = None
        self.phase, self.done, self.total = "", 0, None

    def start(self, phase: str, total: int | None) -> None:
        self.stop()
        self.phase, self.done, self.total = phase, 0, total
        if self.progress is True:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=phase, unit="B", unit_scale=True, unit_divisor=1000,
                            file=sys.stderr, leave=True, mininterval=0.5, dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif callable(self.progress):
            self.progress(self.phase, self.done, self.total)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@dataclass
class _Ctx:
    budget: Budget
    sep: int
    seed: int
    method: str
    max_open: int
    tmp_parent: str
    keep_tmp: bool
    hashing: bool
    progress: _Progress
    final_newline: str
    stack: ExitStack
    tmp: str | None = None
    buf: np.ndarray | None = None
    staging: np.ndarray = field(init=False)
    levels: int = 0
    chunks: int = 1
    input_hash: int = 0
    input_bytes: int = 0
    input_records: int = 0
    added: int = 0
    _names: int = 0

    def __post_init__(self) -> None:
        self.staging = np.empty(self.budget.staging, np.uint8)

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=key)))

    def temp_path(self, kind: str) -> str:
        if self.tmp is None:
            self.tmp = tempfile.mkdtemp(prefix=".kexue-shuffle-", dir=self.tmp_parent)
            if not self.keep_tmp:
                self.stack.callback(shutil.rmtree, self.tmp, True)
        self._names += 1
        return os.path.join(self.tmp, f"{kind}-{self._names:06d}")

    def reader(self, sources: list[Source], report: bool = True) -> ChunkReader:
        """A chunk reader over ``sources`` sharing the one chunk buffer; ``report``: count its reads as progress."""
        if self.buf is None:
            self.buf = np.empty(self.budget.capacity, np.uint8)
        r = ChunkReader(sources, self.budget.capacity, self.budget.block, self.sep, self.final_newline,
                        on_read=self.progress.update if report else _ignore,
                        memory_label=f"--memory {self.budget.memory}", buf=self.buf)
        self.stack.callback(r.close)
        return r

    def free_buffer(self) -> None:
        self.buf = None

    def temp_sink(self, kind: str, report: bool = False) -> FileSink:
        """A new temporary file; ``report``: count its writes as progress."""
        sink = FileSink(self.temp_path(kind), on_write=self.progress.update if report else _ignore)
        self.stack.callback(sink.close)
        return sink

    def shuffle_chunk(self, chunk: Chunk, sink: FileSink | ShardSink, key: tuple[int, ...]) -> None:
        """Write ``chunk``'s records to ``sink`` in a uniformly random order (Fisher-Yates, seeded by ``key``)."""
        n = chunk.records
        perm = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
        self.rng(*key).shuffle(perm)
        emit(sink, chunk.data, chunk.bounds, perm, self.staging, self.budget.max_batch)


def peak_rss() -> int:
    """This process's peak resident set in bytes: VmHWM (Linux; since the last exec), else ``ru_maxrss``, which
    also counts the parent's footprint from before ``exec``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _ignore(n: int) -> None:
    pass


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _count_input(ctx: _Ctx, chunk: Chunk) -> None:
    if ctx.hashing:
        ctx.input_hash = (ctx.input_hash + checksum(chunk.data, np.diff(chunk.bounds))) & 0xFFFF_FFFF_FFFF_FFFF


def _split(ctx: _Ctx, reader: ChunkReader, first: Chunk) -> list[tuple[str, int, int]]:
    """Phase 1 of merge and naive: each chunk shuffled in memory and written to a temporary file."""
    chunks: list[tuple[str, int, int]] = []
    chunk: Chunk | None = first
    while chunk is not None:
        _count_input(ctx, chunk)
        sink = ctx.temp_sink("chunk")
        ctx.shuffle_chunk(chunk, sink, (1, len(chunks)))
        sink.close()
        chunks.append((sink.path, sink.records, sink.nbytes))
        chunk = reader.next_chunk()
    return chunks


def _merge(ctx: _Ctx, chunks: list[tuple[str, int, int]], sink: FileSink | ShardSink, labels: Any) -> None:
    """Interleave the chunk files into ``sink`` in the order ``labels`` draws (each chunk read in order)."""
    m = len(chunks)
    cap = ctx.budget.window(m)
    windows: list[Window] = []
    for path, n, _ in chunks:
        w = Window(path, n, cap, ctx.sep, _ignore)
        ctx.stack.callback(w.close)
        windows.append(w)
    total_records = sum(n for _, n, _ in chunks)
    avg = max(1, sum(b for _, _, b in chunks) // max(1, total_records))
    batch = max(1, min(ctx.budget.max_batch, ctx.budget.staging // avg, m * cap // avg // 2))
    left = total_records
    pending = np.empty(0, np.int32)
    staging = ctx.staging
    while left:
        if pending.size == 0:
            pending = labels.draw(batch)
        need = np.bincount(pending, minlength=m)
        for j in np.flatnonzero(need > np.fromiter((w.avail for w in windows), np.int64, m)).tolist():
            w = windows[j]
            if w.fd >= 0 and (not w.eof or w.scanned < w.fill):
                w.refill()
        avail = np.fromiter((w.avail for w in windows), np.int64, m)
        order = np.argsort(pending, kind="stable")
        first = np.cumsum(need) - need
        rank = np.empty(pending.size, np.int64)
        rank[order] = np.arange(pending.size) - first[pending[order]]
        short = rank >= avail[pending]
        p = int(np.argmax(short)) if short.any() else pending.size
        if p == 0:
            j = int(pending[0])
            windows[j].stream_one(sink)  # longer than its window: copied through in pieces
            pending, left = pending[1:], left - 1
            _retire(windows[j])
            continue
        lab, pending = pending[:p], pending[p:]
        counts = np.bincount(lab, minlength=m)
        _emit_interleaved(windows, lab, counts, sink, staging, ctx.budget.max_batch)
        left -= p
        for j in np.flatnonzero(counts).tolist():
            _retire(windows[j])
    if any(w.fd >= 0 for w in windows):
        raise ShuffleError("internal error: a chunk file was not consumed")


def _retire(w: Window) -> None:
    """Delete a chunk file as soon as its last record is out (after checking nothing is left in it)."""
    if w.remaining or w.fd < 0:
        return
    if w.avail or w.fill > w.start() or not (w.eof or os.read(w.fd, 1) == b""):
        raise ShuffleError(f"internal error: chunk file {w.path} was not consumed exactly")
    w.close()
    _remove(w.path)


def _emit_interleaved(windows: list[Window], lab: np.ndarray, counts: np.ndarray, sink: FileSink | ShardSink,
                      staging: np.ndarray, max_batch: int) -> None:
    """Emit the records labelled ``lab`` (each window's next ones, in order) through ``staging``."""
    n = lab.size
    order = np.argsort(lab, kind="stable")
    starts = np.empty(n, np.int64)
    lengths = np.empty(n, np.int64)
    groups: list[tuple[int, np.ndarray]] = []
    off = 0
    for j in np.flatnonzero(counts).tolist():
        c = int(counts[j])
        pos = order[off : off + c]
        off += c
        s, ln = windows[j].take(c)
        starts[pos] = s
        lengths[pos] = ln
        groups.append((j, pos))
    cum = np.cumsum(lengths)
    cap = staging.size
    i = 0
    ptr = [0] * len(groups)
    while i < n:
        base = int(cum[i - 1]) if i else 0
        k = int(np.searchsorted(cum[i : i + max_batch], base + cap, side="right"))
        if k == 0:  # one record longer than the staging buffer: straight from its window
            w = windows[int(lab[i])]
            s = int(starts[i])
            sink.write(w.buf[s : s + int(lengths[i])], lengths[i : i + 1])
            for g, (_, pos) in enumerate(groups):
                if ptr[g] < pos.size and pos[ptr[g]] == i:
                    ptr[g] += 1
            i += 1
            continue
        end = i + k
        dst = cum[i:end] - lengths[i:end] - base
        for g, (j, pos) in enumerate(groups):
            hi = int(np.searchsorted(pos, end))
            if hi > ptr[g]:
                sel = pos[ptr[g] : hi]
                gather(windows[j].buf, starts[sel], lengths[sel], staging, dst[sel - i])
                ptr[g] = hi
        sink.write(staging[: int(cum[end - 1]) - base], lengths[i:end])
        i = end


def _merge_tree(ctx: _Ctx, chunks: list[tuple[str, int, int]], sink: FileSink | ShardSink, fan_in: int) -> None:
    """Exact merge, hierarchical when there are more than ``fan_in`` chunks."""
    level = 0
    while len(chunks) > fan_in:
        level += 1
        n_groups = -(-len(chunks) // fan_in)
        cuts = np.linspace(0, len(chunks), n_groups + 1).round().astype(int).tolist()
        merged = []
        total = sum(b for _, _, b in chunks)
        ctx.progress.start(f"merge level {level}", total)
        for g in range(n_groups):
            group = chunks[cuts[g] : cuts[g + 1]]
            out = ctx.temp_sink("merged", report=True)
            counts = np.array([n for _, n, _ in group])
            _merge(ctx, group, out, _ProportionalLabels(counts, ctx.rng(2, level, g)))
            out.close()
            merged.append((out.path, out.records, out.nbytes))
        chunks = merged
    ctx.levels = level
    ctx.progress.start("merge", sum(b for _, _, b in chunks))
    counts = np.array([n for _, n, _ in chunks])
    _merge(ctx, chunks, sink, _ProportionalLabels(counts, ctx.rng(2, 0, 0)))


def _scatter(ctx: _Ctx, reader: ChunkReader, first: Chunk, size: int | None, key: tuple[int, ...],
             count_input: bool) -> list[tuple[str, int, int]]:
    """Send every record of the stream to one of K bucket files, chosen uniformly and independently."""
    k_max = ctx.max_open - 2
    if size is None:
        n_buckets = k_max
    else:
        n_buckets = min(k_max, max(2, -(-2 * size // max(1, first.nbytes))))
    sinks = [ctx.temp_sink("bucket") for _ in range(n_buckets)]
    rng = ctx.rng(3, *key)
    chunk: Chunk | None = first
    while chunk is not None:
        if count_input:
            _count_input(ctx, chunk)
        labels = rng.integers(n_buckets, size=chunk.records, dtype=np.uint16 if n_buckets < 2**16 else np.uint32)
        order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=n_buckets).tolist()
        del labels
        off = 0
        for j, c in enumerate(counts):
            if c:
                emit(sinks[j], chunk.data, chunk.bounds, order[off : off + c], ctx.staging, ctx.budget.max_batch)
                off += c
        del order
        chunk = reader.next_chunk()
    for s in sinks:
        s.close()
    return [(s.path, s.records, s.nbytes) for s in sinks]


def _shuffle_buckets(ctx: _Ctx, buckets: list[tuple[str, int, int]], sink: FileSink | ShardSink,
                     key: tuple[int, ...]) -> None:
    """Phase 2 of scatter: each bucket shuffled in memory, or scattered again if it does not fit."""
    for j, (path, n, nbytes) in enumerate(buckets):
        if n:
            reader = ctx.reader([Source(path, nbytes)], report=False)
            first = reader.next_chunk()
            assert first is not None
            if reader.exhausted:
                ctx.shuffle_chunk(first, sink, (4, *key, j))
            else:
                ctx.levels += 1
                sub = _scatter(ctx, reader, first, nbytes, (*key, j), count_input=False)
                reader.close()
                _remove(path)
                _shuffle_buckets(ctx, sub, sink, (*key, j))
                continue
            reader.close()
        _remove(path)


# --------------------------------------------------------------------------------------------------------------
# The public entry point.


class _Signals:
    """SIGINT and SIGTERM raise :class:`Interrupted` while active (main thread only); :meth:`ignore` mutes them
    while cleaning up, and leaving the context restores the previous handlers."""

    def __init__(self) -> None:
        self.active = threading.current_thread() is threading.main_thread()
        self.old: dict[int, Any] = {}

    def __enter__(self) -> "_Signals":
        if self.active:
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}: temporary files removed, no output written")

    def ignore(self) -> None:
        if self.active:
            for s in self.old:
                signal.signal(s, signal.SIG_IGN)

    def resume(self) -> None:
        if self.active:
            for s in self.old:
                signal.signal(s, self._raise)

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            for s, h in self.old.items():
                signal.signal(s, h)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _free(path: str) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _preflight_space(sources: list[Source], budget: Budget, tmp_parent: str, out_dir: str | None,
                     notes: list[str]) -> None:
    """Free space: temp >= 1.1 S when the input may not fit in memory; output >= S; 2.1 S if one device holds both."""
    known = sum(s.size or 0 for s in sources)
    if any(s.size is None for s in sources):
        notes.append("input size unknown (a stream): free disk space was not checked before starting")
        return
    need_tmp = int(1.1 * known) if known > budget.capacity // 2 else 0
    need_out = known if out_dir is not None else 0
    if out_dir is not None and os.stat(tmp_parent).st_dev == os.stat(out_dir).st_dev:
        checks = [(tmp_parent, need_tmp + need_out, "temporary files and output")]
    else:
        checks = [(tmp_parent, need_tmp, "temporary files")] + ([(out_dir, need_out, "output")] if out_dir else [])
    for path, need, what in checks:
        free = _free(path)
        if need and free is not None and free < need:
            raise InsufficientSpace(
                f"not enough free space for the {what} in {path}: need about {need} bytes for {known} bytes of "
                f"input, {free} free (use tmp_dir / --tmp-dir on another device, or free some space)"
            )


def external_shuffle(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str] | IO[bytes] | None = None,
    memory: str | int = "1G",
    method: Method = "merge",
    seed: int | None = None,
    tmp_dir: str | os.PathLike[str] | None = None,
    max_open: int = 256,
    sep: bytes = b"\n",
    records_per_output: int | None = None,
    bytes_per_output: int | str | None = None,
    final_newline: str = "add",
    verify: bool = False,
    progress: bool | ProgressHook | None = None,
    *,
    split: int | None = None,
    force: bool = False,
    keep_tmp: bool = False,
) -> ShuffleReport:
    """Shuffle the records of ``inputs`` (paths, ``"-"`` for standard input; one stream in the given order).

    ``output``: a path (created atomically), ``"-"`` or ``None`` for standard output (not atomic), or a binary
    file object; with ``split`` (N shards of near-equal record counts), ``records_per_output`` or
    ``bytes_per_output`` it is the folder that receives ``part-00000``, ... (created atomically). ``memory`` bounds
    the data buffers; ``method`` is ``"merge"`` (exact, default), ``"scatter"`` (exact) or ``"naive"`` (the
    post's scheme, not uniform). ``seed=None`` draws one from ``os.urandom``; the report holds it. ``progress``:
    ``True`` for a tqdm bar per pass on stderr, or a callable ``(phase, bytes_done, bytes_total)``. ``verify``
    compares the record count and an order-independent checksum of input and output before committing. See the
    module docstring for the algorithms and guarantees; errors are :class:`ShuffleError` subclasses.
    """
    t0 = time.perf_counter()
    paths = [os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike)) else [os.fspath(p) for p in inputs]
    if not paths:
        raise InputError("no input given")
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(sep, bytes) or len(sep) != 1:
        raise InputError(f"sep must be a single byte such as b'\\n' or b'\\0', got {sep!r}")
    if final_newline not in ("add", "error"):
        raise InputError(f"final_newline must be 'add' or 'error', got {final_newline!r}")
    if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    sharding = [(k, v) for k, v in (("split", split), ("records_per_output", records_per_output),
                                     ("bytes_per_output", bytes_per_output)) if v is not None]
    if len(sharding) > 1:
        raise InputError(f"give at most one of split, records_per_output, bytes_per_output, got {dict(sharding)}")
    bytes_per = parse_size(bytes_per_output) if bytes_per_output is not None else None
    for k, v in (("split", split), ("records_per_output", records_per_output)):
        if v is not None and (not isinstance(v, (int, np.integer)) or v < 1):
            raise InputError(f"{k} must be a positive integer, got {v!r}")
    budget = Budget.of(parse_size(memory))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limit = min(max_open, soft - 16 if soft != resource.RLIM_INFINITY else max_open)
    if limit < 4:
        raise InputError(f"need at least 4 open files, max_open={max_open} and RLIMIT_NOFILE={soft} allow {limit}")
    seed = int(seed) if seed is not None else secrets.randbits(63)
    sources = open_sources(paths)
    in_stats = [os.stat(s.path) for s in sources if s.path != "-"]
    notes: list[str] = []

    # Resolve the output and refuse what would lose data.
    stream: IO[bytes] | None = None
    out_path: str | None = None
    if sharding:
        if output is None or not isinstance(output, (str, os.PathLike)) or os.fspath(output) == "-":
            raise InputError("sharded output needs a folder path as output (--output-dir DIR)")
    if output is None or (isinstance(output, (str, os.PathLike)) and os.fspath(output) == "-"):
        stream = sys.stdout.buffer
    elif isinstance(output, (str, os.PathLike)):
        out_path = os.path.abspath(os.fspath(output))
    else:
        stream = output
    if stream is not None:
        try:
            st = os.fstat(stream.fileno())
            if stat.S_ISREG(st.st_mode) and any(_same_file(st, s) for s in in_stats):
                raise InputError("standard output is the same file as an input; refusing to overwrite the input")
        except (OSError, AttributeError, ValueError) as e:  # no real file descriptor: nothing to compare
            if isinstance(e, InputError):
                raise
    out_dir = os.path.dirname(out_path) if out_path else None
    if out_path is not None:
        assert out_dir is not None
        if not os.path.isdir(out_dir):
            raise InputError(f"output folder does not exist: {out_dir}")
        if os.path.lexists(out_path):
            st = os.stat(out_path)
            if any(_same_file(st, s) for s in in_stats):
                raise InputError(f"output {out_path} is the same file as an input; refusing to overwrite the input")
            if sharding and stat.S_ISDIR(st.st_mode):
                inside = [s.path for s in sources if s.path != "-" and
                          os.path.commonpath([os.path.realpath(s.path), os.path.realpath(out_path)])
                          == os.path.realpath(out_path)]
                if inside:
                    raise InputError(f"input {inside[0]} is inside the output folder {out_path}; refusing to replace it")
            if not force:
                raise InputError(f"output exists: {out_path} (pass force=True / --force to replace it)")
            is_dir = stat.S_ISDIR(st.st_mode)
            if bool(sharding) != is_dir:
                raise InputError(f"output {out_path} exists and is a {'folder' if is_dir else 'file'}, but the "
                                 f"output is {'shards' if sharding else 'one file'}; refusing to replace it")
    tmp_parent = os.path.abspath(os.fspath(tmp_dir)) if tmp_dir is not None else (out_dir or os.getcwd())
    if not os.path.isdir(tmp_parent):
        raise InputError(f"temporary folder does not exist: {tmp_parent}")
    _preflight_space(sources, budget, tmp_parent, out_dir, notes)

    sink: FileSink | ShardSink | None = None
    with _Signals() as signals, ExitStack() as stack:
        prog = _Progress(progress)
        stack.callback(prog.stop)
        ctx = _Ctx(budget, sep[0], seed, method, limit, tmp_parent, keep_tmp, verify, prog, final_newline, stack)

        def final_sink(total: int) -> FileSink | ShardSink:
            nonlocal sink
            tag = f".tmp-{os.getpid()}-{secrets.token_hex(4)}"
            if sharding:
                assert out_path is not None and out_dir is not None
                tmp = os.path.join(out_dir, f".{os.path.basename(out_path)}{tag}")
                os.mkdir(tmp)
                shard_records = None
                if split is not None:
                    q, r = divmod(total, int(split))
                    shard_records = [q + (i < r) for i in range(int(split))]
                sink = ShardSink(out_path, tmp, shard_records=shard_records, records_per=records_per_output,
                                 bytes_per=bytes_per, hashing=verify, on_write=prog.update)
            elif out_path is not None:
                tmp = os.path.join(os.path.dirname(out_path), f".{os.path.basename(out_path)}{tag}")
                sink = FileSink(out_path, tmp_path=tmp, hashing=verify, on_write=prog.update)
            else:
                assert stream is not None
                name = "<stream>" if out_path is None and output not in (None, "-") else "-"
                sink = FileSink(name, stream=stream, hashing=verify, on_write=prog.update)
            return sink

        try:
            reader = ctx.reader(sources)
            known = None if any(s.size is None for s in sources) else sum(s.size or 0 for s in sources)
            prog.start("read", known)
            first = reader.next_chunk()
            if first is None:
                final_sink(0)
            elif reader.exhausted:  # it all fits in memory: one pass, no temporary files
                _count_input(ctx, first)
                s = final_sink(first.records)
                prog.start("write", first.nbytes)
                ctx.shuffle_chunk(first, s, (1, 0))
            elif method in ("merge", "naive"):
                chunks = _split(ctx, reader, first)
                del first  # the chunk buffer is freed before the merge, whose windows use that memory
                reader.close()
                ctx.free_buffer()
                ctx.chunks = len(chunks)
                fan_in = min(limit - 1, budget.max_fan_in)
                s = final_sink(sum(n for _, n, _ in chunks))
                if method == "merge":
                    _merge_tree(ctx, chunks, s, fan_in)
                else:
                    if len(chunks) > fan_in:
                        raise ShuffleError(
                            f"the naive method reads all {len(chunks)} chunks at once, more than the {fan_in} that "
                            "max_open and memory allow; raise --memory or --max-open (or use an exact method)")
                    prog.start("interleave", sum(b for _, _, b in chunks))
                    _merge(ctx, chunks, s, _RowwiseLabels(np.array([n for _, n, _ in chunks]), ctx.rng(5)))
            else:
                buckets = _scatter(ctx, reader, first, known, (), count_input=True)
                reader.close()
                ctx.chunks = len(buckets)
                s = final_sink(sum(n for _, n, _ in buckets))
                prog.start("shuffle buckets", sum(b for _, _, b in buckets))
                _shuffle_buckets(ctx, buckets, s, ())
            prog.stop()
            assert sink is not None
            if sink.records != reader.records:
                raise ShuffleError(f"internal error: read {reader.records} records but wrote {sink.records}")
            if verify and sink.hash != ctx.input_hash:
                raise VerifyError(f"checksum mismatch: input {ctx.input_hash:#018x}, output {sink.hash:#018x}")
            signals.ignore()
            outputs = sink.commit()
        except BaseException as e:
            signals.ignore()
            prog.stop()
            if sink is not None:
                sink.abort()
            if isinstance(e, KeyboardInterrupt):
                raise Interrupted("interrupted (SIGINT): temporary files removed, no output written") from None
            raise
    return ShuffleReport(
        method=method, seed=seed, memory=budget.memory, records=sink.records, bytes_in=reader.bytes_read,
        bytes_out=sink.nbytes, added_separators=reader.added_separators, chunks=ctx.chunks, levels=ctx.levels,
        outputs=outputs, seconds=time.perf_counter() - t0,
        peak_rss=peak_rss(), max_open=limit,
        verified=(True if verify else None), checksum=(sink.hash if verify else None), notes=notes,
    )


# --------------------------------------------------------------------------------------------------------------
# `kexue shuffle`


def add_parser(sub: Any) -> None:
    """Register ``kexue shuffle`` on an argparse sub-parser collection."""
    import argparse

    p = sub.add_parser(
        "shuffle",
        help="globally shuffle the lines of files far larger than memory (exact, crash-safe)",
        description="Shuffle the records (lines, or NUL-terminated records with -z) of INPUT files, read as one "
        "stream, into a uniformly random order using bounded memory and temporary files. Lines are bytes, never "
        "decoded; a last line without a newline gets one. Output is written to a temporary name and renamed when "
        "complete. The same inputs, --memory, --method and --seed give the same output. Exit codes: 2 bad input, "
        "3 not enough disk space, 4 record longer than memory allows, 5 --verify failed, 130 interrupted.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files to shuffle, in this order; - for standard input")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", metavar="OUTPUT", help="output file; default or '-': standard output")
    out.add_argument("--output-dir", metavar="DIR", help="folder for shards part-00000, ... (needs a shard option)")
    shard = p.add_mutually_exclusive_group()
    shard.add_argument("--split", type=int, metavar="N", help="N shards with near-equal record counts")
    shard.add_argument("--records-per-output", type=int, metavar="N", help="shards of N records")
    shard.add_argument("--bytes-per-output", metavar="SIZE", help="shards of at most SIZE bytes (e.g. 1G)")
    p.add_argument("--memory", default="1G", metavar="SIZE", help="memory budget for data buffers (K, M, G: 1024)")
    p.add_argument("--seed", type=int, help="random seed (default: drawn from os.urandom and printed)")
    p.add_argument("--tmp-dir", "--tmpdir", dest="tmp_dir", metavar="DIR",
                   help="where temporary files go (default: the output's folder, not /tmp)")
    p.add_argument("--mode", choices=["exact", "blog"],
                   help="exact (default): a uniformly random permutation; blog: the post's chunk-and-interleave scheme, "
                   "kept for comparison, NOT uniform over permutations")
    p.add_argument("--method", choices=METHODS, help="algorithm: merge (exact, default), scatter (exact), "
                   "naive (= --mode blog)")
    p.add_argument("-z", "--zero-terminated", action="store_true", help="records end with NUL, not newline")
    p.add_argument("--sep", choices=["LF", "NUL"], help="record separator (NUL is the same as -z)")
    p.add_argument("--max-open", type=int, default=256, metavar="N", help="most files open at once")
    p.add_argument("--final-newline", choices=["add", "error"], default="add",
                   help="a last record without a separator: add one, or refuse the input")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary files (debugging)")
    p.add_argument("--verify", action="store_true", help="check record count and checksum before committing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, no summary")
    p.set_defaults(func=_cmd)


def _cmd(args: Any) -> int:
    say = (lambda msg: None) if args.quiet else (lambda msg: print(f"kexue shuffle: {msg}", file=sys.stderr))

    def fail(msg: str, code: int) -> int:
        print(f"kexue shuffle: error: {msg}", file=sys.stderr)
        return code

    method = args.method or ("naive" if args.mode == "blog" else "merge")
    if args.mode is not None and (args.mode == "blog") != (method == "naive"):
        return fail(f"--mode {args.mode} conflicts with --method {method}", 2)
    if args.zero_terminated and args.sep == "LF":
        return fail("-z conflicts with --sep LF", 2)
    sep = b"\0" if args.zero_terminated or args.sep == "NUL" else b"\n"
    sharded = args.split is not None or args.records_per_output is not None or args.bytes_per_output is not None
    if sharded and not args.output_dir:
        return fail("--split, --records-per-output and --bytes-per-output need --output-dir DIR", 2)
    if args.output_dir and not sharded:
        return fail("--output-dir needs --split N, --records-per-output N or --bytes-per-output SIZE", 2)
    output = args.output_dir if sharded else args.output
    seed = args.seed if args.seed is not None else secrets.randbits(63)
    if args.seed is None:
        say(f"seed {seed} (pass --seed {seed} to repeat this shuffle)")
    if method == "naive":
        print("kexue shuffle: warning: --mode blog (method naive) is the post's chunk-and-interleave scheme; its "
              "output is NOT a uniformly random permutation", file=sys.stderr)
    if output in (None, "-"):
        try:
            if stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode):
                say("writing to standard output is not atomic: an interrupted run leaves partial output "
                    "(use -o FILE for an atomic write)")
        except (OSError, ValueError, AttributeError):
            pass
    try:
        report = external_shuffle(
            args.inputs, output, memory=args.memory, method=method, seed=seed, tmp_dir=args.tmp_dir,
            max_open=args.max_open, sep=sep, records_per_output=args.records_per_output,
            bytes_per_output=args.bytes_per_output, final_newline=args.final_newline, verify=args.verify,
            progress=not args.quiet, split=args.split, force=args.force, keep_tmp=args.keep_tmp,
        )
    except ShuffleError as e:
        return fail(str(e), e.exit_code)
    except BrokenPipeError:  # e.g. `kexue shuffle big.txt | head`: the reader left, which is not an error
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush at exit
        except OSError:
            pass
        return 0
    for note in report.notes:
        say(f"note: {note}")
    say(f"{report.records} records, {report.bytes_out} bytes, {report.method}, {report.chunks} chunk(s)"
        f"{f', {report.levels} extra level(s)' if report.levels else ''} in {report.seconds:.1f}s "
        f"({report.mb_per_s:.0f} MB/s), peak RSS {report.peak_rss / 2**20:.0f} MiB"
        f"{', verified' if report.verified else ''}")
    return 0
