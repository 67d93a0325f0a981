"""kexue shuffle under faults (issue 13, item 2): folders it cannot write, budgets larger than the input or the machine,
failures mid-run, and runs killed with SIGKILL in each phase, whose leftovers the next run removes (never anyone
else's files, nor a live run's)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
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
from kexue.data import shuffle as S
from kexue.data.shuffle import budget, records, tempfiles

ROOT = os.geteuid() == 0


def lines(data: bytes) -> Counter:
    return Counter(data.splitlines(keepends=True))


def hidden(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_input(path: Path, n: int, seed: int = 0) -> bytes:
    data = b"".join(b"%d line %s\n" % (i, b"x" * ((i * 7919 + seed) % 23)) for i in range(n))
    path.write_bytes(data)
    return data


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


# ----------------------------------------------------------------------------------------------------------------
# folders that cannot be written: refused before the first pass, one line naming the user's path


@pytest.mark.skipif(ROOT, reason="running as root: chmod does not stop root writing (the read-only mount test and "
                                 "the /sys test cover this)")
def test_unwritable_output_folder_is_refused_before_the_first_pass(tmp_path, capsys):
    """It was a raw PermissionError naming the hidden temporary file, and with --tmp-dir elsewhere it came only after
    the whole first pass."""
    src = tmp_path / "in.txt"
    make_input(src, 2000)
    ro = tmp_path / "ro"
    ro.mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["shuffle", str(src), "-o", str(ro / "out.txt"), "-q"]) == 2
        err = capsys.readouterr().err
        assert err == (f"kexue shuffle: error: expected a folder where the output {ro / 'out.txt'} can be written, "
                       f"got {ro}: Permission denied\n")
        reports: list[str] = []
        with pytest.raises(S.InputError, match=f"got {ro}: Permission denied"):
            S.external_shuffle(str(src), str(ro / "out.txt"), tmp_dir=str(tmp), memory="4K",
                               progress=lambda phase, done, total: reports.append(phase))
        assert reports == []  # refused before reading anything
        assert os.listdir(ro) == [] and os.listdir(tmp) == []
        with pytest.raises(S.InputError, match=f"^expected a writable temporary folder .*got {ro}: Permission denied"):
            S.external_shuffle(str(src), str(tmp_path / "out.txt"), tmp_dir=str(ro), memory="4K",
                               progress=lambda phase, done, total: reports.append(phase))
        assert reports == [] and hidden(tmp_path) == []
    finally:
        ro.chmod(0o700)


def test_unwritable_system_folder_is_refused_before_reading(tmp_path, capsys):
    """/sys takes no new files, root's included: the refusal comes before any progress, names the folder, leaves
    nothing (this runs where the chmod test is skipped)."""
    if not os.path.isdir("/sys") or _can_mkdir("/sys"):
        pytest.skip("no unwritable /sys here")
    src = tmp_path / "in.txt"
    make_input(src, 2000)
    reports: list[str] = []

    def hook(phase: str, done: int, total: int | None) -> None:
        reports.append(phase)

    with pytest.raises(S.InputError, match=r"^expected a folder where the output /sys/out\.txt can be written, got "
                                           r"/sys: "):
        S.external_shuffle(str(src), "/sys/out.txt", memory="4K", progress=hook)
    with pytest.raises(S.InputError, match=r"^expected a writable temporary folder \(tmp_dir / --tmp-dir\), got "
                                           r"/sys: "):
        S.external_shuffle(str(src), str(tmp_path / "out.txt"), tmp_dir="/sys", memory="4K", progress=hook)
    assert reports == [] and hidden(tmp_path) == []
    assert main(["shuffle", str(src), "-o", str(tmp_path / "out.txt"), "--tmp-dir", "/sys", "--memory", "4K"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "got /sys: " in err and "seed" not in err


def _can_mkdir(folder: str) -> bool:
    try:
        tempfiles.probe_writable(folder)
        return True
    except OSError:
        return False


def _namespace_prefix() -> list[str] | None:
    """A command prefix that runs a shell in a private mount namespace where tmpfs can be mounted, or None."""
    if not shutil.which("unshare"):
        return None
    prefix = ["unshare", "--mount"] if ROOT else ["unshare", "--user", "--map-root-user", "--mount"]
    probe = subprocess.run([*prefix, "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o ro,size=64k tmpfs $d"],
                           capture_output=True)
    return prefix if probe.returncode == 0 else None


def test_read_only_folder_is_refused_before_the_first_pass(tmp_path):
    """On a read-only mount (which binds root too): the output folder and --tmp-dir are refused with one line naming
    the folder, exit 2; before, the first was a raw traceback naming the hidden file, the second came after the
    first pass (with --memory 1K, after writing every chunk to the temporary folder)."""
    prefix = _namespace_prefix()
    if prefix is None:
        pytest.skip("cannot mount a tmpfs here (needs root or unprivileged user namespaces and `unshare`)")
    src = tmp_path / "in.txt"
    make_input(src, 3000)
    ro, tmp = tmp_path / "ro", tmp_path / "tmp"
    ro.mkdir()
    tmp.mkdir()
    kexue = f"{sys.executable} -m kexue shuffle {src}"
    script = f"""
        mount -t tmpfs -o ro,size=64k tmpfs {ro} || exit 99
        {kexue} -o {ro}/out.txt --seed 1; echo "out: $?"
        {kexue} -o {ro}/out.txt --seed 1 --tmp-dir {tmp} --memory 1K; echo "out, tmp elsewhere: $?"
        {kexue} -o {tmp_path}/out.txt --seed 1 --tmp-dir {ro} --memory 1K; echo "tmp: $?"
    """
    r = subprocess.run([*prefix, "sh", "-c", script], capture_output=True, text=True, timeout=600)
    assert "out: 2" in r.stdout and "out, tmp elsewhere: 2" in r.stdout and "tmp: 2" in r.stdout, r.stdout + r.stderr
    err = r.stderr.splitlines()
    assert err == [
        f"kexue shuffle: error: expected a folder where the output {ro}/out.txt can be written, got {ro}: Read-only "
        "file system"] * 2 + [
        f"kexue shuffle: error: expected a writable temporary folder (tmp_dir / --tmp-dir), got {ro}: Read-only file "
        "system"], r.stderr
    assert os.listdir(tmp) == [] and hidden(tmp_path) == []


# ----------------------------------------------------------------------------------------------------------------
# buffers sized to the input and the machine


def test_memory_far_beyond_the_input_is_fine(tmp_path, capsys):
    """--memory 1T on a 4 KB file raised numpy's _ArrayMemoryError ("Unable to allocate 960 GiB"): the buffers are
    now sized to what the input needs, the output is the same permutation as with a modest budget."""
    src = tmp_path / "in.txt"
    data = make_input(src, 200)
    assert 3000 < len(data) < 5000
    out = tmp_path / "out.txt"
    assert main(["shuffle", str(src), "-o", str(out), "--memory", "1T", "--seed", "3", "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert lines(out.read_bytes()) == lines(data)
    r = S.external_shuffle(str(src), io.BytesIO(), memory="1T", seed=3)
    assert r.memory == budget.input_memory(len(data), 1) < 1 << 20 and r.chunks == 1
    modest = io.BytesIO()
    S.external_shuffle(str(src), modest, memory="64M", seed=3)
    assert modest.getvalue() == out.read_bytes()  # one chunk either way: the same shuffle


def test_memory_beyond_the_machine_is_lowered(tmp_path, monkeypatch):
    """A budget larger than the machine has is lowered to 3/4 of what is available, with a note; the output is right."""
    src = tmp_path / "in.txt"
    data = make_input(src, 5000)
    monkeypatch.setattr(budget, "machine_memory", lambda: 64 << 10)
    buf = io.BytesIO()
    r = S.external_shuffle(str(src), buf, memory="100G", seed=1, tmp_dir=str(tmp_path))
    assert r.memory == 48 << 10 and r.chunks > 1
    assert any("more than this machine has available: using 49152 bytes" in n for n in r.notes), r.notes
    assert lines(buf.getvalue()) == lines(data) and hidden(tmp_path) == []


def test_machine_memory_is_plausible():
    free = budget.machine_memory()
    assert free is None or 0 < free <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def test_input_memory_holds_the_worst_case_in_one_chunk(tmp_path):
    """input_memory's budget fits every input of that size in one chunk, however short the records (one byte, the
    separator alone, the worst case for the per-record index) and whether the last has its separator."""
    for data in (b"\n" * 3000, b"\n" * 2999 + b"x", b"ab\n" * 1000, b"x" * 3000):
        src = tmp_path / "in.txt"
        src.write_bytes(data)
        r = S.external_shuffle(str(src), io.BytesIO(), memory=budget.input_memory(len(data), 1), seed=0)
        assert r.chunks == 1, data[:10]


# ----------------------------------------------------------------------------------------------------------------
# a failure mid-run: one error naming the user's path, no temporary file, no partial output


@pytest.mark.parametrize("method", S.METHODS)
@pytest.mark.parametrize("failing", ["temporary", "output"])
def test_io_error_mid_run_names_the_users_path(tmp_path, monkeypatch, method, failing, capsys):
    """EIO from a write to a temporary file or the output was a raw OSError (the command line printed it with no
    path); now it is one ShuffleError naming the temporary folder or the output as the user gave it."""
    src = tmp_path / "in.txt"
    make_input(src, 3000)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out.txt"
    real_write = os.write
    marks = (".kexue-shuffle-",) if failing == "temporary" else (".out.txt.tmp-",)

    def write(fd, data):
        if fd > 2 and any(m in os.readlink(f"/proc/self/fd/{fd}") for m in marks):
            raise OSError(errno.EIO, "Input/output error")
        return real_write(fd, data)

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to tell the files apart")
    monkeypatch.setattr(records.os, "write", write)
    where = f"temporary files in {tmp}" if failing == "temporary" else f"the output {out}"
    with pytest.raises(S.ShuffleError, match=f"^expected to write {where}, got Input/output error: the shuffle was "
                                             f"stopped, its temporary files removed and no output written$"):
        S.external_shuffle(str(src), str(out), memory="16K", seed=0, method=method, tmp_dir=str(tmp))
    assert hidden(tmp_path) == [] and os.listdir(tmp) == [] and not out.exists()
    assert main(["shuffle", str(src), "-o", str(out), "--memory", "16K", "--method", method, "--tmp-dir", str(tmp),
                 "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"kexue shuffle: error: expected to write {where}, got "), err
    assert hidden(tmp_path) == [] and os.listdir(tmp) == [] and not out.exists()


def test_io_error_reading_the_input_names_it(tmp_path, monkeypatch, capsys):
    """EIO reading an input was a raw OSError without a path."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to tell the files apart")
    src = tmp_path / "in.txt"
    make_input(src, 3000)
    real_readv = os.readv

    def readv(fd, buffers):
        if os.readlink(f"/proc/self/fd/{fd}") == str(src):
            raise OSError(errno.EIO, "Input/output error")
        return real_readv(fd, buffers)

    monkeypatch.setattr(records.os, "readv", readv)
    with pytest.raises(S.ShuffleError, match=f"^expected to read the input {src}, got Input/output error: the "
                                             "shuffle stopped, temporary files removed, no output written$"):
        S.external_shuffle(str(src), str(tmp_path / "out.txt"), memory="16K", seed=0)
    assert main(["shuffle", str(src), "-o", str(tmp_path / "out.txt"), "-q"]) == 1
    assert capsys.readouterr().err == (f"kexue shuffle: error: expected to read the input {src}, got Input/output "
                                       "error: the shuffle stopped, temporary files removed, no output written\n")
    assert hidden(tmp_path) == [] and not (tmp_path / "out.txt").exists()


