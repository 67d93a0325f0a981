"""Reading records in memory-bounded chunks, merge windows over chunk files, and record sinks.

The shuffle's moving parts, kept apart from the algorithms in :mod:`kexue.data.shuffle`:

* :class:`ChunkReader` turns a list of inputs (paths or standard input, read as one logical stream) into chunks
  of complete records that fit a byte budget, adding a separator to a file's unterminated last record;
* :class:`Window` is a bounded read buffer over one chunk file during a merge;
* :class:`FileSink` and :class:`ShardSink` write whole records, count them, and optionally checksum them.

All buffers are numpy ``uint8`` arrays allocated once; record boundaries are integer arrays.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from functools import partial
from operator import methodcaller
from typing import IO, Any, Callable

import numpy as np

from ._records import find_ends, gather, is_disk_full, read_into, write_all

#: Bytes of bookkeeping charged to the budget for every record held in memory (its end offset, its slot in the
#: permutation, and transients while the arrays are built).
RECORD_COST = 24
_SCAN_STEP = 1 << 19  # scan separators this many bytes at a time (bounds the comparison temporaries)


class ShuffleError(Exception):
    """A shuffle that could not be done; ``exit_code`` is what ``kexue shuffle`` exits with."""

    exit_code = 1


class InputError(ShuffleError):
    """Bad arguments or input (a missing file, an unterminated record with ``final_newline="error"``, ...)."""

    exit_code = 2


class InsufficientSpace(ShuffleError):
    """Not enough free disk space, found before starting or when a write failed with ENOSPC."""

    exit_code = 3


class RecordTooLong(ShuffleError):
    """A record that does not fit the memory budget."""

    exit_code = 4


class VerifyError(ShuffleError):
    """``verify=True`` found that the output's records are not the input's."""

    exit_code = 5


class Interrupted(ShuffleError):
    """SIGINT or SIGTERM arrived; temporary files were removed and no output was left."""

    exit_code = 130


def checksum(data: np.ndarray | memoryview, lengths: np.ndarray, batch: int = 4096) -> int:
    """Sum mod 2**64 of the 64-bit BLAKE2b of each record (order-independent); ``data`` holds them packed.

    Records are hashed ``batch`` at a time, so the Python objects made per record stay few at any moment.
    """
    mv = memoryview(data).cast("B")
    total, base = 0, 0
    for i in range(0, lengths.size, batch):
        ends = np.cumsum(lengths[i : i + batch])
        ends += base
        e = ends.tolist()
        pieces = map(mv.__getitem__, map(slice, [base, *e[:-1]], e))
        digests = map(methodcaller("digest"), map(partial(hashlib.blake2b, digest_size=8), pieces))
        total += sum(map(int.from_bytes, digests))
        base = e[-1]
    return total & 0xFFFF_FFFF_FFFF_FFFF


def scan(buf: np.ndarray, lo: int, hi: int, sep: int, limit: int | None = None) -> tuple[np.ndarray, int]:
    """Record ends in ``buf[lo:hi]`` (absolute positions), at most ``limit`` of them, and where scanning stopped.

    Scans ``_SCAN_STEP`` bytes at a time so the comparison's temporaries stay small. When ``limit`` cuts the scan
    short, the returned position is the last end found (the bytes after it are left for a later scan).
    """
    parts: list[np.ndarray] = []
    count = 0
    pos = lo
    while pos < hi:
        step = min(hi, pos + _SCAN_STEP)
        ends = find_ends(buf[pos:step], sep, offset=pos)
        pos = step
        if limit is not None and count + ends.size >= limit:
            ends = ends[: limit - count]
            parts.append(ends)
            count = limit
            pos = int(ends[-1]) if ends.size else pos
            break
        parts.append(ends)
        count += ends.size
    if not parts:
        return np.empty(0, np.int64), pos
    return (parts[0] if len(parts) == 1 else np.concatenate(parts)), pos


@dataclass
class Source:
    """One input: a path, or standard input (``path == "-"``)."""

    path: str
    size: int | None  # None for standard input and other streams of unknown length

    @property
    def name(self) -> str:
        return "standard input" if self.path == "-" else self.path


def open_sources(paths: list[str]) -> list[Source]:
    """Check the inputs exist and are readable files (or ``-`` once); sizes for the preflight and the progress."""
    sources = []
    if paths.count("-") > 1:
        raise InputError("standard input ('-') can be given only once")
    for p in paths:
        if p == "-":
            sources.append(Source("-", None))
            continue
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise InputError(f"input not found: {p}") from None
        except OSError as e:
            raise InputError(f"cannot read input {p}: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"input is a directory, not a file: {p}")
        if not os.access(p, os.R_OK):
            raise InputError(f"input is not readable: {p}")
        sources.append(Source(p, st.st_size if stat.S_ISREG(st.st_mode) else None))
    return sources


@dataclass
class Chunk:
    """Complete records in ``data``; record i is ``data[bounds[i]:bounds[i+1]]``."""

    data: np.ndarray
    bounds: np.ndarray

    @property
    def records(self) -> int:
        return self.bounds.size - 1

    @property
    def nbytes(self) -> int:
        return int(self.bounds[-1])


@dataclass
class ChunkReader:
    """Read ``sources`` as one stream of records, in chunks whose bytes plus ``RECORD_COST`` per record fit
    ``capacity``.

    A file whose last record lacks the separator gets one (``final_newline="add"``) so that record is never
    glued to the next file's first record, or raises :class:`InputError` (``"error"``). A record that cannot fit
    a chunk raises :class:`RecordTooLong` with its file, byte offset and index.
    """

    sources: list[Source]
    capacity: int
    block: int
    sep: int
    final_newline: str = "add"
    on_read: Callable[[int], None] = lambda n: None
    memory_label: str = ""
    buf: np.ndarray | None = field(default=None, repr=False)  # at least ``capacity`` bytes; allocated if None
    fill: int = field(init=False, default=0)
    bytes_read: int = field(init=False, default=0)
    records: int = field(init=False, default=0)
    added_separators: int = field(init=False, default=0)
    _next_source: int = field(init=False, default=0)
    _fd: int | None = field(init=False, default=None)
    _file_bytes: int = field(init=False, default=0)
    _last_byte: int = field(init=False, default=-1)
    _eof: bool = field(init=False, default=False)
    _taken: int = field(init=False, default=0)
    # (position in buf, source index, offset in that source) where each source's bytes begin in buf
    _marks: list[tuple[int, int, int]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.buf is None:
            self.buf = np.empty(self.capacity, np.uint8)
        elif self.buf.size < self.capacity:
            raise ValueError(f"buffer of {self.buf.size} bytes is smaller than the capacity {self.capacity}")

    @property
    def exhausted(self) -> bool:
        return self._eof and self.fill == self._taken

    def _close_fd(self) -> None:
        if self._fd is not None:
            if self._fd != 0:
                os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Close the current input and drop this reader's reference to the buffer (done with the stream)."""
        self._close_fd()
        self.buf = None

    def _open_next(self) -> bool:
        self._close_fd()
        if self._next_source >= len(self.sources):
            return False
        src = self.sources[self._next_source]
        self._fd = 0 if src.path == "-" else os.open(src.path, os.O_RDONLY)
        self._file_bytes = 0
        self._last_byte = -1
        self._marks.append((self.fill, self._next_source, 0))
        self._next_source += 1
        return True

    def _where(self, pos: int) -> tuple[str, int]:
        """(input name, byte offset in it) of ``buf[pos]``."""
        mark = max((m for m in self._marks if m[0] <= pos), default=None)
        if mark is None:
            return "input", pos
        return self.sources[mark[1]].name, mark[2] + pos - mark[0]

    def _too_long(self, length: int | None) -> RecordTooLong:
        name, offset = self._where(0)
        size = f"{length} bytes" if length is not None else f"longer than {self.fill} bytes"
        limit = self.capacity - RECORD_COST
        return RecordTooLong(
            f"record {self.records} (counting from 0) at byte offset {offset} of {name} is {size}; records must be "
            f"at most {limit} bytes, what {self.memory_label or 'the memory budget'} leaves for one in-memory chunk "
            "after its buffers: raise --memory"
        )

    def _drop_taken(self) -> None:
        """Move the bytes after the last chunk to the front of the buffer."""
        t = self._taken
        if t == 0:
            return
        rest = self.fill - t
        if rest:
            self.buf[:rest] = self.buf[t : self.fill]
        keep = [m for m in self._marks if m[0] > t]
        first = max((m for m in self._marks if m[0] <= t), default=None)
        self._marks = ([(0, first[1], first[2] + t - first[0])] if first is not None else []) + [
            (p - t, s, o) for p, s, o in keep
        ]
        self.fill, self._taken = rest, 0

    def _read_block(self) -> None:
        """Read up to ``block`` bytes (or handle the end of the current input); sets ``_eof`` after the last."""
        if self._fd is None and not self._open_next():
            self._eof = True
            return
        room = min(self.block, self.capacity - self.fill)
        assert self._fd is not None and room > 0
        n = read_into(self._fd, self.buf[self.fill : self.fill + room])
        if n:
            self.fill += n
            self._file_bytes += n
            self._last_byte = int(self.buf[self.fill - 1])
            self.bytes_read += n
            self.on_read(n)
            return
        # End of this input: its last record must end with the separator.
        if self._file_bytes and self._last_byte != self.sep:
            name = self.sources[self._next_source - 1].name
            if self.final_newline == "error":
                raise InputError(
                    f"{name} does not end with the record separator {bytes([self.sep])!r} (final_newline='error'; "
                    "use 'add' to append one)"
                )
            self.buf[self.fill] = self.sep
            self.fill += 1
            self.added_separators += 1
        if not self._open_next():
            self._eof = True

    def next_chunk(self) -> Chunk | None:
        """The next chunk of complete records, or ``None`` at the end of the stream."""
        self._drop_taken()
        parts: list[np.ndarray] = []
        count, scanned, last_end = 0, 0, 0
        while True:
            if scanned < self.fill:
                ends, scanned = scan(self.buf, scanned, self.fill, self.sep)
                if ends.size:
                    # record k of the chunk fits while its end + RECORD_COST * (k + 1) <= capacity
                    need = ends + RECORD_COST * np.arange(count + 1, count + 1 + ends.size)
                    fit = int(np.searchsorted(need, self.capacity, side="right"))
                    if fit < ends.size:
                        if count + fit == 0:
                            raise self._too_long(int(ends[0]))
                        if fit:
                            parts.append(ends[:fit])
                            count += fit
                            last_end = int(ends[fit - 1])
                        break
                    parts.append(ends)
                    count += ends.size
                    last_end = int(ends[-1])
            if self._eof or self.fill == self.capacity:
                break
            self._read_block()
        if count == 0:
            if self.fill == 0 and self._eof:
                return None
            raise self._too_long(None)
        bounds = np.empty(count + 1, np.int64)
        bounds[0] = 0
        np.concatenate(parts, out=bounds[1:]) if len(parts) > 1 else np.copyto(bounds[1:], parts[0])
        self._taken = last_end
        self.records += count
        return Chunk(self.buf[:last_end], bounds)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileSink:
    """Whole records to one file (or a binary stream), counted and optionally checksummed.

    With ``tmp_path`` set, ``path`` is the name to create atomically: records go to the sibling ``tmp_path`` and
    :meth:`commit` fsyncs it, renames it into place and fsyncs the folder. A write that fails for lack of space
    raises :class:`InsufficientSpace` naming the file.
    """

    def __init__(
        self,
        path: str,
        *,
        tmp_path: str | None = None,
        stream: IO[bytes] | None = None,
        hashing: bool = False,
        on_write: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.path = path
        self.tmp_path = tmp_path
        self.records = 0
        self.nbytes = 0
        self.hash: int | None = 0 if hashing else None
        self.on_write = on_write
        self._part_hash: Any = None
        self.stream = stream
        self.writing = tmp_path or path
        self.fd = -1 if stream is not None else os.open(self.writing, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def _write(self, data: np.ndarray | memoryview) -> int:
        mv = memoryview(data).cast("B")
        try:
            if self.stream is not None:
                self.stream.write(mv)
            else:
                write_all(self.fd, mv)
        except OSError as e:
            if is_disk_full(e):
                where = os.path.dirname(os.path.abspath(self.writing))
                try:
                    free = f"{shutil.disk_usage(where).free} bytes free"
                except OSError:
                    free = "free space unknown"
                raise InsufficientSpace(
                    f"no space left on the device while writing {self.writing} ({free}): the shuffle was stopped, "
                    "its temporary files removed and no output written"
                ) from e
            raise
        n = mv.nbytes
        self.nbytes += n
        self.on_write(n)
        return n

    def write(self, data: np.ndarray | memoryview, lengths: np.ndarray) -> None:
        self._write(data)
        self.records += lengths.size
        if self.hash is not None:
            self.hash = (self.hash + checksum(data, lengths)) & 0xFFFF_FFFF_FFFF_FFFF

    def begin_record(self, length: int) -> None:
        """A record written in parts follows (it did not fit a buffer); ``length`` is its size."""
        self.records += 1
        self._part_hash = hashlib.blake2b(digest_size=8) if self.hash is not None else None

    def write_part(self, data: np.ndarray | memoryview) -> None:
        self._write(data)
        if self._part_hash is not None:
            self._part_hash.update(memoryview(data).cast("B"))

    def end_record(self) -> None:
        if self._part_hash is not None and self.hash is not None:
            self.hash = (self.hash + int.from_bytes(self._part_hash.digest())) & 0xFFFF_FFFF_FFFF_FFFF
        self._part_hash = None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def commit(self) -> list[str]:
        if self.stream is not None:
            self.stream.flush()
            return [self.path]
        if self.tmp_path is not None:
            os.fsync(self.fd)
            self.close()
            os.replace(self.tmp_path, self.path)
            self.tmp_path = None
            _fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        else:
            self.close()
        return [self.path]

    def abort(self) -> None:
        self.close()
        if self.tmp_path is not None:
            try:
                os.unlink(self.tmp_path)
            except FileNotFoundError:
                pass


class ShardSink:
    """Whole records to ``part-00000``, ``part-00001``, ... in a folder created atomically.

    Shards are written into the sibling folder ``tmp_dir``, which :meth:`commit` renames to ``out_dir``. A shard
    closes after ``shard_records[i]`` records (``split``), after ``records_per`` records, or before the record
    that would take it past ``bytes_per`` bytes (a record longer than that gets a shard of its own). No empty
    shard is written.
    """

    def __init__(
        self,
        out_dir: str,
        tmp_dir: str,
        *,
        shard_records: list[int] | None = None,
        records_per: int | None = None,
        bytes_per: int | None = None,
        hashing: bool = False,
        on_write: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.out_dir, self.tmp_dir = out_dir, tmp_dir
        self.shard_records = [n for n in shard_records if n > 0] if shard_records is not None else None
        self.records_per, self.bytes_per = records_per, bytes_per
        n_shards = len(self.shard_records) if self.shard_records is not None else 0
        self.width = max(5, len(str(max(n_shards - 1, 0))))
        self.hashing, self.on_write = hashing, on_write
        self.done: list[FileSink] = []
        self.cur: FileSink | None = None

    @property
    def records(self) -> int:
        return sum(s.records for s in self.done) + (self.cur.records if self.cur else 0)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.done) + (self.cur.nbytes if self.cur else 0)

    @property
    def hash(self) -> int | None:
        if not self.hashing:
            return None
        sinks = self.done + ([self.cur] if self.cur else [])
        return sum(s.hash or 0 for s in sinks) & 0xFFFF_FFFF_FFFF_FFFF

    def _room(self) -> tuple[int | None, int | None]:
        """(records, bytes) the current shard may still take; None for no limit."""
        cur = self.cur
        assert cur is not None
        if self.shard_records is not None:
            return self.shard_records[len(self.done)] - cur.records, None
        if self.records_per is not None:
            return self.records_per - cur.records, None
        assert self.bytes_per is not None
        return None, self.bytes_per - cur.nbytes

    def _rotate(self) -> None:
        if self.shard_records is not None and len(self.done) + (self.cur is not None) >= len(self.shard_records):
            raise ShuffleError("internal error: more records than the shards were planned for")
        if self.cur is not None:
            self.cur.close()
            self.done.append(self.cur)
        name = f"part-{len(self.done):0{self.width}d}"
        self.cur = FileSink(os.path.join(self.tmp_dir, name), hashing=self.hashing, on_write=self.on_write)

    def write(self, data: np.ndarray | memoryview, lengths: np.ndarray) -> None:
        mv = memoryview(data).cast("B")
        i, pos = 0, 0
        while i < lengths.size:
            if self.cur is None:
                self._rotate()
            assert self.cur is not None
            rec_room, byte_room = self._room()
            if rec_room is not None:
                take = min(rec_room, lengths.size - i)
            else:
                assert byte_room is not None
                take = int(np.searchsorted(np.cumsum(lengths[i:]), byte_room, side="right"))
                if take == 0 and self.cur.records == 0:
                    take = 1  # a record longer than bytes_per gets a shard of its own
            if take <= 0:
                self._rotate()
                continue
            nb = int(lengths[i : i + take].sum())
            self.cur.write(mv[pos : pos + nb], lengths[i : i + take])
            i += take
            pos += nb

    def begin_record(self, length: int) -> None:
        if self.cur is None:
            self._rotate()
        assert self.cur is not None
        rec_room, byte_room = self._room()
        if (rec_room is not None and rec_room <= 0) or (
            byte_room is not None and length > byte_room and self.cur.records > 0
        ):
            self._rotate()
            assert self.cur is not None
        self.cur.begin_record(length)

    def write_part(self, data: np.ndarray | memoryview) -> None:
        assert self.cur is not None
        self.cur.write_part(data)

    def end_record(self) -> None:
        assert self.cur is not None
        self.cur.end_record()

    def close(self) -> None:
        if self.cur is not None:
            self.cur.close()

    def commit(self) -> list[str]:
        if self.cur is not None:
            self.cur.close()
            self.done.append(self.cur)
            self.cur = None
        for s in self.done:
            fd = os.open(s.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(self.tmp_dir)
        if os.path.exists(self.out_dir):
            _swap_dir(self.tmp_dir, self.out_dir)
        else:
            os.rename(self.tmp_dir, self.out_dir)
        _fsync_dir(os.path.dirname(os.path.abspath(self.out_dir)))
        return [os.path.join(self.out_dir, os.path.basename(s.path)) for s in self.done]

    def abort(self) -> None:
        self.close()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)


def _swap_dir(new: str, old: str) -> None:
    """Replace folder ``old`` by ``new`` (``force``): rename the old one aside, the new one in, then delete."""
    aside = f"{new}.old"
    os.rename(old, aside)
    os.rename(new, old)
    shutil.rmtree(aside)


def emit(
    sink: FileSink | ShardSink,
    src: np.ndarray,
    bounds: np.ndarray,
    idx: np.ndarray,
    staging: np.ndarray,
    max_batch: int,
) -> None:
    """Write records ``idx`` (indices into ``bounds``) of ``src`` to ``sink`` in that order, via ``staging``.

    Records are gathered into ``staging`` in batches of at most ``max_batch`` records and ``staging.size``
    bytes; a record longer than ``staging`` is written straight from ``src``.
    """
    n = idx.size
    i = 0
    cap = staging.size
    while i < n:
        sel = idx[i : i + max_batch]
        starts = bounds[sel]
        lengths = bounds[sel + 1] - starts
        cum = np.cumsum(lengths)
        k = int(np.searchsorted(cum, cap, side="right"))
        if k == 0:
            s, ln = int(starts[0]), int(lengths[0])
            sink.write(src[s : s + ln], lengths[:1])
            i += 1
            continue
        lengths = lengths[:k]
        total = int(cum[k - 1])
        gather(src, starts[:k], lengths, staging, cum[:k] - lengths)
        sink.write(staging[:total], lengths)
        i += k


class Window:
    """A bounded read buffer over one chunk file of ``remaining`` records, for the merge.

    ``ends[lo:]`` are the ends of the complete, not yet emitted records in ``buf``; the record before ``ends[lo]``
    starts at :meth:`start`. At most ``max_records`` ends are held, so the index stays within the budget.
    """

    def __init__(self, path: str, records: int, capacity: int, sep: int, on_read: Callable[[int], None]) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        self.remaining = records
        self.buf = np.empty(capacity, np.uint8)
        self.sep = sep
        self.max_records = max(1, capacity // 16)
        self.on_read = on_read
        self.fill = 0
        self.head = 0  # where the first record of ends[lo:] (or the partial record) starts
        self.ends = np.empty(0, np.int64)
        self.lo = 0
        self.scanned = 0
        self.eof = False

    @property
    def avail(self) -> int:
        return self.ends.size - self.lo

    def start(self) -> int:
        return int(self.ends[self.lo - 1]) if self.lo else self.head

    def refill(self) -> None:
        """Move the unconsumed bytes to the front, read to capacity, and find the new records."""
        s = self.start()
        keep = self.ends[self.lo :] - s
        rest = self.fill - s
        if s:
            self.buf[:rest] = self.buf[s : self.fill]
        self.fill, self.head, self.lo = rest, 0, 0
        self.scanned = max(self.scanned - s, int(keep[-1]) if keep.size else 0)
        if not self.eof and self.fill < self.buf.size:
            n = read_into(self.fd, self.buf[self.fill :])
            if n == 0:
                self.eof = True
            self.fill += n
            self.on_read(n)
        new, self.scanned = scan(self.buf, self.scanned, self.fill, self.sep, self.max_records - keep.size)
        self.ends = np.concatenate((keep, new)) if keep.size else new

    def take(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Starts and lengths of the next ``k`` records (which must be available), marked as emitted."""
        e = self.ends[self.lo : self.lo + k]
        starts = np.empty(k, np.int64)
        starts[0] = self.start()
        starts[1:] = e[:-1]
        self.lo += k
        self.remaining -= k
        return starts, e - starts

    def stream_one(self, sink: FileSink | ShardSink) -> None:
        """Emit the next record, which is longer than the buffer, by reading it through in pieces."""
        s = self.start()
        # Measure it first (a shard sink needs its length): read ahead with pread, leaving the file offset alone.
        length = self.fill - s
        pos = os.lseek(self.fd, 0, os.SEEK_CUR)
        probe = np.empty(min(self.buf.size, 1 << 20), np.uint8)
        while True:
            n = os.preadv(self.fd, [memoryview(probe)], pos)
            if n == 0:
                raise ShuffleError(f"internal error: chunk file {self.path} ends inside a record")
            hit = np.flatnonzero(probe[:n] == self.sep)
            if hit.size:
                length += int(hit[0]) + 1
                break
            length += n
            pos += n
        del probe
        sink.begin_record(length)
        left = length
        while True:
            piece = min(left, self.fill - s)
            sink.write_part(self.buf[s : s + piece])
            left -= piece
            s += piece
            if left == 0:
                break
            self.fill = read_into(self.fd, self.buf)
            if self.fill == 0:
                raise ShuffleError(f"internal error: chunk file {self.path} ends inside a record")
            self.on_read(self.fill)
            s = 0
        sink.end_record()
        self.head, self.ends, self.lo, self.scanned = s, np.empty(0, np.int64), 0, s
        self.remaining -= 1

    def close(self) -> None:
        """Close the file and drop the buffers (cleanup callbacks may keep a closed window referenced)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.buf = np.empty(0, np.uint8)
        self.ends = np.empty(0, np.int64)
        self.lo = self.fill = self.head = self.scanned = 0
