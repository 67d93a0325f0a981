"""STS loaders: row counts from the data README, contents against lines split by hand (the loaders read with the
csv module), and errors."""

from __future__ import annotations

import re
from typing import Any, get_args

import numpy as np
import pytest

from kexue.data.datasets import STS_SPLITS, STSPairs, STSSet, load_sts, sts_sets
from kexue.data.registry import MissingData

# Data rows per split as the data folder's README.md lists them.
ROWS = {
    ("stsb", "train"): 5749, ("stsb", "dev"): 1500, ("stsb", "test"): 1379,
    ("sick-r", "train"): 4439, ("sick-r", "trial"): 495, ("sick-r", "test"): 4906,
    ("atec", "valid"): 20000, ("atec", "test"): 20000,
    ("bq", "valid"): 10000, ("bq", "test"): 10000,
    ("lcqmc", "valid"): 8802, ("lcqmc", "test"): 12500,
    ("pawsx", "valid"): 2000, ("pawsx", "test"): 2000,
    ("stsb-zh", "train"): 5231, ("stsb-zh", "valid"): 1458, ("stsb-zh", "test"): 1361,
}
# Label balance of the test splits (README): count of label 1.
POSITIVES_TEST = {"atec": 3610, "bq": 5000, "lcqmc": 6250, "pawsx": 894}


def test_every_split_is_listed():
    assert set(ROWS) == {(name, split) for name, splits in sts_sets().items() for split in splits}


@pytest.mark.parametrize("name,split", sorted(ROWS))
def test_row_counts(data_root, name, split):
    d = load_sts(name, split, root=data_root)
    assert isinstance(d, STSPairs)
    assert (d.name, d.split) == (name, split)
    assert len(d) == len(d.sentences1) == len(d.sentences2) == d.scores.shape[0] == ROWS[name, split]
    assert d.scores.dtype == np.float64
    assert not any(s.endswith("\r") or "\t" in s for s in d.sentences1 + d.sentences2)


@pytest.mark.parametrize("name", sorted(POSITIVES_TEST))
def test_binary_label_balance(data_root, name):
    d = load_sts(name, "test", root=data_root)
    assert set(np.unique(d.scores)) == {0.0, 1.0}
    assert int(d.scores.sum()) == POSITIVES_TEST[name]


def _split_rows(path):
    """Every non-empty line split on tabs by hand, its CR (the English files' CRLF line ends) removed."""
    lines = path.read_bytes().decode("utf-8").split("\n")
    return [line.rstrip("\r").split("\t") for line in lines if line.rstrip("\r")]


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_stsb_matches_split_lines(data_root, split):
    rows = _split_rows(data_root / "stsb_en" / "stsbenchmark.tsv")
    header, body = rows[0], [r for r in rows[1:] if r[0] == split]
    i, j, k = header.index("sentence1"), header.index("sentence2"), header.index("score")
    d = load_sts("stsb", split, root=data_root)
    assert d.sentences1 == [r[i] for r in body]
    assert d.sentences2 == [r[j] for r in body]
    np.testing.assert_array_equal(d.scores, [float(r[k]) for r in body])
    assert d.scores.min() >= 0 and d.scores.max() <= 5


def test_stsb_keeps_quotes(data_root):
    """No CSV quoting: texts with a double quote come through verbatim."""
    d = load_sts("stsb", "train", root=data_root)
    quoted = [s for s in d.sentences1 + d.sentences2 if '"' in s]
    assert quoted, "expected some STS-B train sentences with a double quote"
    raw = (data_root / "stsb_en" / "stsbenchmark.tsv").read_text(encoding="utf-8")
    assert all(s in raw for s in quoted)


@pytest.mark.parametrize("split", ["train", "trial", "test"])
def test_sick_matches_split_lines(data_root, split):
    rows = _split_rows(data_root / "sick" / "SICK.txt")
    header, body = rows[0], rows[1:]
    body = [r for r in body if r[header.index("SemEval_set")] == split.upper()]
    d = load_sts("sick-r", split, root=data_root)
    assert d.sentences1 == [r[header.index("sentence_A")] for r in body]
    assert d.sentences2 == [r[header.index("sentence_B")] for r in body]
    np.testing.assert_array_equal(d.scores, [float(r[header.index("relatedness_score")]) for r in body])
    assert d.scores.min() >= 1 and d.scores.max() <= 5


