"""A thin wrapper over the ``tokenizers`` library for BERT-style models.

Loads ``tokenizer.json`` (or builds a WordPiece tokenizer from ``vocab.txt``), encodes batches of single texts or
pairs with padding, truncation and segment ids, and decodes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Encoding
from tokenizers import Tokenizer as _HFTokenizer
from torch import Tensor

from ..nn.padding import pad


def pad_encodings(encodings: Sequence[Encoding], pad_id: int, with_types: bool = True) -> dict[str, Tensor]:
    """Right-pad ``tokenizers`` encodings to the longest: int64 ``input_ids`` (``pad_id`` after the end),
    ``attention_mask`` (1/0) and, with ``with_types``, ``token_type_ids`` (0 after the end), as
    ``transformers.DataCollatorWithPadding`` pads them; :func:`kexue.nn.padding.pad` does the padding."""
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
        folder = Path(path)
        cfg: dict[str, Any] = {}
        if (folder / "tokenizer_config.json").exists():
            cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        if (folder / "tokenizer.json").exists():
            tok = _HFTokenizer.from_file(str(folder / "tokenizer.json"))
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
            max_length = json.loads(st_cfg.read_text(encoding="utf-8")).get("max_seq_length")
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
        return self._tok.token_to_id(token)

    def tokenize(self, text: str) -> list[str]:
        return self._tok.encode(text, add_special_tokens=False).tokens

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
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got a single str; wrap it in a list")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"expected as many pairs as texts ({len(texts)}), got {len(pairs)} pairs")
        limit = self.max_length if max_length is None else max_length
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

    def decode(self, ids: Sequence[int] | Tensor, skip_special_tokens: bool = True) -> str:
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def decode_batch(self, ids: Sequence[Sequence[int]] | Tensor, skip_special_tokens: bool = True) -> list[str]:
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return self._tok.decode_batch([list(x) for x in ids], skip_special_tokens=skip_special_tokens)


__all__ = ["Tokenizer", "pad_encodings"]
