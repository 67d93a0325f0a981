"""``external_shuffle``: validation, refusals, the preflight, signals, and the run of the chosen method."""

from __future__ import annotations

import os
import resource
import secrets
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any, Literal, TypeVar, get_args

import numpy as np

from ..._validate import check_choice, check_int
from .budget import Budget, fit_memory, parse_size
from .errors import InputError, Interrupted, ShuffleError, VerifyError
from .passes import (
    Context,
    Progress,
    ProgressHook,
    RowwiseLabels,
    count_input,
    merge,
    merge_tree,
    scatter,
    shuffle_buckets,
    split_chunks,
)
from .preflight import check_folders, describe_os_error, input_paths
from .reader import FinalNewline, open_sources
from .sinks import FileSink, ShardSink
from .tempfiles import lock, output_temp, run_tag

Method = Literal["merge", "scatter", "naive"]
METHODS: tuple[Method, ...] = get_args(Method)
T = TypeVar("T")


@dataclass
class ShuffleReport:
    """What :func:`external_shuffle` did."""

    method: Method
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


def _peak_rss() -> int:
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


class _Signals:
    """SIGINT and SIGTERM raise :class:`Interrupted` while active (main thread only); :meth:`ignore` mutes them
    while cleaning up, and leaving the context restores the previous handlers."""

    def __init__(self) -> None:
        self.active = threading.current_thread() is threading.main_thread()
        self.old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
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


