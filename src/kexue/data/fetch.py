"""``kexue data``: list the registered data sets and fetch them from their pinned public sources.

Each file is downloaded from ``{mirror}/{repo}/{commit}/{source}`` (see :mod:`kexue.data.registry`), unpacked where
the registry says so, checked against its SHA-256 and only then moved into place with ``os.replace`` from a
temporary file in the same folder (:func:`kexue._io.atomic_path`). On any failure the temporary files are removed,
so the data folder never holds a partial file; files of the set already verified stay, and the next fetch skips
them. Errors are one line (:class:`FetchError`) naming the set, the file and what went wrong or could not be
reached.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .._io import atomic_path
from .._validate import check_float, positive_float_arg
from .registry import REGISTRY, DataFile, DataSet, UnknownData, Unpack, _as_path, get, resolve_mirror

#: Seconds to wait for a connection, and for each read once connected, before giving up.
TIMEOUT = 10.0
_CHUNK = 1 << 16


class FetchError(RuntimeError):
    """A file of a set could not be fetched; the message is one line naming the set, the file and the cause."""

    def __init__(self, name: str, path: str, reason: str) -> None:
        self.name, self.path, self.reason = name, path, " ".join(reason.split())
        super().__init__(f"cannot fetch data set {name!r}, file {path}: {self.reason}")


class _Failure(Exception):
    """A cause, turned into a :class:`FetchError` by the caller that knows the set and the file."""


def _sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(names: Iterable[str | DataSet], folder: str | Path | None = None, *, mirror: str | None = None,
          timeout: float = TIMEOUT, progress: bool | None = None,
          log: Callable[[str], None] = print) -> list[Path]:
    """Fetch each named set (or :class:`DataSet`) into ``folder`` (default :func:`kexue.env.data_dir`).

    Files already there with the right checksum are kept. ``mirror`` replaces the base URL (else
    ``$KEXUE_DATA_MIRROR``, else GitHub's raw server). ``progress``: a tqdm bar per file (default: when standard
    error is a terminal). Returns the paths of the sets' files; raises before any download :class:`UnknownData`
    for an unknown name, ``TypeError`` for ``names`` given as one string or holding something else than names and
    sets, ``ValueError`` for a mirror that is not a URL or a timeout that is not > 0; :class:`FetchError` at the
    first file that fails (unreachable, corrupt, or a folder it cannot write in: nothing partial is left).
    """
    timeout = check_float("timeout", timeout, low=0.0, low_open=True)
    if isinstance(names, (str, bytes)):
        raise TypeError(f"expected names to be a list of set names or DataSets, got the {type(names).__name__} "
                        f"{names!r} (write [{names!r}])")
    names = list(names)
    odd = [(i, n) for i, n in enumerate(names) if not isinstance(n, (str, DataSet))]
    if odd:
        i, n = odd[0]
        raise TypeError(f"expected names to hold set names (str) or DataSets, got {n!r} ({type(n).__name__}) at "
                        f"index {i}")
    unknown = [n for n in names if isinstance(n, str) and n not in REGISTRY]
    if unknown:
        raise UnknownData(unknown)
    mirror = resolve_mirror(mirror)
    if folder is None:
        from ..env import data_dir

        folder = data_dir()
    folder = _as_path("folder", folder)
    if progress is None:
        progress = sys.stderr.isatty()
    out: list[Path] = []
    for item in names:
        out += _fetch_set(get(item) if isinstance(item, str) else item, folder, mirror=mirror,
                          timeout=timeout, progress=progress, log=log)
    return out


def _fetch_set(ds: DataSet, folder: Path, *, mirror: str | None, timeout: float, progress: bool,
               log: Callable[[str], None]) -> list[Path]:
    """Fetch the files of one set that are absent or fail their checksum; print the terms first."""
    todo = [f for f in ds.files if not _verified(folder / f.path, f)]
    if not todo:
        log(f"{ds.name}: already present in {folder / ds.name}")
        return [folder / f.path for f in ds.files]
    log(ds.terms)
    log(f"{ds.name}: fetching {len(todo)} file(s), {_human(sum(f.size for f in todo))}, from {ds.repo}@"
        f"{ds.commit[:12]} into {folder / ds.name}")
    for f in todo:
        try:
            _fetch_file(ds, f, folder, mirror, timeout, progress)
        except _Failure as e:
            raise FetchError(ds.name, f.path, str(e)) from None
    log(f"{ds.name}: done, {len(ds.files)} file(s) verified")
    return [folder / f.path for f in ds.files]


def _verified(path: Path, f: DataFile) -> bool:
    return path.is_file() and path.stat().st_size == f.size and _sha256_file(path) == f.sha256


def _fetch_file(ds: DataSet, f: DataFile, folder: Path, mirror: str | None, timeout: float, progress: bool) -> None:
    dest = folder / f.path
    url = ds.url(f, mirror)
    created = _make_parents(dest.parent)
    done = False
    try:
        with atomic_path(dest, suffix=".part") as stored:
            if f.unpack:
                with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as scratch:
                    raw = Path(scratch) / "download"
                    _download(url, raw, timeout, progress, f.path)
                    _unpack(f.unpack, raw, stored, url)
            else:
                _download(url, stored, timeout, progress, f.path)
            digest = _sha256_file(stored)
            if digest != f.sha256:
                raise _Failure(f"checksum mismatch: expected sha256 {f.sha256}, got {digest} from {url}")
        done = True
    except OSError as e:  # writing the temporary file or moving it into place (its name would only confuse)
        raise _Failure(f"cannot write in {dest.parent}: {e.strerror or e}") from None
    finally:
        if not done:
            for d in reversed(created):
                try:
                    d.rmdir()
                except OSError:
                    break


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, outermost first."""
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _Failure(f"cannot create {folder}: {e.strerror or e}") from None
    return list(reversed(missing))


