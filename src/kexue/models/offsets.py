"""Character offsets of tokens: which characters of the original text each token came from.

Extraction heads (span pointers, subject–object pointers, BIO taggers) predict token positions; the answer is a
slice of the original text, ``text[mapping[start][0] : mapping[end][-1] + 1]`` (:func:`char_span`), so it keeps the
text's case, accents, spacing and full-width characters although the tokens lost them. Su added ``rematch`` to
bert4keras's tokenizer for this ("bert4keras在手，baseline我有：百度LIC2020", 2020-04-02,
https://kexue.fm/archives/7321).

Two ways to the mapping:

* from a fast tokenizer's offsets (:meth:`kexue.models.Tokenizer.offsets`, :func:`encoding_mapping`): the library
  tracked every character through normalisation, so these are preferred;
* :func:`rematch`, for a list of tokens without offsets: normalise the text one character at a time as a BERT
  tokenizer does (lower case, NFD and drop the combining marks, drop control characters, NUL and U+FFFD), remember
  which original character each normalised one came from, and find the tokens in order in the normalised text.
"""

from __future__ import annotations

import numbers
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import Encoding

from .._validate import check_bool, check_int


def _is_dropped(ch: str) -> bool:
    """Characters a BERT normaliser removes (``clean_text``): NUL, U+FFFD, and the "other" categories (control,
    format, unassigned, private use) except tab, newline and carriage return, which count as whitespace."""
    return ch in "\x00\ufffd" or (ch not in "\t\n\r" and unicodedata.category(ch).startswith("C"))


def _is_space(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_punctuation(ch: str) -> bool:
    """BERT's punctuation: every non-alphanumeric ASCII symbol and the Unicode ``P*`` categories."""
    cp = ord(ch)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or \
        unicodedata.category(ch).startswith("P")


def _is_cjk(ch: str) -> bool:
    """The CJK ideograph blocks that BERT splits into one-character words."""
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


def _normalize(text: str, lowercase: bool, strip_accents: bool) -> tuple[str, list[int]]:
    """The normalised text and, for each of its characters, the index of the original character it came from.

    Character by character (so an index never shifts: ``"İ".lower()`` is two characters, both owned by the one
    original), as the ``tokenizers`` BertNormalizer: drop NUL/U+FFFD/control, lower-case, NFD and drop ``Mn``."""
    chars: list[str] = []
    owner: list[int] = []
    for i, ch in enumerate(text):
        if _is_dropped(ch):
            continue
        if lowercase:
            ch = ch.lower()
        if strip_accents:
            ch = "".join(c for c in unicodedata.normalize("NFD", ch) if unicodedata.category(c) != "Mn")
        chars.append(ch)
        owner.extend([i] * len(ch))
    return "".join(chars), owner


def _is_special(token: str) -> bool:
    """bert4keras's rule: ``[CLS]``, ``[SEP]``, ``[UNK]``, ``[MASK]``... (a bracketed name)."""
    return len(token) >= 2 and token[0] == "[" and token[-1] == "]"


def _word_end(norm: str, j: int) -> int:
    """End of the word that starts at ``norm[j]`` as BERT's pre-tokenizer cuts it: one punctuation mark or CJK
    ideograph, else up to the next whitespace, punctuation or ideograph."""
    if _is_punctuation(norm[j]) or _is_cjk(norm[j]):
        return j + 1
    k = j + 1
    while k < len(norm) and not (_is_space(norm[k]) or _is_punctuation(norm[k]) or _is_cjk(norm[k])):
        k += 1
    return k


def _check_tokens(tokens: Any) -> list[str]:
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Iterable):
        raise TypeError(f"expected tokens to be a sequence of str, got {type(tokens).__name__}")
    out = list(tokens)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"expected tokens to be a sequence of str, got {t!r} ({type(t).__name__}) at index {i}")
    return out


def rematch(text: str, tokens: Sequence[str], lowercase: bool = True, strip_accents: bool = True, *,
            unk_token: str = "[UNK]") -> list[list[int]]:
    """The indices of the characters of ``text`` each of ``tokens`` came from (bert4keras's ``Tokenizer.rematch``).

    The text is normalised character by character as a BERT WordPiece tokenizer does (``lowercase``, and with
    ``strip_accents`` NFD then the combining marks ``Mn`` dropped; NUL, U+FFFD and control characters always
    dropped), each normalised character remembering its original index; then each token (a ``##`` piece without its
    ``##``) is found in order from where the previous one ended, and gets the original indices of its characters
    (increasing, each once; a dropped character inside a token is not listed, so use ``[0]`` and ``[-1]``).

    Special tokens (``[CLS]``, ``[SEP]``, any bracketed name) give ``[]``, except that a bracketed token written
    literally in the text at that point maps to it (as the fast tokenizer's added tokens do), and ``unk_token``
    maps to the word it replaced: the next word as BERT's pre-tokenizer cuts it (one punctuation mark or CJK
    ideograph, else up to whitespace or punctuation), which is what the fast tokenizer's offsets give. Two fixes
    over bert4keras: indices refer to the original text even where lower-casing lengthens a character (bert4keras
    lower-cases the whole text first, so ``"İ"`` shifts every later index), and ``[UNK]`` gets its word, not ``[]``.

    Slice the text with ``text[m[0] : m[-1] + 1]`` (:func:`char_span` for a run of tokens). A token that does not
    occur in the normalised text after the previous one raises ``ValueError`` naming it (the tokens are not of this
    text, or the tokenizer normalises differently: pass its ``lowercase``/``strip_accents``).
    """
    if not isinstance(text, str):
        raise TypeError(f"expected text to be a str, got {type(text).__name__}")
    toks = _check_tokens(tokens)
    check_bool("lowercase", lowercase)
    check_bool("strip_accents", strip_accents)
    if not isinstance(unk_token, str):
        raise TypeError(f"expected unk_token to be a str, got {unk_token!r} ({type(unk_token).__name__})")
    norm, owner = _normalize(text, lowercase, strip_accents)
    out: list[list[int]] = []
    pos = 0
    for i, tok in enumerate(toks):
        if _is_special(tok) or tok == unk_token:
            j = pos
            while j < len(norm) and _is_space(norm[j]):
                j += 1
            literal = _normalize(tok, lowercase, strip_accents)[0]
            if norm.startswith(literal, j):
                start, end = j, j + len(literal)
            elif tok == unk_token and j < len(norm):
                start, end = j, _word_end(norm, j)
            else:
                out.append([])
                continue
        else:
            piece = tok[2:] if tok.startswith("##") and len(tok) > 2 else tok
            piece = _normalize(piece, lowercase, strip_accents)[0]
            start = norm.find(piece, pos)
            if start < 0 or not piece:
                raise ValueError(f"expected tokens that occur in order in the normalised text, got {tok!r} at "
                                 f"index {i}, not found after character {owner[pos] if pos < len(owner) else len(text)}"
                                 f" of the text")
            end = start + len(piece)
        out.append(list(dict.fromkeys(owner[start:end])))
        pos = end
    return out


