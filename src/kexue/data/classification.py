"""Loaders for the labelled text-classification sets in the data folder (:func:`kexue.env.data_dir`).

Single-label: SST-2, AG News (English); ChnSentiCorp, SMP2020-EWECT, FewCLUE TNEWS / IFLYTEK / EPRSTMT (Chinese).
Multi-label: GoEmotions. TSVs are read by :func:`kexue.data.tsv.read_tsv` (no quoting: some texts hold ``"``).
A set that is not in the data folder raises :class:`~kexue.data.registry.MissingData` naming it and the command that
fetches it (``kexue data fetch sst2``; TNEWS, IFLYTEK and EPRSTMT are in the set ``fewclue``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..env import require_data
from .tsv import read_tsv


@dataclass
class LabelledTexts:
    """Texts with integer labels (single-label: ``labels`` of shape (N,); multi-label: a (N, C) 0/1 matrix)."""

    name: str
    split: str
    texts: list[str]
    labels: np.ndarray
    label_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def subsample(self, n: int, seed: int = 0) -> LabelledTexts:
        """A random subset of ``n`` examples (all of them if ``n >= len(self)``), same seed, same subset."""
        if n < 1:
            raise ValueError(f"expected n >= 1, got {n}")
        if n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return LabelledTexts(self.name, self.split, [self.texts[i] for i in idx], self.labels[idx],
                             list(self.label_names))


def _rows(path: Path, ncols: int, header: bool) -> list[list[str]]:
    """The fields of each row of a TSV with ``ncols`` columns, the header (line 1) dropped when ``header``."""
    return [fields for lineno, fields in read_tsv(path, ncols) if not (header and lineno == 1)]


def _check_split(name: str, split: str, allowed: tuple[str, ...]) -> None:
    if split not in allowed:
        raise ValueError(f"{name} has splits {list(allowed)}, not {split!r}")


def _int_label(path: Path, i: int, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{path}: row {i}: label {raw!r} is not an integer") from None


def sst2(split: str = "train") -> LabelledTexts:
    """SST-2 (binary sentiment; train 60,614 / dev 6,735 / test 872 = GLUE dev). Texts keep the data's spacing
    except the trailing space."""
    _check_split("sst2", split, ("train", "dev", "test"))
    path = require_data("sst2", f"{split}.tsv")
    rows = _rows(path, 2, header=True)
    return LabelledTexts("sst2", split, [r[0].strip() for r in rows],
                         np.array([_int_label(path, i, r[1]) for i, r in enumerate(rows)]), ["negative", "positive"])


AGNEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def agnews(split: str = "test") -> LabelledTexts:
    """AG News (4 topics; dev 10,001, used as a training set / test 7,600)."""
    _check_split("agnews", split, ("dev", "test"))
    path = require_data("agnews", f"{split}.tsv")
    rows = _rows(path, 2, header=False)
    index = {n: i for i, n in enumerate(AGNEWS_LABELS)}
    labels = []
    for i, r in enumerate(rows):
        if r[1] not in index:
            raise ValueError(f"{path}: row {i}: unknown label {r[1]!r}; expected one of {AGNEWS_LABELS}")
        labels.append(index[r[1]])
    return LabelledTexts("agnews", split, [r[0] for r in rows], np.array(labels), list(AGNEWS_LABELS))


def goemotions(split: str = "train") -> LabelledTexts:
    """GoEmotions (28 labels, multi-label): ``labels`` is an (N, 28) 0/1 int matrix."""
    _check_split("goemotions", split, ("train", "dev", "test"))
    names = require_data("goemotions", "labels.txt").read_text(encoding="utf-8").split()
    path = require_data("goemotions", f"{split}.tsv")
    rows = _rows(path, 3, header=False)
    y = np.zeros((len(rows), len(names)), dtype=np.int64)
    for i, r in enumerate(rows):
        for lab in r[1].split(","):
            k = _int_label(path, i, lab)
            if not 0 <= k < len(names):
                raise ValueError(f"{path}: row {i}: label id {k} outside 0..{len(names) - 1}")
            y[i, k] = 1
    return LabelledTexts("goemotions", split, [r[0] for r in rows], y, names)


def _label_first(name: str, folder: str, split: str, names: list[str]) -> LabelledTexts:
    _check_split(name, split, ("train", "dev", "test"))
    path = require_data(folder, f"{split}.tsv")
    rows = _rows(path, 2, header=True)
    return LabelledTexts(name, split, [r[1] for r in rows],
                         np.array([_int_label(path, i, r[0]) for i, r in enumerate(rows)]), names)


def chnsenticorp(split: str = "train") -> LabelledTexts:
    """ChnSentiCorp (Chinese binary sentiment; 9,600 / 1,200 / 1,200)."""
    return _label_first("chnsenticorp", "chnsenticorp", split, ["negative", "positive"])


def smp2020_ewect(split: str = "train") -> LabelledTexts:
    """SMP2020-EWECT "usual" (Chinese 6-class emotion, imbalanced; 27,766 / 2,000 / 5,000)."""
    return _label_first("smp2020_ewect", "smp2020_ewect", split,
                        ["neutral", "angry", "happy", "sad", "fear", "surprise"])


_FEWCLUE_FILES = {"train": "train_few_all.json", "dev": "dev_few_all.json", "test": "test_public.json"}


def fewclue(task: str, split: str = "train") -> LabelledTexts:
    """FewCLUE ``tnews``, ``iflytek`` or ``eprstmt``. Labels are re-indexed 0..C-1 over the label set seen in the
    task's train, dev and test files together (sorted by the original label), so splits share one index."""
    if task not in ("tnews", "iflytek", "eprstmt"):
        raise ValueError(f"unknown FewCLUE task {task!r}; expected 'tnews', 'iflytek' or 'eprstmt'")
    _check_split(f"fewclue/{task}", split, tuple(_FEWCLUE_FILES))
    desc_key = {"tnews": "label_desc", "iflytek": "label_des", "eprstmt": "label"}[task]
    every: dict[object, str] = {}
    records = {}
    for s, fname in _FEWCLUE_FILES.items():
        path = require_data("fewclue", task, fname)
        recs = []
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: not JSON ({e})") from None
                recs.append(rec)
                every.setdefault(rec["label"], str(rec.get(desc_key, rec["label"])))
        records[s] = recs
    order = sorted(every, key=lambda k: (str(type(k)), k))
    index = {k: i for i, k in enumerate(order)}
    recs = records[split]
    return LabelledTexts(f"fewclue/{task}", split, [r["sentence"] for r in recs],
                         np.array([index[r["label"]] for r in recs]), [every[k] for k in order])


