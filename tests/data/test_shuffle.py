"""kexue.data.shuffle in-process: integrity (property-based), uniformity (chi-square), determinism, errors."""

from __future__ import annotations

import io
import itertools
import math
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy import stats

from kexue.data import shuffle as S
from kexue.data.shuffle import passes, records
from kexue.data.shuffle.reader import RECORD_COST
from kexue.data.shuffle.records import gather

ALPHA = 1e-3  # significance of every chi-square test here; seeds are fixed, so each outcome is reproducible


@pytest.fixture(scope="module")
def fast_tmp():
    """A scratch folder on tmpfs when there is one (creating and removing folders is slow on some disks)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="kexue-shuffle-test-", dir=base) as d:
        yield Path(d)


def records_of(data: bytes, sep: bytes = b"\n") -> list[bytes]:
    """Records with their separators (the last one must be terminated)."""
    assert data == b"" or data.endswith(sep)
    return [r + sep for r in data.split(sep)[:-1]]


def expected_records(files: list[bytes], sep: bytes = b"\n") -> list[bytes]:
    """The records the shuffle must emit: each file's unterminated last record gets the separator."""
    out: list[bytes] = []
    for data in files:
        if data and not data.endswith(sep):
            data += sep
        out += records_of(data, sep)
    return out


def _offsets(records: list[bytes]) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    for r in records:
        out.append((pos, r))
        pos += len(r)
    return out


def shuffle_bytes(data: bytes, tmp: Path, **kw) -> tuple[bytes, S.ShuffleReport]:
    src = tmp / "in.txt"
    src.write_bytes(data)
    out = io.BytesIO()
    report = S.external_shuffle(str(src), out, tmp_dir=str(tmp), **kw)
    return out.getvalue(), report


# ----------------------------------------------------------------------------------------------------------------
# the byte-level gather


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 700), min_size=1, max_size=80), st.integers(0, 2**32 - 1))
def test_gather_matches_slicing(lengths, seed):
    rng = np.random.default_rng(seed)
    L = np.array(lengths, dtype=np.int64)
    src = rng.integers(0, 256, int(L.sum()), dtype=np.uint8)
    starts = np.cumsum(L) - L
    perm = rng.permutation(L.size)
    out = np.zeros(int(L.sum()), np.uint8)
    dst = np.cumsum(L[perm]) - L[perm]
    gather(src, starts[perm], L[perm], out, dst)
    want = src.tobytes()
    assert out.tobytes() == b"".join(want[s : s + n] for s, n in zip(starts[perm].tolist(), L[perm].tolist()))


def test_parse_size():
    assert S.parse_size("512M") == 512 << 20
    assert S.parse_size("1G") == 1 << 30
    assert S.parse_size("1.5k") == 1536
    assert S.parse_size("64KiB") == 64 << 10
    assert S.parse_size(1000) == 1000
    for bad in ("", "12X", "-1M", "0", "M"):
        with pytest.raises(S.InputError, match="size"):
            S.parse_size(bad)


# ----------------------------------------------------------------------------------------------------------------
# integrity: the output's records are the input's, as a multiset, for any bytes and tiny budgets

record_bytes = st.binary(max_size=12) | st.sampled_from([b"", b"\r", b"\xff\xfe", b"\x00", b"caf\xc3\xa9\r",
                                                          b"x" * 200])


@st.composite
def corpora(draw):
    """One to three files of arbitrary records; a file may lack its final separator."""
    sep = draw(st.sampled_from([b"\n", b"\0"]))
    files = []
    for _ in range(draw(st.integers(1, 3))):
        recs = draw(st.lists(record_bytes, max_size=40))
        data = b"".join(r.replace(sep, b"") + sep for r in recs)
        if data and draw(st.booleans()):
            data = data[:-1]  # no final separator (or an empty last record becomes no record: both fine)
        files.append(data)
    return sep, files


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corpora(), st.sampled_from(["merge", "scatter", "naive"]), st.sampled_from([128, 160, 256, 512, 4096]),
       st.integers(0, 2**63 - 1), st.sampled_from([4, 5, 256]))
