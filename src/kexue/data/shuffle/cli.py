"""``kexue shuffle``: the command-line front end of :func:`kexue.data.shuffle.external_shuffle`."""

from __future__ import annotations

import os
import secrets
import stat
import sys
from collections.abc import Callable
from typing import Any, Literal, get_args

from ...env import interactive
from .api import METHODS, Method, external_shuffle
from .errors import ShuffleError
from .reader import FinalNewline

#: ``--mode``: ``exact`` (a uniform permutation, method merge by default) or ``blog`` (the post's scheme, = naive).
ShuffleMode = Literal["exact", "blog"]
#: ``--sep``: the record separator by name.
SepName = Literal["LF", "NUL"]


def add_parser(sub: Any) -> None:
    """Register ``kexue shuffle`` on an argparse sub-parser collection."""
    p = sub.add_parser(
        "shuffle",
        help="globally shuffle the lines of files far larger than memory (exact, crash-safe)",
        description="Shuffle the records (lines, or NUL-terminated records with -z) of INPUT files, read as one "
        "stream, into a uniformly random order using bounded memory and temporary files. Lines are bytes, never "
        "decoded; a last line without a newline gets one. Output is written to a temporary name and renamed when "
        "complete. The same inputs, --memory, --method and --seed give the same output. Exit codes: 1 a read or "
        "write failed, 2 bad input (an unwritable folder too), 3 not enough disk space, 4 record longer than memory "
        "allows, 5 --verify failed, 130 interrupted.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files to shuffle, in this order; - for standard input")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", metavar="OUTPUT", help="output file; default or '-': standard output")
    out.add_argument("--output-dir", metavar="DIR", help="folder for shards part-00000, ... (needs a shard option)")
    shard = p.add_mutually_exclusive_group()
    shard.add_argument("--split", type=int, metavar="N", help="N shards with near-equal record counts")
    shard.add_argument("--records-per-output", type=int, metavar="N", help="shards of N records")
    shard.add_argument("--bytes-per-output", metavar="SIZE", help="shards of at most SIZE bytes (e.g. 1G)")
    p.add_argument("--memory", default="1G", metavar="SIZE",
                   help="memory budget for data buffers (K, M, G: 1024), lowered to what the input needs and to "
                   "3/4 of the memory available (default: 1G)")
    p.add_argument("--seed", type=int, help="random seed (default: drawn from os.urandom and printed)")
    p.add_argument("--tmp-dir", "--tmpdir", dest="tmp_dir", metavar="DIR",
                   help="where temporary files go (default: the output's folder, or the current folder for "
                   "standard output; not /tmp, often RAM); what killed runs left there is removed")
    p.add_argument("--mode", choices=get_args(ShuffleMode),
                   help="exact (default): a uniformly random permutation; blog: the post's chunk-and-interleave "
                   "scheme, kept for comparison, NOT uniform over permutations")
    p.add_argument("--method", choices=METHODS, help="algorithm: merge (exact, default), scatter (exact), "
                   "naive (= --mode blog)")
    p.add_argument("-z", "--zero-terminated", action="store_true", help="records end with NUL, not newline")
    p.add_argument("--sep", choices=get_args(SepName), help="record separator (NUL is the same as -z)")
    p.add_argument("--max-open", type=int, default=256, metavar="N", help="most files open at once (default: 256)")
    p.add_argument("--final-newline", choices=get_args(FinalNewline), default="add",
                   help="a last record without a separator: add one, or refuse the input (default: add)")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary files (debugging)")
    p.add_argument("--verify", action="store_true", help="check record count and checksum before committing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, no summary")
    p.set_defaults(func=_cmd)


