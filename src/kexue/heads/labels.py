"""Label schemes of the LIC2020 baselines (the spec's ``lic2020_label_schemes``): BIO tags over (event type, role)
pairs and back, predicate–slot flattening of triples and back, and the LCS soft match of the event metric.

Post: "bert4keras在手，baseline我有：百度LIC2020" (With bert4keras in hand, baselines are easy: Baidu LIC2020),
2020-04-02, https://kexue.fm/archives/7321. Where the scripts collapse repeated arguments, several arguments of one
role or several objects of one (subject, predicate) (their dicts key by text or by role), these schemes keep them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from .._validate import check_bool, check_choice, check_int

#: What :meth:`BIOScheme.encode` does with an argument overlapping one already placed (BIO gives a token one label).
Overlap = Literal["error", "skip"]
#: The longest common subsequence (the event script's ``pylcs.lcs``, the default) or substring (its comment's word).
MatchKind = Literal["subsequence", "substring"]


class ArgumentSpan(NamedTuple):
    """An event argument: its (event_type, role) and its token span ``start``..``end`` (inclusive)."""

    event_type: str
    role: str
    start: int
    end: int


class FlatTriple(NamedTuple):
    """A triple whose predicate is a flattened ``predicate + "_" + slot``."""

    subject: str
    predicate: str
    object: str


class SlotTriple(NamedTuple):
    """A triple whose object has named slots (DuIE 2.0: ``{"@value": ..., "inWork": ...}``)."""

    subject: str
    predicate: str
    object: dict[str, str]


class SoftF1(NamedTuple):
    """The soft-matched F1 = 2X/(|pred| + |gold|), precision X/|pred| and recall X/|gold|, X the summed matches."""

    f1: float
    precision: float
    recall: float


class BIOScheme:
    """BIO tags over (event_type, role) pairs (kexue.fm/archives/7321): O = 0, B = 2ℓ + 1, I = 2ℓ + 2 for the pair
    ℓ, 2·|pairs| + 1 labels. :meth:`encode` turns arguments into tags, :meth:`decode` tags into arguments; every
    argument is a span, so a text repeated in the sentence and several arguments of one role stay apart (the script
    keys them by text, and loses them).

    Decoding (the script's rule, ``strict=False``): B opens a new argument, I extends the open one, O (or an I with
    none open) closes it. The script extends the open argument with an I of *any* pair; ``strict=True`` extends only
    with the I of the open argument's own pair, and an I of another pair closes it and is dropped (starts nothing).
    """

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or len(pairs) == 0:
            raise ValueError(f"expected pairs to be a non-empty sequence of (event_type, role), got {pairs!r}")
        for p in pairs:
            if not (isinstance(p, tuple) and len(p) == 2 and all(isinstance(s, str) for s in p)):
                raise TypeError(f"expected pairs of two strings (event_type, role), got {p!r}")
        if len(set(pairs)) != len(pairs):
            dup = next(p for i, p in enumerate(pairs) if p in pairs[:i])
            raise ValueError(f"expected unique pairs, got {dup!r} twice")
        self.pairs: tuple[tuple[str, str], ...] = tuple(pairs)
        self.index = {p: i for i, p in enumerate(self.pairs)}

    @property
    def num_labels(self) -> int:
        return 2 * len(self.pairs) + 1

    @property
    def names(self) -> list[str]:
        """Label names by id: ``O``, then ``B-type/role`` and ``I-type/role`` per pair."""
        return ["O"] + [f"{t}-{e}/{r}" for e, r in self.pairs for t in ("B", "I")]

    def transition_mask(self) -> Tensor:
        """(num_labels, num_labels) bool, True where tag j may follow tag i under strict BIO: I_ℓ only after B_ℓ or
        I_ℓ (for a CRF's constrained decoding)."""
        n = self.num_labels
        ok = torch.ones(n, n, dtype=torch.bool)
        for ell in range(len(self.pairs)):
            ok[:, 2 * ell + 2] = False
            ok[2 * ell + 1, 2 * ell + 2] = ok[2 * ell + 2, 2 * ell + 2] = True
        return ok

    def encode(self, arguments: Iterable[tuple[str, str, int, int]], seq_len: int,
               overlap: Overlap = "error") -> list[int]:
        """Tags (seq_len,) for ``arguments`` (event_type, role, start, end), inclusive token spans: B at the start,
        I after it. ``overlap="error"`` refuses an argument sharing a token with one placed before it; ``"skip"``
        leaves it out."""
        n = check_int("seq_len", seq_len, 1)
        check_choice("overlap", overlap, Overlap)
        tags = [0] * n
        for a in arguments:
            if not (isinstance(a, tuple) and len(a) == 4):
                raise TypeError(f"expected arguments of (event_type, role, start, end), got {a!r}")
            e, r, s, t = a
            if (e, r) not in self.index:
                raise ValueError(f"expected (event_type, role) among the scheme's {len(self.pairs)} pairs, got "
                                 f"{(e, r)!r}")
            s, t = check_int("start", s), check_int("end", t)
            if not 0 <= s <= t < n:
                raise ValueError(f"expected 0 <= start <= end < seq_len = {n}, got {a!r}")
            if any(tags[s: t + 1]):
                if overlap == "skip":
                    continue
                raise ValueError(f"expected arguments that do not overlap (BIO gives a token one label), got {a!r} "
                                 f"over a token already tagged {self.names[next(x for x in tags[s: t + 1] if x)]}")
            ell = self.index[(e, r)]
            tags[s] = 2 * ell + 1
            tags[s + 1: t + 1] = [2 * ell + 2] * (t - s)
        return tags

    def decode(self, tags: Sequence[int] | Tensor, strict: bool = False) -> list[ArgumentSpan]:
        """Arguments from tags (a sequence of label ids or a 1-D integer tensor), in order of their starts."""
        check_bool("strict", strict)
        if isinstance(tags, Tensor):
            if tags.dim() != 1 or tags.is_floating_point() or tags.dtype == torch.bool:
                raise ValueError(f"expected tags as a 1-D integer tensor, got dtype {tags.dtype} and shape "
                                 f"{tuple(tags.shape)}")
            tags = tags.tolist()
        if isinstance(tags, (str, bytes)) or not isinstance(tags, Sequence):
            raise TypeError(f"expected tags to be a sequence of label ids, got {type(tags).__name__}")
        spans: list[list[int]] = []  # [pair, start, end]
        open_pair = -1  # the pair of the open argument, -1: none
        for i, x in enumerate(tags):
            x = check_int("tags' values", x, 0, self.num_labels - 1)
            ell = (x - 1) // 2
            if x == 0:
                open_pair = -1
            elif x % 2 == 1:
                spans.append([ell, i, i])
                open_pair = ell
            elif open_pair >= 0 and (not strict or ell == open_pair):
                spans[-1][2] = i
            else:
                open_pair = -1
        return [ArgumentSpan(*self.pairs[ell], s, e) for ell, s, e in spans]


def flatten_triples(triples: Iterable[tuple[str, str, Mapping[str, str]]]) -> list[FlatTriple]:
    """Predicate–slot flattening (kexue.fm/archives/7321): each slot ``key`` of an object becomes a predicate of its
    own, ``predicate + "_" + key``, so (s, p, {"@value": o1, "inWork": o2}) gives (s, "p_@value", o1) and
    (s, "p_inWork", o2). Slot keys may not contain "_" (:func:`merge_triples` splits at the last one)."""
    out: list[FlatTriple] = []
    for t in triples:
        if not (isinstance(t, tuple) and len(t) == 3 and isinstance(t[2], Mapping)):
            raise TypeError(f"expected triples of (subject, predicate, object slots as a mapping), got {t!r}")
        s, p, obj = t
        if not obj:
            raise ValueError(f"expected an object with at least one slot, got {t!r}")
        for key, value in obj.items():
            if not isinstance(key, str) or "_" in key or not key:
                raise ValueError(f"expected slot keys without '_' (merging splits at the last one), got {key!r}")
            out.append(FlatTriple(s, f"{p}_{key}", value))
    return out


def merge_triples(triples: Iterable[tuple[str, str, str]]) -> list[SlotTriple]:
    """Back from flattened triples (kexue.fm/archives/7321): predicates split at the last "_" into (predicate,
    slot), grouped per (subject, predicate) in order of first appearance. Within a group, in the order given, a slot
    already filled in the group's latest object starts a new object: so several objects of one (s, p) stay apart
    (the script's dict overwrites all but the last) and ``merge_triples(flatten_triples(x)) == x`` for any list that
    holds each (s, p)'s objects together."""
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for t in triples:
        if not (isinstance(t, tuple) and len(t) == 3):
            raise TypeError(f"expected triples of (subject, predicate_slot, object), got {t!r}")
        s, flat, o = t
        if not isinstance(flat, str) or "_" not in flat:
            raise ValueError(f"expected a flattened predicate 'predicate_slot', got {flat!r}")
        p, _, key = flat.rpartition("_")
        objects = groups.setdefault((s, p), [])
        if not objects or key in objects[-1]:
            objects.append({})
        objects[-1][key] = o
    return [SlotTriple(s, p, obj) for (s, p), objects in groups.items() for obj in objects]


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable], kind: MatchKind = "subsequence") -> int:
    """The length of the longest common subsequence (default) or substring of ``a`` and ``b`` (dynamic programming,
    O(|a|·|b|))."""
    check_choice("kind", kind, MatchKind)
    for name, seq in (("a", a), ("b", b)):
        if not isinstance(seq, Sequence):
            raise TypeError(f"expected {name} to be a sequence (a string, say), got {type(seq).__name__}")
    prev = [0] * (len(b) + 1)
    best = 0
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
            elif kind == "subsequence":
                cur[j] = max(prev[j], cur[j - 1])
        prev = cur
    return best if kind == "substring" else prev[-1]


