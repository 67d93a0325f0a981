"""The LIC2020 label schemes (kexue.fm/archives/7321): BIO over (event type, role) round trips keeping repeated
arguments and several arguments of one role; strict vs lenient decoding; predicate–slot flattening and merging;
the LCS soft match (subsequence and substring)."""

from __future__ import annotations

import random

import pytest
import torch

from kexue.heads import (
    ArgumentSpan,
    BIOScheme,
    SlotTriple,
    flatten_triples,
    lcs_length,
    merge_triples,
    soft_f1,
    soft_match,
)

PAIRS = [("attack", "attacker"), ("attack", "target"), ("trade", "buyer")]


def test_label_ids_follow_the_post():
    scheme = BIOScheme(PAIRS)
    assert scheme.num_labels == 7
    assert scheme.names == ["O", "B-attack/attacker", "I-attack/attacker", "B-attack/target", "I-attack/target",
                            "B-trade/buyer", "I-trade/buyer"]
    tags = scheme.encode([("attack", "target", 2, 4)], 6)
    assert tags == [0, 0, 3, 4, 4, 0]


def test_round_trip_keeps_repeated_arguments_and_several_of_one_role():
    scheme = BIOScheme(PAIRS)
    args = [ArgumentSpan("attack", "target", 1, 2), ArgumentSpan("attack", "target", 3, 3),  # two targets, adjacent
            ArgumentSpan("attack", "attacker", 5, 6), ArgumentSpan("attack", "attacker", 9, 10)]  # the same text twice
    tags = scheme.encode(args, 12)
    assert scheme.decode(tags) == args
    assert scheme.decode(torch.tensor(tags), strict=True) == args
    assert scheme.encode(scheme.decode(tags), 12) == tags


def test_random_round_trips():
    rng = random.Random(0)
    scheme = BIOScheme(PAIRS)
    for _ in range(200):
        n = rng.randint(1, 20)
        tags, i = [0] * n, 0
        while i < n:  # a valid BIO sequence: runs of B I* or O
            if rng.random() < 0.5:
                i += 1
                continue
            ell, length = rng.randrange(3), rng.randint(1, 3)
            tags[i] = 2 * ell + 1
            for j in range(i + 1, min(i + length, n)):
                tags[j] = 2 * ell + 2
            i += length
        for strict in (False, True):
            assert scheme.encode(scheme.decode(tags, strict=strict), n) == tags


def test_strict_and_lenient_decoding_on_hand_cases():
    scheme = BIOScheme(PAIRS)
    b_att, i_att, i_tgt = 1, 2, 4
    # an I of another pair after a B: the script appends it; strict closes the argument and drops it
    tags = [0, b_att, i_tgt, i_att, 0]
    assert scheme.decode(tags) == [ArgumentSpan("attack", "attacker", 1, 3)]
    assert scheme.decode(tags, strict=True) == [ArgumentSpan("attack", "attacker", 1, 1)]
    # an I with nothing open starts nothing, in both
    assert scheme.decode([i_att, i_att, 0, b_att]) == [ArgumentSpan("attack", "attacker", 3, 3)]
    assert scheme.decode([i_att, i_att, 0, b_att], strict=True) == [ArgumentSpan("attack", "attacker", 3, 3)]
    # B after B opens a new argument
    assert scheme.decode([b_att, b_att, i_att]) == [ArgumentSpan("attack", "attacker", 0, 0),
                                                    ArgumentSpan("attack", "attacker", 1, 2)]


def test_overlap_refused_or_skipped_and_transition_mask():
    scheme = BIOScheme(PAIRS)
    args = [("attack", "target", 1, 3), ("trade", "buyer", 3, 4), ("trade", "buyer", 5, 5)]
    refusal = r"do not overlap .*got \('trade', 'buyer', 3, 4\) over a token already tagged I-attack/target"
    with pytest.raises(ValueError, match=refusal):
        scheme.encode(args, 6)
    assert scheme.encode(args, 6, overlap="skip") == [0, 3, 4, 4, 0, 5]
    ok = scheme.transition_mask()
    for i in range(7):
        for j in range(7):
            expect = j == 0 or j % 2 == 1 or i in (j - 1, j)
            assert bool(ok[i, j]) == expect


def test_flatten_and_merge_round_trip():
    triples = [
        SlotTriple("Film A", "box_office", {"@value": "1 bn", "inArea": "China"}),
        SlotTriple("Film A", "box_office", {"@value": "2 bn", "inArea": "World"}),  # two objects of one (s, p)
        SlotTriple("Film A", "starring", {"@value": "X"}),
        SlotTriple("Film A", "starring", {"@value": "Y"}),  # the script's merge keeps only Y
        SlotTriple("Y", "award", {"@value": "Best actor", "inWork": "Film A", "onDate": "2019"}),
    ]
    flat = flatten_triples(triples)
    assert flat[:2] == [("Film A", "box_office_@value", "1 bn"), ("Film A", "box_office_inArea", "China")]
    assert len(flat) == 2 + 2 + 1 + 1 + 3
    assert merge_triples(flat) == triples
    # predicates may contain '_': the split is at the last one
    assert merge_triples(flatten_triples([("s", "a_b", {"@value": "o"})])) == [("s", "a_b", {"@value": "o"})]


def lcs_brute(a, b, kind):
    """By enumeration: the longest substring of a found in b, or the longest subsequence of a that is one of b."""
    import itertools

    if kind == "substring":
        return max([j - i for i in range(len(a) + 1) for j in range(i, len(a) + 1) if a[i:j] in b], default=0)

    def is_subseq(s, t):
        it = iter(t)
        return all(c in it for c in s)

    return max(r for r in range(len(a) + 1) for c in itertools.combinations(a, r) if is_subseq(c, b))


def test_lcs_against_enumeration_and_soft_match():
    rng = random.Random(1)
    for _ in range(100):
        a = "".join(rng.choice("abc") for _ in range(rng.randint(0, 7)))
        b = "".join(rng.choice("abc") for _ in range(rng.randint(0, 7)))
        for kind in ("subsequence", "substring"):
            assert lcs_length(a, b, kind) == lcs_brute(a, b, kind), (a, b, kind)
    assert lcs_length("abcd", "acbd") == 3 and lcs_length("abcd", "acbd", "substring") == 1
    assert soft_match("abcd", "acbd") == 2 * 3 / 8
    assert soft_match("abcd", "acbd", kind="substring") == 2 * 1 / 8
    assert soft_match("Paris", "Paris") == 1.0 and soft_match("x", "y") == 0.0


def test_soft_f1_counts_every_argument():
    key = ("attack", "target")
    gold = [(key, "the bank"), (key, "the bank"), (("attack", "attacker"), "rebels")]
    pred = [(key, "the bank"), (key, "bank"), (("attack", "attacker"), "the rebels")]
    got = soft_f1(pred, gold)
    x = 1.0 + soft_match("bank", "the bank") + soft_match("the rebels", "rebels")
    assert got.f1 == pytest.approx(2 * x / 6) and got.precision == pytest.approx(x / 3)
    assert soft_f1([], []) == (1.0, 1.0, 1.0)
    assert soft_f1([], gold) == (0.0, 1.0, 0.0)
