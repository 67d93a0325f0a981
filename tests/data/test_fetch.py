"""``kexue data fetch`` against a local HTTP server on 127.0.0.1 serving tiny files, and the ``kexue data`` CLI."""

from __future__ import annotations

import gzip
import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kexue.cli import main
from kexue.data.fetch import FetchError, _list_lines, fetch, status
from kexue.data.registry import REGISTRY, DataFile, DataSet, UnknownData

REPO, COMMIT = "someone/tiny", "0123456789abcdef0123456789abcdef01234567"
PLAIN = b"sentence\tlabel\nfine\t1\n"
NESTED = "第二个文件\n".encode()
GZ_INNER = b"split\tscore\ntest\t4.0\n" * 20
ZIP_INNER = b'{"version": "1.1", "data": []}'


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


class Server:
    """A bounded HTTP server in a daemon thread: ``files`` maps a URL path to (body, mode); it stops itself when the
    test ends (or after ``max_requests``). Modes: ``ok``; ``truncate`` (announces the full length, sends half)."""

    def __init__(self, max_requests: int = 50) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's method name
                server.requests.append(self.path)
                if self.path not in server.files:
                    self.send_error(404)
                    return
                body, mode = server.files[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if mode == "truncate" else body)
                if mode == "truncate":
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 0.1
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._stop = threading.Event()
        self._max = max_requests
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set() and len(self.requests) < self._max:
            self.httpd.handle_request()

    def put(self, source: str, body: bytes, mode: str = "ok") -> None:
        self.files[f"/{REPO}/{COMMIT}/{source}"] = (body, mode)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


def _tiny(files: list[DataFile], research_only: bool = True) -> DataSet:
    return DataSet("tiny", REPO, COMMIT, "CC BY-NC 4.0 (test data)", research_only, tuple(files))


def _plain(sha: str | None = None) -> DataFile:
    return DataFile("tiny/train.tsv", "data/train.tsv", len(PLAIN), sha or _sha(PLAIN))


def _everything(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_fetch_plain_nested_gz_zip(server, tmp_path):
    server.put("data/train.tsv", PLAIN)
    server.put("data/sub/b.txt", NESTED)
    server.put("data/s.tsv.gz", gzip.compress(GZ_INNER))
    server.put("dev.json.zip", _zip({"dev.json": ZIP_INNER}))
    ds = _tiny([_plain(), DataFile("tiny/sub/b.txt", "data/sub/b.txt", len(NESTED), _sha(NESTED)),
                DataFile("tiny/s.tsv", "data/s.tsv.gz", len(GZ_INNER), _sha(GZ_INNER), "gunzip"),
                DataFile("tiny/dev.json", "dev.json.zip", len(ZIP_INNER), _sha(ZIP_INNER), "unzip")])
    log: list[str] = []
    paths = fetch([ds], tmp_path, mirror=server.url, log=log.append)
    assert [p.read_bytes() for p in paths] == [PLAIN, NESTED, GZ_INNER, ZIP_INNER]
    assert _everything(tmp_path) == ["tiny", "tiny/dev.json", "tiny/s.tsv", "tiny/sub", "tiny/sub/b.txt",
                                     "tiny/train.tsv"]  # no temporary file left
    assert "Research use only" in log[0] and "CC BY-NC 4.0" in log[0]  # the terms come before any download
    assert status(ds, tmp_path) == "present" and len(server.requests) == 4
    log.clear()
    fetch([ds], tmp_path, mirror=server.url, log=log.append)  # all verified: nothing downloaded again
    assert len(server.requests) == 4 and log == [f"tiny: already present in {tmp_path / 'tiny'}"]


def test_no_terms_for_an_open_set_and_a_bad_file_is_replaced(server, tmp_path):
    server.put("data/train.tsv", PLAIN)
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "train.tsv").write_bytes(b"x" * len(PLAIN))  # right size, wrong bytes
    ds = _tiny([_plain()], research_only=False)
    assert status(ds, tmp_path) == "present"  # status reads sizes only; fetch reads checksums
    log: list[str] = []
    fetch([ds], tmp_path, mirror=server.url, log=log.append)
    assert (tmp_path / "tiny" / "train.tsv").read_bytes() == PLAIN
    assert "Research use only" not in log[0] and _everything(tmp_path) == ["tiny", "tiny/train.tsv"]


def _fails(ds: DataSet, folder, mirror: str, match: str) -> FetchError:
    with pytest.raises(FetchError, match=match) as e:
        fetch([ds], folder, mirror=mirror, log=lambda s: None, timeout=5)
    msg = str(e.value)
    assert "\n" not in msg and "'tiny'" in msg and "tiny/" in msg  # one line naming the set and the file
    assert _everything(folder) == []  # nothing left behind: no partial file, no temporary file, no new folder
    return e.value


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    server.put("data/train.tsv", PLAIN)
    want = f"checksum mismatch: expected sha256 {'0' * 64}, got"
    e = _fails(_tiny([_plain(sha="0" * 64)]), tmp_path, server.url, want)
    assert e.path == "tiny/train.tsv" and _sha(PLAIN) in str(e)


def test_truncated_transfer_leaves_nothing(server, tmp_path):
    server.put("data/train.tsv", PLAIN, mode="truncate")
    _fails(_tiny([_plain()]), tmp_path, server.url, f"ended early: expected {len(PLAIN)} bytes, got {len(PLAIN) // 2}")


def test_missing_file_on_server(server, tmp_path):
    _fails(_tiny([_plain()]), tmp_path, server.url, "HTTP 404")


