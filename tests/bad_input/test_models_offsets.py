"""Bad-input rows: character offsets of tokens (kexue.models.offsets: rematch, encoding_mapping, char_span,
token_span; Tokenizer.rematch and Tokenizer.offsets)."""

from __future__ import annotations

import functools

import pytest
from _matrix import Bad, check

from kexue.env import minilm_path
from kexue.models import Tokenizer, char_span, encoding_mapping, rematch, token_span


@functools.cache
def _tok() -> Tokenizer:
    return Tokenizer.from_pretrained(minilm_path())


MAP = [[], [0, 1], [3, 4, 5], []]  # "[CLS] ab cde [SEP]" of the text "ab cde"
R, TOK = "kexue.models.rematch", "kexue.models.Tokenizer"

ROWS = [
    Bad(R, "text None", lambda: rematch(None, ["a"]), TypeError, r"^expected text to be a str, got NoneType$"),
    Bad(R, "tokens one str", lambda: rematch("a b", "a b"), TypeError,
        r"^expected tokens to be a sequence of str, got str$"),
    Bad(R, "a token not a str", lambda: rematch("a b", ["a", 2]), TypeError,
        r"^expected tokens to be a sequence of str, got 2 \(int\) at index 1$"),
    Bad(R, "tokens of another text", lambda: rematch("a horse", ["a", "zebra"]), ValueError,
        r"^expected tokens that occur in order in the normalised text, got 'zebra' at index 1, not found after "
        r"character 1"),
    Bad(R, "tokens out of order", lambda: rematch("b a", ["a", "b"]), ValueError, r"got 'b' at index 1"),
    Bad(R, "an empty token", lambda: rematch("a", [""]), ValueError, r"got '' at index 0"),
    Bad(R, "lowercase 'yes'", lambda: rematch("a", ["a"], lowercase="yes"), TypeError,
        r"^expected lowercase to be a bool, got 'yes' \(str\)$"),
    Bad(R, "strip_accents 1", lambda: rematch("a", ["a"], strip_accents=1), TypeError,
        r"^expected strip_accents to be a bool, got 1 \(int\)$"),
    Bad(R, "unk_token None", lambda: rematch("a", ["a"], unk_token=None), TypeError,
        r"^expected unk_token to be a str, got None \(NoneType\)$"),
    Bad("kexue.models.encoding_mapping", "a list of ids", lambda: encoding_mapping([101, 102]), TypeError,
        r"^expected encoding to be a tokenizers\.Encoding .*got list$"),
    Bad("kexue.models.encoding_mapping", "a padded batch dict", lambda: encoding_mapping(_tok()(["a"])), TypeError,
        r"expected encoding to be a tokenizers\.Encoding .*got dict$"),
    Bad("kexue.models.char_span", "mapping a str", lambda: char_span("ab cde", 1, 2), TypeError,
        r"^expected mapping to be a list of character index lists .*got str$"),
    Bad("kexue.models.char_span", "mapping of (start, end) offsets pairs", lambda: char_span([(0, 2), (3, 6)], 0, 1),
        TypeError, r"^expected mapping to be a list of character index lists, got a tuple \(0, 2\) at index 0 "
        r"\(for \(start, end\) offsets pairs, encoding_mapping"),
    Bad("kexue.models.char_span", "indices out of order", lambda: char_span([[5, 2]], 0, 0),
        ValueError, r"^expected the indices of mapping\[0\] in increasing order, got 5 before 2$"),
    Bad("kexue.models.char_span", "indices not integers", lambda: char_span([["a", "b"]], 0, 0), TypeError,
        r"^expected mapping to hold character indices \(integers >= 0\), got 'a' in mapping\[0\]$"),
    Bad("kexue.models.char_span", "empty mapping", lambda: char_span([], 0, 0), ValueError,
        r"^expected mapping of at least one token, got an empty one$"),
    Bad("kexue.models.char_span", "end before start", lambda: char_span(MAP, 2, 1), ValueError,
        r"^expected end >= 2, got 1$"),
    Bad("kexue.models.char_span", "end past the tokens", lambda: char_span(MAP, 1, 4), ValueError,
        r"^expected end <= 3, got 4$"),
    Bad("kexue.models.char_span", "start negative", lambda: char_span(MAP, -1, 2), ValueError,
        r"^expected start >= 0, got -1$"),
    Bad("kexue.models.char_span", "start a float", lambda: char_span(MAP, 1.0, 2), TypeError,
        r"^expected start to be an integer, got 1\.0 \(float\)$"),
    Bad("kexue.models.char_span", "end at [SEP]", lambda: char_span(MAP, 1, 3), ValueError,
        r"^expected end at a token with characters, got 3, a special token \(it maps to \[\]\)$"),
    Bad("kexue.models.char_span", "start at [CLS]", lambda: char_span(MAP, 0, 2), ValueError,
        r"^expected start at a token with characters, got 0, a special token"),
    Bad("kexue.models.token_span", "mapping None", lambda: token_span(None, 0, 1), TypeError,
        r"^expected mapping to be a list of character index lists .*got NoneType$"),
    Bad("kexue.models.token_span", "a token's indices a str", lambda: token_span([[], "01"], 0, 1), TypeError,
        r"^expected mapping to be a list of character index lists, got str at index 1$"),
    Bad("kexue.models.token_span", "empty character range", lambda: token_span(MAP, 3, 3), ValueError,
        r"^expected stop >= 4, got 3$"),
    Bad("kexue.models.token_span", "first negative", lambda: token_span(MAP, -2, 3), ValueError,
        r"^expected first >= 0, got -2$"),
    Bad("kexue.models.token_span", "negative indices in the mapping", lambda: token_span([[-3, -1]], 0, 2),
        TypeError, r"^expected mapping to hold character indices \(integers >= 0\), got -3 in mapping\[0\]$"),
    Bad(f"{TOK}.rematch", "text bytes", lambda: _tok().rematch(b"a b", ["a"]), TypeError,
        r"^expected text to be a str, got bytes$"),
    Bad(f"{TOK}.rematch", "tokens a str", lambda: _tok().rematch("a b", "a"), TypeError,
        r"^expected tokens to be a sequence of str, got str$"),
    Bad(f"{TOK}.rematch", "tokens of another text", lambda: _tok().rematch("Café au lait", ["cafe", "thé"]),
        ValueError, r"got 'thé' at index 1, not found after character 4"),
    Bad(f"{TOK}.offsets", "a list of texts", lambda: _tok().offsets(["a", "b"]), TypeError,
        r"^expected text to be a str, got list$"),
    Bad(f"{TOK}.offsets", "max_length 0", lambda: _tok().offsets("a b", max_length=0), ValueError,
        r"^expected max_length >= 1, got 0$"),
    Bad(f"{TOK}.offsets", "truncation 'no'", lambda: _tok().offsets("a b", truncation="no"), TypeError,
        r"^expected truncation to be a bool, got 'no' \(str\)$"),
    Bad(f"{TOK}.offsets", "too long without truncation", lambda: _tok().offsets("a b c d e", 4, truncation=False),
        ValueError, r"^expected at most max_length=4 tokens per text, got 7 in text 0"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
