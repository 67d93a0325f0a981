"""Byte-buffer primitives for the out-of-core shuffle: find records, move them, hash them, read and write.

Records are byte strings that end with a one-byte separator (``\\n`` or ``\\0``); a buffer of records is a
``numpy.uint8`` array, and a set of records in it is described by two integer arrays, ``starts`` and ``lengths``
(the separator included). Nothing here loops in Python once per record: finding separators is one vectorised
comparison per block, and moving records is a handful of numpy calls per batch (see :func:`gather`).
"""

from __future__ import annotations

import errno
import hashlib
import os
from functools import partial
from operator import methodcaller

import numpy as np

#: The widest single copy :func:`gather` makes; longer records are copied in several words of this size.
_LOG_W = 8
_W = 1 << _LOG_W


def _find_ends(buf: np.ndarray, sep: int, offset: int = 0, dtype: type = np.int64) -> np.ndarray:
    """Positions just past every separator in ``buf`` (record ends, exclusive), plus ``offset``."""
    ends = np.flatnonzero(buf == sep)
    if ends.dtype != dtype:
        ends = ends.astype(dtype)
    ends += offset + 1
    return ends


def _words(a: np.ndarray, w: int) -> np.ndarray:
    """Every ``w``-byte window of ``a`` as one element of a void dtype (windows overlap: element i is a[i:i+w])."""
    return np.ndarray(shape=(a.size - w + 1,), dtype=np.dtype(f"V{w}"), buffer=a, offset=0, strides=(1,))


def gather(src: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray, dst: np.ndarray) -> None:
    """Copy record i, ``src[starts[i] : starts[i] + lengths[i]]``, to ``out[dst[i] : dst[i] + lengths[i]]``.

    ``src`` and ``out`` must not overlap, nor may the destination ranges; every length must be at least 1.

    numpy has no "copy many variable-length segments" call, and a byte-level index (one int64 per byte) costs
    ~20 bytes of memory traffic per byte moved. Instead each record is covered by fixed-width words that lie
    wholly inside it: a record of length l < W gets the width w = 2^floor(log2 l) and two words, at offsets 0 and
    l - w (they overlap when l < 2w, and the overlap carries identical bytes); a record with l >= W gets
    ceil(l / W) words of width W at offsets min(k W, l - W). Words of one width are moved by one fancy-indexed
    copy on a void-dtype view of every w-byte window, so the work is a few numpy calls per width class. Since no
    word crosses its record's bounds and overlapping words write identical bytes, the result does not depend on
    the order in which numpy performs the assignments.
    """
    n = lengths.size
    if n == 0:
        return
    lengths = lengths.astype(np.int64, copy=False)
    starts = starts.astype(np.int64, copy=False)
    dst = dst.astype(np.int64, copy=False)
    cls = np.frexp(lengths.astype(np.float64))[1]  # floor(log2 l) + 1, exact for l < 2**53
    cls -= 1
    np.minimum(cls, _LOG_W, out=cls)
    cls = cls.astype(np.int8)
    order = np.argsort(cls, kind="stable")
    counts = np.bincount(cls, minlength=_LOG_W + 1)
    pos = 0
    for c, cnt in enumerate(counts.tolist()):
        if cnt == 0:
            continue
        sel = order[pos : pos + cnt]
        pos += cnt
        w = 1 << c
        ls, ss, ds = lengths[sel], starts[sel], dst[sel]
        if c < _LOG_W:
            last = ls - w
            si = np.empty((cnt, 2), np.int64)
            di = np.empty((cnt, 2), np.int64)
            si[:, 0] = ss
            si[:, 1] = ss + last
            di[:, 0] = ds
            di[:, 1] = ds + last
            si, di = si.ravel(), di.ravel()
        else:
            nw = (ls + (w - 1)) >> c
            first = np.cumsum(nw)
            first -= nw
            k = np.arange(int(first[-1] + nw[-1]), dtype=np.int64)
            k -= np.repeat(first, nw)
            k <<= c
            np.minimum(k, np.repeat(ls - w, nw), out=k)
            si = np.repeat(ss, nw)
            si += k
            di = np.repeat(ds, nw)
            di += k
        _words(out, w)[di] = _words(src, w)[si]


def byte_view(data: np.ndarray | memoryview | bytes) -> memoryview:
    """A flat byte view of a contiguous array, memoryview or bytes object (no copy)."""
    mv = data.data if isinstance(data, np.ndarray) else memoryview(data)
    return mv.cast("B")


def write_all(fd: int, data: memoryview | np.ndarray | bytes) -> int:
    """``os.write`` until every byte is written (a write may be partial); returns the byte count."""
    mv = byte_view(data)
    done, total = 0, mv.nbytes
    while done < total:
        done += os.write(fd, mv[done:])
    return total


def read_into(fd: int, buf: np.ndarray) -> int:
    """``os.readv`` until ``buf`` is full or end of file; returns the byte count read."""
    mv = byte_view(buf)
    got, want = 0, mv.nbytes
    while got < want:
        n = os.readv(fd, [mv[got:]])
        if n == 0:
            break
        got += n
    return got


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


_SCAN_STEP = 1 << 19  # scan separators this many bytes at a time (bounds the comparison temporaries)


def checksum(data: np.ndarray | memoryview, lengths: np.ndarray, batch: int = 4096) -> int:
    """Sum mod 2**64 of the 64-bit BLAKE2b of each record (order-independent); ``data`` holds them packed.

    Records are hashed ``batch`` at a time, so the Python objects made per record stay few at any moment.
    """
    mv = byte_view(data)
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
        ends = _find_ends(buf[pos:step], sep, offset=pos)
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


__all__ = ["byte_view", "checksum", "gather", "is_disk_full", "read_into", "scan", "write_all"]
