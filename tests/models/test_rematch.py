"""Character offsets of tokens (kexue.models.offsets, Tokenizer.rematch / Tokenizer.offsets) against the fast
tokenizer's offset mapping (transformers' BertTokenizerFast and tokenizers' Encoding.offsets) for all-MiniLM-L6-v2,
on AG News test texts and hand cases: accents, repeated whitespace, full-width characters, [UNK], word pieces."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.models import Tokenizer, char_span, encoding_mapping, rematch, token_span

HAND = [
    "Café  naïve\tRÉSUMÉ\nﬁne",                      # accents, tab, newline, a ligature in the vocabulary
    "  multiple   spaces\t\ttabs\n\nnewlines  ",      # runs of whitespace, leading and trailing
    "ＡＢＣ１２ ＨＥＬＬＯ，世界！ Ｘ",                    # full-width letters ([UNK] words) and punctuation
    "emoji 😀 and 😀😀 and a😀b, snowman x☃ y",         # [UNK] of one character, of two, inside a word
    "rare CJK 𠀀 extension B 𠀀世",                     # a CJK extension character is a word of its own ([UNK])
    "unaffable UNAFFABLE Unaffable",                 # '##' pieces in three cases
    "İstanbul İİİ then abc",                         # 'İ'.lower() is two characters: later indices must not shift
    "cafe\u0301 e\u0301 x\x00y \ufffd a\u200bb z",   # combining accent, NUL, U+FFFD, zero-width space
    "Zürich\u00a0Straße ΣΊΣΥΦΟΣ",                    # no-break space, sharp s, Greek with accents
    "Hello [UNK] [SEP] world [MASK]",                # bracketed special tokens written in the text
]


def _bert_normal(s: str) -> str:
    """Lower case, NFD without combining marks, without the characters a BERT normaliser drops."""
    s = "".join(c for c in s if c not in "\x00\ufffd" and not unicodedata.category(c).startswith("C"))
    return "".join(c for c in unicodedata.normalize("NFD", s.lower()) if unicodedata.category(c) != "Mn")


def _pairs(mapping: list[list[int]]) -> list[tuple[int, int]]:
    return [(m[0], m[-1] + 1) if m else (0, 0) for m in mapping]


@pytest.fixture(scope="module")
def agnews_500(data_root):
    from kexue.data.classification import agnews

    return agnews("test").texts[:500]


def _check_text(tok: Tokenizer, text: str) -> None:
    enc = tok.encode_raw([text], truncation=False)[0]
    mapping = tok.rematch(text, enc.tokens)
    assert _pairs(mapping) == list(enc.offsets), text
    assert _pairs(tok.offsets(text, truncation=False)) == list(enc.offsets)
    for t, m, special in zip(enc.tokens, mapping, enc.special_tokens_mask, strict=True):
        if special:
            assert m == [] and t in ("[CLS]", "[SEP]")
            continue
        assert m == sorted(set(m)) and m
        surface = text[m[0]: m[-1] + 1]
        if t != "[UNK]" or surface == "[UNK]":
            assert _bert_normal(surface) == t.removeprefix("##").lower(), (t, surface)
        else:  # an unknown word: a whole word of the text, no whitespace in it
            assert surface.strip() == surface and not any(c.isspace() for c in surface)


def test_agnews_against_encoding_offsets(minilm_tokenizer, agnews_500):
    for text in agnews_500:
        _check_text(minilm_tokenizer, text)


@pytest.mark.slow  # importing transformers takes seconds; the test above checks the same offsets from tokenizers
def test_agnews_against_transformers_offset_mapping(minilm_tokenizer, minilm_dir, agnews_500):
    transformers = pytest.importorskip("transformers")
    fast = transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    out = fast(agnews_500, return_offsets_mapping=True, return_special_tokens_mask=True)
    for text, ids, offs, special in zip(agnews_500, out["input_ids"], out["offset_mapping"],
                                        out["special_tokens_mask"], strict=True):
        tokens = fast.convert_ids_to_tokens(ids)
        assert _pairs(rematch(text, tokens)) == [tuple(o) for o in offs]
        assert _pairs(minilm_tokenizer.offsets(text)) == [tuple(o) for o in offs]
        assert [m == [] for m in minilm_tokenizer.offsets(text)] == [bool(s) for s in special]


@pytest.mark.parametrize("text", HAND)
def test_hand_cases(minilm_tokenizer, text):
    _check_text(minilm_tokenizer, text)


def test_hand_cases_spelled_out(minilm_tokenizer):
    text = "Café  ＡＢＣ x☃ İİ unaffable 😀"
    tokens = minilm_tokenizer.tokenize(text)
    assert tokens == ["cafe", "[UNK]", "[UNK]", "ii", "una", "##ffa", "##ble", "[UNK]"]
    mapping = minilm_tokenizer.rematch(text, ["[CLS]", *tokens, "[SEP]"])
    assert mapping[0] == mapping[-1] == []
    assert [text[m[0]: m[-1] + 1] for m in mapping[1:-1]] == ["Café", "ＡＢＣ", "x☃", "İİ", "una", "ffa", "ble", "😀"]
    assert mapping[1:-1] == rematch(text, tokens)
    assert mapping[1] == [0, 1, 2, 3] and mapping[4] == [13, 14] and mapping[-2] == [len(text) - 1]


def test_index_does_not_shift_after_a_lengthening_lower_case():
    # bert4keras lower-cases the whole text first: 'İ'.lower() has 2 characters, so its indices shift by one per 'İ'
    text = "İİİ abc"
    assert rematch(text, ["ii", "##i", "abc"]) == [[0, 1], [2], [4, 5, 6]]


def test_combining_marks_and_dropped_characters():
    text = "cafe\u0301 x\x00y a\u200bb"
    m = rematch(text, ["cafe", "xy", "ab"])
    assert m == [[0, 1, 2, 3], [6, 8], [10, 12]]  # the accent is not part of 'cafe' (as the fast tokenizer has it)
    assert char_span(m, 1, 2) == (6, 13) and text[6:13] == "x\x00y a\u200bb"


def test_special_tokens_and_unk():
    assert rematch("hi there", ["[CLS]", "hi", "[UNK]", "[SEP]", "[PAD]"]) == [[], [0, 1], [3, 4, 5, 6, 7], [], []]
    assert rematch("a [SEP] b", ["a", "[SEP]", "b"]) == [[0], [2, 3, 4, 5, 6], [8]]  # written in the text
    assert rematch("a ,x", ["a", "[UNK]", "x"]) == [[0], [2], [3]]  # an unknown punctuation mark is one character
    assert rematch("x ☃☃ y", ["x", "<unk>", "y"], unk_token="<unk>") == [[0], [2, 3], [5]]  # another unk_token
    assert rematch("end", ["end", "[UNK]"]) == [[0, 1, 2], []]  # nothing left for it


def test_without_lowercase_or_accent_stripping(minilm_dir):
    from tokenizers.implementations import BertWordPieceTokenizer

    vocab = str(minilm_dir / "vocab.txt")
    for lowercase, strip in ((True, False), (False, True), (False, False)):
        tok = Tokenizer(BertWordPieceTokenizer(vocab, lowercase=lowercase, strip_accents=strip)._tokenizer)
        assert tok._normalization() == (lowercase, strip)
        for text in HAND[:-1]:
            enc = tok.encode_raw([text])[0]
            assert _pairs(tok.rematch(text, enc.tokens)) == list(enc.offsets), (lowercase, strip, text)
            assert _pairs(rematch(text, enc.tokens, lowercase, strip)) == list(enc.offsets)


def test_tokens_of_another_text_are_refused():
    with pytest.raises(ValueError, match=r"expected tokens that occur in order .*got 'zebra' at index 1"):
        rematch("a horse", ["a", "zebra"])
    with pytest.raises(ValueError, match=r"got 'a' at index 1, not found after character 1"):
        rematch("a b", ["a", "a"])  # in order: the second 'a' is not after the first


_ALPHABET = st.sampled_from(list("abcXYZ éÉüÜİß  \t\n,.!-'ＡＢ１，世界𠀀😀☃ﬁΣ") + ["\u0301", "\u200b", "\x00", "\ufffd",
                                                                         "\u00a0", "##", "[UNK]", "una", "ffable"])


@settings(max_examples=150)
@given(st.lists(_ALPHABET, max_size=30).map("".join))
def test_random_texts_match_the_fast_tokenizer(minilm_tokenizer, text):
    enc = minilm_tokenizer.encode_raw([text], truncation=False)[0]
    assert _pairs(minilm_tokenizer.rematch(text, enc.tokens)) == list(enc.offsets)


def test_pair_mapping_refers_to_each_text(minilm_tokenizer):
    question, context = "Who founded Zürich?", "Zürich was founded by the Romans, as Turicum."
    enc = minilm_tokenizer.encode_raw([question], [context])[0]
    mapping = encoding_mapping(enc)
    context_tokens = [k for k, s in enumerate(enc.sequence_ids) if s == 1]
    s, e = context_tokens[0], context_tokens[-1]
    first, stop = char_span(mapping, s, e)
    assert context[first:stop] == context
    assert token_span(mapping[s:], context.index("Romans"), context.index("Romans") + 6) is not None
    first, stop = char_span(mapping, 1, enc.sequence_ids.index(None, 1) - 1)
    assert question[first:stop] == question


def test_char_span_and_token_span_invert(minilm_tokenizer, agnews_500):
    for text in agnews_500[:100]:
        mapping = minilm_tokenizer.offsets(text)
        n = len(mapping)
        for s, e in ((1, 1), (1, n - 2), (n // 3, n // 2), (n - 2, n - 2)):
            first, stop = char_span(mapping, s, e)
            assert token_span(mapping, first, stop) == (s, e)
            assert _bert_normal(text[first:stop]).replace(" ", "") == \
                "".join(_bert_normal(text[m[0]: m[-1] + 1]) for m in mapping[s: e + 1])
    mapping = rematch("a  bc d", ["[CLS]", "a", "bc", "d", "[SEP]"])
    assert token_span(mapping, 1, 3) is None  # only whitespace
    assert token_span(mapping, 4, 5) == (2, 2)  # half a token gets the whole token
    assert token_span(mapping, 0, 7) == (1, 3)