class _FailingStream(io.RawIOBase):
    def __init__(self, error: OSError) -> None:
        self.error = error

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        raise self.error


def test_a_failing_output_stream(tmp_path):
    """A closed pipe stays a BrokenPipeError (the command line ends quietly: `kexue shuffle big.txt | head`); any
    other failure to write a stream is a ShuffleError naming it."""
    src = tmp_path / "in.txt"
    make_input(src, 100)
    with pytest.raises(BrokenPipeError):
        S.external_shuffle(str(src), _FailingStream(BrokenPipeError(errno.EPIPE, "Broken pipe")), seed=0)
    with pytest.raises(S.ShuffleError, match="^expected to write the output stream, got Input/output error: "):
        S.external_shuffle(str(src), _FailingStream(OSError(errno.EIO, "Input/output error")), seed=0)
    assert hidden(tmp_path) == []


def test_not_enough_space_names_the_folder_the_estimate_and_the_free_bytes(tmp_path, monkeypatch):
    src = tmp_path / "in.txt"
    data = make_input(src, 1000)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1500))
    out = tmp_path / "out.txt"
    with pytest.raises(S.InsufficientSpace, match=(
            rf"^not enough free space for temporary files and the output {out} in {tmp_path}: expected about "
            rf"{int(1.1 * len(data)) + len(data)} bytes free for {len(data)} bytes of input, got 1500 ")):
        S.external_shuffle(str(src), str(out), memory="4K", seed=0)
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