def test_chinese_matches_split_lines(data_root):
    rows = _split_rows(data_root / "senteval_cn" / "STS-B" / "STS-B.test.data")
    d = load_sts("stsb-zh", "test", root=data_root)
    assert d.sentences1 == [r[0] for r in rows]
    assert d.sentences2 == [r[1] for r in rows]
    np.testing.assert_array_equal(d.scores, [float(r[2]) for r in rows])
    assert set(np.unique(d.scores)) <= {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}


def test_unique_sentences_keeps_first_appearance():
    d = STSPairs("toy", "test", ["a", "b", "a"], ["c", "a", "d"], np.zeros(3))
    assert d.unique_sentences() == ["a", "b", "c", "d"]


def test_misaligned_record_raises():
    with pytest.raises(ValueError, match=r"^toy/test: expected 2 second sentences and scores of shape \(2,\) for 2 "
                                         r"first sentences, got 1 and \(2,\)$"):
        STSPairs("toy", "test", ["a", "b"], ["c"], np.zeros(2))


def test_unknown_set_lists_valid_ones():
    bad: Any = "stsc"
    with pytest.raises(ValueError, match=r"^expected name to be one of \['stsb', 'sick-r', .*\], got 'stsc'$"):
        load_sts(bad, "test")
    assert tuple(STS_SPLITS) == get_args(STSSet)


def test_unknown_split_lists_valid_ones():
    with pytest.raises(ValueError, match=r"^expected split of 'atec' to be one of \['valid', 'test'\], got 'dev'$"):
        load_sts("atec", "dev")
    assert STS_SPLITS["sick-r"] == ("train", "trial", "test")


def test_missing_file_names_path_and_env(tmp_path):
    with pytest.raises(MissingData) as e:
        load_sts("bq", "test", root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "senteval_cn" / "BQ" / "BQ.test.data") in msg and "KEXUE_DATA" in msg
    assert e.value.name == "senteval_cn" and e.value.command.endswith("kexue data fetch senteval_cn")


def test_missing_data_folder_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere.*stsbenchmark.tsv.*KEXUE_DATA"):
        load_sts("stsb", "test")


# The registered set (folder) each STS set is read from.
FOLDER = {"stsb": "stsb_en", "sick-r": "sick", "atec": "senteval_cn", "bq": "senteval_cn", "lcqmc": "senteval_cn",
          "pawsx": "senteval_cn", "stsb-zh": "senteval_cn"}


@pytest.mark.parametrize("name", sorted(STS_SPLITS))
def test_empty_data_folder_raises_missing_data_with_fetch_command(tmp_path, monkeypatch, name):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    with pytest.raises(MissingData) as e:
        load_sts(name, STS_SPLITS[name][-1])
    folder = FOLDER[name]
    assert e.value.name == folder and e.value.command == f"kexue data fetch {folder}"
    assert f"data set {folder!r} is not in {tmp_path}" in str(e.value)


def test_malformed_row_names_file_and_line(tmp_path):
    folder = tmp_path / "senteval_cn" / "PAWSX"
    folder.mkdir(parents=True)
    path = folder / "PAWSX.test.data"
    path.write_text("一\t二\t1\n三\t四\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 2: expected 3 tab-separated fields")):
        load_sts("pawsx", "test", root=tmp_path)


def test_bad_score_names_file_and_line(tmp_path):
    folder = tmp_path / "stsb_en"
    folder.mkdir()
    header = "split\tgenre\tdataset\tyear\tsid\tscore\tsentence1\tsentence2"
    (folder / "stsbenchmark.tsv").write_text(
        f"{header}\r\ntest\tg\td\ty\t1\t4.0\tA.\tB.\r\ntest\tg\td\ty\t2\tfive\tC.\tD.\r\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match=r"stsbenchmark.tsv, line 3: expected a number as score, got 'five'$"):
        load_sts("stsb", "test", root=tmp_path)


def test_crlf_lines_are_stripped(tmp_path):
    folder = tmp_path / "sick"
    folder.mkdir()
    cols = ["pair_ID", "sentence_A", "sentence_B", "entailment_label", "relatedness_score", "SemEval_set"]
    lines = ["\t".join(cols), "1\tA man.\tA person.\tNEUTRAL\t4.5\tTEST", "2\tX\tY\tNEUTRAL\t1\tTRAIN"]
    (folder / "SICK.txt").write_text("\r\n".join(lines), encoding="utf-8")
    d = load_sts("sick-r", "test", root=tmp_path)
    assert (d.sentences1, d.sentences2, d.scores.tolist()) == (["A man."], ["A person."], [4.5])
