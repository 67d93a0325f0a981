"""A thin wrapper over the ``tokenizers`` library for BERT-style models.

Loads ``tokenizer.json`` (or builds a WordPiece tokenizer from ``vocab.txt``), encodes batches of single texts or
pairs with padding, truncation and segment ids, and decodes.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Encoding
from tokenizers import Tokenizer as _HFTokenizer
from torch import Tensor

from .._validate import check_bool, check_int
from ..nn.padding import pad
from ._files import CheckpointError, read_json_object
from .offsets import encoding_mapping, rematch


def check_texts(name: str, texts: Any) -> list[str]:
    """``texts`` as a list if it is a sequence (any iterable) of str. A single str is refused, not split into
    one-character texts, and so is an item that is not a str, naming its index (tokenizers' own error names neither).
    The one check of texts for :meth:`Tokenizer.encode_raw` and so for :func:`kexue.embed.encode`."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"expected {name} to be a sequence of str, got a single {type(texts).__name__}; wrap it in a "
                        f"list")
    if not isinstance(texts, Iterable):
        raise TypeError(f"expected {name} to be a sequence of str, got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            what = type(t).__name__ if t is not None else None
            raise TypeError(f"expected {name} to be a sequence of str, got {what} at index {i}")
    return out


def pad_encodings(encodings: Sequence[Encoding], pad_id: int, with_types: bool = True) -> dict[str, Tensor]:
    """Right-pad ``tokenizers`` encodings to the longest: int64 ``input_ids`` (``pad_id`` after the end),
    ``attention_mask`` (1/0) and, with ``with_types``, ``token_type_ids`` (0 after the end), as
    ``transformers.DataCollatorWithPadding`` pads them; :func:`kexue.nn.padding.pad` does the padding."""
    check_int("pad_id", pad_id, 0)
    if isinstance(encodings, (str, bytes, dict)) or not isinstance(encodings, Sequence):
        raise TypeError(f"expected encodings to be a sequence of tokenizers.Encoding (Tokenizer.encode_raw gives "
                        f"them), got {type(encodings).__name__}")
    for i, e in enumerate(encodings):
        if not isinstance(e, Encoding):
            raise TypeError(f"expected encodings to be a sequence of tokenizers.Encoding (Tokenizer.encode_raw gives "
                            f"them), got {type(e).__name__} at index {i}")
    ids, mask = pad([e.ids for e in encodings], pad_id)
    out = {"input_ids": ids, "attention_mask": mask}
    if with_types:
        out["token_type_ids"] = pad([e.type_ids for e in encodings], 0)[0]
    return out


class Tokenizer:
    """Wraps a ``tokenizers.Tokenizer``.

    ``max_length`` is the truncation length used when a call gives none: the folder's ``sentence_bert_config.json``
    ``max_seq_length`` if present (what sentence-transformers uses), else ``tokenizer_config.json``'s
    ``model_max_length`` when it is a real limit, else None (no truncation).
    """

    def __init__(self, tokenizer: _HFTokenizer, max_length: int | None = None, pad_token: str = "[PAD]") -> None:
        if not isinstance(tokenizer, _HFTokenizer):
            raise TypeError(f"expected tokenizer to be a tokenizers.Tokenizer (Tokenizer.from_pretrained(folder) "
                            f"loads one from a folder), got {type(tokenizer).__name__}")
        if max_length is not None:
            check_int("max_length", max_length, 1)
        self._tok = tokenizer
        # The tokenizer.json of many models carries fixed padding/truncation; we decide those per call.
        self._tok.no_padding()
        self._tok.no_truncation()
        self.max_length = max_length
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ValueError(f"expected pad_token in the vocabulary, got {pad_token!r}, which is not")
        self.pad_token = pad_token
        self.pad_token_id = pad_id

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Tokenizer:
        """Load the tokenizer of a Hugging Face model folder (``tokenizer.json``, else ``vocab.txt``); a file that
        cannot be read raises naming it."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"expected path to be a tokenizer folder (a str or Path), got {path!r} "
                            f"({type(path).__name__})")
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"expected a tokenizer folder, got {folder}")
        cfg: dict[str, Any] = {}
        if (folder / "tokenizer_config.json").exists():
            cfg = read_json_object(folder / "tokenizer_config.json")
        if (folder / "tokenizer.json").exists():
            try:
                tok = _HFTokenizer.from_file(str(folder / "tokenizer.json"))
            except Exception as e:  # tokenizers raises a bare Exception for a file it cannot parse
                raise CheckpointError(f"expected a readable tokenizer.json at {folder / 'tokenizer.json'}, got "
                                      f"{e}") from e
        elif (folder / "vocab.txt").exists():
            from tokenizers.implementations import BertWordPieceTokenizer

            tok = BertWordPieceTokenizer(
                str(folder / "vocab.txt"),
                lowercase=bool(cfg.get("do_lower_case", True)),
                strip_accents=cfg.get("strip_accents"),
                handle_chinese_chars=bool(cfg.get("tokenize_chinese_chars", True)),
            )._tokenizer
        else:
            raise FileNotFoundError(f"expected tokenizer.json or vocab.txt in {folder}, found neither")
        max_length = None
        st_cfg = folder / "sentence_bert_config.json"
        if st_cfg.exists():
            max_length = read_json_object(st_cfg).get("max_seq_length")
            if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool)
                                           or max_length < 1):
                raise CheckpointError(f"expected max_seq_length in {st_cfg} to be a positive integer, got "
                                      f"{max_length!r}")
        if max_length is None:
            mml = cfg.get("model_max_length")
            if isinstance(mml, int) and 0 < mml < 1_000_000:
                max_length = mml
        return cls(tok, max_length=max_length, pad_token=cfg.get("pad_token", "[PAD]")
                   if isinstance(cfg.get("pad_token", "[PAD]"), str) else "[PAD]")

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def token_to_id(self, token: str) -> int | None:
        """The id of ``token``, None when it is not in the vocabulary."""
        if not isinstance(token, str):
            raise TypeError(f"expected token to be a str, got {token!r} ({type(token).__name__})")
        return self._tok.token_to_id(token)

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text``, without special tokens."""
        if not isinstance(text, str):
            raise TypeError(f"expected text to be a str, got {type(text).__name__}")
        return self._tok.encode(text, add_special_tokens=False).tokens

    def _normalization(self) -> tuple[bool, bool]:
        """``(lowercase, strip_accents)`` of this tokenizer's normaliser, read from what it does to ``"A"`` and
        ``"é"`` (both False without a normaliser)."""
        norm = self._tok.normalizer
        if norm is None:
            return False, False
        return norm.normalize_str("A") == "a", norm.normalize_str("\u00e9") == "e"

    def rematch(self, text: str, tokens: Sequence[str]) -> list[list[int]]:
        """The character indices of ``text`` each of ``tokens`` came from: :func:`kexue.models.offsets.rematch` with
        this tokenizer's normalisation (what its normaliser does to ``"A"`` and ``"é"``) and unknown token. For
        tokens without offsets (from elsewhere, or edited); the tokenizer's own encodings have exact ones,
        :meth:`offsets`."""
        lowercase, strip_accents = self._normalization()
        unk = getattr(self._tok.model, "unk_token", None)
        return rematch(text, tokens, lowercase, strip_accents, unk_token=unk if isinstance(unk, str) else "[UNK]")

    def offsets(self, text: str, max_length: int | None = None, truncation: bool = True) -> list[list[int]]:
        """The character indices of ``text`` behind each token of its encoding with special tokens (the positions a
        model sees, ``encode_raw([text])[0]``), from the fast tokenizer's offset mapping: ``[]`` for ``[CLS]`` and
        ``[SEP]``, ``list(range(start, end))`` for the others (:func:`kexue.models.offsets.encoding_mapping`).
        Extract tokens ``s..e`` with ``text[m[s][0] : m[e][-1] + 1]`` (:func:`kexue.models.offsets.char_span`).
        For a (question, context) pair use :meth:`encode_raw` and ``encoding_mapping`` with the encoding's
        ``sequence_ids``."""
        if not isinstance(text, str):
            raise TypeError(f"expected text to be a str, got {type(text).__name__}")
        return encoding_mapping(self.encode_raw([text], max_length=max_length, truncation=truncation)[0])

    def encode_raw(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        max_length: int | None = None,
        truncation: bool = True,
    ) -> list[Encoding]:
        """Encodings (unpadded) of ``texts`` or of (text, pair) pairs, with special tokens.

        With ``truncation=True`` sequences are cut to ``max_length`` (default :attr:`max_length`) tokens, longest
        member of a pair first; with ``truncation=False`` a longer sequence raises ``ValueError`` naming its index.
        """
        texts = check_texts("texts", texts)
        if pairs is not None:
            pairs = check_texts("pairs", pairs)
            if len(pairs) != len(texts):
                raise ValueError(f"expected as many pairs as texts ({len(texts)}), got {len(pairs)} pairs")
        limit = self.max_length if max_length is None else check_int("max_length", max_length, 1)
        check_bool("truncation", truncation)
        inputs = list(texts) if pairs is None else list(zip(texts, pairs, strict=True))
        if truncation and limit is not None:
            self._tok.enable_truncation(limit)
        try:
            encs = self._tok.encode_batch(inputs)
        finally:
            self._tok.no_truncation()
        if not truncation and limit is not None:
            for i, e in enumerate(encs):
                if len(e.ids) > limit:
                    raise ValueError(f"expected at most max_length={limit} tokens per text, got {len(e.ids)} in "
                                     f"text {i} (pass truncation=True to cut it)")
        return encs

    def collate(self, encodings: Sequence[Encoding]) -> dict[str, Tensor]:
        """Pad encodings to the longest: ``input_ids``, ``attention_mask``, ``token_type_ids`` as int64 tensors
        (:func:`pad_encodings` with this tokenizer's padding id)."""
        return pad_encodings(encodings, self.pad_token_id)

    def __call__(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        max_length: int | None = None,
        truncation: bool = True,
    ) -> dict[str, Tensor]:
        """Encode and pad a batch: a dict of ``input_ids``, ``attention_mask``, ``token_type_ids``."""
        return self.collate(self.encode_raw(texts, pairs, max_length=max_length, truncation=truncation))

    def _ids(self, name: str, ids: Any) -> list[int]:
        """``ids`` (a 1-D integer tensor or a sequence of ints) as a list, each in [0, vocab_size): tokenizers drops
        an id past the vocabulary without a word."""
        if isinstance(ids, Tensor):
            if ids.dim() != 1 or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
                raise TypeError(f"expected {name} to be a 1-D integer tensor or a sequence of ints, got shape "
                                f"{tuple(ids.shape)} of {ids.dtype}")
            ids = ids.tolist()
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"expected {name} to be a sequence of ints, got {type(ids).__name__}")
        out: list[int] = []
        size = self.vocab_size
        for i, x in enumerate(ids):
            if not isinstance(x, numbers.Integral) or isinstance(x, bool):
                raise TypeError(f"expected {name} to be a sequence of ints, got {x!r} ({type(x).__name__}) at "
                                f"index {i}")
            out.append(int(x))
            if not 0 <= out[-1] < size:
                raise ValueError(f"expected {name} in [0, vocab_size={size}), got {out[-1]} at index {i}")
        return out

    def decode(self, ids: Sequence[int] | Tensor, skip_special_tokens: bool = True) -> str:
        """The text of one sequence of ids (a list or a 1-D tensor)."""
        return self._tok.decode(self._ids("ids", ids), skip_special_tokens=skip_special_tokens)

    def decode_batch(self, ids: Sequence[Sequence[int]] | Tensor, skip_special_tokens: bool = True) -> list[str]:
        """The texts of a batch of id sequences (a list of lists or a 2-D tensor)."""
        if isinstance(ids, Tensor):
            if ids.dim() != 2:
                raise ValueError(f"expected ids of shape (batch, seq), got {tuple(ids.shape)}")
            ids = list(ids)
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"expected ids to be a sequence of id sequences, got {type(ids).__name__}")
        rows = [self._ids(f"ids[{i}]", x) for i, x in enumerate(ids)]
        return self._tok.decode_batch(rows, skip_special_tokens=skip_special_tokens)


__all__ = ["Tokenizer", "check_texts", "pad_encodings", "rematch"]
