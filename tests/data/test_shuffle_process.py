"""`kexue shuffle` as a command: arguments, pipes, bounded memory, signals and a full disk (subprocesses)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from kexue.cli import main
from kexue.reproduce.shuffle import make_corpus, run_measured

KEXUE = [sys.executable, "-m", "kexue.cli", "shuffle"]
MiB = 1 << 20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """~200 MB of random lines (10-200 bytes) with CRLF, empty records, NUL, invalid UTF-8, no final newline."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    make_corpus(str(path), 200_000_000, seed=0, nasty=True)
    return path


def lines(data: bytes) -> Counter:
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return Counter(data.split(b"\n")[:-1])


def leftovers(folder: Path) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith(".")]


def test_cli_arguments(tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_bytes(b"a\nb\nc")
    out = tmp_path / "out.txt"
    assert main(["shuffle", str(src), "-o", str(out), "--seed", "1", "-q"]) == 0
    assert sorted(out.read_bytes().splitlines()) == [b"a", b"b", b"c"]
    assert main(["shuffle", str(src), "-o", str(out), "--seed", "1", "-q"]) == 2  # exists, no --force
    assert "output exists" in capsys.readouterr().err
    assert main(["shuffle", str(src), "-o", str(out), "--force", "--seed", "2", "--memory", "200", "--verify"]) == 0
    err = capsys.readouterr().err
    assert "3 records" in err and "verified" in err and "peak RSS" in err
    assert main(["shuffle", str(src), "-o", str(out), "--force", "--mode", "blog", "-q"]) == 0
    assert "NOT a uniformly random permutation" in capsys.readouterr().err
    assert main(["shuffle", str(src), "-o", str(out), "--force"]) == 0
    assert "pass --seed" in capsys.readouterr().err  # a drawn seed is printed so the run can be repeated
    for argv, msg in [
        (["--memory", "12Q"], "expected memory to be a size such as 512M, 1G or 1048576, got '12Q'"),
        (["--mode", "blog", "--method", "merge"], "expected --method naive with --mode blog, got --method merge: the "
                                                  "two conflict"),
        (["--mode", "exact", "--method", "naive"], "expected --method merge or scatter with --mode exact, got"),
        (["-z", "--sep", "LF"], "expected --sep NUL (or no --sep) with -z, got --sep LF: the two conflict"),
        (["--split", "3"], "expected --output-dir DIR with --split, --records-per-output or --bytes-per-output, got "
                           "none (shards need --output-dir DIR)"),
        (["--final-newline", "error"], "to end with the record separator b'\\n', got a last record that does not end"),
        (["--memory", "1M", "--max-open", "3"], "need at least 4 open files"),
        (["--seed", "-1"], "expected seed >= 0, got -1"),
    ]:
        assert main(["shuffle", str(src), "-o", str(tmp_path / "x"), "-q", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("kexue shuffle: error: expected ") and err.count("\n") == 1, (argv, err)
        assert msg in err, (argv, err)
    assert main(["shuffle", str(src), "--output-dir", str(tmp_path / "x"), "-q"]) == 2
    assert capsys.readouterr().err == ("kexue shuffle: error: expected --split N, --records-per-output N or "
                                       "--bytes-per-output SIZE with --output-dir, got none\n")
    assert not (tmp_path / "x").exists()
    shards = tmp_path / "shards"
    assert main(["shuffle", str(src), str(src), "--split", "2", "--output-dir", str(shards), "-q", "-z"]) == 0
    parts = sorted(os.listdir(shards))
    assert parts == ["part-00000", "part-00001"]
    joined = b"".join((shards / p).read_bytes() for p in parts)
    assert sorted(joined.split(b"\0")[:-1]) == [b"a\nb\nc", b"a\nb\nc"]  # -z: newlines are inside records
    assert leftovers(tmp_path) == []


def test_stdin_to_stdout(tmp_path):
    data = b"".join(b"line %d\r\n" % i for i in range(5000)) + b"\xff\xfe no newline"
    r = subprocess.run([*KEXUE, "-", "--memory", "16K", "--seed", "5", "--tmp-dir", str(tmp_path), "-q"],
                       input=data, capture_output=True, check=True)
    assert lines(r.stdout) == lines(data) and r.stdout.count(b"\r\n") == 5000
    assert os.listdir(tmp_path) == []
    again = subprocess.run([*KEXUE, "-", "--memory", "16K", "--seed", "5", "--tmp-dir", str(tmp_path), "-q"],
                           input=data, capture_output=True, check=True)
    assert again.stdout == r.stdout


@pytest.mark.parametrize("method", ["merge", "scatter"])
def test_bounded_memory(corpus, tmp_path, method):
    """Peak RSS of a 200 MB shuffle at --memory 32M stays within 32 MiB of the same command on a one-record file
    (the interpreter, numpy and the code's own footprint). --max-open 8 forces a hierarchical merge (merge) and
    re-scattered buckets (scatter)."""
    one = tmp_path / "one.txt"
    one.write_bytes(b"x\n")
    args = ["--memory", "32M", "--max-open", "8", "--method", method, "--seed", "3", "-q", "--force"]
    _, base, rc = run_measured([*KEXUE, str(one), "-o", str(tmp_path / "one.out"), *args])
    assert rc == 0
    out = tmp_path / "out.txt"
    secs, peak, rc = run_measured([*KEXUE, str(corpus), "-o", str(out), "--verify", *args])
    assert rc == 0
    if base is None or peak is None:
        pytest.skip("peak RSS needs /proc/<pid>/status (Linux)")
    print(f"200 MB, {method} at --memory 32M: {secs:.1f}s, peak RSS {peak / MiB:.1f} MiB, one-record run "
          f"{base / MiB:.1f} MiB")
    assert peak - base <= 32 * MiB, f"peak {peak / MiB:.1f} MiB - footprint {base / MiB:.1f} MiB > 32 MiB"
    assert out.stat().st_size == corpus.stat().st_size + 1  # the last line got its newline
    assert leftovers(tmp_path) == []


def _files_under(folder: Path) -> int:
    try:
        return sum(len(files) for _, _, files in os.walk(folder))
    except OSError:  # a race with the process creating or removing files
        return 0


def _wait_for(pred, proc, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"condition not reached (exit {proc.returncode})")
        time.sleep(0.005)


@pytest.mark.parametrize("sig,when", [(signal.SIGINT, "merge"), (signal.SIGTERM, "split")])
def test_signal_leaves_nothing(corpus, tmp_path, sig, when):
    """SIGINT mid-merge (the output's temporary file exists) or SIGTERM mid-split (chunk files exist): exit 130,
    no output, no temporary files, the input untouched."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    size = corpus.stat().st_size
    p = subprocess.Popen([*KEXUE, str(corpus), "-o", str(tmp_path / "out.txt"), "--memory", "16M",
                          "--tmp-dir", str(tmp), "--seed", "1", "-q"], stderr=subprocess.PIPE)
    if when == "merge":
        _wait_for(lambda: any(n.startswith(".out.txt.tmp-") for n in os.listdir(tmp_path)), p)
    else:
        _wait_for(lambda: _files_under(tmp) >= 2, p)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert b"interrupted" in err
    assert not (tmp_path / "out.txt").exists()
    assert leftovers(tmp_path) == [] and os.listdir(tmp) == []
    assert corpus.stat().st_size == size


def _namespace_prefix() -> list[str] | None:
    """A command prefix that runs a shell in a private mount namespace where tmpfs can be mounted, or None."""
    if not shutil.which("unshare"):
        return None
    prefix = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--mount"]
    probe = subprocess.run([*prefix, "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d"],
                           capture_output=True)
    return prefix if probe.returncode == 0 else None


def test_full_disk_on_a_small_tmpfs(tmp_path):
    """On a 4 MB tmpfs: a 3 MB file input is refused before starting (exit 3); the same bytes from a pipe (size
    unknown, so no preflight) fill the disk mid-run: exit 3, a clear message, no output, no temporary files."""
    prefix = _namespace_prefix()
    if prefix is None:
        pytest.skip("cannot mount a tmpfs here (needs root or unprivileged user namespaces and `unshare`)")
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(b"record number %08d\n" % i for i in range(130_000)))  # ~3.1 MB
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    kexue = " ".join(KEXUE)
    script = f"""
        mount -t tmpfs -o size=4m tmpfs {mnt} || exit 99
        {kexue} {src} -o {mnt}/out.txt --memory 1M -q --seed 1; echo "file: $?"
        cat {src} | {kexue} - -o {mnt}/out.txt --memory 1M -q --seed 1; echo "pipe: $?"
        echo "left: $(ls -A {mnt} | tr '\\n' ' ')"
    """
    r = subprocess.run([*prefix, "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert "file: 3" in r.stdout, r.stdout + r.stderr
    assert "not enough free space" in r.stderr
    assert "pipe: 3" in r.stdout, r.stdout + r.stderr
    assert "no space left on the device while writing" in r.stderr
    assert "left: \n" in r.stdout or r.stdout.rstrip().endswith("left:"), r.stdout


def test_drawn_seed_is_said_only_once_the_inputs_are_checked(tmp_path, capsys):
    """The "seed N" line came before the inputs were checked, so a refused run printed it too: now a refusal is one
    line, and the seed is said once the engine reports its first progress (or at the end of an empty input)."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(b"%d\n" % i for i in range(100)))
    out = tmp_path / "out.txt"
    out.write_bytes(b"already here\n")
    for argv in ([], ["--memory", "12Q"], ["--max-open", "0"], ["--tmp-dir", str(tmp_path / "none")]):
        assert main(["shuffle", str(src), "-o", str(out), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("kexue shuffle: error: expected ") and err.count("\n") == 1, (argv, err)
        assert "kexue shuffle: seed" not in err, (argv, err)
    assert main(["shuffle", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "new.txt")]) == 2
    assert "kexue shuffle: seed" not in capsys.readouterr().err
    assert out.read_bytes() == b"already here\n" and leftovers(tmp_path) == []

    assert main(["shuffle", str(src), "-o", str(out), "--force"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("kexue shuffle: seed ") and "records" in err[-1], err
    seed = err[0].split()[3]
    first = out.read_bytes()
    again = tmp_path / "again.txt"
    assert main(["shuffle", str(src), "-o", str(again), "--seed", seed, "-q"]) == 0
    assert again.read_bytes() == first  # the said seed repeats the shuffle
    assert sorted(first.splitlines()) == sorted(src.read_bytes().splitlines())

    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert main(["shuffle", str(empty), "-o", str(tmp_path / "empty.out")]) == 0
    err = capsys.readouterr().err
    assert err.count("kexue shuffle: seed ") == 1 and "0 records" in err, err
