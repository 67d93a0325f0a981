"""Loaders for the sentence-similarity (STS) sets in the data folder (:func:`kexue.env.data_dir`).

Each loader returns an :class:`STSPairs`: two parallel lists of sentences and a float64 array of gold scores.
The files and their formats are described in the data folder's ``README.md``:

* ``stsb`` — STS Benchmark (English), ``stsb_en/stsbenchmark.tsv``; splits ``train``/``dev``/``test``
  (5,749 / 1,500 / 1,379 pairs); score in [0, 5].
* ``sick-r`` — SICK relatedness, ``sick/SICK.txt``; split by the ``SemEval_set`` column into ``train``/``trial``/
  ``test`` (4,439 / 495 / 4,906); score ``relatedness_score`` in [1, 5].
* ``atec``, ``bq``, ``lcqmc``, ``pawsx`` — Chinese pair sets with 0/1 labels, ``senteval_cn/<TASK>/<TASK>.<split>
  .data``; splits ``valid`` and ``test`` (their train files are not in the data folder).
* ``stsb-zh`` — Chinese STS-B, ``senteval_cn/STS-B/STS-B.<split>.data``; splits ``train``/``valid``/``test``,
  integer scores 0–5.

These are the sets of BERT-whitening's evaluation ("你可能不需要BERT-flow：一个线性变换媲美BERT-flow", 2021-01-11,
https://kexue.fm/archives/8069) and its follow-up paper.

Files are read by :func:`kexue.data.tsv.read_tsv` (UTF-8, tab-separated, no quoting: some texts contain ``"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .._validate import check_choice
from ..env import data_dir
from .registry import MissingData, _as_path
from .tsv import read_tsv

#: The STS set names :func:`load_sts` takes (the keys of :data:`STS_SPLITS`).
STSSet = Literal["stsb", "sick-r", "atec", "bq", "lcqmc", "pawsx", "stsb-zh"]


@dataclass(frozen=True)
class STSPairs:
    """Sentence pairs with gold similarity scores: ``scores[i]`` grades ``(sentences1[i], sentences2[i])``."""

    name: str
    split: str
    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray  # float64, shape (n,)

    def __post_init__(self) -> None:
        n = len(self.sentences1)
        if len(self.sentences2) != n or self.scores.shape != (n,):
            raise ValueError(
                f"{self.name}/{self.split}: expected {n} second sentences and scores of shape ({n},) for {n} first "
                f"sentences, got {len(self.sentences2)} and {tuple(self.scores.shape)}"
            )

    def __len__(self) -> int:
        return len(self.sentences1)

    def unique_sentences(self) -> list[str]:
        """Every distinct sentence of both sides, in order of first appearance (sentences1 before sentences2)."""
        return list(dict.fromkeys([*self.sentences1, *self.sentences2]))

    def __repr__(self) -> str:
        return f"STSPairs(name={self.name!r}, split={self.split!r}, pairs={len(self)})"


#: Chinese task name -> folder (and file stem) under ``senteval_cn``.
_CN_TASKS = {"atec": "ATEC", "bq": "BQ", "lcqmc": "LCQMC", "pawsx": "PAWSX", "stsb-zh": "STS-B"}

#: Every set and its splits, one entry per name of :data:`STSSet`.
STS_SPLITS: dict[STSSet, tuple[str, ...]] = {
    "stsb": ("train", "dev", "test"),
    "sick-r": ("train", "trial", "test"),
    "atec": ("valid", "test"),
    "bq": ("valid", "test"),
    "lcqmc": ("valid", "test"),
    "pawsx": ("valid", "test"),
    "stsb-zh": ("train", "valid", "test"),
}


def sts_sets() -> dict[STSSet, tuple[str, ...]]:
    """The STS set names :func:`load_sts` knows, each with its splits."""
    return dict(STS_SPLITS)


def _path(root: Path, *parts: str) -> Path:
    """``root/parts...``; ``parts[0]`` is the registered data set (its folder). Raises :class:`MissingData`."""
    path = root.joinpath(*parts)
    if not path.is_file():
        raise MissingData(parts[0], root, f"no {path}")
    return path


def _score(value: str, path: Path, lineno: int) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{path}, line {lineno}: expected a number as score, got {value!r}") from None


def _load_stsb(path: Path, split: str) -> tuple[list[str], list[str], list[float]]:
    header = ["split", "genre", "dataset", "year", "sid", "score", "sentence1", "sentence2"]
    rows = read_tsv(path)
    if not rows or rows[0][1] != header:
        raise ValueError(f"{path}, line 1: expected the header {header}, got {rows[0][1] if rows else 'nothing'}")
    s1, s2, scores = [], [], []
    for lineno, f in rows[1:]:
        if f[0] == split:
            s1.append(f[6])
            s2.append(f[7])
            scores.append(_score(f[5], path, lineno))
    return s1, s2, scores


def _load_sick(path: Path, split: str) -> tuple[list[str], list[str], list[float]]:
    rows = read_tsv(path)
    if not rows:
        raise ValueError(f"{path}, line 1: expected the SICK header, got an empty file")
    header = rows[0][1]
    needed = ("sentence_A", "sentence_B", "relatedness_score", "SemEval_set")
    missing = [c for c in needed if c not in header]
    if missing:
        raise ValueError(f"{path}, line 1: expected a header with the columns {list(needed)}, got {header} (without "
                         f"{missing})")
    ia, ib, isc, iset = (header.index(c) for c in needed)
    want = split.upper()
    s1, s2, scores = [], [], []
    for lineno, f in rows[1:]:
        if f[iset] == want:
            s1.append(f[ia])
            s2.append(f[ib])
            scores.append(_score(f[isc], path, lineno))
    return s1, s2, scores


def _load_cn(path: Path) -> tuple[list[str], list[str], list[float]]:
    s1, s2, scores = [], [], []
    for lineno, f in read_tsv(path, ncols=3):  # sentence1, sentence2, label
        s1.append(f[0])
        s2.append(f[1])
        scores.append(_score(f[2], path, lineno))
    return s1, s2, scores


def load_sts(name: STSSet, split: str = "test", root: str | Path | None = None) -> STSPairs:
    """Load one split of an STS set (see the module docstring for names, splits and files).

    ``root`` is the data folder; default :func:`kexue.env.data_dir` (``$KEXUE_DATA``, else the per-user cache).
    Raises ``ValueError`` for an unknown set or split (listing the valid ones) or a malformed row (naming the file
    and line), :class:`~kexue.data.registry.MissingData` (a ``FileNotFoundError``) naming the data set, the path and
    the fetch command when the file is absent (``stsb`` is in ``stsb_en``, ``sick-r`` in ``sick``, the Chinese sets
    in ``senteval_cn``).
    """
    check_choice("name", name, STSSet)
    check_choice(f"split of {name!r}", split, STS_SPLITS[name])
    base = data_dir() if root is None else _as_path("root", root)
    if name == "stsb":
        s1, s2, sc = _load_stsb(_path(base, "stsb_en", "stsbenchmark.tsv"), split)
    elif name == "sick-r":
        s1, s2, sc = _load_sick(_path(base, "sick", "SICK.txt"), split)
    else:
        task = _CN_TASKS[name]
        s1, s2, sc = _load_cn(_path(base, "senteval_cn", task, f"{task}.{split}.data"))
    return STSPairs(name=name, split=split, sentences1=s1, sentences2=s2, scores=np.asarray(sc, dtype=np.float64))


__all__ = ["STSPairs", "STSSet", "STS_SPLITS", "load_sts", "sts_sets"]