class _SeedThenProgress:
    """The progress hook the command hands the engine: once the input has been read through (the first report of a
    phase after ``read``: every refusal of the input comes while reading it), says the warnings ``first`` and the
    drawn seed; and it draws a tqdm bar per phase on stderr (``bars``), as ``progress=True`` would."""

    def __init__(self, say: Callable[[str], None] | None, seed: int, bars: bool, first: list[str]) -> None:
        self.say, self.seed, self.bars, self.first = say, seed, bars, first
        self.bar: Any = None
        self.phase: str | None = None
        self.done = 0

    def say_seed(self) -> None:
        for line in self.first:
            print(line, file=sys.stderr)
        self.first = []
        if self.say is not None:
            self.say(f"seed {self.seed} (pass --seed {self.seed} to repeat this shuffle)")
            self.say = None

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        if phase != "read":
            self.say_seed()
        if not self.bars:
            return
        if phase != self.phase or done < self.done:  # a new pass (a phase may repeat)
            self.stop()
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=phase, unit="B", unit_scale=True, unit_divisor=1000,
                            file=sys.stderr, leave=True, mininterval=0.5, dynamic_ncols=True)
            self.phase, self.done = phase, 0
        self.bar.update(done - self.done)
        self.done = done

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _cmd(args: Any) -> int:
    say = (lambda msg: None) if args.quiet else (lambda msg: print(f"kexue shuffle: {msg}", file=sys.stderr))

    def fail(msg: str, code: int) -> int:
        print(f"kexue shuffle: error: {msg}", file=sys.stderr)
        return code

    method: Method = args.method or ("naive" if args.mode == "blog" else "merge")
    if args.mode is not None and (args.mode == "blog") != (method == "naive"):
        want = "naive" if args.mode == "blog" else "merge or scatter"
        return fail(f"expected --method {want} with --mode {args.mode}, got --method {method}: the two conflict", 2)
    if args.zero_terminated and args.sep == "LF":
        return fail("expected --sep NUL (or no --sep) with -z, got --sep LF: the two conflict", 2)
    sep = b"\0" if args.zero_terminated or args.sep == "NUL" else b"\n"
    sharded = args.split is not None or args.records_per_output is not None or args.bytes_per_output is not None
    if sharded and not args.output_dir:
        return fail("expected --output-dir DIR with --split, --records-per-output or --bytes-per-output, got none "
                    "(shards need --output-dir DIR)", 2)
    if args.output_dir and not sharded:
        return fail("expected --split N, --records-per-output N or --bytes-per-output SIZE with --output-dir, got "
                    "none", 2)
    output = args.output_dir if sharded else args.output
    seed = args.seed if args.seed is not None else secrets.randbits(63)
    # Warnings and a drawn seed are said once the engine has checked the inputs, output and space and read the
    # input through (the first report of a later phase), or at the end; never for a refused run.
    first = []
    if method == "naive":
        first.append("kexue shuffle: warning: --mode blog (method naive) is the post's chunk-and-interleave scheme; "
                     "its output is NOT a uniformly random permutation")
    if output in (None, "-") and not args.quiet:
        try:
            if stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode):
                first.append("kexue shuffle: writing to standard output is not atomic: an interrupted run leaves "
                             "partial output (use -o FILE for an atomic write)")
        except (OSError, ValueError, AttributeError):
            pass
    hook = _SeedThenProgress(say if args.seed is None else None, seed, bars=not args.quiet and interactive(),
                             first=first)
    try:
        report = external_shuffle(
            args.inputs, output, memory=args.memory, method=method, seed=seed, tmp_dir=args.tmp_dir,
            max_open=args.max_open, sep=sep, records_per_output=args.records_per_output,
            bytes_per_output=args.bytes_per_output, final_newline=args.final_newline, verify=args.verify,
            progress=hook, split=args.split, force=args.force, keep_tmp=args.keep_tmp,
        )
    except ShuffleError as e:
        return fail(str(e), e.exit_code)
    except BrokenPipeError:  # e.g. `kexue shuffle big.txt | head`: the reader left, which is not an error
        try:
            sys.stdout = open(os.devnull, "w")  # silence the interpreter's flush at exit (never closed)
        except OSError:
            pass
        return 0
    finally:
        hook.stop()
    hook.say_seed()
    for note in report.notes:
        say(f"note: {note}")
    say(f"{report.records} records, {report.bytes_out} bytes, {report.method}, {report.chunks} chunk(s)"
        f"{f', {report.levels} extra level(s)' if report.levels else ''} in {report.seconds:.1f}s "
        f"({report.mb_per_s:.0f} MB/s), peak RSS {report.peak_rss / 2**20:.0f} MiB"
        f"{', verified' if report.verified else ''}")
    return 0


__all__ = ["SepName", "ShuffleMode", "add_parser"]
