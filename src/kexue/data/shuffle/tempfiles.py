"""The shuffle's temporary entries: names that mark them as its own, a lock held while the run lives, and the
removal of what a killed run (SIGKILL, power loss) left behind.

A run makes these hidden entries, ``<pid>`` being its process id and ``<rand>`` 8 random hex digits:

* ``.kexue-shuffle-<pid>-<rand>/`` in the temporary folder: the chunk, merge and bucket files (``chunk-000001``,
  ``merged-000002``, ``bucket-000003``, ...); the same name, empty, probes that a folder is writable;
* ``.<output name>.tmp-<pid>-<rand>.kexue-shuffle`` in the output's folder: the output being written (a file), or the
  folder of shards (``part-00000``, ...), renamed over the output when complete;
* the same name plus ``.old``: a replaced shards folder, between the two renames of ``force``.

While the run lives it holds an exclusive ``flock`` on the first two (on the file, or on the folder itself). An
entry is a dead run's leftover, which :func:`remove_leftovers` deletes, only when all of these hold: its name has
one of these forms; it is a plain file or a folder, not a link, and a folder holds nothing but plain files named as
the shuffle names them (a folder someone reused is left alone); no process holds its lock; and the process that made
it is gone: none has its pid, or the one that has it started after the entry last changed (the pid was reused, as
after a reboot). The pid check covers the instant between making an entry and locking it; the lock covers a run on
another machine that shares the folder (NFS), whose pid means nothing here. Where a file system has no locks, the
pid check alone decides.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import stat

#: Every entry name of the shuffle's own begins (temporary folders) or ends (output files and folders) with this.
MARK = "kexue-shuffle"
_TEMP_DIR = re.compile(rf"\.{MARK}-(?P<pid>\d+)-[0-9a-f]{{8}}")
_OUTPUT = re.compile(rf"\..+\.tmp-(?P<pid>\d+)-[0-9a-f]{{8}}\.{MARK}(?P<old>\.old)?", re.DOTALL)
_TEMP_FILES = re.compile(r"(chunk|merged|bucket)-\d{6,}")
_SHARD_FILES = re.compile(r"part-\d{5,}")
_NAME_ROOM = 120  # characters of the output's name kept in its temporary name (a file name has at most 255 bytes)
_SLACK = 2.0  # seconds: process start times from /proc are known to about a second


def run_tag() -> str:
    """``<pid>-<rand>``: what a run's temporary names carry."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def output_temp(out_path: str, tag: str) -> str:
    """The temporary name, in the output's folder, under which ``out_path`` (a file or a folder) is written."""
    folder, name = os.path.split(out_path)
    return os.path.join(folder, f".{name[:_NAME_ROOM]}.tmp-{tag}.{MARK}")


def lock(fd: int) -> None:
    """Hold an exclusive ``flock`` on ``fd`` (a new entry's) until it is closed; a file system without locks is let
    through (the pid in the entry's name then protects it)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise


def make_temp_dir(parent: str) -> tuple[str, int]:
    """A new ``.kexue-shuffle-<pid>-<rand>`` folder in ``parent``, locked: (its path, the descriptor holding the lock,
    to be closed after the folder is removed)."""
    while True:
        path = os.path.join(parent, f".{MARK}-{run_tag()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        lock(fd)
        return path, fd


def probe_writable(folder: str) -> None:
    """Make and remove an empty ``.kexue-shuffle-<pid>-<rand>`` folder in ``folder``: the ``OSError`` of a folder
    where nothing can be created (permissions, a read-only file system, a quota), before any work is done. A run
    killed in between leaves an empty folder that the next run removes."""
    path = os.path.join(folder, f".{MARK}-{run_tag()}")
    os.mkdir(path, 0o700)
    os.rmdir(path)


_btime: float | None = None


def _boot_time() -> float | None:
    global _btime
    if _btime is None:
        try:
            with open("/proc/stat") as f:
                _btime = next(float(line.split()[1]) for line in f if line.startswith("btime "))
        except (OSError, StopIteration, ValueError, IndexError):
            return None
    return _btime


def _start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from /proc; None where that cannot be read."""
    boot = _boot_time()
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if boot is None else boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, changed: float) -> bool:
    """Whether the process that made an entry last changed at ``changed`` may still run: a process with that pid
    exists and did not start after that (when its start time can be read)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to another user
        pass
    except OSError:
        return True
    started = _start_time(pid)
    return started is None or started <= changed + _SLACK


def _only(folder: str, names: re.Pattern[str]) -> list[str] | None:
    """The entries of ``folder`` when all are plain files whose names match ``names``, else None."""
    entries = os.listdir(folder)
    for entry in entries:
        if not names.fullmatch(entry) or not stat.S_ISREG(os.lstat(os.path.join(folder, entry)).st_mode):
            return None
    return entries


def _remove(path: str, contents: re.Pattern[str], folder_only: bool) -> bool:
    """Remove a leftover (a plain file, or a folder of plain files named as ``contents``; only a folder with
    ``folder_only``), checked again under its lock; False if it is not one, or a live run holds it."""
    st = os.lstat(path)
    is_dir = stat.S_ISDIR(st.st_mode)
    if not (is_dir or (stat.S_ISREG(st.st_mode) and not folder_only)):
        return False
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if is_dir else 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live run holds it
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
        if not is_dir:
            os.unlink(path)
            return True
        entries = _only(path, contents)
        if entries is None:
            return False
        for entry in entries:
            os.unlink(os.path.join(path, entry))
        os.rmdir(path)  # fails, leaving it, if something was put there meanwhile
        return True
    finally:
        os.close(fd)


def remove_leftovers(folder: str) -> list[str]:
    """Remove the temporary entries that killed runs of the shuffle left in ``folder`` (see the module docstring for
    what counts as one); returns their names. Entries it cannot inspect or remove are left as they are."""
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        temp = _TEMP_DIR.fullmatch(name)
        out = None if temp else _OUTPUT.fullmatch(name)
        m = temp or out
        if m is None:
            continue
        path = os.path.join(folder, name)
        try:
            if _alive(int(m["pid"]), os.lstat(path).st_ctime):
                continue
            if _remove(path, _TEMP_FILES if temp else _SHARD_FILES, folder_only=temp is not None):
                removed.append(name)
        except OSError:
            continue
    return removed


__all__ = ["MARK", "lock", "make_temp_dir", "output_temp", "probe_writable", "remove_leftovers", "run_tag"]