def soft_match(pred: Sequence[Hashable], gold: Sequence[Hashable], kind: MatchKind = "subsequence") -> float:
    """The event metric's soft match 2·LCS(pred, gold) / (|pred| + |gold|) (kexue.fm/archives/7321), in [0, 1]. The
    script calls a longest common *subsequence* (``pylcs.lcs``) though its comment says substring: the default is
    the subsequence, ``kind="substring"`` the other."""
    n = lcs_length(pred, gold, kind)
    if len(pred) + len(gold) == 0:
        raise ValueError("expected pred or gold to be non-empty (the match of two empty strings is 0/0), got two "
                         "empty sequences")
    return 2 * n / (len(pred) + len(gold))


def soft_f1(pred: Iterable[tuple[Hashable, str]], gold: Iterable[tuple[Hashable, str]],
            kind: MatchKind = "subsequence") -> SoftF1:
    """The event metric (kexue.fm/archives/7321) on (key, text) items, key = (event_type, role): predicted and gold
    items of one key are paired one to one, greedily by the highest :func:`soft_match` (ties: the earliest), and
    X sums the matches; F1 = 2X/(|pred| + |gold|), precision X/|pred|, recall X/|gold|. Unlike the script (one
    argument per key and text), every item counts. With nothing predicted precision is 1 (0/0) and with no gold
    recall is 1; both empty give F1 = 1."""
    check_choice("kind", kind, MatchKind)
    by_key: dict[Hashable, tuple[list[str], list[str]]] = {}
    for side, items in ((0, pred), (1, gold)):
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str)):
                raise TypeError(f"expected items of (key, text), got {item!r}")
            if not item[1]:
                raise ValueError(f"expected items with a non-empty text, got {item!r}")
            by_key.setdefault(item[0], ([], []))[side].append(item[1])
    x = 0.0
    for ps, gs in by_key.values():
        scores = sorted(((soft_match(p, g, kind), i, j) for i, p in enumerate(ps) for j, g in enumerate(gs)),
                        key=lambda v: (-v[0], v[1], v[2]))
        used_p: set[int] = set()
        used_g: set[int] = set()
        for score, i, j in scores:
            if score > 0 and i not in used_p and j not in used_g:
                used_p.add(i)
                used_g.add(j)
                x += score
    y = sum(len(ps) for ps, _ in by_key.values())
    z = sum(len(gs) for _, gs in by_key.values())
    return SoftF1(2 * x / (y + z) if y + z else 1.0, x / y if y else 1.0, x / z if z else 1.0)


__all__ = ["ArgumentSpan", "BIOScheme", "FlatTriple", "MatchKind", "Overlap", "SlotTriple", "SoftF1", "flatten_triples",
           "lcs_length", "merge_triples", "soft_f1", "soft_match"]
