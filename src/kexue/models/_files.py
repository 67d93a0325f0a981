"""Reading the small files of a model folder (config.json, tokenizer_config.json, ...): every error names the file.

Internal: :mod:`kexue.models.config`, :mod:`kexue.models.hf` and :mod:`kexue.models.tokenizer` read their JSON files
with :func:`read_json_object`; :class:`CheckpointError` is exported by :mod:`kexue.models`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded: a file that cannot be read (named), non-finite weights, or tensors that do not
    fit the model (every missing, unexpected, mis-shaped and mistyped one listed). A ``ValueError``, as
    ``json.JSONDecodeError`` is, so an ``except ValueError`` around a load keeps catching it."""


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in the file ``path``; a file that is missing, not UTF-8, not JSON or not an object raises
    naming it (:class:`CheckpointError`, a ``FileNotFoundError`` for a missing one), JSON errors with line and
    column."""
    if not path.is_file():
        raise FileNotFoundError(f"expected a file at {path}, found {'a folder' if path.is_dir() else 'none'}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise CheckpointError(f"expected UTF-8 JSON in {path}, got {e}") from e
    except json.JSONDecodeError as e:
        raise CheckpointError(f"expected JSON in {path}, got {e.msg} at line {e.lineno} column {e.colno}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"expected a JSON object in {path}, got a {type(obj).__name__}")
    return obj


__all__ = ["CheckpointError", "read_json_object"]