def test_kept_temporary_files_are_not_taken_for_leftovers(tmp_path):
    """keep_tmp (debugging) renames the run's temporary folder .kexue-shuffle-kept-...: a later run leaves it."""
    src = tmp_path / "in.txt"
    data = make_input(src, 1000)
    S.external_shuffle(str(src), str(tmp_path / "a.txt"), memory="4K", seed=0, keep_tmp=True)
    kept = hidden(tmp_path)
    assert len(kept) == 1 and kept[0].startswith(".kexue-shuffle-kept-"), kept
    r = S.external_shuffle(str(src), str(tmp_path / "b.txt"), memory="4K", seed=0)
    assert hidden(tmp_path) == kept and not any("killed runs" in n for n in r.notes)
    assert lines((tmp_path / "b.txt").read_bytes()) == lines(data)


def test_memory_error_is_one_line(tmp_path, monkeypatch):
    from kexue.data.shuffle import passes

    src = tmp_path / "in.txt"
    make_input(src, 100)

    def no_memory(self, *a, **k):
        raise MemoryError("Unable to allocate 1.00 GiB")

    monkeypatch.setattr(passes.Context, "reader", no_memory)
    with pytest.raises(S.ShuffleError, match=r"^expected the memory for a budget of \d+ bytes, got an allocation "
                                             r"that failed \(Unable to allocate 1.00 GiB\): lower memory / --memory"):
        S.external_shuffle(str(src), str(tmp_path / "out.txt"), seed=0)
    assert hidden(tmp_path) == []


