"""Data: the registry of named sets and ``kexue data fetch`` (``registry``, ``fetch``), loaders
(``classification``, ``datasets``, both reading with ``tsv.read_tsv``) and the out-of-core shuffle (``shuffle``).

The data folder is ``$KEXUE_DATA``, else the per-user cache (:func:`kexue.env.data_dir`); a loader whose set is not
there raises :class:`MissingData` naming the set and the command that fetches it. The labelled classification sets
load with ``kexue.data.classification.load(name, split)``, the STS sets with :func:`load_sts`;
:func:`kexue.data.fetch.fetch` downloads sets from Python as ``kexue data fetch`` does.
"""

from .classification import LabelledTexts
from .datasets import STSPairs, load_sts
from .registry import REGISTRY, DataFile, DataSet, MissingData, UnknownData
from .tsv import read_tsv

__all__ = ["REGISTRY", "DataFile", "DataSet", "LabelledTexts", "MissingData", "STSPairs", "UnknownData", "load_sts",
           "read_tsv"]
