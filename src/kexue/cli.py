"""The ``kexue`` command: ``kexue reproduce``, ``kexue data``, and the other tools as subcommands."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import typing
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from ._validate import positive_int_arg


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from . import reproduce
    from .env import missing_extra, set_threads

    if args.list:
        if args.names:
            print(f"kexue reproduce: expected no NAME with --list, got {', '.join(args.names)}", file=sys.stderr)
            return 2
        print("\n".join(reproduce.available()))
        return 0
    missing = missing_extra("reproduce")
    if missing:
        print(f"kexue reproduce: expected the 'reproduce' extra installed, got {', '.join(missing)} missing: "
              f"pip install 'kexue[reproduce]'", file=sys.stderr)
        return 2
    available = reproduce.available()
    names = args.names or available
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"kexue reproduce: expected reproductions among {', '.join(available)}, got {', '.join(unknown)}",
              file=sys.stderr)
        return 2
    if args.out is None:
        print("kexue reproduce: expected --out DIR (where index.html and results.json go), got none", file=sys.stderr)
        return 2
    unwritable = _unwritable_folder(args.out)
    if unwritable:
        print(f"kexue reproduce: expected --out to be a folder it can write in, got {args.out!r}: {unwritable}",
              file=sys.stderr)
        return 2
    from .reproduce.report import write_report
    from .reproduce.runner import run_all

    set_threads()
    outcomes = run_all(names, quick=args.quick, log=lambda s: print(s, flush=True), jobs=args.jobs)
    index = write_report(outcomes, args.out)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.verdict] = counts.get(o.verdict, 0) + 1
    print(f"report: {index} ({', '.join(f'{v}: {n}' for v, n in sorted(counts.items()))})")
    return 1 if counts.get("error") else 0


def _unwritable_folder(path: str) -> str:
    """Why ``path`` cannot take the report (a file, a folder that cannot be created or written in), else ``""``;
    creates the folder, so a run is refused before it starts rather than when its report is written."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        return "it is a file"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return ""


def _plain(text: str) -> str:
    """reST as plain text for ``--help``: ``:role:`x``` becomes x, double backticks go (so a module docstring can
    serve as a parser description)."""
    return re.sub(r":[a-z]+(?::[a-z]+)?:`~?([^`]*)`", r"\1", text).replace("``", "")


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, ``PROG: MESSAGE (see PROG --help)``, exit 2, without the usage block."""

    def error(self, message: str) -> typing.NoReturn:
        choice = re.fullmatch(r"argument (\S+): invalid choice: (.*) \(choose from (.*)\)", message)
        if choice:  # argparse's wording, in the house's: expected NAME to be one of [...], got VALUE
            name, got, allowed = choice.groups()
            message = f"expected {name.split('/')[-1]} to be one of [{allowed}], got {got}"
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``kexue`` argument parser: ``reproduce`` here, the other subcommands from their modules' ``add_parser``."""
    parser = _Parser(prog="kexue", description=_plain(__doc__ or ""))
    parser.add_argument("--version", action="version", version=f"kexue {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an unexpected error instead of a one-line message")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("reproduce", help="re-measure the posts' claims and write an HTML report",
                       description="Run reproductions (all by default) and write DIR/index.html and DIR/results.json.")
    p.add_argument("names", nargs="*", metavar="NAME", help="reproductions to run (default: all; see --list)")
    p.add_argument("--quick", action="store_true", help="quick mode: seconds to a minute each on one CPU thread")
    p.add_argument("--out", metavar="DIR", help="output folder for index.html, results.json and figures")
    p.add_argument("--list", action="store_true", help="print the available reproductions, one per line")
    p.add_argument("--jobs", type=positive_int_arg, default=1, metavar="N",
                   help="worker processes (one torch thread each); entries that time code run alone afterwards "
                        "(default: 1)")
    p.set_defaults(func=_cmd_reproduce)

    # Further subcommands register here: each module exposes add_parser(sub).
    from .data.fetch import add_parser as add_data_parser

    add_data_parser(sub)
    from .data.shuffle.cli import add_parser as add_shuffle_parser

    add_shuffle_parser(sub)
    from .stats import flops

    flops.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kexue ARGV``; the exit status. Usage errors exit 2 in one line (argparse's SystemExit); a subcommand's
    own refusals return 2, its failures 1; an unexpected exception prints ``kexue CMD: Type: message`` in one line
    and returns 1 (``--debug`` re-raises it); Ctrl-C returns 130 quietly; a closed pipe (``kexue ... | head``) 0."""
    parser = build_parser()
    args = parser.parse_args(argv)
    name = " ".join(x for x in (args.command, getattr(args, "data_command", None)) if x)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        return 130
    except BrokenPipeError:  # the reader left, which is not an error
        try:
            sys.stdout = open(os.devnull, "w")  # silence the interpreter's flush at exit (never closed)
        except OSError:
            pass
        return 0
    except Exception as e:
        if args.debug:
            raise
        message = " ".join(str(e).split())  # one line
        print(f"kexue {name}: {type(e).__name__}: {message}" if message else f"kexue {name}: {type(e).__name__}",
              file=sys.stderr)
        return 1
    return code


__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