# ----------------------------------------------------------------------------------------------------------------
# leftovers: the shuffle's own are recognised and removed, never anyone else's, never a live run's


def test_leftovers_of_dead_runs_go_and_nothing_else(tmp_path, capsys):
    pid = dead_pid()
    folder = tmp_path / "data"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_bytes(b"not yours\n")
    ours = {
        f".kexue-shuffle-{pid}-0badf00d": ["chunk-000001", "chunk-000002", "merged-000003"],
        f".kexue-shuffle-{pid}-0badf00e": [],  # killed between making the folder and the first chunk
        f".out.txt.tmp-{pid}-12345678.kexue-shuffle": None,  # a half-written output
        f".shards.tmp-{pid}-12345679.kexue-shuffle": ["part-00000", "part-00001"],
        f".shards.tmp-{pid}-1234567a.kexue-shuffle.old": ["part-00000"],
    }
    foreign = {
        ".kexue-shuffle-notes": None,  # a file with the prefix
        f".kexue-shuffle-{pid}-deadbeef": None,  # our folder's name, but a file
        f".kexue-shuffle-{pid}-cafebabe": ["chunk-000001", "notes.txt"],  # our name, someone's file inside
        f".kexue-shuffle-{pid}-cafebabf": ["chunk-1"],  # not a name the shuffle gives
        f".out.txt.tmp-{pid}-deadbeef": None,  # the old style of name, without the mark
        f"kexue-shuffle-{pid}-deadbeef": [],  # not hidden
        f".x.tmp-{pid}-deadbeef.kexue-shuffle.bak": None,
        ".kexue-shuffle-1-abcdefgh": [],  # not hex
        f".y.tmp-{pid}-deadbeef.kexue-shuffle": "link",  # a link, even to a file
    }
    for name, entries in {**ours, **foreign}.items():
        p = folder / name
        if entries is None:
            p.write_bytes(b"data\n")
        elif entries == "link":
            p.symlink_to(elsewhere)
        else:
            p.mkdir()
            for e in entries:
                (p / e).write_bytes(b"data\n")
    src = tmp_path / "in.txt"
    data = make_input(src, 500)
    assert main(["shuffle", str(src), "-o", str(folder / "result.txt"), "--seed", "1"]) == 0
    err = capsys.readouterr().err
    assert f"removed 5 temporary file(s) or folder(s) that killed runs left in {folder}" in err, err
    assert sorted(os.listdir(folder)) == sorted([*foreign, "result.txt"])
    assert (folder / f".kexue-shuffle-{pid}-cafebabe" / "notes.txt").read_bytes() == b"data\n"
    assert elsewhere.read_bytes() == b"not yours\n"
    assert lines((folder / "result.txt").read_bytes()) == lines(data)


