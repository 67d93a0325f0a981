"""Writing records: :class:`FileSink` (one file or stream, created atomically) and :class:`ShardSink` (numbered
shards in a folder created atomically), both counting and optionally checksumming whole records, and :func:`emit`,
which writes records of a buffer in a given order through a staging buffer."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from ..._io import fsync_path
from .errors import InsufficientSpace, ShuffleError
from .records import byte_view, checksum, gather, is_disk_full, write_all


class FileSink:
    """Whole records to one file (or a binary stream), counted and optionally checksummed.

    With ``tmp_path`` set, ``path`` is the name to create atomically: records go to the sibling ``tmp_path`` and
    :meth:`commit` fsyncs it, renames it into place and fsyncs the folder. A write that fails for lack of space
    raises :class:`InsufficientSpace`, any other failure to create or write it a :class:`ShuffleError`, both naming
    ``label`` (what the user knows it as: the output's path, or the temporary folder; default ``path``).
    """

    def __init__(
        self,
        path: str,
        *,
        tmp_path: str | None = None,
        stream: IO[bytes] | None = None,
        hashing: bool = False,
        on_write: Callable[[int], None] = lambda n: None,
        label: str | None = None,
    ) -> None:
        self.path = path
        self.label = label or path
        self.tmp_path = tmp_path
        self.records = 0
        self.nbytes = 0
        self.hash: int | None = 0 if hashing else None
        self.on_write = on_write
        self._part_hash: Any = None
        self.stream = stream
        self.writing = tmp_path or path
        self.fd = -1
        if stream is None:
            try:
                self.fd = os.open(self.writing, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except OSError as e:
                raise self._failure(e) from e

    def _failure(self, e: OSError) -> ShuffleError:
        """The error to raise for ``e``, naming ``label``."""
        if not is_disk_full(e):
            return ShuffleError(f"expected to write {self.label}, got {e.strerror or e}: the shuffle was stopped, its "
                                f"temporary files removed and no output written")
        where = os.path.dirname(os.path.abspath(self.writing))
        try:
            free = f"{shutil.disk_usage(where).free} bytes free"
        except OSError:
            free = "free space unknown"
        return InsufficientSpace(
            f"no space left on the device while writing {self.label} ({free}): the shuffle was stopped, its temporary "
            "files removed and no output written"
        )

    def _write(self, data: np.ndarray | memoryview) -> int:
        mv = byte_view(data)
        try:
            if self.stream is not None:
                self.stream.write(mv)
            else:
                write_all(self.fd, mv)
        except BrokenPipeError:
            raise  # the reader of standard output left: the command line ends quietly
        except OSError as e:
            raise self._failure(e) from e
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
            self._part_hash.update(byte_view(data))

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
            fsync_path(os.path.dirname(os.path.abspath(self.path)))
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
            raise ShuffleError(f"internal error: expected at most the {len(self.shard_records)} planned shards, got "
                               f"records for one more")
        if self.cur is not None:
            self.cur.close()
            self.done.append(self.cur)
        name = f"part-{len(self.done):0{self.width}d}"
        self.cur = FileSink(os.path.join(self.tmp_dir, name), hashing=self.hashing, on_write=self.on_write,
                            label=f"the output folder {self.out_dir}")

    def write(self, data: np.ndarray | memoryview, lengths: np.ndarray) -> None:
        mv = byte_view(data)
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
            fsync_path(s.path)
        fsync_path(self.tmp_dir)
        if os.path.exists(self.out_dir):
            _swap_dir(self.tmp_dir, self.out_dir)
        else:
            os.rename(self.tmp_dir, self.out_dir)
        fsync_path(os.path.dirname(os.path.abspath(self.out_dir)))
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


__all__ = ["FileSink", "ShardSink", "emit"]
