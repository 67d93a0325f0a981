"""The data registry against the stored data folder's SHA256SUMS, the data folder's location, and MissingData."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, get_args

import pytest

from kexue.data.registry import (
    DATASETS,
    DEFAULT_MIRROR,
    MIRROR_ENV,
    REGISTRY,
    UNPACK,
    DataFile,
    DataSet,
    MissingData,
    UnknownData,
    Unpack,
    get,
    require_data,
)
from kexue.env import data_dir

CHECKOUT = Path(__file__).resolve().parents[2]
SHARED_DATA = CHECKOUT.parent / "shared" / "data"


def _sums_file() -> Path | None:
    for folder in (SHARED_DATA, data_dir()):
        if (folder / "SHA256SUMS").is_file():
            return folder / "SHA256SUMS"
    return None


def _stored_sums(path: Path) -> dict[str, str]:
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*").removeprefix("./")] = digest
    return sums


@pytest.mark.skipif(_sums_file() is None, reason=f"no SHA256SUMS in {SHARED_DATA} nor in $KEXUE_DATA")
def test_registry_matches_stored_checksums_and_sizes():
    sums_path = _sums_file()
    sums = _stored_sums(sums_path)
    registered = {f.path: f for d in DATASETS for f in d.files}
    assert sorted(set(sums) - set(registered)) == [], "stored files missing from the registry"
    assert sorted(set(registered) - set(sums)) == [], "registered files missing from SHA256SUMS"
    wrong = [p for p, f in registered.items() if f.sha256 != sums[p]]
    assert wrong == []
    folder = sums_path.parent
    sizes = [p for p, f in registered.items() if (folder / p).stat().st_size != f.size]
    assert sizes == []
    # Every folder of the data folder is a registered set.
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(REGISTRY)


def test_table_is_well_formed():
    assert len(REGISTRY) == len(DATASETS) >= 15
    for d in DATASETS:
        assert re.fullmatch(r"[0-9a-f]{40}", d.commit) and "/" in d.repo
        assert d.licence and "\n" not in d.licence and d.size == sum(f.size for f in d.files) > 0
        for f in d.files:
            assert f.path.startswith(d.name + "/") and not f.source.startswith("/")
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256)
    assert not REGISTRY["squad_v1.1"].research_only and REGISTRY["conll2003"].research_only


def test_decompression_steps():
    stsb, squad = REGISTRY["stsb_en"].files[0], REGISTRY["squad_v1.1"].files[0]
    assert (stsb.path, stsb.unpack) == ("stsb_en/stsbenchmark.tsv", "gunzip")
    assert stsb.source == "examples/data/English-STS-B/stsbenchmark.tsv.gz"
    assert (squad.path, squad.source, squad.unpack) == ("squad_v1.1/dev-v1.1.json", "dev-v1.1.json.zip", "unzip")
    others = [f.path for d in DATASETS for f in d.files if f.unpack and d.name not in ("stsb_en", "squad_v1.1")]
    assert others == []


def test_url_from_repo_commit_path_and_mirror(monkeypatch):
    d = REGISTRY["sst2"]
    f = next(f for f in d.files if f.path == "sst2/dev.tsv")
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert d.url(f) == f"{DEFAULT_MIRROR}/forest-snow/alps/3c7ef2c98249fc975a897b27f275695f97d5b7a9/data/SST-2/dev.tsv"
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9/m/")
    assert d.url(f).startswith("http://127.0.0.1:9/m/forest-snow/alps/")
    assert d.url(f, mirror="http://x").startswith("http://x/forest-snow/")  # the argument beats the variable


def test_unknown_name_lists_known_ones():
    with pytest.raises(UnknownData, match="^expected data set names among sst2, agnews, .*dureader_robust, got nope$"):
        get("nope")


def test_entries_are_checked_when_built():
    good = DataFile("x/a.txt", "a.txt", 3, "0" * 64)
    bad_unpack: Any = "untar"
    with pytest.raises(ValueError, match=r"^expected unpack of x/a.txt to be one of \[None, 'gunzip', 'unzip'\], got"):
        DataFile("x/a.txt", "a.txt", 3, "0" * 64, bad_unpack)
    with pytest.raises(ValueError, match=r"^x/a.txt: expected sha256 to be 64 lowercase hex digits, got 'ABC'$"):
        DataFile("x/a.txt", "a.txt", 3, "ABC")
    with pytest.raises(ValueError, match=r"^x/a.txt: expected size > 0 bytes, got 0$"):
        DataFile("x/a.txt", "a.txt", 0, "0" * 64)
    with pytest.raises(ValueError, match=r"^data set 'x': expected commit to be 40 lowercase hex digits, got 'main'$"):
        DataSet("x", "o/r", "main", "MIT", False, (good,))
    with pytest.raises(ValueError, match=r"^data set 'x': expected at least one file, got none$"):
        DataSet("x", "o/r", "0" * 40, "MIT", False, ())
    with pytest.raises(ValueError, match=r"^data set 'y': expected file paths under y/, got \['x/a.txt'\]$"):
        DataSet("y", "o/r", "0" * 40, "MIT", False, (good,))
    assert UNPACK == (None, *get_args(Unpack))


def test_data_dir_env_then_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d"
    monkeypatch.delenv("KEXUE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "kexue" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / ".cache" / "kexue" / "data"
    monkeypatch.setenv("KEXUE_DATA", "")  # empty counts as unset
    assert data_dir() == tmp_path / "home" / ".cache" / "kexue" / "data"


def test_library_never_looks_beside_the_checkout(monkeypatch, tmp_path):
    monkeypatch.delenv("KEXUE_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert CHECKOUT.parent not in data_dir().parents and "shared" not in data_dir().parts


def test_missing_data_message_command_and_pickle(monkeypatch, tmp_path):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    e = MissingData("sst2", tmp_path, "no sst2/dev.tsv")
    assert isinstance(e, FileNotFoundError) and e.command == "kexue data fetch sst2"
    assert str(e) == (f"data set 'sst2' is not in {tmp_path} (no sst2/dev.tsv): fetch it with "
                      "`kexue data fetch sst2` (or set KEXUE_DATA to a folder that has it)")
    back = pickle.loads(pickle.dumps(e))
    assert (type(back), str(back), back.command) == (MissingData, str(e), e.command)
    other = MissingData("sick", tmp_path / "elsewhere")  # not the data folder: the command says where
    assert other.command == f"KEXUE_DATA={tmp_path / 'elsewhere'} kexue data fetch sick"


def test_require_data_raises_missing_data(monkeypatch, tmp_path):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    with pytest.raises(MissingData) as e:
        require_data("goemotions", "labels.txt")
    assert e.value.name == "goemotions" and e.value.command == "kexue data fetch goemotions"
    assert str(tmp_path / "goemotions" / "labels.txt") in str(e.value)
    (tmp_path / "goemotions").mkdir()
    (tmp_path / "goemotions" / "labels.txt").write_text("a\n")
    assert require_data("goemotions", "labels.txt") == tmp_path / "goemotions" / "labels.txt"
    assert os.environ["KEXUE_DATA"] == str(tmp_path)


def test_require_data_needs_a_name():
    with pytest.raises(ValueError, match=r"^expected the data set's name \(its folder\) .*, got no parts$"):
        require_data()
