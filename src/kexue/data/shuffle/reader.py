"""Reading records: the input stream in memory-bounded chunks, and bounded windows over chunk files for the merge.

* :class:`ChunkReader` turns a list of inputs (paths or standard input, read as one logical stream) into chunks
  of complete records that fit a byte budget, adding a separator to a file's unterminated last record;
* :class:`Window` is a bounded read buffer over one chunk file during a merge.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from .errors import InputError, RecordTooLong, ShuffleError
from .records import byte_view, read_into, scan

if TYPE_CHECKING:
    from .sinks import FileSink, ShardSink

#: What to do with an input whose last record has no separator: add one, or refuse the input.
FinalNewline = Literal["add", "error"]

#: Bytes of bookkeeping charged to the budget for every record held in memory (its end offset, its slot in the
#: permutation, and transients while the arrays are built).
RECORD_COST = 24


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
        raise InputError(f"expected standard input ('-') at most once among the inputs, got it {paths.count('-')} "
                         f"times")
    for p in paths:
        if p == "-":
            sources.append(Source("-", None))
            continue
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise InputError(f"expected an existing input file, got {p}: input not found") from None
        except OSError as e:
            raise InputError(f"expected a readable input file, got {p}: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"expected a file as input, got {p}: input is a directory")
        if not os.access(p, os.R_OK):
            raise InputError(f"expected a readable input file, got {p}: input is not readable")
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
    final_newline: FinalNewline = "add"
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
            raise ValueError(f"expected a buffer of at least the capacity, {self.capacity} bytes, got "
                             f"{self.buf.size}")

    def _buffer(self) -> np.ndarray:
        if self.buf is None:
            raise ShuffleError("internal error: expected an open chunk reader, got one that was closed")
        return self.buf

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
            f"expected records of at most {limit} bytes, what {self.memory_label or 'the memory budget'} leaves for "
            f"one in-memory chunk after its buffers, got record {self.records} (counting from 0) at byte offset "
            f"{offset} of {name}: {size}; raise --memory"
        )

    def _drop_taken(self) -> None:
        """Move the bytes after the last chunk to the front of the buffer."""
        t = self._taken
        if t == 0:
            return
        rest = self.fill - t
        if rest:
            buf = self._buffer()
            buf[:rest] = buf[t : self.fill]
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
        buf = self._buffer()
        try:
            n = read_into(self._fd, buf[self.fill : self.fill + room])
        except OSError as e:  # say which file: the caller names it as the user knows it
            e.filename = e.filename or self.sources[self._next_source - 1].path
            raise
        if n:
            self.fill += n
            self._file_bytes += n
            self._last_byte = int(buf[self.fill - 1])
            self.bytes_read += n
            self.on_read(n)
            return
        # End of this input: its last record must end with the separator.
        if self._file_bytes and self._last_byte != self.sep:
            name = self.sources[self._next_source - 1].name
            if self.final_newline == "error":
                raise InputError(
                    f"expected {name} to end with the record separator {bytes([self.sep])!r}, got a last record "
                    "that does not end with the record separator (final_newline='error'; use 'add' to append one)"
                )
            buf[self.fill] = self.sep
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
                ends, scanned = scan(self._buffer(), scanned, self.fill, self.sep)
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
        return Chunk(self._buffer()[:last_end], bounds)



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
            n = os.preadv(self.fd, [byte_view(probe)], pos)
            if n == 0:
                raise ShuffleError(f"internal error: expected chunk file {self.path} to end with a record, got one "
                                   f"that ends inside a record")
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
                raise ShuffleError(f"internal error: expected chunk file {self.path} to end with a record, got one "
                                   f"that ends inside a record")
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


__all__ = ["RECORD_COST", "Chunk", "FinalNewline", "ChunkReader", "Source", "Window", "open_sources"]