def test_output_is_a_permutation_of_the_input(fast_tmp, corpus, method, memory, seed, max_open):
    sep, files = corpus
    with tempfile.TemporaryDirectory(dir=fast_tmp) as d:
        d = Path(d)
        paths = []
        for i, data in enumerate(files):
            p = d / f"in{i}"
            p.write_bytes(data)
            paths.append(str(p))
        out = d / "out"
        want = expected_records(files, sep)
        limit = S.Budget.of(memory).max_record
        try:
            report = S.external_shuffle(paths, str(out), memory=memory, method=method, seed=seed, tmp_dir=str(d),
                                        max_open=max_open, sep=sep, verify=True)
        except S.RecordTooLong as e:
            # the first record over the limit is named, by its byte offset in its file, and nothing is left
            where = [(p, off) for p, data in zip(paths, files)
                     for off, r in _offsets(expected_records([data], sep)) if len(r) > limit]
            assert where, f"RecordTooLong although every record fits: {e}"
            assert f"byte offset {where[0][1]} of {where[0][0]}" in str(e)
            assert not out.exists()
            assert sorted(os.listdir(d)) == sorted(os.path.basename(p) for p in paths)
            event("record too long")
            return
        except S.ShuffleError as e:
            assert method == "naive" and "for the naive method, which reads all" in str(e)
            event("naive: too many chunks")
            return
        event(f"shuffled: {'one chunk' if report.chunks == 1 else 'several chunks'}"
              f"{', extra levels' if report.levels else ''}")
        got = out.read_bytes()
        assert Counter(records_of(got, sep)) == Counter(want)
        assert report.records == len(want) and report.verified
        assert report.added_separators == sum(1 for f in files if f and not f.endswith(sep))
        assert sorted(os.listdir(d)) == sorted([*map(os.path.basename, paths), "out"]), "temporary files left"


def test_many_chunks_and_hierarchical_merge(fast_tmp):
    """~300 records at a 256-byte budget with max_open=5: dozens of chunks, merged in several levels (merge) or
    re-scattered buckets (scatter); open files, counted in /proc/self/fd at every progress step, stay within 5."""
    rng = np.random.default_rng(0)
    recs = [b"%d:" % i + b"z" * int(rng.integers(0, 30)) + b"\n" for i in range(300)]
    data = b"".join(recs)
    fd_dir = "/proc/self/fd"
    most = [0]

    def hook(phase, done, total):
        most[0] = max(most[0], len(os.listdir(fd_dir)))

    base = len(os.listdir(fd_dir)) if os.path.isdir(fd_dir) else None
    for method, extra_levels in (("merge", 2), ("scatter", 1)):
        most[0] = 0
        got, report = shuffle_bytes(data, fast_tmp, memory=256, seed=1, max_open=5, method=method,
                                    progress=hook if base is not None else None)
        assert report.chunks >= 3 and report.levels >= extra_levels
        assert sorted(records_of(got)) == sorted(recs)
        if base is not None:
            assert 0 < most[0] <= base + 5, (method, base, most[0])


