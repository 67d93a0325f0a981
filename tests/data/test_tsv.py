"""kexue.data.tsv.read_tsv: the rows of every tab-separated file in the data folder against its lines split by hand,
and quotes, line ends, empty lines and ragged rows on small files."""

from __future__ import annotations

import csv
import re

import pytest

from kexue.data.tsv import read_tsv

# Every tab-separated file the loaders read, relative to the data folder.
FILES = [
    *[f"{d}/{s}.tsv" for d in ("sst2", "chnsenticorp", "smp2020_ewect", "goemotions")
      for s in ("train", "dev", "test")],
    "agnews/dev.tsv", "agnews/test.tsv", "stsb_en/stsbenchmark.tsv", "sick/SICK.txt",
    *[f"senteval_cn/{t}/{t}.{s}.data" for t in ("ATEC", "BQ", "LCQMC", "PAWSX") for s in ("valid", "test")],
    *[f"senteval_cn/STS-B/STS-B.{s}.data" for s in ("train", "valid", "test")],
]


def _split_lines(text: str) -> list[tuple[int, list[str]]]:
    return [(i, line.rstrip("\r").split("\t")) for i, line in enumerate(text.split("\n"), start=1)
            if line.rstrip("\r")]


@pytest.mark.parametrize("name", FILES)
def test_rows_equal_lines_split_on_tabs(data_root, name):
    path = data_root / name
    if not path.is_file():
        pytest.skip(f"{path} not in the data folder")
    want = _split_lines(path.read_bytes().decode("utf-8"))
    assert read_tsv(path) == want


def test_quotes_crlf_and_empty_lines(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_bytes(b'a\tb\r\n\r\n"x\t y "z"\r\n\n1\t\n')
    assert read_tsv(path) == [(1, ["a", "b"]), (3, ['"x', ' y "z"']), (5, ["1", ""])]
    assert read_tsv(path, ncols=2) == read_tsv(path)


def test_ragged_row_names_file_and_line(tmp_path):
    path = tmp_path / "b.tsv"
    path.write_text("h1\th2\th3\nx\ty\tz\n\nonly\ttwo\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 4: expected 3 tab-separated fields, got 2")):
        read_tsv(path)  # as wide as the first row
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 1: expected 2 tab-separated fields, got 3")):
        read_tsv(path, ncols=2)
    with pytest.raises(ValueError, match="^expected ncols >= 1, got 0$"):
        read_tsv(path, ncols=0)


def test_field_longer_than_the_csv_limit_names_file_and_line(tmp_path):
    path = tmp_path / "long.tsv"
    path.write_text("a\tb\n" + "x" * (csv.field_size_limit() + 1) + "\ty\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 2: expected a line the csv reader can split, got:")):
        read_tsv(path)


def test_non_utf8_names_file_and_line_past_the_first_block(tmp_path):
    """The text layer decodes ahead in blocks of several kB, so the line is found in the bytes, not by the reader."""
    path = tmp_path / "latin1.tsv"
    lines = [f"ligne {i}\t{i}\n".encode() for i in range(1, 5001)]
    lines[3999] = "thé\t4000\n".encode("latin-1")
    path.write_bytes(b"".join(lines))
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 4000: expected UTF-8 text, got the bytes b'\\xe9'")):
        read_tsv(path)
    with pytest.raises(TypeError, match=r"^expected path to be a path \(str or os\.PathLike\), got 3 \(int\)$"):
        read_tsv(3)
