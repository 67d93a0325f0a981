"""Classification loaders: row counts and label sets as the data README lists them."""

from __future__ import annotations

from typing import Any, get_args

import numpy as np
import pytest

from kexue.data import classification as C
from kexue.data.registry import MissingData


@pytest.mark.parametrize("name,split,rows,classes", [
    ("sst2", "train", 60614, 2), ("sst2", "dev", 6735, 2), ("sst2", "test", 872, 2),
    ("agnews", "dev", 10001, 4), ("agnews", "test", 7600, 4),
    ("chnsenticorp", "train", 9600, 2), ("chnsenticorp", "test", 1200, 2),
    ("smp2020_ewect", "train", 27766, 6), ("smp2020_ewect", "test", 5000, 6),
    ("tnews", "train", 1185, 15), ("tnews", "test", 2010, 15),
    ("iflytek", "train", 3024, None), ("eprstmt", "test", 610, 2),
])
def test_counts(data_root, name, split, rows, classes):
    d = C.load(name, split)
    assert len(d) == rows == len(d.labels)
    if classes is not None:
        assert d.num_classes == classes
    assert d.labels.min() >= 0 and d.labels.max() < d.num_classes
    assert all(isinstance(t, str) and t for t in d.texts[:100])


def test_sst2_test_balance(data_root):
    assert np.bincount(C.sst2("test").labels).tolist() == [428, 444]


def test_agnews_test_balanced(data_root):
    assert np.bincount(C.agnews("test").labels).tolist() == [1900] * 4


def test_goemotions_multilabel(data_root):
    d = C.goemotions("train")
    assert d.labels.shape == (43410, 28) and d.label_names[27] == "neutral"
    per_row = d.labels.sum(1)
    assert np.bincount(per_row).tolist() == [0, 36308, 6541, 532, 28, 1]


def test_subsample_is_seeded(data_root):
    d = C.sst2("dev")
    a, b = d.subsample(50, seed=3), d.subsample(50, seed=3)
    assert a.texts == b.texts and len(a) == 50
    assert d.subsample(10**6) is d


def test_bad_names():
    bad: Any = "imdb"
    with pytest.raises(ValueError, match=r"^expected name to be one of \['sst2', 'agnews', .*'eprstmt'\], got 'imdb'$"):
        C.load(bad, "train")
    train: Any = "train"
    with pytest.raises(ValueError, match=r"^expected split to be one of \['dev', 'test'\], got 'train'$"):
        C.agnews(train)
    with pytest.raises(ValueError, match=r"^expected split to be one of \['train', 'dev', 'test'\], got 'valid'$"):
        C.load("sst2", "valid")
    task: Any = "afqmc"
    with pytest.raises(ValueError, match=r"^expected task to be one of \['tnews', 'iflytek', 'eprstmt'\], got 'afqmc'"):
        C.fewclue(task)
    with pytest.raises(ValueError, match=r"^expected n >= 1, got 0$"):
        C.LabelledTexts("toy", "dev", ["a"], np.zeros(1)).subsample(0)
    assert tuple(C.LOADERS) == get_args(C.LabelledSet)


def test_malformed_row_names_file_and_line(tmp_path, monkeypatch):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "dev.tsv").write_text("sentence\tlabel\ngood\t1\nbad row without tab\n")
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    with pytest.raises(ValueError, match=r"dev.tsv, line 3: expected 2 tab-separated fields, got 1"):
        C.sst2("dev")


def test_missing_folder_names_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError, match="KEXUE_DATA"):
        C.sst2("dev")


# Each loader, the registered set it reads, and a split it has.
SETS = {"sst2": ("sst2", "dev"), "agnews": ("agnews", "test"), "goemotions": ("goemotions", "dev"),
        "chnsenticorp": ("chnsenticorp", "dev"), "smp2020_ewect": ("smp2020_ewect", "dev"),
        "tnews": ("fewclue", "dev"), "iflytek": ("fewclue", "dev"), "eprstmt": ("fewclue", "dev")}


def test_every_loader_is_covered():
    assert set(SETS) == set(C.LOADERS)


@pytest.mark.parametrize("loader", sorted(SETS))
def test_empty_data_folder_raises_missing_data_with_fetch_command(tmp_path, monkeypatch, loader):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    name, split = SETS[loader]
    with pytest.raises(MissingData) as e:
        C.load(loader, split)
    assert e.value.name == name and e.value.command == f"kexue data fetch {name}"
    assert f"data set {name!r} is not in {tmp_path}" in str(e.value) and f"`kexue data fetch {name}`" in str(e.value)