def encoding_mapping(encoding: Encoding) -> list[list[int]]:
    """The character indices of each token of a ``tokenizers.Encoding`` from its offsets, in :func:`rematch`'s
    form: ``list(range(start, end))`` for a token at ``(start, end)``, ``[]`` for a special token (``[CLS]``,
    ``[SEP]``, padding). For a pair the indices refer to the token's own sequence (``encoding.sequence_ids``)."""
    if not isinstance(encoding, Encoding):
        raise TypeError(f"expected encoding to be a tokenizers.Encoding (Tokenizer.encode_raw gives them), got "
                        f"{type(encoding).__name__}")
    return [[] if special else list(range(s, e))
            for (s, e), special in zip(encoding.offsets, encoding.special_tokens_mask, strict=True)]


def _check_mapping(mapping: Any) -> list[Sequence[int]]:
    """``mapping`` as a list after checking that it is a sequence of index lists (not tuples, which are the form of
    ``(start, end)`` offsets pairs; their items are checked where read, :func:`_ends`)."""
    if isinstance(mapping, (str, bytes)) or not isinstance(mapping, Sequence):
        raise TypeError(f"expected mapping to be a list of character index lists (rematch or Tokenizer.offsets "
                        f"gives one), got {type(mapping).__name__}")
    for i, m in enumerate(mapping):
        if isinstance(m, tuple):  # offset pairs (start, end) read as indices would lose the last character
            raise TypeError(f"expected mapping to be a list of character index lists, got a tuple {m!r} at index "
                            f"{i} (for (start, end) offsets pairs, encoding_mapping turns an Encoding into lists)")
        if isinstance(m, (str, bytes)) or not isinstance(m, Sequence):
            raise TypeError(f"expected mapping to be a list of character index lists, got {type(m).__name__} at "
                            f"index {i}")
    return list(mapping)


def _ends(mapping: list[Sequence[int]], k: int) -> tuple[int, int]:
    """First and last character index of token ``k`` (which maps to some), checked to be integers >= 0, in order."""
    m = mapping[k]
    a, b = m[0], m[-1]
    for x in (a, b):
        if not isinstance(x, numbers.Integral) or isinstance(x, bool) or x < 0:
            raise TypeError(f"expected mapping to hold character indices (integers >= 0), got {x!r} in mapping[{k}]")
    if a > b:
        raise ValueError(f"expected the indices of mapping[{k}] in increasing order, got {a} before {b}")
    return int(a), int(b)


def char_span(mapping: Sequence[Sequence[int]], start: int, end: int) -> tuple[int, int]:
    """``(first, stop)`` such that ``text[first:stop]`` is the text of tokens ``start..end`` (both included):
    ``(mapping[start][0], mapping[end][-1] + 1)``, the post's ``text[map[start][0] : map[end][-1] + 1]``.

    Raises ``ValueError`` for positions outside the mapping, ``start > end``, or an end token that maps to no
    characters (a special token such as ``[CLS]`` or ``[SEP]``: restrict decoding to the text's tokens)."""
    maps = _check_mapping(mapping)
    n = len(maps)
    if n == 0:
        raise ValueError("expected mapping of at least one token, got an empty one")
    start = check_int("start", start, 0, n - 1)
    end = check_int("end", end, start, n - 1)
    for name, k in (("start", start), ("end", end)):
        if not maps[k]:
            raise ValueError(f"expected {name} at a token with characters, got {k}, a special token (it maps to [])")
    return _ends(maps, start)[0], _ends(maps, end)[1] + 1


def token_span(mapping: Sequence[Sequence[int]], first: int, stop: int) -> tuple[int, int] | None:
    """The tokens ``(start, end)`` (both included) covering the characters ``first..stop - 1``: the first and the
    last token that has a character in that range. ``None`` when no token has one (the span was truncated away,
    or it is whitespace). The inverse of :func:`char_span` for spans on token boundaries; a span cutting a token
    gets the whole token."""
    maps = _check_mapping(mapping)
    first = check_int("first", first, 0)
    stop = check_int("stop", stop, first + 1)
    hits = [k for k, m in enumerate(maps) if m and _ends(maps, k)[0] < stop and _ends(maps, k)[1] >= first]
    return (hits[0], hits[-1]) if hits else None


__all__ = ["char_span", "encoding_mapping", "rematch", "token_span"]
