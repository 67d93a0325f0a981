"""Bad-input rows: kexue.data (the STS loader, the TSV reader, the fetcher and its status) and the commands
``kexue data``, ``kexue data list``, ``kexue data fetch`` and ``kexue reproduce``. The shuffle has its own table.

Downloads come from a ``file://`` mirror in a temporary folder or from a closed port on 127.0.0.1: nothing leaves the
machine. Every refused fetch is also checked to leave its folder as it found it (no partial file, no temporary file,
no new folder). The command rows are refused before any work: a reproduction row names one quick entry, so a
regression costs seconds, not the whole suite.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _matrix import Bad, BadCLI, check, check_cli

from kexue.data import MissingData, UnknownData, load_sts, read_tsv
from kexue.data.fetch import FetchError, fetch, status
from kexue.data.registry import MIRROR_ENV, REGISTRY, DataFile, DataSet

REPO, COMMIT = "someone/tiny", "0123456789abcdef0123456789abcdef01234567"
BODY = b"sentence\tlabel\nfine\t1\n"
SICK = REGISTRY["sick"]


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _tiny(sha: str = _sha(BODY), source: str = "train.tsv", unpack=None, size: int = len(BODY)) -> DataSet:
    return DataSet("tiny", REPO, COMMIT, "CC0 (test data)", False,
                   (DataFile("tiny/train.tsv", source, size, sha, unpack),))


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released): a connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _in_tmp(fn: Callable[[Path], object]) -> Callable[[], object]:
    """A row's call: ``fn`` given a fresh temporary folder, removed afterwards."""
    def call() -> object:
        with tempfile.TemporaryDirectory() as d:
            return fn(Path(d))
    return call


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.is_dir() else []


def _fetch_leaves_nothing(body: bytes | None, ds: Callable[[], DataSet] = _tiny, folder: str = "data",
                          mirror: str | None = None, prepare: Callable[[Path], object] | None = None,
                          **kw) -> Callable[[], object]:
    """A fetch of ``ds()`` into ``TMP/folder`` from a ``file://`` mirror serving ``body`` (``None``: nothing) unless
    ``mirror`` names another, after ``prepare(TMP)``; when it raises, nothing under TMP may have changed."""
    def fn(tmp: Path) -> object:
        if prepare is not None:
            prepare(tmp)
        d = ds()
        served = tmp / "mirror"
        src = served / d.repo / d.commit / d.files[0].source
        src.parent.mkdir(parents=True)
        if body is not None:
            src.write_bytes(body)
        before = _listing(tmp)
        try:
            return fetch([d], tmp / folder, mirror=mirror or served.as_uri(), log=lambda s: None, **kw)
        finally:
            assert _listing(tmp) == before, "a refused fetch left files behind"
    return _in_tmp(fn)


def _read_only(folder: str) -> Callable[[Path], None]:
    """Makes ``TMP/folder`` a folder this process cannot write in (root writes in any: the row is skipped there)."""
    def prepare(tmp: Path) -> None:
        ro = tmp / folder
        ro.mkdir(parents=True)
        ro.chmod(0o500)
        try:
            (ro / "probe").touch()
        except PermissionError:
            return
        pytest.skip("this process writes in read-only folders (root)")
    return prepare