def _checked(check: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A :mod:`kexue._validate` check whose error is raised as an :class:`InputError` (exit status 2 in the CLI)."""
    try:
        return check(*args, **kwargs)
    except (TypeError, ValueError) as e:
        raise InputError(str(e)) from None


def _int_arg(name: str, value: Any, minimum: int) -> int:
    """``value`` (an ``int`` or a numpy integer) as an ``int`` >= ``minimum``, else an :class:`InputError`."""
    return _checked(check_int, name, int(value) if isinstance(value, np.integer) else value, minimum=minimum)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


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
    final_newline: FinalNewline = "add",
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
    compares the record count and an order-independent checksum of input and output before committing. Before the
    first pass it removes what killed runs of the shuffle left in the output's and the temporary folder
    (:mod:`.tempfiles`) and checks that both are writable and have room; ``memory`` is lowered to what the input
    needs and to 3/4 of the memory available (:func:`.budget.fit_memory`; the report's ``memory`` is the budget
    used). See the module docstring for the algorithms and guarantees; errors are :class:`ShuffleError`
    subclasses, each one line naming the user's path.
    """
    t0 = time.perf_counter()
    paths = input_paths(inputs)
    if not paths:
        raise InputError("expected at least one input, got none")
    if not (output is None or isinstance(output, (str, os.PathLike)) or callable(getattr(output, "write", None))):
        raise InputError(f"expected output to be a path, '-', None or a binary file object, got {output!r}")
    if tmp_dir is not None and not isinstance(tmp_dir, (str, os.PathLike)):
        raise InputError(f"expected tmp_dir to be a folder path or None, got {tmp_dir!r}")
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise InputError(f"expected progress to be True, False, None or a callable (phase, done, total), got "
                         f"{progress!r}")
    for flag, value in (("verify", verify), ("force", force), ("keep_tmp", keep_tmp)):
        if not isinstance(value, bool):
            raise InputError(f"expected {flag} to be True or False, got {value!r}")
    _checked(check_choice, "method", method, Method)
    if not isinstance(sep, bytes) or len(sep) != 1:
        raise InputError(f"expected sep to be a single byte such as b'\\n' or b'\\0', got {sep!r}")
    _checked(check_choice, "final_newline", final_newline, FinalNewline)
    if seed is not None:
        seed = _int_arg("seed", seed, 0)
    sharding = [(k, v) for k, v in (("split", split), ("records_per_output", records_per_output),
                                     ("bytes_per_output", bytes_per_output)) if v is not None]
    if len(sharding) > 1:
        raise InputError(f"expected at most one of split, records_per_output, bytes_per_output, got {dict(sharding)}")
    bytes_per = parse_size(bytes_per_output, "bytes_per_output") if bytes_per_output is not None else None
    if split is not None:
        split = _int_arg("split", split, 1)
    if records_per_output is not None:
        records_per_output = _int_arg("records_per_output", records_per_output, 1)
    max_open = _int_arg("max_open", max_open, 1)
    budget = Budget.of(parse_size(memory, "memory"))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limit = min(max_open, soft - 16 if soft != resource.RLIM_INFINITY else max_open)
    if limit < 4:
        raise InputError(f"expected max_open and RLIMIT_NOFILE to allow at least 4 open files, got {limit} "
                         f"(max_open={max_open}, RLIMIT_NOFILE={soft}): need at least 4 open files")
    seed = seed if seed is not None else secrets.randbits(63)
    sources = open_sources(paths)
    in_stats = [os.stat(s.path) for s in sources if s.path != "-"]
    notes: list[str] = []
    known = None if any(s.size is None for s in sources) else sum(s.size or 0 for s in sources)
    fit = fit_memory(budget.memory, known, len(sources))
    if fit.machine is not None:
        notes.append(f"memory {budget.memory} bytes is more than this machine has available: using {fit.memory} "
                     f"bytes (3/4 of what is available)")
    budget = Budget.of(fit.memory)

    # Resolve the output and refuse what would lose data.
    stream: IO[bytes] | None = None
    out_path: str | None = None
    output_name = "standard output"  # the output as the user named it, for messages
    if sharding:
        if output is None or not isinstance(output, (str, os.PathLike)) or os.fspath(output) == "-":
            raise InputError(f"expected a folder path as output for sharded output (--output-dir DIR), got "
                             f"{output!r}")
    if output is None or (isinstance(output, (str, os.PathLike)) and os.fspath(output) == "-"):
        stream = sys.stdout.buffer
    elif isinstance(output, (str, os.PathLike)):
        output_name = os.fspath(output)
        out_path = os.path.abspath(output_name)
    else:
        stream = output
    if stream is not None:
        try:
            st = os.fstat(stream.fileno())
            if stat.S_ISREG(st.st_mode) and any(_same_file(st, s) for s in in_stats):
                raise InputError("expected an output other than the inputs, got standard output, which is the same "
                                 "file as an input (refusing to overwrite the input)")
        except (OSError, AttributeError, ValueError) as e:  # no real file descriptor: nothing to compare
            if isinstance(e, InputError):
                raise
    out_dir = os.path.dirname(out_path) if out_path else None
    if out_path is not None:
        assert out_dir is not None
        if not os.path.isdir(out_dir):
            raise InputError(f"expected an existing output folder, got {out_dir}, which does not exist")
        if os.path.lexists(out_path):
            try:
                st = os.stat(out_path)
            except OSError:  # a dangling symbolic link: replaced like a file, with force
                st = os.lstat(out_path)
            if any(_same_file(st, s) for s in in_stats):
                raise InputError(f"expected an output other than the inputs, got {out_path}, which is the same file as "
                                 f"an input (refusing to overwrite the input)")
            if sharding and stat.S_ISDIR(st.st_mode):
                inside = [s.path for s in sources if s.path != "-" and
                          os.path.commonpath([os.path.realpath(s.path), os.path.realpath(out_path)])
                          == os.path.realpath(out_path)]
                if inside:
                    raise InputError(f"expected an output folder that holds no input, got {out_path}, which holds "
                                     f"the input {inside[0]} (refusing to replace it)")
            if not force:
                raise InputError(f"expected a new output or force=True / --force, got {out_path}: the output exists "
                                 f"(pass force=True / --force to replace it)")
            is_dir = stat.S_ISDIR(st.st_mode)
            if bool(sharding) != is_dir:
                raise InputError(f"expected {out_path} to be a {'folder' if sharding else 'file'} to replace (the "
                                 f"output is {'shards' if sharding else 'one file'}), got a "
                                 f"{'folder' if is_dir else 'file'} (refusing to replace it)")
    tmp_parent = os.path.abspath(os.fspath(tmp_dir)) if tmp_dir is not None else (out_dir or os.getcwd())
    if not os.path.isdir(tmp_parent):
        raise InputError(f"expected an existing temporary folder, got {tmp_parent}, which does not exist")
    check_folders(sources, budget, tmp_parent, tmp_dir is not None, out_dir, output_name, notes)

    sink: FileSink | ShardSink | None = None
    with _Signals() as signals, ExitStack() as stack:
        prog = Progress(progress)
        stack.callback(prog.stop)
        ctx = Context(budget, sep[0], seed, method, limit, tmp_parent, keep_tmp, verify, prog, final_newline, stack)

        def final_sink(total: int) -> FileSink | ShardSink:
            nonlocal sink
            if sharding:
                assert out_path is not None and out_dir is not None
                tmp = output_temp(out_path, run_tag())
                os.mkdir(tmp)
                fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
                stack.callback(os.close, fd)
                lock(fd)  # held until the run ends: a later run's cleanup leaves the folder alone
                shard_records = None
                if split is not None:
                    q, r = divmod(total, split)
                    shard_records = [q + (i < r) for i in range(split)]
                sink = ShardSink(out_path, tmp, shard_records=shard_records, records_per=records_per_output,
                                 bytes_per=bytes_per, hashing=verify, on_write=prog.update)
            elif out_path is not None:
                sink = FileSink(out_path, tmp_path=output_temp(out_path, run_tag()), hashing=verify,
                                on_write=prog.update, label=f"the output {output_name}")
                lock(sink.fd)  # held until the file is closed
            else:
                assert stream is not None
                name = "<stream>" if out_path is None and output not in (None, "-") else "-"
                sink = FileSink(name, stream=stream, hashing=verify, on_write=prog.update,
                                label="standard output" if name == "-" else "the output stream")
            return sink

        try:
            reader = ctx.reader(sources)
            prog.start("read", known)
            first = reader.next_chunk()
            if first is None:
                final_sink(0)
            elif reader.exhausted:  # it all fits in memory: one pass, no temporary files
                count_input(ctx, first)
                s = final_sink(first.records)
                prog.start("write", first.nbytes)
                ctx.shuffle_chunk(first, s, (1, 0))
            elif method in ("merge", "naive"):
                chunks = split_chunks(ctx, reader, first)
                del first  # the chunk buffer is freed before the merge, whose windows use that memory
                reader.close()
                ctx.free_buffer()
                ctx.chunks = len(chunks)
                fan_in = min(limit - 1, budget.max_fan_in)
                s = final_sink(sum(n for _, n, _ in chunks))
                if method == "merge":
                    merge_tree(ctx, chunks, s, fan_in)
                else:
                    if len(chunks) > fan_in:
                        raise ShuffleError(
                            f"expected at most {fan_in} chunks for the naive method, which reads all of them at once "
                            f"(what max_open and memory allow), got {len(chunks)}: raise --memory or --max-open (or "
                            "use an exact method)")
                    prog.start("interleave", sum(b for _, _, b in chunks))
                    merge(ctx, chunks, s, RowwiseLabels(np.array([n for _, n, _ in chunks]), ctx.rng(5)))
            else:
                buckets = scatter(ctx, reader, first, known, (), counting=True)
                reader.close()
                ctx.chunks = len(buckets)
                s = final_sink(sum(n for _, n, _ in buckets))
                prog.start("shuffle buckets", sum(b for _, _, b in buckets))
                shuffle_buckets(ctx, buckets, s, ())
            prog.stop()
            assert sink is not None
            if sink.records != reader.records:
                raise ShuffleError(f"internal error: expected to write the {reader.records} records read, wrote "
                                   f"{sink.records}")
            if verify and sink.hash != ctx.input_hash:
                raise VerifyError(f"checksum mismatch: expected the input's {ctx.input_hash:#018x}, got "
                                  f"{sink.hash or 0:#018x} from the output")
            signals.ignore()
            outputs = sink.commit()
        except BaseException as e:
            signals.ignore()
            prog.stop()
            if sink is not None:
                sink.abort()
            if isinstance(e, KeyboardInterrupt):
                raise Interrupted("interrupted (SIGINT): temporary files removed, no output written") from None
            if isinstance(e, MemoryError):
                raise ShuffleError(f"expected the memory for a budget of {budget.memory} bytes, got an allocation "
                                   f"that failed ({e}): lower memory / --memory; temporary files removed, no output "
                                   "written") from None
            if isinstance(e, OSError) and not isinstance(e, BrokenPipeError):  # a closed pipe: the CLI ends quietly
                raise ShuffleError(describe_os_error(e, ctx.tmp, tmp_parent, output_name, paths)) from e
            raise
    return ShuffleReport(
        method=method, seed=seed, memory=budget.memory, records=sink.records, bytes_in=reader.bytes_read,
        bytes_out=sink.nbytes, added_separators=reader.added_separators, chunks=ctx.chunks, levels=ctx.levels,
        outputs=outputs, seconds=time.perf_counter() - t0,
        peak_rss=_peak_rss(), max_open=limit,
        verified=(True if verify else None), checksum=(sink.hash if verify else None), notes=notes,
    )


__all__ = ["METHODS", "FinalNewline", "Method", "ShuffleReport", "external_shuffle"]
