"""``kexue._io.atomic_path``: the one atomic writer (report, save_pretrained and data fetch use it)."""

from __future__ import annotations

import os
import stat

import pytest

from kexue._io import atomic_path

#: The umask and the file behind a descriptor are read from /proc (Linux).
needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc")


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_success_replaces_the_destination(tmp_path):
    dest = tmp_path / "out.json"
    dest.write_text("old")
    with atomic_path(dest) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.json.") and tmp.exists()
        tmp.write_text("new")
        assert dest.read_text() == "old"  # nothing visible until the block ends
    assert dest.read_text() == "new" and _listing(tmp_path) == ["out.json"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_an_error_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    dest = tmp_path / "model.safetensors"
    dest.write_bytes(b"old")
    with pytest.raises(error):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half of the new")
            raise error
    assert dest.read_bytes() == b"old" and _listing(tmp_path) == ["model.safetensors"]


def test_an_error_before_any_file_existed_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        with atomic_path(tmp_path / "a.png", suffix=".part") as tmp:
            assert tmp.name.endswith(".part")
            raise OSError("disk full")
    assert _listing(tmp_path) == []


@needs_proc
def test_permissions_are_those_of_a_plain_write_or_of_the_replaced_file(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")  # what open() gives under this process's umask
    with atomic_path(tmp_path / "new") as tmp:
        tmp.write_text("x")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    os.chmod(plain, 0o640)
    with atomic_path(plain) as tmp:
        tmp.write_text("y")
    assert stat.S_IMODE(plain.stat().st_mode) == 0o640 and plain.read_text() == "y"


@needs_proc
def test_fsync_flushes_the_file_and_then_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.path.realpath(f"/proc/self/fd/{fd}")) or real(fd))
    dest = tmp_path / "index.html"
    with atomic_path(dest, fsync=True) as tmp:
        tmp.write_text("<p>")
        name = str(tmp)
    assert synced == [os.path.realpath(name), os.path.realpath(tmp_path)]
    synced.clear()
    with atomic_path(dest) as tmp:
        tmp.write_text("<p>")
    assert synced == [] and dest.read_text() == "<p>"