def _file(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _missing_set_via_env(tmp: Path) -> object:
    with _env("KEXUE_DATA", str(tmp)):
        return load_sts("lcqmc")


def _bad_env_mirror(tmp: Path) -> object:
    with _env(MIRROR_ENV, "raw.githubusercontent.com"):
        return fetch([_tiny()], tmp, log=lambda s: None)


ROWS = [
    # --- load_sts: names, splits, the data folder, the files in it
    Bad("kexue.data.load_sts", "unknown set name", lambda: load_sts("stsbx"), ValueError,
        r"^expected name to be one of \['stsb', 'sick-r', .*'stsb-zh'\], got 'stsbx'$"),
    Bad("kexue.data.load_sts", "split of another set", lambda: load_sts("stsb", "valid"), ValueError,
        r"^expected split of 'stsb' to be one of \['train', 'dev', 'test'\], got 'valid'$"),
    Bad("kexue.data.load_sts", "split that no set has", lambda: load_sts("lcqmc", "Test"), ValueError,
        r"expected split of 'lcqmc' to be one of \['valid', 'test'\], got 'Test'"),
    Bad("kexue.data.load_sts", "missing data folder (root)",
        _in_tmp(lambda d: load_sts("stsb", root=d / "nowhere")), MissingData,
        r"data set 'stsb_en' is not in .*nowhere .*: fetch it with `KEXUE_DATA=\S*nowhere kexue data fetch stsb_en`"),
    Bad("kexue.data.load_sts", "missing set in $KEXUE_DATA", _in_tmp(_missing_set_via_env), MissingData,
        r"data set 'senteval_cn' is not in .*LCQMC\.test\.data\): fetch it with `kexue data fetch senteval_cn`"),
    Bad("kexue.data.load_sts", "root not a path", lambda: load_sts("stsb", root=3), TypeError,
        r"expected root to be a path \(str or os\.PathLike\), got 3 \(int\)"),
    Bad("kexue.data.load_sts", "score not a number",
        _in_tmp(lambda d: (_file(d, "senteval_cn/BQ/BQ.test.data", "甲\t乙\t1\n甲\t丙\tx\n".encode()),
                           load_sts("bq", root=d))), ValueError,
        r"BQ\.test\.data, line 2: expected a number as score, got 'x'"),
    Bad("kexue.data.load_sts", "row with two columns",
        _in_tmp(lambda d: (_file(d, "senteval_cn/ATEC/ATEC.valid.data", b"a\tb\t0\nc\td\n"),
                           load_sts("atec", "valid", root=d))), ValueError,
        r"ATEC\.valid\.data, line 2: expected 3 tab-separated fields, got 2"),
    # --- read_tsv
    Bad("kexue.data.read_tsv", "missing file", _in_tmp(lambda d: read_tsv(d / "absent.tsv")), FileNotFoundError,
        r"No such file or directory: '\S*absent\.tsv'"),
    Bad("kexue.data.read_tsv", "a folder", _in_tmp(lambda d: read_tsv(d)), IsADirectoryError,
        r"Is a directory: '/\S+'"),
    Bad("kexue.data.read_tsv", "wrong column count", _in_tmp(lambda d: read_tsv(_file(d, "r.tsv", b"a\tb\nc\n"))),
        ValueError, r"r\.tsv, line 2: expected 2 tab-separated fields, got 1$"),
    Bad("kexue.data.read_tsv", "ncols not the file's", _in_tmp(lambda d: read_tsv(_file(d, "r.tsv", b"a\tb\n"), 3)),
        ValueError, r"r\.tsv, line 1: expected 3 tab-separated fields, got 2$"),
    Bad("kexue.data.read_tsv", "non-UTF-8 bytes",
        _in_tmp(lambda d: read_tsv(_file(d, "l1.tsv", "a\tb\ncafé\tbon\n".encode() + "thé\t1\n".encode("latin-1")))),
        ValueError, r"l1\.tsv, line 3: expected UTF-8 text, got the bytes b'\\xe9'$"),
    Bad("kexue.data.read_tsv", "ncols = 0", _in_tmp(lambda d: read_tsv(_file(d, "r.tsv", b"a\n"), 0)), ValueError,
        r"^expected ncols >= 1, got 0$"),
    Bad("kexue.data.read_tsv", "ncols a str", _in_tmp(lambda d: read_tsv(_file(d, "r.tsv", b"a\n"), "1")), TypeError,
        r"^expected ncols to be an integer, got '1' \(str\)$"),
    Bad("kexue.data.read_tsv", "path None", lambda: read_tsv(None), TypeError,
        r"^expected path to be a path \(str or os\.PathLike\), got None \(NoneType\)$"),
    # --- fetch: names, options, mirrors, corrupt or missing files, folders it cannot write in
    Bad("kexue.data.fetch.fetch", "unknown set names", _in_tmp(lambda d: fetch(["sick", "nope", "nada"], d)),
        UnknownData, r"^expected data set names among sst2, agnews, .*, dureader_robust, got nope, nada$"),
    Bad("kexue.data.fetch.fetch", "names one str", _in_tmp(lambda d: fetch("sick", d)), TypeError,
        r"^expected names to be a list of set names or DataSets, got the str 'sick' \(write \['sick'\]\)$"),
    Bad("kexue.data.fetch.fetch", "a name not a str", _in_tmp(lambda d: fetch(["sick", 3], d)), TypeError,
        r"^expected names to hold set names \(str\) or DataSets, got 3 \(int\) at index 1$"),
    Bad("kexue.data.fetch.fetch", "timeout = 0", _fetch_leaves_nothing(BODY, timeout=0), ValueError,
        r"^expected timeout > 0.0, got 0$"),
    Bad("kexue.data.fetch.fetch", "timeout nan", _fetch_leaves_nothing(BODY, timeout=float("nan")), ValueError,
        r"^expected timeout to be finite, got nan$"),
    Bad("kexue.data.fetch.fetch", "folder not a path", lambda: fetch([_tiny()], 3.5), TypeError,
        r"^expected folder to be a path \(str or os\.PathLike\), got 3\.5 \(float\)$"),
    Bad("kexue.data.fetch.fetch", "mirror without a scheme", _fetch_leaves_nothing(BODY, mirror="notaurl"),
        ValueError, r"^expected mirror to be a URL like https://HOST/PATH or file:///FOLDER .*got 'notaurl'$"),
    Bad("kexue.data.fetch.fetch", "mirror without a host", _fetch_leaves_nothing(BODY, mirror="https://"),
        ValueError, r"^expected mirror to be a URL .*got 'https://'$"),
    Bad("kexue.data.fetch.fetch", "mirror not a str", _fetch_leaves_nothing(BODY, mirror=b"http://x"), TypeError,
        r"^expected mirror to be a URL \(str\), got b'http://x' \(bytes\)$"),
    Bad("kexue.data.fetch.fetch", "malformed $KEXUE_DATA_MIRROR", _in_tmp(_bad_env_mirror), ValueError,
        r"^expected \$KEXUE_DATA_MIRROR to be a URL .*got 'raw\.githubusercontent\.com'$"),
    Bad("kexue.data.fetch.fetch", "unreachable mirror",
        lambda: _fetch_leaves_nothing(BODY, mirror=f"http://127.0.0.1:{_closed_port()}")(), FetchError,
        r"^cannot fetch data set 'tiny', file tiny/train\.tsv: cannot reach http://127\.0\.0\.1:\d+/someone/tiny/"),
    Bad("kexue.data.fetch.fetch", "file absent from the mirror", _fetch_leaves_nothing(None), FetchError,
        r"^cannot fetch data set 'tiny', file tiny/train\.tsv: cannot reach file://\S+/train\.tsv: .*No such file"),
    Bad("kexue.data.fetch.fetch", "corrupt file (checksum mismatch)", _fetch_leaves_nothing(BODY.upper()),
        FetchError, rf"file tiny/train\.tsv: checksum mismatch: expected sha256 {_sha(BODY)}, got "
        rf"{_sha(BODY.upper())} from file://"),
    Bad("kexue.data.fetch.fetch", "corrupt gzip",
        _fetch_leaves_nothing(gzip.compress(BODY)[:-9], lambda: _tiny(source="train.tsv.gz", unpack="gunzip")),
        FetchError, r"file tiny/train\.tsv: cannot gunzip what file://\S+/train\.tsv\.gz gave"),
    Bad("kexue.data.fetch.fetch", "data folder under a file",
        _fetch_leaves_nothing(BODY, folder="mirror/someone/tiny/" + COMMIT + "/train.tsv/data"), FetchError,
        r"file tiny/train\.tsv: cannot create \S+/train\.tsv/data/tiny: Not a directory$"),
    Bad("kexue.data.fetch.fetch", "read-only data folder",
        _fetch_leaves_nothing(BODY, folder="ro", prepare=_read_only("ro")), FetchError,
        r"file tiny/train\.tsv: cannot create \S+/ro/tiny: Permission denied$"),
    Bad("kexue.data.fetch.fetch", "read-only set folder",
        _fetch_leaves_nothing(BODY, folder="ro", prepare=_read_only("ro/tiny")), FetchError,
        r"file tiny/train\.tsv: cannot write in \S+/ro/tiny: Permission denied$"),
    # --- status
    Bad("kexue.data.fetch.status", "unknown set name", lambda: status("nope", "."), UnknownData,
        r"^expected data set names among sst2, .*, got nope$"),
    Bad("kexue.data.fetch.status", "set not a DataSet or name", lambda: status(3, "."), TypeError,
        r"^expected ds to be a DataSet or a registered set name, got 3 \(int\)$"),
    Bad("kexue.data.fetch.status", "folder None", lambda: status(SICK, None), TypeError,
        r"^expected folder to be a path \(str or os\.PathLike\), got None \(NoneType\)$"),
]


def _touch(d: Path, name: str, args: list[str]) -> list[str]:
    """``args``, after making the file ``d/name`` (a row's path that must be a file, not a folder)."""
    (d / name).parent.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(b"not a folder\n")
    return args


def _corrupt_mirror(d: Path) -> list[str]:
    """A ``file://`` mirror serving SICK.txt with the wrong bytes."""
    f = SICK.files[0]
    _touch(d, f"mirror/{SICK.repo}/{SICK.commit}/{f.source}", [])
    return ["data", "fetch", "sick", "--mirror", (d / "mirror").as_uri()]


NOWHERE = {"KEXUE_DATA": "data"}  # relative: a folder of the scratch folder that does not exist
QUICK = ["reproduce", "gelu", "--quick"]

CLI_ROWS = [
    BadCLI("kexue data", "no action", lambda d: ["data"], 2,
           r"^kexue data: the following arguments are required: ACTION"),
    BadCLI("kexue data", "unknown action", lambda d: ["data", "get"], 2,
           r"^kexue data: expected ACTION to be one of \['list', 'fetch'\], got 'get'"),
    BadCLI("kexue data list", "an extra argument", lambda d: ["data", "list", "sick"], 2,
           r"^kexue: unrecognized arguments: sick"),
    BadCLI("kexue data list", "$KEXUE_DATA a file", lambda d: _touch(d, "afile", ["data", "list"]), 2,
           r"^kexue data list: expected the data folder \(\$KEXUE_DATA, else the per-user cache\) to be a folder, got "
           r"the file afile$", env={"KEXUE_DATA": "afile"}),
    BadCLI("kexue data fetch", "no names", lambda d: ["data", "fetch"], 2,
           r"^kexue data fetch: expected set names or --all \(see `kexue data list`\), got neither$"),
    BadCLI("kexue data fetch", "names and --all", lambda d: ["data", "fetch", "sick", "--all"], 2,
           r"expected set names or --all .*got both$"),
    BadCLI("kexue data fetch", "unknown names", lambda d: ["data", "fetch", "sick", "nope"], 2,
           r"^kexue data fetch: expected data set names among sst2, agnews, .*, got nope$", env=NOWHERE),
    BadCLI("kexue data fetch", "--timeout 0", lambda d: ["data", "fetch", "sick", "--timeout", "0"], 2,
           r"^kexue data fetch: argument --timeout: expected a positive finite number, got 0"),
    BadCLI("kexue data fetch", "--mirror not a URL", lambda d: ["data", "fetch", "sick", "--mirror", "mirror.example"],
           2, r"^kexue data fetch: expected mirror to be a URL .*got 'mirror\.example'$", env=NOWHERE),
    BadCLI("kexue data fetch", "$KEXUE_DATA_MIRROR not a URL", lambda d: ["data", "fetch", "sick"], 2,
           r"^kexue data fetch: expected \$KEXUE_DATA_MIRROR to be a URL .*got 'ftp:/x'$",
           env={**NOWHERE, MIRROR_ENV: "ftp:/x"}),
    BadCLI("kexue data fetch", "unreachable mirror",
           lambda d: ["data", "fetch", "sick", "--mirror", f"http://127.0.0.1:{_closed_port()}", "--timeout", "5"], 1,
           r"^kexue data fetch: cannot fetch data set 'sick', file sick/SICK\.txt: cannot reach http://127\.0\.0\.1:\d+/"
           r"kkalouli/SICK-processing/", env=NOWHERE),
    BadCLI("kexue data fetch", "corrupt file on the mirror", _corrupt_mirror, 1,
           rf"^kexue data fetch: cannot fetch data set 'sick', file sick/SICK\.txt: checksum mismatch: expected sha256 "
           rf"{SICK.files[0].sha256}, got ", env=NOWHERE),
    BadCLI("kexue data fetch", "$KEXUE_DATA a file", lambda d: _touch(d, "afile", ["data", "fetch", "sick"]), 2,
           r"^kexue data fetch: expected the data folder .* to be a folder, got the file afile$",
           env={"KEXUE_DATA": "afile"}),
    BadCLI("kexue data fetch", "$KEXUE_DATA under a file", lambda d: _touch(d, "afile", ["data", "fetch", "sick"]), 1,
           r"^kexue data fetch: cannot fetch data set 'sick', file sick/SICK\.txt: cannot create afile/d/sick: Not a "
           r"directory$", env={"KEXUE_DATA": "afile/d"}),
    BadCLI("kexue reproduce", "unknown names", lambda d: ["reproduce", "gelu", "nope", "--out", "r"], 2,
           r"^kexue reproduce: expected reproductions among accumulation, .*gelu, .*, got nope$"),
    BadCLI("kexue reproduce", "without --out", lambda d: QUICK, 2,
           r"^kexue reproduce: expected --out DIR \(where index\.html and results\.json go\), got none$"),
    BadCLI("kexue reproduce", "--jobs 0", lambda d: [*QUICK, "--out", "r", "--jobs", "0"], 2,
           r"^kexue reproduce: argument --jobs: expected a positive integer, got 0"),
    BadCLI("kexue reproduce", "--jobs not a number", lambda d: [*QUICK, "--out", "r", "--jobs", "all"], 2,
           r"^kexue reproduce: argument --jobs: expected a positive integer, got 'all'"),
    BadCLI("kexue reproduce", "--out a file", lambda d: _touch(d, "report", [*QUICK, "--out", "report"]), 2,
           r"^kexue reproduce: expected --out to be a folder it can write in, got 'report': it is a file$"),
    BadCLI("kexue reproduce", "--out under a file", lambda d: _touch(d, "report", [*QUICK, "--out", "report/x"]), 2,
           r"^kexue reproduce: expected --out to be a folder it can write in, got 'report/x': Not a directory$"),
    BadCLI("kexue reproduce", "--list with names", lambda d: ["reproduce", "--list", "gelu"], 2,
           r"^kexue reproduce: expected no NAME with --list, got gelu$"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)


@pytest.mark.parametrize("row", CLI_ROWS, ids=lambda r: r.id)
def test_cli_refuses(row, tmp_path):
    proc = check_cli(row, tmp_path)
    if row.env and row.env.get("KEXUE_DATA") == "data":
        assert not (tmp_path / "data").exists(), "a refused fetch left a data folder behind"
    if row.entry == "kexue reproduce":
        assert proc.stdout == "", "a refused run started work"