def _download(url: str, path: Path, timeout: float, progress: bool, label: str) -> None:
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "kexue-data-fetch"})
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp, open(path, "wb") as out:
            length = resp.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            with tqdm(total=expected, unit="B", unit_scale=True, desc=label, disable=not progress,
                      leave=False) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise _Failure(f"{url} answered HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _Failure(f"cannot reach {url}: {e.reason}") from None
    except TimeoutError:
        raise _Failure(f"no answer from {url} within {timeout:g} s") from None
    except (http.client.HTTPException, ConnectionError) as e:
        raise _Failure(f"transfer from {url} broke off after {received} bytes: {e!r}") from None
    if expected is not None and received != expected:
        raise _Failure(f"transfer from {url} ended early: expected {expected} bytes, got {received}")


def _unpack(how: Unpack, src: Path, dest: Path, url: str) -> None:
    try:
        if how == "gunzip":
            with gzip.open(src, "rb") as fin, open(dest, "wb") as fout:
                shutil.copyfileobj(fin, fout, _CHUNK)
        else:  # "unzip" (DataFile checked the step when it was built)
            with zipfile.ZipFile(src) as z:
                members = [m for m in z.infolist() if not m.is_dir()]
                if len(members) != 1:
                    raise _Failure(f"cannot unzip what {url} gave: expected one member, got {len(members)}")
                with z.open(members[0]) as fin, open(dest, "wb") as fout:
                    shutil.copyfileobj(fin, fout, _CHUNK)
    except (gzip.BadGzipFile, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise _Failure(f"cannot {how} what {url} gave: {e}") from None


def _human(n: int) -> str:
    x = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if x < 1000 or unit == "GB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1000
    raise AssertionError


def status(ds: DataSet | str, folder: str | Path) -> str:
    """``present``, ``absent`` or ``partial (k of n files)`` for the set ``ds`` (or its registered name) in
    ``folder``, from file sizes (checksums are not read). :class:`UnknownData` for a name not registered."""
    if isinstance(ds, str):
        ds = get(ds)
    elif not isinstance(ds, DataSet):
        raise TypeError(f"expected ds to be a DataSet or a registered set name, got {ds!r} ({type(ds).__name__})")
    missing = len(ds.missing(_as_path("folder", folder)))
    if missing == 0:
        return "present"
    if missing == len(ds.files):
        return "absent"
    return f"partial ({len(ds.files) - missing} of {len(ds.files)} files)"


def _list_lines(folder: Path) -> list[str]:
    """The table ``kexue data list`` prints: name, size, status, where, licence."""
    rows = [(d.name, _human(d.size), status(d, folder), str(folder / d.name),
             ("research only: " if d.research_only else "") + d.licence) for d in REGISTRY.values()]
    head = ("name", "size", "status", "where", "licence or terms")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths) + "  {}"
    return [fmt.format(*head), *(fmt.format(*r) for r in rows)]


def _data_folder(command: str) -> Path | None:
    """The data folder for ``kexue data COMMAND``; ``None`` after printing one line when it is a file."""
    from ..env import DATA_ENV, data_dir

    folder = data_dir()
    if folder.exists() and not folder.is_dir():
        print(f"kexue data {command}: expected the data folder (${DATA_ENV}, else the per-user cache) to be a folder, "
              f"got the file {folder}", file=sys.stderr)
        return None
    return folder


def _cmd_list(args: Any) -> int:
    from ..env import DATA_ENV

    folder = _data_folder("list")
    if folder is None:
        return 2
    source = f"${DATA_ENV}" if os.environ.get(DATA_ENV) else f"the per-user cache; ${DATA_ENV} is unset"
    print(f"data folder: {folder} ({source})")
    print("\n".join(_list_lines(folder)))
    print("fetch with: kexue data fetch NAME... | --all")
    return 0


def _cmd_fetch(args: Any) -> int:
    if bool(args.names) == bool(args.all):
        got = "both" if args.all else "neither"
        print(f"kexue data fetch: expected set names or --all (see `kexue data list`), got {got}", file=sys.stderr)
        return 2
    names = list(REGISTRY) if args.all else args.names
    folder = _data_folder("fetch")
    if folder is None:
        return 2
    try:
        resolve_mirror(args.mirror)  # the checks fetch makes first, so a bad URL is a usage error (exit 2)
    except ValueError as e:
        print(f"kexue data fetch: {e}", file=sys.stderr)
        return 2
    try:
        fetch(names, folder, mirror=args.mirror, timeout=args.timeout, log=lambda s: print(s, flush=True))
    except UnknownData as e:
        print(f"kexue data fetch: {e}", file=sys.stderr)
        return 2
    except FetchError as e:
        print(f"kexue data fetch: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kexue data fetch: interrupted (nothing partial was left behind)", file=sys.stderr)
        return 130
    return 0


def add_parser(sub: Any) -> None:
    """Register ``kexue data list`` and ``kexue data fetch`` on an argparse sub-parser collection."""
    p = sub.add_parser("data", help="list the registered data sets and fetch them",
                       description="The data folder is $KEXUE_DATA, else the per-user cache "
                       "($XDG_CACHE_HOME/kexue/data or ~/.cache/kexue/data).")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    pl = dsub.add_parser("list", help="every registered set: size, present or not, where, licence")
    pl.set_defaults(func=_cmd_list)
    pf = dsub.add_parser("fetch", help="download sets from their pinned public sources, checked by SHA-256",
                         description="Download each set's files from its pinned GitHub commit into the data folder, "
                         "verify every SHA-256 and move each file into place only when it verifies. "
                         "Exit status: 0 done, 1 a file could not be fetched, 2 bad arguments.")
    pf.add_argument("names", nargs="*", metavar="NAME", help="sets to fetch (see `kexue data list`)")
    pf.add_argument("--all", action="store_true", help="fetch every registered set")
    pf.add_argument("--mirror", metavar="URL", default=None,
                    help="base URL with the layout URL/REPO/COMMIT/PATH (default: $KEXUE_DATA_MIRROR, else "
                    "https://raw.githubusercontent.com)")
    pf.add_argument("--timeout", type=positive_float_arg, default=TIMEOUT, metavar="SECONDS",
                    help=f"give up on a connection or a stalled read after this long (default: {TIMEOUT:g})")
    pf.set_defaults(func=_cmd_fetch)


__all__ = ["TIMEOUT", "FetchError", "add_parser", "fetch", "status"]
