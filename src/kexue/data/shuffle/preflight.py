"""What :func:`~.api.external_shuffle` checks before the first pass: its inputs are paths; in its folders, it removes
what killed runs left there, makes sure it can create files in them, and that they have room for what the run will
write. And how a failure during the run is named: by the user's path, never a hidden temporary one."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Any

from .budget import Budget
from .errors import InputError, InsufficientSpace
from .reader import Source
from .tempfiles import probe_writable, remove_leftovers


def _free(path: str) -> int | None:
    """Free bytes for this user in the file system of ``path`` (``statvfs``: available blocks times block size)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _space(sources: list[Source], budget: Budget, tmp_parent: str, out_dir: str | None, output: str,
           notes: list[str]) -> None:
    """Free space: temp >= 1.1 S when the input may not fit in memory; output >= S; both if one device holds both."""
    known = sum(s.size or 0 for s in sources)
    if any(s.size is None for s in sources):
        notes.append("input size unknown (a stream): free disk space was not checked before starting")
        return
    need_tmp = int(1.1 * known) if known > budget.capacity // 2 else 0
    need_out = known if out_dir is not None else 0
    if out_dir is not None and os.stat(tmp_parent).st_dev == os.stat(out_dir).st_dev:
        checks = [(tmp_parent, need_tmp + need_out, f"temporary files and the output {output}")]
    else:
        checks = [(tmp_parent, need_tmp, "temporary files")]
        if out_dir is not None:
            checks.append((out_dir, need_out, f"the output {output}"))
    for path, need, what in checks:
        free = _free(path)
        if need and free is not None and free < need:
            raise InsufficientSpace(
                f"not enough free space for {what} in {path}: expected about {need} bytes free for {known} bytes of "
                f"input, got {free} (use tmp_dir / --tmp-dir on another device, or free some space)"
            )


def check_folders(sources: list[Source], budget: Budget, tmp_parent: str, tmp_given: bool, out_dir: str | None,
                  output: str, notes: list[str]) -> None:
    """Before the first pass: remove killed runs' leftovers from the output's folder ``out_dir`` and the temporary
    folder ``tmp_parent`` (a note says what went), check that both are writable (the temporary folder only when the
    run may need it: when it was given, ``tmp_given``, or the input may not fit in memory), then that they have room.
    ``output`` is the output as the user named it, for the messages."""
    for folder in dict.fromkeys(f for f in (out_dir, tmp_parent) if f is not None):
        gone = remove_leftovers(folder)
        if gone:
            notes.append(f"removed {len(gone)} temporary file(s) or folder(s) that killed runs left in {folder}: "
                         f"{', '.join(sorted(gone)[:3])}{', ...' if len(gone) > 3 else ''}")
    if out_dir is not None:
        try:
            probe_writable(out_dir)
        except OSError as e:
            raise InputError(f"expected a folder where the output {output} can be written, got {out_dir}: "
                             f"{e.strerror or e}") from None
    known = None if any(s.size is None for s in sources) else sum(s.size or 0 for s in sources)
    may_spill = known is not None and known > budget.capacity // 2  # a stream is tried (a failure names the folder)
    if tmp_parent != out_dir and (tmp_given or may_spill):
        where = "tmp_dir / --tmp-dir" if tmp_given else "the current folder; choose one with tmp_dir / --tmp-dir"
        try:
            probe_writable(tmp_parent)
        except OSError as e:
            raise InputError(f"expected a writable temporary folder ({where}), got {tmp_parent}: "
                             f"{e.strerror or e}") from None
    _space(sources, budget, tmp_parent, out_dir, output, notes)


def input_paths(inputs: Any) -> list[str]:
    """``inputs`` (a path, or a sequence of them) as a list of ``str``, else an :class:`InputError`."""
    one = isinstance(inputs, (str, os.PathLike))
    if not one and not isinstance(inputs, Sequence):
        raise InputError(f"expected inputs to be a path or a list of paths, got {inputs!r}")
    paths = [inputs] if one else list(inputs)
    for p in paths:
        if not isinstance(p, (str, os.PathLike)) or not isinstance(os.fspath(p), str):
            raise InputError(f"expected inputs to be a path or a list of paths (str or os.PathLike), got {p!r} "
                             f"among them")
    return [os.fspath(p) for p in paths]


def describe_os_error(e: OSError, run_tmp: str | None, tmp_parent: str, output: str, inputs: list[str]) -> str:
    """A one-line message for an ``OSError`` no closer layer explained, naming the user's path, not a hidden one."""
    name = os.fspath(e.filename) if e.filename is not None else ""
    if run_tmp is not None and name.startswith(run_tmp):
        what = f"to read and write temporary files in {tmp_parent}"
    elif name in inputs:
        what = f"to read the input {name}"
    elif name:
        what = f"to write the output {output}"
    else:
        what = f"to read the inputs and write the output {output} (temporary files in {tmp_parent})"
    return f"expected {what}, got {e.strerror or e}: the shuffle stopped, temporary files removed, no output written"


__all__ = ["check_folders", "describe_os_error", "input_paths"]
