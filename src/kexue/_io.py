"""Atomic replacement of a file: the one writer that ``models.hf``, ``data.fetch`` and the report use (internal).

:func:`atomic_path` hands out a temporary file beside the destination, then renames it over the destination with
``os.replace`` (atomic on POSIX and Windows within one file system), so a reader sees the old file or the new one,
never half of one; on any error, Ctrl-C included, the temporary file goes and the destination stays as it was. It
imports only the standard library, so every package of kexue can use it; the shuffle's sinks, whose files stay open
across many calls and are committed or aborted by their owner, use :func:`fsync_path` from here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _plain_mode() -> int | None:
    """The permissions ``open()`` gives a new file (0o666 less the umask), read from /proc without changing the umask
    (``os.umask`` can only be read by setting it, which races with other threads); None where /proc cannot tell."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, fsync: bool = False, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path in ``dest``'s folder to write the new contents to; on a clean exit it replaces ``dest``.

    The file exists, empty, when the block starts (``tempfile.mkstemp``, named ``.{dest.name}.XXXXXXXX{suffix}``, so
    a listing of the folder hides it); the writer may reopen or overwrite it by name. A new file gets the permissions
    a plain ``open()`` would give it (mkstemp's are 0o600), a replaced one keeps those of the file it replaces. Any
    exception in the block (``KeyboardInterrupt`` too) removes the temporary file and leaves ``dest`` untouched.
    ``fsync=True`` flushes the new contents to the disk before the rename and the folder entry after it, so the file
    also survives a power cut; without it the rename is atomic for readers but the data may still be in the page
    cache.
    """
    target = Path(dest)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            mode: int | None = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = _plain_mode()
        if mode is not None:
            os.chmod(tmp, mode)
        yield tmp
        if fsync:
            fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_path(target.parent)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's contents, or a folder's entries (files created or renamed in it), to the disk. On Windows, which
    cannot open a folder and whose renames are durable once they return, a folder is skipped."""
    flags = os.O_RDONLY
    if os.name == "nt":
        if os.path.isdir(path):
            return
        flags = os.O_RDWR  # Windows' fsync (_commit) needs a writable descriptor
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["atomic_path", "fsync_path"]
