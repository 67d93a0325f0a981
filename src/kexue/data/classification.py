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
from typing import Any, Literal

import numpy as np

from .._validate import check_choice, check_int
from .registry import require_data
from .tsv import read_tsv

#: The splits of SST-2, GoEmotions, ChnSentiCorp, SMP2020-EWECT and the FewCLUE tasks.
Split = Literal["train", "dev", "test"]
#: The splits of AG News (its dev file is used as a training set).
AGNewsSplit = Literal["dev", "test"]
FewCLUETask = Literal["tnews", "iflytek", "eprstmt"]
#: The names :func:`load` takes (the keys of :data:`LOADERS`).
LabelledSet = Literal["sst2", "agnews", "goemotions", "chnsenticorp", "smp2020_ewect", "tnews", "iflytek", "eprstmt"]


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
        check_int("n", n, minimum=1)
        if n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return LabelledTexts(self.name, self.split, [self.texts[i] for i in idx], self.labels[idx],
                             list(self.label_names))


def _rows(path: Path, ncols: int, header: bool) -> list[list[str]]:
    """The fields of each row of a TSV with ``ncols`` columns, the header (line 1) dropped when ``header``."""
    return [fields for lineno, fields in read_tsv(path, ncols) if not (header and lineno == 1)]


def _int_label(path: Path, i: int, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{path}: row {i}: expected an integer label, got {raw!r}") from None


def sst2(split: Split = "train") -> LabelledTexts:
    """SST-2 (binary sentiment; train 60,614 / dev 6,735 / test 872 = GLUE dev). Texts keep the data's spacing
    except the trailing space."""
    check_choice("split", split, Split)
    path = require_data("sst2", f"{split}.tsv")
    rows = _rows(path, 2, header=True)
    return LabelledTexts("sst2", split, [r[0].strip() for r in rows],
                         np.array([_int_label(path, i, r[1]) for i, r in enumerate(rows)]), ["negative", "positive"])


AGNEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def agnews(split: AGNewsSplit = "test") -> LabelledTexts:
    """AG News (4 topics; dev 10,001, used as a training set / test 7,600)."""
    check_choice("split", split, AGNewsSplit)
    path = require_data("agnews", f"{split}.tsv")
    rows = _rows(path, 2, header=False)
    index = {n: i for i, n in enumerate(AGNEWS_LABELS)}
    labels = []
    for i, r in enumerate(rows):
        if r[1] not in index:
            raise ValueError(f"{path}: row {i}: expected a label in {AGNEWS_LABELS}, got {r[1]!r}")
        labels.append(index[r[1]])
    return LabelledTexts("agnews", split, [r[0] for r in rows], np.array(labels), list(AGNEWS_LABELS))


def goemotions(split: Split = "train") -> LabelledTexts:
    """GoEmotions (28 labels, multi-label): ``labels`` is an (N, 28) 0/1 int matrix."""
    check_choice("split", split, Split)
    names = require_data("goemotions", "labels.txt").read_text(encoding="utf-8").split()
    path = require_data("goemotions", f"{split}.tsv")
    rows = _rows(path, 3, header=False)
    y = np.zeros((len(rows), len(names)), dtype=np.int64)
    for i, r in enumerate(rows):
        for lab in r[1].split(","):
            k = _int_label(path, i, lab)
            if not 0 <= k < len(names):
                raise ValueError(f"{path}: row {i}: expected label ids in 0..{len(names) - 1}, got {k}")
            y[i, k] = 1
    return LabelledTexts("goemotions", split, [r[0] for r in rows], y, names)


def _label_first(name: str, folder: str, split: Split, names: list[str]) -> LabelledTexts:
    check_choice("split", split, Split)
    path = require_data(folder, f"{split}.tsv")
    rows = _rows(path, 2, header=True)
    return LabelledTexts(name, split, [r[1] for r in rows],
                         np.array([_int_label(path, i, r[0]) for i, r in enumerate(rows)]), names)


def chnsenticorp(split: Split = "train") -> LabelledTexts:
    """ChnSentiCorp (Chinese binary sentiment; 9,600 / 1,200 / 1,200)."""
    return _label_first("chnsenticorp", "chnsenticorp", split, ["negative", "positive"])


def smp2020_ewect(split: Split = "train") -> LabelledTexts:
    """SMP2020-EWECT "usual" (Chinese 6-class emotion, imbalanced; 27,766 / 2,000 / 5,000)."""
    return _label_first("smp2020_ewect", "smp2020_ewect", split,
                        ["neutral", "angry", "happy", "sad", "fear", "surprise"])


_FEWCLUE_FILES: dict[Split, str] = {"train": "train_few_all.json", "dev": "dev_few_all.json",
                                    "test": "test_public.json"}


def fewclue(task: FewCLUETask, split: Split = "train") -> LabelledTexts:
    """FewCLUE ``tnews``, ``iflytek`` or ``eprstmt``. Labels are re-indexed 0..C-1 over the label set seen in the
    task's train, dev and test files together (sorted by the original label), so splits share one index."""
    check_choice("task", task, FewCLUETask)
    check_choice("split", split, Split)
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
                    raise ValueError(f"{path}:{lineno}: expected a JSON record, got a line that is not JSON ({e})") \
                        from None
                recs.append(rec)
                every.setdefault(rec["label"], str(rec.get(desc_key, rec["label"])))
        records[s] = recs
    order = sorted(every, key=lambda k: (str(type(k)), k))
    index = {k: i for i, k in enumerate(order)}
    recs = records[split]
    return LabelledTexts(f"fewclue/{task}", split, [r["sentence"] for r in recs],
                         np.array([index[r["label"]] for r in recs]), [every[k] for k in order])


def tnews(split: Split = "train") -> LabelledTexts:
    """FewCLUE TNEWS (Chinese news titles, 15 topics): ``fewclue("tnews", split)``."""
    return fewclue("tnews", split)


def iflytek(split: Split = "train") -> LabelledTexts:
    """FewCLUE IFLYTEK (Chinese app descriptions, many categories): ``fewclue("iflytek", split)``."""
    return fewclue("iflytek", split)


def eprstmt(split: Split = "train") -> LabelledTexts:
    """FewCLUE EPRSTMT (Chinese e-commerce reviews, binary sentiment): ``fewclue("eprstmt", split)``."""
    return fewclue("eprstmt", split)


#: Name -> loader, one entry per name of :data:`LabelledSet`; each loader takes the split.
LOADERS: dict[LabelledSet, Callable[[Any], LabelledTexts]] = {
    "sst2": sst2,
    "agnews": agnews,
    "goemotions": goemotions,
    "chnsenticorp": chnsenticorp,
    "smp2020_ewect": smp2020_ewect,
    "tnews": tnews,
    "iflytek": iflytek,
    "eprstmt": eprstmt,
}


def load(name: LabelledSet, split: str) -> LabelledTexts:
    """Load a labelled set by name (see :data:`LOADERS`) and split (``"train"``, ``"dev"``, ``"test"``; AG News has
    ``"dev"`` and ``"test"``)."""
    check_choice("name", name, LabelledSet)
    return LOADERS[name](split)


__all__ = ["AGNEWS_LABELS", "LOADERS", "AGNewsSplit", "FewCLUETask", "LabelledSet", "LabelledTexts", "Split", "agnews",
           "chnsenticorp", "eprstmt", "fewclue", "goemotions", "iflytek", "load", "smp2020_ewect", "sst2", "tnews"]
