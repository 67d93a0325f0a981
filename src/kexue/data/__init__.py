"""Data: the registry of named sets and ``kexue data fetch`` (``registry``, ``fetch``), loaders
(``classification``, ``datasets``, both reading with ``tsv.read_tsv``; ``extraction`` for the information-extraction
sets) and the out-of-core shuffle (``shuffle``).

The data folder is ``$KEXUE_DATA``, else the per-user cache (:func:`kexue.env.data_dir`); a loader whose set is not
there raises :class:`MissingData` naming the set and the command that fetches it. The labelled classification sets
load with ``kexue.data.classification.load(name, split)``, the STS sets with :func:`load_sts`, the extraction sets
with :func:`load_conll2003`, :func:`load_phee`, :func:`load_webnlg`, :func:`load_squad` (and the Chinese DuEE and
DuReader-robust dev sets);
:func:`kexue.data.fetch.fetch` downloads sets from Python as ``kexue data fetch`` does.
"""

from .classification import LabelledTexts
from .datasets import STSPairs, load_sts
from .extraction import (
    Answer,
    Argument,
    Event,
    EventSentence,
    QAExample,
    QASplit,
    RelationSentence,
    TaggedSentence,
    Triple,
    load_conll2003,
    load_duee,
    load_duee_schema,
    load_dureader_robust,
    load_phee,
    load_squad,
    load_webnlg,
    load_webnlg_relations,
    split_by_article,
)
from .registry import REGISTRY, DataFile, DataSet, MissingData, UnknownData
from .tsv import read_tsv

__all__ = ["REGISTRY", "Answer", "Argument", "DataFile", "DataSet", "Event", "EventSentence", "LabelledTexts",
           "MissingData", "QAExample", "QASplit", "RelationSentence", "STSPairs", "TaggedSentence", "Triple",
           "UnknownData", "load_conll2003", "load_duee", "load_duee_schema", "load_dureader_robust", "load_phee",
           "load_squad", "load_sts", "load_webnlg", "load_webnlg_relations", "read_tsv", "split_by_article"]
