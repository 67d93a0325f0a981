"""Data: the registry of named sets and ``kexue data fetch`` (``registry``, ``fetch``), loaders
(``classification``, ``datasets``, both reading with ``tsv.read_tsv``) and the out-of-core shuffle (``shuffle``).

The data folder is ``$KEXUE_DATA``, else the per-user cache (:func:`kexue.env.data_dir`); a loader whose set is not
there raises :class:`MissingData` naming the set and the command that fetches it.
"""

from .registry import REGISTRY, DataFile, DataSet, MissingData
from .tsv import read_tsv

__all__ = ["REGISTRY", "DataFile", "DataSet", "MissingData", "read_tsv"]
