"""Bad-input rows: kexue.data.shuffle (external_shuffle, parse_size) and ``kexue shuffle``."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _matrix import Bad, BadCLI, check, check_cli

from kexue.data.shuffle import InputError, external_shuffle, parse_size

ES = "kexue.data.shuffle.external_shuffle"
PS = "kexue.data.shuffle.parse_size"
CLI = "kexue shuffle"


def _with_input(run: Callable[[str, Path], Any]) -> Callable[[], Any]:
    """A call that gets a small input file (``in.txt``, three lines) and its scratch folder; the folder goes after."""

    def call() -> Any:
        with tempfile.TemporaryDirectory(prefix="kexue-bad-shuffle-") as d:
            src = Path(d) / "in.txt"
            src.write_bytes(b"a\nb\nc\n")
            return run(str(src), Path(d))

    return call


def _shuffle(**kw: Any) -> Callable[[], Any]:
    """external_shuffle of a small input to a fresh binary buffer with the bad keyword arguments ``kw``."""
    return _with_input(lambda src, d: external_shuffle(src, io.BytesIO(), **kw))


def _any(value: Any) -> Any:
    """``value``, typed so that a row can pass what the signature does not allow."""
    return value


def _input_file(d: Path) -> str:
    (d / "in.txt").write_bytes(b"a\nb\nc\n")
    return str(d / "in.txt")


ROWS = [
    # inputs
    Bad(ES, "missing input", lambda: external_shuffle("/nonexistent/kexue-missing.txt", io.BytesIO()), InputError,
        r"^expected an existing input file, got /nonexistent/kexue-missing\.txt: input not found$"),
    Bad(ES, "no inputs", lambda: external_shuffle([], io.BytesIO()), InputError,
        r"^expected at least one input, got none$"),
    Bad(ES, "inputs an int", lambda: external_shuffle(_any(5), io.BytesIO()), InputError,
        r"^expected inputs to be a path or a list of paths, got 5$"),
    Bad(ES, "None among the inputs", _with_input(lambda src, d: external_shuffle([src, _any(None)], io.BytesIO())),
        InputError, r"expected inputs to be a path or a list of paths .*got None among them"),
    Bad(ES, "input a folder", _with_input(lambda src, d: external_shuffle(str(d), io.BytesIO())), InputError,
        r"^expected a file as input, got .*: input is a directory$"),
    Bad(ES, "standard input twice", lambda: external_shuffle(["-", "-"], io.BytesIO()), InputError,
        r"expected standard input \('-'\) at most once among the inputs, got it 2 times"),
    Bad(ES, "unterminated last record with final_newline='error'",
        lambda: _unterminated(), InputError, r"expected .*in\.txt to end with the record separator b'\\n'"),
    # output
    Bad(ES, "output is the input", _with_input(lambda src, d: external_shuffle(src, src, force=True)), InputError,
        r"expected an output other than the inputs, got .*in\.txt, which is the same file as an input"),
    Bad(ES, "output exists, no force",
        _with_input(lambda src, d: external_shuffle(src, _existing(d))), InputError,
        r"expected a new output or force=True / --force, got .*out\.txt: the output exists"),
    Bad(ES, "output folder missing", _with_input(lambda src, d: external_shuffle(src, str(d / "no" / "out.txt"))),
        InputError, r"^expected an existing output folder, got .*no, which does not exist$"),
    Bad(ES, "output folder not writable (/sys)", _with_input(lambda src, d: external_shuffle(src, "/sys/out.txt")),
        InputError, r"^expected a folder where the output /sys/out\.txt can be written, got /sys: "),
    Bad(ES, "output an int", _with_input(lambda src, d: external_shuffle(src, _any(3))), InputError,
        r"^expected output to be a path, '-', None or a binary file object, got 3$"),
    Bad(ES, "shards into a stream", _shuffle(split=2), InputError,
        r"expected a folder path as output for sharded output \(--output-dir DIR\), got <_io\.BytesIO"),
    Bad(ES, "two shard options", _shuffle(split=2, records_per_output=3), InputError,
        r"expected at most one of split, records_per_output, bytes_per_output, got \{'split': 2, "
        r"'records_per_output': 3\}"),
    Bad(ES, "split = 0", _shuffle(split=0), InputError, r"^expected split >= 1, got 0$"),
    Bad(ES, "records_per_output = -1", _shuffle(records_per_output=-1), InputError,
        r"^expected records_per_output >= 1, got -1$"),
    Bad(ES, "bytes_per_output garbage", _shuffle(bytes_per_output="lots"), InputError,
        r"^expected bytes_per_output to be a size such as 512M, 1G or 1048576, got 'lots'$"),
    # memory
    Bad(ES, "memory garbage", _shuffle(memory="12Q"), InputError,
        r"^expected memory to be a size such as 512M, 1G or 1048576, got '12Q'$"),
    Bad(ES, "memory negative", _shuffle(memory=-1), InputError, r"^expected memory to be a positive size, got -1$"),
    Bad(ES, "memory nan", _shuffle(memory=float("nan")), InputError,
        r"^expected memory to be a size such as 512M, 1G or 1048576, got nan$"),
    Bad(ES, "memory below 128 bytes", _shuffle(memory=100), InputError, r"^expected memory >= 128 bytes, got 100$"),
    Bad(ES, "memory True", _shuffle(memory=True), InputError, r"expected memory to be a size .*got True$"),
    # choices, numbers and flags
    Bad(ES, "unknown method", _shuffle(method="sort"), InputError,
        r"^expected method to be one of \['merge', 'scatter', 'naive'\], got 'sort'$"),
    Bad(ES, "unknown final_newline", _shuffle(final_newline="keep"), InputError,
        r"^expected final_newline to be one of \['add', 'error'\], got 'keep'$"),
    Bad(ES, "sep of two bytes", _shuffle(sep=b"\r\n"), InputError,
        r"^expected sep to be a single byte such as b'\\n' or b'\\0', got b'\\r\\n'$"),
    Bad(ES, "sep a str", _shuffle(sep="\n"), InputError, r"expected sep to be a single byte .*got '\\n'$"),
    Bad(ES, "seed negative", _shuffle(seed=-1), InputError, r"^expected seed >= 0, got -1$"),
    Bad(ES, "seed a float", _shuffle(seed=1.5), InputError, r"^expected seed to be an integer, got 1\.5 \(float\)$"),
    Bad(ES, "max_open = 0", _shuffle(max_open=0), InputError, r"^expected max_open >= 1, got 0$"),
    Bad(ES, "max_open = 3", _shuffle(max_open=3), InputError,
        r"^expected max_open and RLIMIT_NOFILE to allow at least 4 open files, got 3"),
    Bad(ES, "tmp_dir missing", _shuffle(tmp_dir="/nonexistent/kexue-tmp"), InputError,
        r"^expected an existing temporary folder, got /nonexistent/kexue-tmp, which does not exist$"),
    Bad(ES, "tmp_dir an int", _shuffle(tmp_dir=7), InputError,
        r"^expected tmp_dir to be a folder path or None, got 7$"),
    Bad(ES, "tmp_dir not writable (/sys)", _shuffle(tmp_dir="/sys"), InputError,
        r"^expected a writable temporary folder \(tmp_dir / --tmp-dir\), got /sys: "),
    Bad(ES, "progress a string", _shuffle(progress="yes"), InputError,
        r"^expected progress to be True, False, None or a callable \(phase, done, total\), got 'yes'$"),
    Bad(ES, "verify a string", _shuffle(verify="yes"), InputError, r"^expected verify to be True or False, got 'yes'$"),
    Bad(ES, "force None", _with_input(lambda src, d: external_shuffle(src, str(d / "o.txt"), force=_any(None))),
        InputError, r"^expected force to be True or False, got None$"),
    # parse_size
    Bad(PS, "unknown unit", lambda: parse_size("1X"), InputError,
        r"^expected a size such as 512M, 1G or 1048576, got '1X'$"),
    Bad(PS, "negative", lambda: parse_size("-1G"), InputError, r"^expected a size such as .*, got '-1G'$"),
    Bad(PS, "empty", lambda: parse_size(""), InputError, r"^expected a size such as .*, got ''$"),
    Bad(PS, "words", lambda: parse_size("abc"), InputError, r"^expected a size such as .*, got 'abc'$"),
    Bad(PS, "nan", lambda: parse_size(_any(float("nan"))), InputError, r"^expected a size such as .*, got nan$"),
    Bad(PS, "zero", lambda: parse_size(0), InputError, r"^expected a positive size, got 0$"),
    Bad(PS, "rounds to zero", lambda: parse_size("0.0001K"), InputError, r"^expected a positive size, got '0\.0001K'$"),
    Bad(PS, "None, named", lambda: parse_size(_any(None), "memory"), InputError,
        r"^expected memory to be a size such as .*, got None$"),
]


def _unterminated() -> Any:
    with tempfile.TemporaryDirectory(prefix="kexue-bad-shuffle-") as d:
        src = Path(d) / "in.txt"
        src.write_bytes(b"a\nb")
        return external_shuffle(str(src), io.BytesIO(), final_newline="error")


def _existing(d: Path) -> str:
    (d / "out.txt").write_bytes(b"keep\n")
    return str(d / "out.txt")


CLI_ROWS = [
    BadCLI(CLI, "missing input", lambda d: ["shuffle", str(d / "missing.txt"), "-o", str(d / "out.txt")], 2,
           r"^kexue shuffle: error: expected an existing input file, got .*missing\.txt: input not found$"),
    BadCLI(CLI, "output folder missing", lambda d: ["shuffle", _input_file(d), "-o", str(d / "no" / "out.txt")], 2,
           r"kexue shuffle: error: expected an existing output folder, got .*no, which does not exist$"),
    BadCLI(CLI, "output folder not writable", lambda d: ["shuffle", _input_file(d), "-o", "/sys/out.txt"], 2,
           r"kexue shuffle: error: expected a folder where the output /sys/out\.txt can be written, got /sys: "),
    BadCLI(CLI, "--tmp-dir not writable", lambda d: ["shuffle", _input_file(d), "-o", str(d / "o.txt"),
                                                     "--tmp-dir", "/sys"], 2,
           r"kexue shuffle: error: expected a writable temporary folder \(tmp_dir / --tmp-dir\), got /sys: "),
    BadCLI(CLI, "--tmp-dir missing", lambda d: ["shuffle", _input_file(d), "--tmp-dir", str(d / "none")], 2,
           r"kexue shuffle: error: expected an existing temporary folder, got .*none, which does not exist$"),
    BadCLI(CLI, "output is the input", lambda d: ["shuffle", _input_file(d), "-o", str(d / "in.txt"), "--force"], 2,
           r"kexue shuffle: error: expected an output other than the inputs, got .*in\.txt"),
    BadCLI(CLI, "output exists", lambda d: ["shuffle", _input_file(d), "-o", _existing(d)], 2,
           r"kexue shuffle: error: expected a new output or force=True / --force, got .*out\.txt"),
    BadCLI(CLI, "--memory garbage", lambda d: ["shuffle", _input_file(d), "--memory", "12Q"], 2,
           r"^kexue shuffle: error: expected memory to be a size such as 512M, 1G or 1048576, got '12Q'$"),
    BadCLI(CLI, "--memory 100 bytes", lambda d: ["shuffle", _input_file(d), "--memory", "100"], 2,
           r"^kexue shuffle: error: expected memory >= 128 bytes, got 100$"),
    BadCLI(CLI, "--memory negative", lambda d: ["shuffle", _input_file(d), "--memory=-1G"], 2,
           r"^kexue shuffle: error: expected memory to be a size .*, got '-1G'$"),
    BadCLI(CLI, "--split 0", lambda d: ["shuffle", _input_file(d), "--split", "0", "--output-dir", str(d / "s")], 2,
           r"^kexue shuffle: error: expected split >= 1, got 0$"),
    BadCLI(CLI, "--bytes-per-output garbage",
           lambda d: ["shuffle", _input_file(d), "--bytes-per-output", "x", "--output-dir", str(d / "s")], 2,
           r"^kexue shuffle: error: expected bytes_per_output to be a size .*, got 'x'$"),
    BadCLI(CLI, "--split without --output-dir", lambda d: ["shuffle", _input_file(d), "--split", "2"], 2,
           r"kexue shuffle: error: expected --output-dir DIR with --split"),
    BadCLI(CLI, "--mode blog with --method merge",
           lambda d: ["shuffle", _input_file(d), "--mode", "blog", "--method", "merge"], 2,
           r"kexue shuffle: error: expected --method naive with --mode blog, got --method merge"),
    BadCLI(CLI, "--method unknown", lambda d: ["shuffle", _input_file(d), "--method", "sort"], 2,
           r"kexue shuffle: .*'sort'"),
    BadCLI(CLI, "--max-open 3", lambda d: ["shuffle", _input_file(d), "--max-open", "3"], 2,
           r"kexue shuffle: error: expected max_open and RLIMIT_NOFILE to allow at least 4 open files, got 3"),
    BadCLI(CLI, "--seed -1", lambda d: ["shuffle", _input_file(d), "--seed=-1"], 2,
           r"^kexue shuffle: error: expected seed >= 0, got -1$"),
    BadCLI(CLI, "--final-newline error on an unterminated file",
           lambda d: ["shuffle", _unterminated_file(d), "--final-newline", "error"], 2,
           r"kexue shuffle: error: expected .*in\.txt to end with the record separator"),
]


def _unterminated_file(d: Path) -> str:
    (d / "in.txt").write_bytes(b"a\nb")
    return str(d / "in.txt")


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)


@pytest.mark.parametrize("row", CLI_ROWS, ids=lambda r: r.id)
def test_cli_refuses(row, tmp_path):
    proc = check_cli(row, tmp_path)
    assert "kexue shuffle: seed" not in proc.stderr  # a refused run says no seed
    assert not [n for n in (p.name for p in tmp_path.iterdir()) if n.startswith(".")]  # and leaves nothing