def test_long_records_stream_through_small_merge_windows(fast_tmp):
    """Records longer than a merge window (but within the chunk budget) are copied through in pieces."""
    rng = np.random.default_rng(1)
    budget = S.Budget.of(64 << 10)
    recs = [bytes(rng.integers(97, 123, int(n), dtype=np.uint8)) + b"\n"
            for n in rng.integers(1, budget.max_record // 3, 40)]
    data = b"".join(recs)
    assert max(map(len, recs)) > budget.window(4)
    for method in ("merge", "naive"):
        got, report = shuffle_bytes(data, fast_tmp, memory=64 << 10, seed=2, method=method, verify=True)
        assert report.chunks > 3 and sorted(records_of(got)) == sorted(recs)


def test_shards(tmp_path):
    recs = [b"%03d\n" % i for i in range(103)]
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(recs))
    out = tmp_path / "shards"
    r = S.external_shuffle(str(src), str(out), memory=256, seed=0, split=4)
    assert [os.path.basename(p) for p in r.outputs] == [f"part-{i:05d}" for i in range(4)]
    sizes = [len(records_of(Path(p).read_bytes())) for p in r.outputs]
    assert sizes == [26, 26, 26, 25]
    assert sorted(b"".join(Path(p).read_bytes() for p in r.outputs).splitlines(keepends=True)) == recs
    # records per shard; the last shard is short and no empty shard is written
    r = S.external_shuffle(str(src), str(tmp_path / "by_count"), memory=256, seed=0, records_per_output=50)
    assert [len(records_of(Path(p).read_bytes())) for p in r.outputs] == [50, 50, 3]
    # bytes per shard: at most 40 bytes (10 records), whole records only
    r = S.external_shuffle(str(src), str(tmp_path / "by_bytes"), memory=256, seed=0, bytes_per_output=40)
    assert [os.path.getsize(p) for p in r.outputs] == [40] * 10 + [12]
    # more shards than records: only non-empty shards
    r = S.external_shuffle(str(src), str(tmp_path / "many"), seed=0, split=200)
    assert len(r.outputs) == 103
    # an existing folder is replaced only with force
    with pytest.raises(S.InputError, match="exists"):
        S.external_shuffle(str(src), str(out), seed=0, split=2)
    r = S.external_shuffle(str(src), str(out), seed=0, split=2, force=True)
    assert sorted(os.listdir(out)) == ["part-00000", "part-00001"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_bytes_kept_exactly(fast_tmp):
    """CRLF keeps its CR, NUL and invalid UTF-8 pass through, empty lines are records, a last line gets '\\n'."""
    data = b"a\r\n\n\xff\xfe\x00z\n\ncaf\xc3\xa9\r\nlast"
    got, report = shuffle_bytes(data, fast_tmp, seed=3)
    assert sorted(records_of(got)) == sorted([b"a\r\n", b"\n", b"\xff\xfe\x00z\n", b"\n", b"caf\xc3\xa9\r\n",
                                              b"last\n"])
    assert report.added_separators == 1 and report.bytes_out == len(data) + 1
    got, _ = shuffle_bytes(b"x\0y\ny\0z", fast_tmp, seed=3, sep=b"\0")
    assert sorted(records_of(got, b"\0")) == [b"x\0", b"y\ny\0", b"z\0"]
    assert shuffle_bytes(b"", fast_tmp, seed=0)[0] == b""
    with pytest.raises(S.InputError, match=r"^expected .*in.txt to end with the record separator b'\\n', got a last"):
        shuffle_bytes(b"a\nb", fast_tmp, seed=0, final_newline="error")


def test_seed_determinism(fast_tmp):
    data = b"".join(b"line %d\n" % i for i in range(2000))
    for method in S.METHODS:
        a, _ = shuffle_bytes(data, fast_tmp, memory=16384, seed=7, method=method)
        b, _ = shuffle_bytes(data, fast_tmp, memory=16384, seed=7, method=method)
        c, _ = shuffle_bytes(data, fast_tmp, memory=16384, seed=8, method=method)
        assert a == b != c
    _, r = shuffle_bytes(data, fast_tmp)
    assert isinstance(r.seed, int) and r.seed >= 0  # drawn, and reported so the run can be repeated


def test_record_too_long_names_offset(fast_tmp):
    limit = S.Budget.of(1024).max_record
    data = b"short\n" * 3 + b"x" * (limit + 5) + b"\nafter\n"
    with pytest.raises(S.RecordTooLong, match=r"^expected records of at most \d+ bytes, .*got record 3 .* byte offset "
                                              r"18 of .*in\.txt") as e:
        shuffle_bytes(data, fast_tmp, memory=1024, seed=0)
    assert e.value.exit_code == 4
    assert not [p for p in os.listdir(fast_tmp) if p.startswith(".kexue")]


def test_refuses_what_would_lose_data(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"a\nb\n")
    with pytest.raises(S.InputError, match="same file as an input"):
        S.external_shuffle(str(src), str(src), force=True)
    link = tmp_path / "link.txt"
    link.symlink_to(src)
    with pytest.raises(S.InputError, match="same file as an input"):
        S.external_shuffle(str(src), str(link), force=True)
    (tmp_path / "out.txt").write_bytes(b"keep me\n")
    with pytest.raises(S.InputError, match="output exists"):
        S.external_shuffle(str(src), str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_bytes() == b"keep me\n"
    with pytest.raises(S.InputError, match="^expected an existing input file, got .*nope: input not found$"):
        S.external_shuffle(str(tmp_path / "nope"), io.BytesIO())
    with pytest.raises(S.InputError, match="^expected memory to be a size such as 512M, 1G or 1048576, got 'lots'$"):
        S.external_shuffle(str(src), io.BytesIO(), memory="lots")  # names the argument
    with pytest.raises(S.InputError, match=r"^expected an existing output folder, got .*, which does not exist$"):
        S.external_shuffle(str(src), str(tmp_path / "no" / "out.txt"))
    assert src.read_bytes() == b"a\nb\n"


def test_argument_errors_name_the_argument(tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"a\nb\n")
    out = io.BytesIO()
    sort: Any = "sort"
    cases: list[tuple[dict[str, Any], str]] = [
        (dict(method=sort), r"^expected method to be one of \['merge', 'scatter', 'naive'\], got 'sort'$"),
        (dict(final_newline="keep"), r"^expected final_newline to be one of \['add', 'error'\], got 'keep'$"),
        (dict(seed=-1), r"^expected seed >= 0, got -1$"),
        (dict(seed=1.5), r"^expected seed to be an integer, got 1.5 \(float\)$"),
        (dict(max_open=0), r"^expected max_open >= 1, got 0$"),
        (dict(max_open=3), r"^expected max_open and RLIMIT_NOFILE to allow at least 4 open files, got 3"),
        (dict(sep=b"\r\n"), r"^expected sep to be a single byte such as b'\\n' or b'\\0', got b'\\r\\n'$"),
        (dict(memory=100), r"^expected memory >= 128 bytes, got 100$"),
        (dict(split=0), r"^expected split >= 1, got 0$"),
        (dict(split=2, records_per_output=3), r"^expected at most one of split, records_per_output, bytes_per_outp"),
        (dict(split=2), r"^expected a folder path as output for sharded output \(--output-dir DIR\), got <_io"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(S.InputError, match=msg):
            S.external_shuffle(str(src), out, **kwargs)
    with pytest.raises(ValueError, match=r"^expected at least one input, got none$"):  # InputError is a ValueError
        S.external_shuffle([], out)
    with pytest.raises(S.InputError, match=r"^expected standard input \('-'\) at most once among the inputs, got it 2"):
        S.external_shuffle(["-", "-"], out)
    with pytest.raises(S.InputError, match=r"^expected a file as input, got .*: input is a directory$"):
        S.external_shuffle(str(tmp_path), out)
    with pytest.raises(S.InputError, match=r"^expected an existing temporary folder, got .*nowhere, which does not"):
        S.external_shuffle(str(src), out, tmp_dir=tmp_path / "nowhere")
    assert S.METHODS == get_args(S.Method)


def test_preflight_refuses_without_space(tmp_path, monkeypatch):
    src = tmp_path / "in.txt"
    src.write_bytes(b"x" * 99 + b"\n" * 1000)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1500))
    with pytest.raises(S.InsufficientSpace, match="not enough free space") as e:
        S.external_shuffle(str(src), str(tmp_path / "out.txt"), memory=256, seed=0)
    assert e.value.exit_code == 3
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


def test_disk_full_mid_run_leaves_nothing(tmp_path, monkeypatch):
    """ENOSPC from a write (simulated after 3000 bytes) is a clear error; no output and no temporary files."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(b"record %d\n" % i for i in range(1000)))
    real_write = os.write
    written = [0]

    def write(fd, data):
        if written[0] > 3000 and fd > 2:
            raise OSError(28, "No space left on device")
        written[0] += len(data)
        return real_write(fd, data)

    monkeypatch.setattr(records.os, "write", write)
    for method in S.METHODS:
        written[0] = 0
        with pytest.raises(S.InsufficientSpace, match="no space left on the device while writing"):
            S.external_shuffle(str(src), str(tmp_path / "out.txt"), memory=1024, seed=0, method=method)
        assert sorted(os.listdir(tmp_path)) == ["in.txt"]


# ----------------------------------------------------------------------------------------------------------------
# uniformity


def _perm_counts(outputs: list[bytes], items: list[bytes]) -> np.ndarray:
    perms = list(itertools.permutations(items))
    index = {b"".join(p): i for i, p in enumerate(perms)}
    counts = np.zeros(len(perms), np.int64)
    for o in outputs:
        counts[index[o]] += 1
    return counts


def _runs(fast_tmp: Path, n_items: int, runs: int, **kw) -> tuple[list[bytes], list[bytes], S.ShuffleReport]:
    items = [b"%c\n" % (97 + i) for i in range(n_items)]
    src = fast_tmp / f"items{n_items}.txt"
    src.write_bytes(b"".join(items))
    outs = []
    for seed in range(runs):
        buf = io.BytesIO()
        report = S.external_shuffle(str(src), buf, seed=seed, tmp_dir=str(fast_tmp), **kw)
        outs.append(buf.getvalue())
    return items, outs, report


@pytest.mark.parametrize("method", ["merge", "scatter"])
@pytest.mark.parametrize("n_items,per_cell", [(4, 40), (5, 20)])
def test_exact_methods_are_uniform(fast_tmp, method, n_items, per_cell):
    """Over all n! permutations: chi-square not rejected at ALPHA, and every item-position marginal uniform.
    A 128-byte budget holds 2 of these records per chunk (records cost len + RECORD_COST bytes), so 4 or 5 items
    make 2-3 chunks (merge, with a hierarchical level for 3) or several buckets (scatter)."""
    assert 2 * (2 + RECORD_COST) <= S.Budget.of(128).capacity < 3 * (2 + RECORD_COST)
    runs = per_cell * math.factorial(n_items)
    items, outs, report = _runs(fast_tmp, n_items, runs, memory=128, method=method)
    assert report.chunks >= 2
    counts = _perm_counts(outs, items)
    assert stats.chisquare(counts).pvalue > ALPHA, counts
    positions = np.zeros((n_items, n_items), np.int64)
    for o in outs:
        for pos, rec in enumerate(records_of(o)):
            positions[items.index(rec), pos] += 1
    for row in positions:  # Bonferroni over the items
        assert stats.chisquare(row).pvalue > ALPHA / n_items, positions


def test_blog_mode_reaches_only_16_of_24(fast_tmp):
    """The post's counter-example: 2 chunks of 2 lines; 16 permutations, each with probability 1/16, 8 never."""
    from kexue.reproduce.shuffle import naive_distribution

    items, outs, report = _runs(fast_tmp, 4, 1600, memory=128, method="naive")
    assert report.chunks == 2
    counts = _perm_counts(outs, items)
    exact = naive_distribution([2, 2])  # permutation (as item indices) -> Fraction
    perms = list(itertools.permutations(range(4)))
    support = {i for i, p in enumerate(perms) if exact.get(p, 0) > 0}
    assert len(support) == 16
    assert {i for i, c in enumerate(counts) if c} == support
    assert stats.chisquare(counts[sorted(support)]).pvalue > ALPHA  # uniform over the 16 it reaches
    assert stats.chisquare(counts).pvalue < 1e-12  # and plainly not uniform over all 24: the test can fail


def test_draw_composition_large_population_path(monkeypatch):
    """Above numpy's 1e9 limit compositions come from a random subset of positions: same law (checked small)."""
    remaining = np.array([3, 2, 4])
    b, runs = 4, 20000
    rng = np.random.default_rng(0)
    monkeypatch.setattr(passes, "_HYPERGEOM_MAX", 0)
    got = Counter(tuple(passes._draw_composition(rng, remaining, b)) for _ in range(runs))
    support = [c for c in itertools.product(*(range(r + 1) for r in remaining)) if sum(c) == b]
    expected = np.array([stats.multivariate_hypergeom.pmf(c, remaining, b) for c in support]) * runs
    observed = np.array([got.get(c, 0) for c in support])
    assert sum(got.values()) == observed.sum()
    assert stats.chisquare(observed, expected).pvalue > ALPHA


def test_long_records_into_byte_limited_shards(tmp_path):
    """Records streamed through a merge window land whole in shards of at most bytes_per_output bytes (a record
    longer than that gets a shard of its own)."""
    rng = np.random.default_rng(3)
    recs = [bytes(rng.integers(97, 123, int(n), dtype=np.uint8)) + b"\n" for n in rng.integers(1, 12000, 60)]
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(recs))
    limit = 8000
    r = S.external_shuffle(str(src), str(tmp_path / "shards"), memory=64 << 10, seed=4, bytes_per_output=limit,
                           verify=True)
    assert r.chunks > 3
    got = []
    for p in r.outputs:
        shard = records_of(Path(p).read_bytes())
        assert shard and (sum(map(len, shard)) <= limit or len(shard) == 1)
        got += shard
    assert sorted(got) == sorted(recs)


def test_verify_catches_a_mismatch(tmp_path, monkeypatch):
    """verify=True compares counts and checksums before committing: a corrupted checksum is an error, no output."""
    from kexue.data.shuffle import sinks

    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(b"%d\n" % i for i in range(100)))
    monkeypatch.setattr(sinks, "checksum", lambda data, lengths: 12345)
    with pytest.raises(S.VerifyError, match="^checksum mismatch: expected the input's 0x[0-9a-f]{16}, got 0x") as e:
        S.external_shuffle(str(src), str(tmp_path / "out.txt"), memory=1024, seed=0, verify=True)
    assert e.value.exit_code == 5
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]