def test_bad_archives_leave_nothing(server, tmp_path):
    server.put("data/s.tsv.gz", gzip.compress(GZ_INNER)[:-9])  # cut inside the gzip trailer
    _fails(_tiny([DataFile("tiny/s.tsv", "data/s.tsv.gz", len(GZ_INNER), _sha(GZ_INNER), "gunzip")]), tmp_path,
           server.url, "cannot gunzip")
    server.put("two.zip", _zip({"a.json": ZIP_INNER, "b.json": ZIP_INNER}))
    _fails(_tiny([DataFile("tiny/a.json", "two.zip", len(ZIP_INNER), _sha(ZIP_INNER), "unzip")]), tmp_path,
           server.url, "expected one member, got 2")


def test_server_gone_fails_fast_naming_what(tmp_path):
    gone = Server()
    url = gone.url
    gone.stop()
    e = _fails(_tiny([_plain()]), tmp_path, url, "cannot reach")
    assert f"{url}/{REPO}/{COMMIT}/data/train.tsv" in str(e)


def test_earlier_verified_files_stay_when_a_later_one_fails(server, tmp_path):
    server.put("data/train.tsv", PLAIN)
    ds = _tiny([_plain(), DataFile("tiny/gone.txt", "data/gone.txt", 3, "0" * 64)])
    with pytest.raises(FetchError, match="tiny/gone.txt: .*HTTP 404"):
        fetch([ds], tmp_path, mirror=server.url, log=lambda s: None)
    assert _everything(tmp_path) == ["tiny", "tiny/train.tsv"] and status(ds, tmp_path) == "partial (1 of 2 files)"


def test_mirror_from_environment(server, tmp_path, monkeypatch):
    server.put("data/train.tsv", PLAIN)
    monkeypatch.setenv("KEXUE_DATA_MIRROR", server.url)
    fetch([_tiny([_plain()])], tmp_path, log=lambda s: None)
    assert (tmp_path / "tiny" / "train.tsv").read_bytes() == PLAIN


def test_unknown_name_fails_before_any_download(tmp_path):
    with pytest.raises(UnknownData, match="^expected data set names among sst2, agnews, .*, got nope, nada$"):
        fetch(["sst2", "nope", "nada"], tmp_path, mirror="http://127.0.0.1:9")
    assert _everything(tmp_path) == []


def test_bad_timeout_fails_before_any_download(tmp_path):
    with pytest.raises(ValueError, match=r"^expected timeout > 0.0, got 0$"):
        fetch(["sst2"], tmp_path, mirror="http://127.0.0.1:9", timeout=0)
    assert _everything(tmp_path) == []


# --- the CLI ---------------------------------------------------------------------------------------------------

def test_cli_list_empty_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"data folder: {tmp_path} ($KEXUE_DATA)"
    assert out[1].split() == ["name", "size", "status", "where", "licence", "or", "terms"]
    rows = {line.split()[0]: line for line in out[2:-1]}
    assert list(rows) == list(REGISTRY)
    assert all(" absent " in r and str(tmp_path / n) in r for n, r in rows.items())
    assert "CC BY-SA 4.0" in rows["squad_v1.1"] and "research only" in rows["sick"]
    assert out[-1] == "fetch with: kexue data fetch NAME... | --all"


def test_list_shows_present_sets(tmp_path):
    d = REGISTRY["goemotions"]
    f = next(f for f in d.files if f.path == "goemotions/labels.txt")
    (tmp_path / "goemotions").mkdir()
    (tmp_path / "goemotions" / "labels.txt").write_bytes(b"x" * f.size)
    line = next(line for line in _list_lines(tmp_path) if line.startswith("goemotions "))
    assert f"partial (1 of {len(d.files)} files)" in line


def test_cli_fetch_unknown_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    assert main(["data", "fetch", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kexue data fetch: expected data set names among sst2, agnews, ")
    assert err.endswith(", got nope\n")
    assert main(["data", "fetch"]) == 2
    assert capsys.readouterr().err == ("kexue data fetch: expected set names or --all (see `kexue data list`), got "
                                       "neither\n")
    assert main(["data", "fetch", "sst2", "--all"]) == 2
    assert capsys.readouterr().err.endswith("got both\n")


def test_cli_fetch_unreachable_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    gone = Server()
    gone.stop()
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path / "data"))
    assert main(["data", "fetch", "sick", "--mirror", gone.url]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("kexue data fetch: cannot fetch data set 'sick', file sick/SICK.txt: cannot reach "
                                   f"{gone.url}/kkalouli/SICK-processing/")
    assert "CC BY-NC-SA 3.0" in captured.out  # the terms were printed before the attempt
    assert not (tmp_path / "data").exists()


def test_status_takes_a_registered_name(tmp_path):
    assert status("goemotions", tmp_path) == status(REGISTRY["goemotions"], str(tmp_path)) == "absent"


def test_cli_checks_timeout_mirror_and_folder_before_printing_terms(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path / "data"))
    with pytest.raises(SystemExit) as e:
        main(["data", "fetch", "sick", "--timeout", "0"])
    assert e.value.code == 2
    assert main(["data", "fetch", "sick", "--mirror", "example.org/mirror"]) == 2
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path / "afile"))
    assert main(["data", "fetch", "sick"]) == 2 and main(["data", "list"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not (tmp_path / "data").exists()
    assert captured.err.splitlines()[1:] == [
        "kexue data fetch: expected mirror to be a URL like https://HOST/PATH or file:///FOLDER (schemes http, https, "
        "ftp, file), got 'example.org/mirror'",
        "kexue data fetch: expected the data folder ($KEXUE_DATA, else the per-user cache) to be a folder, got the "
        f"file {tmp_path / 'afile'}",
        "kexue data list: expected the data folder ($KEXUE_DATA, else the per-user cache) to be a folder, got the "
        f"file {tmp_path / 'afile'}"]
