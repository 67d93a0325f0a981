"""Bad-input rows: kexue.heads' label schemes (kexue.fm/archives/7321)."""

from __future__ import annotations

import pytest
import torch
from _matrix import Bad, check

from kexue.heads import BIOScheme, flatten_triples, lcs_length, merge_triples, soft_f1, soft_match

B = BIOScheme([("attack", "target"), ("trade", "buyer")])

ROWS = [
    Bad("kexue.heads.BIOScheme", "no pairs", lambda: BIOScheme([]), ValueError,
        r"expected pairs to be a non-empty sequence of \(event_type, role\), got \[\]"),
    Bad("kexue.heads.BIOScheme", "a pair given twice", lambda: BIOScheme([("a", "b"), ("a", "b")]), ValueError,
        r"expected unique pairs, got \('a', 'b'\) twice"),
    Bad("kexue.heads.BIOScheme", "a string for a pair", lambda: BIOScheme(["attack/target"]), TypeError,
        r"expected pairs of two strings \(event_type, role\), got 'attack/target'"),
    Bad("kexue.heads.BIOScheme.encode", "an unknown role", lambda: B.encode([("attack", "victim", 0, 1)], 4),
        ValueError, r"expected \(event_type, role\) among the scheme's 2 pairs, got \('attack', 'victim'\)"),
    Bad("kexue.heads.BIOScheme.encode", "end past seq_len", lambda: B.encode([("attack", "target", 2, 4)], 4),
        ValueError, r"expected 0 <= start <= end < seq_len = 4, got \('attack', 'target', 2, 4\)"),
    Bad("kexue.heads.BIOScheme.encode", "overlapping arguments", lambda: B.encode([("attack", "target", 0, 1),
        ("trade", "buyer", 1, 2)], 4), ValueError, r"expected arguments that do not overlap .*got \('trade', "
        r"'buyer', 1, 2\) over a token already tagged I-attack/target"),
    Bad("kexue.heads.BIOScheme.encode", "unknown overlap", lambda: B.encode([], 4, overlap="last"), ValueError,
        r"expected overlap to be one of \['error', 'skip'\], got 'last'"),
    Bad("kexue.heads.BIOScheme.encode", "a 3-tuple", lambda: B.encode([("attack", "target", 2)], 4), TypeError,
        r"expected arguments of \(event_type, role, start, end\), got \('attack', 'target', 2\)"),
    Bad("kexue.heads.BIOScheme.encode", "start a float", lambda: B.encode([("attack", "target", 1.0, 2)], 4),
        TypeError, r"expected start to be an integer, got 1\.0"),
    Bad("kexue.heads.BIOScheme.decode", "a tag past the labels", lambda: B.decode([0, 1, 5]), ValueError,
        r"expected tags' values <= 4, got 5"),
    Bad("kexue.heads.BIOScheme.decode", "a 2-d tensor", lambda: B.decode(torch.zeros(2, 3, dtype=torch.long)),
        ValueError, r"expected tags as a 1-D integer tensor, got dtype torch\.int64 and shape \(2, 3\)"),
    Bad("kexue.heads.BIOScheme.decode", "strict a string", lambda: B.decode([0], strict="yes"), TypeError,
        r"expected strict to be a bool, got 'yes'"),
    Bad("kexue.heads.BIOScheme.decode", "a string of tags", lambda: B.decode("0120"), TypeError,
        r"expected tags to be a sequence of label ids, got str"),
    Bad("kexue.heads.flatten_triples", "object a string", lambda: flatten_triples([("s", "p", "o")]), TypeError,
        r"expected triples of \(subject, predicate, object slots as a mapping\), got \('s', 'p', 'o'\)"),
    Bad("kexue.heads.flatten_triples", "a slot key with '_'", lambda: flatten_triples([("s", "p", {"in_work": "o"})]),
        ValueError, r"expected slot keys without '_' .*got 'in_work'"),
    Bad("kexue.heads.flatten_triples", "an empty object", lambda: flatten_triples([("s", "p", {})]), ValueError,
        r"expected an object with at least one slot, got \('s', 'p', \{\}\)"),
    Bad("kexue.heads.merge_triples", "a predicate without a slot", lambda: merge_triples([("s", "starring", "o")]),
        ValueError, r"expected a flattened predicate 'predicate_slot', got 'starring'"),
    Bad("kexue.heads.merge_triples", "a pair", lambda: merge_triples([("s", "p_@value")]), TypeError,
        r"expected triples of \(subject, predicate_slot, object\), got \('s', 'p_@value'\)"),
    Bad("kexue.heads.lcs_length", "unknown kind", lambda: lcs_length("ab", "b", kind="subword"), ValueError,
        r"expected kind to be one of \['subsequence', 'substring'\], got 'subword'"),
    Bad("kexue.heads.lcs_length", "a number", lambda: lcs_length(12, "b"), TypeError,
        r"expected a to be a sequence \(a string, say\), got int"),
    Bad("kexue.heads.soft_match", "two empty strings", lambda: soft_match("", ""), ValueError,
        r"expected pred or gold to be non-empty .*got two empty sequences"),
    Bad("kexue.heads.soft_match", "unknown kind", lambda: soft_match("a", "a", "lcs"), ValueError,
        r"expected kind to be one of .*got 'lcs'"),
    Bad("kexue.heads.soft_f1", "a bare string item", lambda: soft_f1(["the bank"], []), TypeError,
        r"expected items of \(key, text\), got 'the bank'"),
    Bad("kexue.heads.soft_f1", "an empty text", lambda: soft_f1([], [(("a", "r"), "")]), ValueError,
        r"expected items with a non-empty text, got \(\('a', 'r'\), ''\)"),
    Bad("kexue.heads.soft_f1", "unknown kind", lambda: soft_f1([], [], kind="token"), ValueError,
        r"expected kind to be one of .*got 'token'"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