def tnews(split: str = "train") -> LabelledTexts:
    """FewCLUE TNEWS (Chinese news titles, 15 topics): ``fewclue("tnews", split)``."""
    return fewclue("tnews", split)


def iflytek(split: str = "train") -> LabelledTexts:
    """FewCLUE IFLYTEK (Chinese app descriptions, many categories): ``fewclue("iflytek", split)``."""
    return fewclue("iflytek", split)


def eprstmt(split: str = "train") -> LabelledTexts:
    """FewCLUE EPRSTMT (Chinese e-commerce reviews, binary sentiment): ``fewclue("eprstmt", split)``."""
    return fewclue("eprstmt", split)


LOADERS: dict[str, Callable[[str], LabelledTexts]] = {
    "sst2": sst2,
    "agnews": agnews,
    "goemotions": goemotions,
    "chnsenticorp": chnsenticorp,
    "smp2020_ewect": smp2020_ewect,
    "tnews": tnews,
    "iflytek": iflytek,
    "eprstmt": eprstmt,
}


def load(name: str, split: str) -> LabelledTexts:
    """Load a labelled set by name (see :data:`LOADERS`)."""
    if name not in LOADERS:
        raise ValueError(f"unknown data set {name!r}; expected one of {sorted(LOADERS)}")
    return LOADERS[name](split)