def test_a_locked_leftover_stays(tmp_path):
    """An entry whose pid is gone but whose lock is held (a live run on another machine sharing the folder) stays;
    once the lock is released it goes."""
    name = f".out.txt.tmp-{dead_pid()}-12345678.kexue-shuffle"
    (tmp_path / name).write_bytes(b"half\n")
    fd = os.open(tmp_path / name, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert tempfiles.remove_leftovers(str(tmp_path)) == [] and os.listdir(tmp_path) == [name]
    finally:
        os.close(fd)
    assert tempfiles.remove_leftovers(str(tmp_path)) == [name] and os.listdir(tmp_path) == []


def test_a_live_pid_keeps_its_entries_unless_it_was_reused(tmp_path, monkeypatch):
    """An unlocked entry whose pid runs a process that started before the entry last changed may be a live run
    between making and locking it: it stays. If that process started after (the pid was reused, as after a
    reboot), the entry goes."""
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 600
        while tempfiles._start_time(live.pid) is None and time.monotonic() < deadline:  # hang guard only
            time.sleep(0.01)
        name = f".kexue-shuffle-{live.pid}-0badf00d"
        (tmp_path / name).mkdir()
        (tmp_path / name / "chunk-000001").write_bytes(b"x\n")
        assert tempfiles.remove_leftovers(str(tmp_path)) == [] and os.listdir(tmp_path) == [name]
        monkeypatch.setattr(tempfiles, "_start_time", lambda pid: time.time() + 100)
        assert tempfiles.remove_leftovers(str(tmp_path)) == [name] and os.listdir(tmp_path) == []
    finally:
        live.communicate(b"")


# ----------------------------------------------------------------------------------------------------------------
# SIGKILL in each phase; then the next run cleans up and shuffles right, the input untouched

DRIVER = r'''
"""Run `kexue shuffle ARGS` and SIGKILL it at PHASE (forked once per case), or pause it there (mode "pause")."""
import json, os, signal, sys

from kexue.cli import main
from kexue.data.shuffle import passes, sinks


def at(phase, act):
    def reached(p):
        return p.total and p.done * 2 >= p.total and (p.phase == phase or (phase == "merge level"
                                                                           and p.phase.startswith(phase)))
    if phase == "runs":  # inside the write of the third chunk file
        write = sinks.FileSink._write
        def _write(self, data):
            n = write(self, data)
            if os.path.basename(self.path) == "chunk-000003":
                act()
            return n
        sinks.FileSink._write = _write
    elif phase == "rename":  # the output complete and fsynced, not yet renamed into place
        replace = os.replace
        def _replace(a, b, **kw):
            if os.path.basename(b) == "out.txt":
                act()
            return replace(a, b, **kw)
        os.replace = _replace
    elif phase == "swap":  # between the two renames that replace a shards folder (force)
        rename = os.rename
        def _rename(a, b, **kw):
            if str(a).endswith(".kexue-shuffle") and os.path.basename(b) == "shards":
                act()
            return rename(a, b, **kw)
        os.rename = _rename
    else:  # half-way through a pass: read (chunks or buckets being written), merge level N, merge
        update = passes.Progress.update
        def _update(self, n):
            update(self, n)
            if reached(self):
                act()
        passes.Progress.update = _update


def die():
    os.kill(os.getpid(), signal.SIGKILL)


paused = []


def pause():  # once
    if not paused:
        paused.append(True)
        print("paused", flush=True)
        sys.stdin.readline()


mode, cases = sys.argv[1], json.loads(sys.argv[2])
if mode == "pause":
    phase, args = cases
    at(phase, pause)
    sys.exit(main(args))
status = {}
for name, (phase, args) in cases.items():
    pid = os.fork()
    if pid == 0:
        at(phase, die)
        main(args)
        os._exit(99)  # the phase was never reached
    status[name] = os.waitpid(pid, 0)[1]
print(json.dumps(status))
'''

KILL_ARGS = ["--memory", "16K", "--max-open", "5", "--seed", "7", "-q"]  # about 10 chunks, one extra merge level


def _cases(base: Path) -> dict[str, tuple[str, list[str], Path, Path]]:
    """name -> (phase, args, output's folder, temporary folder): merge with a hierarchical merge (--max-open 5), with
    the temporary folder elsewhere or the output's own; scatter; shards replaced with --force."""
    out = {}
    for name, phase, method, own_tmp in (("read", "read", "merge", False), ("runs", "runs", "merge", False),
                                         ("merge level", "merge level", "merge", True),
                                         ("merge", "merge", "merge", True), ("rename", "rename", "merge", True),
                                         ("scatter read", "read", "scatter", False),
                                         ("scatter buckets", "shuffle buckets", "scatter", True)):
        folder = base / name.replace(" ", "-")
        tmp = folder if own_tmp else base / f"{name.replace(' ', '-')}-tmp"
        folder.mkdir()
        tmp.mkdir(exist_ok=True)
        args = ["shuffle", str(base / "in.txt"), "-o", str(folder / "out.txt"), "--method", method,
                "--tmp-dir", str(tmp), *KILL_ARGS]
        out[name] = (phase, args, folder, tmp)
    folder = base / "swap"
    folder.mkdir()
    out["shards swap"] = ("swap", ["shuffle", str(base / "in.txt"), "--output-dir", str(folder / "shards"),
                                   "--split", "3", "--force", *KILL_ARGS], folder, folder)
    return out


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """Every case run once and SIGKILLed at its phase (one driver process forks a child per case)."""
    base = tmp_path_factory.mktemp("killed")
    data = make_input(base / "in.txt", 2500)
    digest = sha(base / "in.txt")
    cases = _cases(base)
    swap = cases["shards swap"]
    assert main([*swap[1][:-3], "--seed", "1", "-q"]) == 0  # the shards folder that --force replaces
    driver = base / "driver.py"
    driver.write_text(DRIVER)
    r = subprocess.run([sys.executable, str(driver), "kill", json.dumps({k: v[:2] for k, v in cases.items()})],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return base, data, digest, cases, json.loads(r.stdout)


@pytest.mark.parametrize("case", ["read", "runs", "merge level", "merge", "rename", "scatter read",
                                  "scatter buckets", "shards swap"])
def test_sigkill_in_each_phase_then_the_next_run_cleans_up(killed, case, capsys):
    base, data, digest, cases, status = killed
    phase, args, folder, tmp = cases[case]
    assert os.WIFSIGNALED(status[case]) and os.WTERMSIG(status[case]) == signal.SIGKILL, status[case]
    left = hidden(folder) + ([] if tmp == folder else os.listdir(tmp))
    assert left, "the killed run left nothing to clean up"
    assert all(tempfiles.MARK in n for n in left), left
    if case == "shards swap":
        assert not (folder / "shards").exists()  # killed with the old shards aside and the new ones not in place
    else:
        assert not (folder / "out.txt").exists()
    again = [*args[:-3], "--seed", "8"]  # the same output and folders, a new seed, not quiet: the note is said
    assert main(again) == 0
    err = capsys.readouterr().err
    assert "that killed runs left in" in err, err
    assert hidden(folder) == [] and (tmp == folder or os.listdir(tmp) == []), (hidden(folder), os.listdir(tmp))
    if case == "shards swap":
        got = b"".join(p.read_bytes() for p in sorted((folder / "shards").iterdir()))
        assert sorted(os.listdir(folder / "shards")) == ["part-00000", "part-00001", "part-00002"]
    else:
        got = (folder / "out.txt").read_bytes()
    assert lines(got) == lines(data)
    assert sha(base / "in.txt") == digest


def test_a_live_run_keeps_its_files_while_another_cleans_the_folder(tmp_path):
    """A run paused mid-merge (its temporary folder and output file exist, locked) keeps them while a second run
    in the same folders cleans up; then it finishes right."""
    src = tmp_path / "in.txt"
    data = make_input(src, 6000)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    args = ["shuffle", str(src), "-o", str(tmp_path / "out.txt"), "--memory", "32K", "-q"]
    p = subprocess.Popen([sys.executable, str(driver), "pause", json.dumps(["merge", args])], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline() == "paused\n", p.stderr.read() if p.stderr else ""
        live = hidden(tmp_path)
        assert any(n.startswith(".kexue-shuffle-") for n in live) and any(n.startswith(".out.txt.tmp-") for n in live)
        other = io.BytesIO()
        r = S.external_shuffle(str(src), str(tmp_path / "other.txt"), seed=1)  # cleans the folder, then runs
        assert not any("killed runs" in n for n in r.notes)
        assert set(live) <= set(hidden(tmp_path)), (live, hidden(tmp_path))
        S.external_shuffle(str(src), other, memory="32K", seed=1, tmp_dir=str(tmp_path))  # temporary files there
        assert set(live) <= set(hidden(tmp_path))
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.wait(timeout=600) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert hidden(tmp_path) == []
    assert lines((tmp_path / "out.txt").read_bytes()) == lines(data) == lines(other.getvalue())


@pytest.mark.slow
@pytest.mark.parametrize("when", ["chunks written", "output being written"])
def test_external_sigkill_then_the_next_run_cleans_up(tmp_path, when):
    """The same as the per-phase test, with the SIGKILL sent from outside at a moment seen from the files: a
    second chunk file in the temporary folder, or the output's temporary file (the merge)."""
    src = tmp_path / "in.txt"
    data = make_input(src, 400_000)
    digest = sha(src)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    args = [str(src), "-o", str(tmp_path / "out.txt"), "--memory", "256K", "--tmp-dir", str(tmp), "-q"]
    p = subprocess.Popen([sys.executable, "-m", "kexue", "shuffle", *args, "--seed", "1"])
    deadline = time.monotonic() + 600  # a hang guard, not a time limit on the shuffle

    def seen() -> bool:
        if when == "output being written":
            return any(n.startswith(".out.txt.tmp-") for n in os.listdir(tmp_path))
        try:
            return any(len(os.listdir(tmp / d)) >= 2 for d in os.listdir(tmp))
        except FileNotFoundError:
            return False

    while not seen():
        assert p.poll() is None and time.monotonic() < deadline, "the phase was never seen"
        time.sleep(0.002)
    p.send_signal(signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL
    assert hidden(tmp_path) or os.listdir(tmp)
    assert main(["shuffle", *args, "--seed", "2"]) == 0
    assert hidden(tmp_path) == [] and os.listdir(tmp) == []
    assert lines((tmp_path / "out.txt").read_bytes()) == lines(data) and sha(src) == digest
