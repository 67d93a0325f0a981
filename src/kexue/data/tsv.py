"""The one reader of tab-separated files in the data folder: the STS loaders (:mod:`kexue.data.datasets`) and the
classification loaders (:mod:`kexue.data.classification`) both read their ``.tsv``/``.data`` files with it."""

from __future__ import annotations

import csv
from pathlib import Path

from .._validate import check_int
from .registry import _as_path


def read_tsv(path: str | Path, ncols: int | None = None) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` for every non-empty line of the UTF-8 tab-separated file ``path``.

    Read with Python's :mod:`csv` reader, ``delimiter="\\t"`` and ``quoting=csv.QUOTE_NONE``: a field is the text
    between two tabs, quotes included (some texts hold ``"``), and a line ends at ``"\\n"`` or ``"\\r\\n"`` (the
    English STS files have CRLF line ends). On every file of the data folder it gives the rows that splitting each
    line on ``"\\t"`` gives. Every row must have ``ncols`` fields or, with ``ncols=None``, as many as the first
    row (the header, where the file has one); a row that does not raises ``ValueError`` naming the file and line, as
    do bytes that are not UTF-8. A missing file raises ``FileNotFoundError`` naming it.
    """
    path = _as_path("path", path)
    if ncols is not None:
        check_int("ncols", ncols, minimum=1)
    rows: list[tuple[int, list[str]]] = []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
        try:
            for fields in reader:
                if not fields:  # an empty line
                    continue
                width = ncols if ncols is not None else len(rows[0][1]) if rows else len(fields)
                if len(fields) != width:
                    raise ValueError(f"{path}, line {reader.line_num}: expected {width} tab-separated fields, "
                                     f"got {len(fields)}")
                rows.append((reader.line_num, fields))
        except csv.Error as e:  # e.g. a field longer than csv.field_size_limit()
            raise ValueError(f"{path}, line {reader.line_num}: expected a line the csv reader can split, got: {e}") \
                from None
        except UnicodeDecodeError:  # the text layer decodes ahead in blocks: find the line in the bytes
            raise ValueError(f"{path}{_first_non_utf8(path)}") from None
    return rows


def _first_non_utf8(path: Path) -> str:
    """``", line N: expected UTF-8 text, got the bytes b'...'"`` for the first sequence in ``path`` that is not
    UTF-8 (a line ends at ``\\n``, a byte no UTF-8 sequence holds, so decoding line by line finds what decoding the
    whole file does)."""
    with path.open("rb") as f:
        for lineno, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                return f", line {lineno}: expected UTF-8 text, got the bytes {line[e.start:e.end]!r}"
    return ": expected UTF-8 text, got bytes that are not (the file changed while it was read)"


__all__ = ["read_tsv"]
