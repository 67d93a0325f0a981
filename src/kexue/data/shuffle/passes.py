"""The passes of the three methods over files: split into shuffled chunks, merge (exact, hierarchical, or the
post's row-wise interleave), scatter into buckets and shuffle each; plus the run's shared context and progress."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .budget import Budget
from .errors import ShuffleError
from .reader import Chunk, ChunkReader, FinalNewline, Source, Window
from .records import checksum, gather
from .sinks import FileSink, ShardSink, emit
from .tempfiles import MARK, make_temp_dir

ProgressHook = Callable[[str, int, "int | None"], None]
_HYPERGEOM_MAX = 10**9  # numpy's multivariate_hypergeometric(method="marginals") needs sum(colors) < 1e9


def _draw_composition(rng: np.random.Generator, remaining: np.ndarray, b: int) -> np.ndarray:
    """How many of the next ``b`` records of a uniformly random arrangement come from each chunk (multivariate
    hypergeometric). numpy's sampler needs fewer than 1e9 records in all; above that, the same law is drawn as the
    chunk counts of a uniformly random b-subset of the record positions."""
    total = int(remaining.sum())
    if total < _HYPERGEOM_MAX:
        return rng.multivariate_hypergeometric(remaining, b, method="marginals")
    picks = rng.choice(total, size=b, replace=False)
    return np.bincount(np.searchsorted(np.cumsum(remaining), picks, side="right"), minlength=remaining.size)


class ProportionalLabels:
    """Exact merge labels: each batch's composition is hypergeometric, its order a uniform shuffle."""

    def __init__(self, counts: np.ndarray, rng: np.random.Generator) -> None:
        self.left = counts.astype(np.int64).copy()
        self.rng = rng

    def draw(self, b: int) -> np.ndarray:
        b = min(b, int(self.left.sum()))
        comp = _draw_composition(self.rng, self.left, b)
        self.left -= comp
        labels = np.repeat(np.arange(self.left.size, dtype=np.int32), comp)
        self.rng.shuffle(labels)
        return labels


class RowwiseLabels:
    """The post's scheme: round r emits one record of every chunk not yet exhausted, in a random order."""

    def __init__(self, counts: np.ndarray, rng: np.random.Generator) -> None:
        self.left = counts.astype(np.int64).copy()
        self.rng = rng

    def draw(self, b: int) -> np.ndarray:
        active = np.flatnonzero(self.left > 0).astype(np.int32)
        rounds = max(1, min(int(self.left[active].min()), -(-b // active.size)))
        self.left[active] -= rounds
        return self.rng.permuted(np.tile(active, (rounds, 1)), axis=1).ravel()


class Progress:
    """A tqdm bar per pass on stderr (``True``), a hook ``(phase, done, total)`` (a callable), or nothing."""

    def __init__(self, progress: bool | ProgressHook | None) -> None:
        self.progress = progress
        self.bar: Any = None
        self.phase, self.done = "", 0
        self.total: int | None = None

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
class Context:
    budget: Budget
    sep: int
    seed: int
    method: str  # api.Method, checked there
    max_open: int
    tmp_parent: str
    keep_tmp: bool
    hashing: bool
    progress: Progress
    final_newline: FinalNewline
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
        """A new name in the run's temporary folder (:func:`.tempfiles.make_temp_dir`, made and locked at the first
        call, removed at the end of the run; with ``keep_tmp`` renamed ``.kexue-shuffle-kept-...`` instead, which no
        later run takes for a leftover)."""
        if self.tmp is None:
            self.tmp, fd = make_temp_dir(self.tmp_parent)
            self.stack.callback(os.close, fd)  # runs last: the lock is held until the folder is gone
            if self.keep_tmp:
                kept = os.path.join(self.tmp_parent, f".{MARK}-kept-{os.path.basename(self.tmp)[len(MARK) + 2:]}")
                self.stack.callback(os.rename, self.tmp, kept)
            else:
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
        sink = FileSink(self.temp_path(kind), on_write=self.progress.update if report else _ignore,
                        label=f"temporary files in {self.tmp_parent}")
        self.stack.callback(sink.close)
        return sink

    def shuffle_chunk(self, chunk: Chunk, sink: FileSink | ShardSink, key: tuple[int, ...]) -> None:
        """Write ``chunk``'s records to ``sink`` in a uniformly random order (Fisher-Yates, seeded by ``key``)."""
        n = chunk.records
        perm = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
        self.rng(*key).shuffle(perm)
        emit(sink, chunk.data, chunk.bounds, perm, self.staging, self.budget.max_batch)


def _ignore(n: int) -> None:
    pass


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def count_input(ctx: Context, chunk: Chunk) -> None:
    if ctx.hashing:
        ctx.input_hash = (ctx.input_hash + checksum(chunk.data, np.diff(chunk.bounds))) & 0xFFFF_FFFF_FFFF_FFFF


def split_chunks(ctx: Context, reader: ChunkReader, first: Chunk) -> list[tuple[str, int, int]]:
    """Phase 1 of merge and naive: each chunk shuffled in memory and written to a temporary file."""
    chunks: list[tuple[str, int, int]] = []
    chunk: Chunk | None = first
    while chunk is not None:
        count_input(ctx, chunk)
        sink = ctx.temp_sink("chunk")
        ctx.shuffle_chunk(chunk, sink, (1, len(chunks)))
        sink.close()
        chunks.append((sink.path, sink.records, sink.nbytes))
        chunk = reader.next_chunk()
    return chunks


def merge(ctx: Context, chunks: list[tuple[str, int, int]], sink: FileSink | ShardSink, labels: Any) -> None:
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
        raise ShuffleError("internal error: expected every chunk file consumed, got one left open")


def _retire(w: Window) -> None:
    """Delete a chunk file as soon as its last record is out (after checking nothing is left in it)."""
    if w.remaining or w.fd < 0:
        return
    if w.avail or w.fill > w.start() or not (w.eof or os.read(w.fd, 1) == b""):
        raise ShuffleError(f"internal error: expected chunk file {w.path} consumed exactly, got bytes left in it")
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
        took, ln = windows[j].take(c)
        starts[pos] = took
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


def merge_tree(ctx: Context, chunks: list[tuple[str, int, int]], sink: FileSink | ShardSink, fan_in: int) -> None:
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
            merge(ctx, group, out, ProportionalLabels(counts, ctx.rng(2, level, g)))
            out.close()
            merged.append((out.path, out.records, out.nbytes))
        chunks = merged
    ctx.levels = level
    ctx.progress.start("merge", sum(b for _, _, b in chunks))
    counts = np.array([n for _, n, _ in chunks])
    merge(ctx, chunks, sink, ProportionalLabels(counts, ctx.rng(2, 0, 0)))


def scatter(ctx: Context, reader: ChunkReader, first: Chunk, size: int | None, key: tuple[int, ...],
             counting: bool) -> list[tuple[str, int, int]]:
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
        if counting:
            count_input(ctx, chunk)
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


def shuffle_buckets(ctx: Context, buckets: list[tuple[str, int, int]], sink: FileSink | ShardSink,
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
                sub = scatter(ctx, reader, first, nbytes, (*key, j), counting=False)
                reader.close()
                _remove(path)
                shuffle_buckets(ctx, sub, sink, (*key, j))
                continue
            reader.close()
        _remove(path)


__all__ = ["Context", "Progress", "ProgressHook", "ProportionalLabels", "RowwiseLabels", "count_input", "merge",
           "merge_tree", "scatter", "shuffle_buckets", "split_chunks"]
