"""A synthetic templated language for the ``univae`` reproduction, with its word-level tokenizer and parser.

Every sentence is one of :data:`PATTERNS` (a skeleton of function words with two or three noun slots ``N``) filled
with nouns of one of :data:`TOPICS` (three nouns each, drawn with replacement). So a sentence has exactly two
factors, its **topic** (which noun set) and its **pattern** (which skeleton), plus its content (which nouns in which
slots); :func:`parse` reads both factors back from any word sequence, which is how the reproduction classifies the
decodes of swapped latents. 10 topics × 10 patterns, 30 nouns + 20 function words = a 50-word vocabulary, 1,800
distinct sentences.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

#: Ten noun sets (the topics), three nouns each.
TOPICS: tuple[tuple[str, ...], ...] = (
    ("dog", "cat", "horse"), ("bread", "apple", "soup"), ("piano", "drum", "song"), ("rain", "snow", "wind"),
    ("car", "train", "boat"), ("hammer", "saw", "drill"), ("ball", "goal", "race"), ("tree", "rose", "grass"),
    ("hand", "foot", "eye"), ("star", "moon", "planet"),
)
#: Ten sentence patterns; ``N`` marks a noun slot.
PATTERNS: tuple[str, ...] = (
    "the N likes the N",
    "where is the N near the N",
    "a big N sees a small N",
    "my N has no N",
    "every N is in the N",
    "what does the N see",
    "the N and the N are on the N",
    "is a small N with my N",
    "no N likes a big N of the N",
    "the N sees the N and the N",
)
PAD, CLS, SEP = "[PAD]", "[CLS]", "[SEP]"
#: The noun slot marker in :data:`PATTERNS`.
SLOT = "N"

_NOUN_TOPIC = {w: t for t, nouns in enumerate(TOPICS) for w in nouns}
_SKELETONS = {tuple(p.split()): i for i, p in enumerate(PATTERNS)}


@dataclass(frozen=True)
class Sentence:
    """One sentence of the language: its words and the two factors it was made from."""

    words: tuple[str, ...]
    topic: int
    pattern: int

    @property
    def text(self) -> str:
        return " ".join(self.words)


def fill(pattern: int, topic: int, nouns: Sequence[str]) -> Sentence:
    """Pattern ``pattern`` with its slots filled by ``nouns`` in order (nouns of topic ``topic``)."""
    it = iter(nouns)
    words = tuple(next(it) if w == SLOT else w for w in PATTERNS[pattern].split())
    return Sentence(words, topic, pattern)


def all_sentences() -> list[Sentence]:
    """Every distinct sentence (each topic × pattern × noun tuple with replacement), in a fixed order."""
    out: list[Sentence] = []
    for p, pattern in enumerate(PATTERNS):
        slots = pattern.split().count(SLOT)
        for t, nouns in enumerate(TOPICS):
            out.extend(fill(p, t, fill_nouns) for fill_nouns in itertools.product(nouns, repeat=slots))
    return out


def split(test_fraction: float, seed: int) -> tuple[list[Sentence], list[Sentence]]:
    """(train, test) distinct sentences: a random ``test_fraction`` of each topic × pattern cell is held out."""
    rng = random.Random(seed)
    cells: dict[tuple[int, int], list[Sentence]] = {}
    for s in all_sentences():
        cells.setdefault((s.topic, s.pattern), []).append(s)
    train, test = [], []
    for group in cells.values():
        group = group[:]
        rng.shuffle(group)
        k = max(1, round(test_fraction * len(group)))
        test += group[:k]
        train += group[k:]
    return train, test


def corpus(pool: Sequence[Sentence], n: int, seed: int) -> list[Sentence]:
    """``n`` sentences drawn uniformly (with replacement) from ``pool``."""
    rng = random.Random(seed)
    return [pool[rng.randrange(len(pool))] for _ in range(n)]


def parse(words: Sequence[str]) -> tuple[int | None, int | None]:
    """(topic, pattern) of a word sequence, each None when it cannot be read off.

    The topic is the majority topic of the nouns present (None without nouns or on a tie); the pattern is the
    skeleton with every noun replaced by ``N``, matched exactly against :data:`PATTERNS` (None otherwise).
    """
    topics = Counter(_NOUN_TOPIC[w] for w in words if w in _NOUN_TOPIC)
    topic = None
    if topics:
        (best, count), *rest = topics.most_common(2)
        topic = best if not rest or rest[0][1] < count else None
    skeleton = tuple(SLOT if w in _NOUN_TOPIC else w for w in words)
    return topic, _SKELETONS.get(skeleton)


class WordTokenizer:
    """Word-level ids for the language: ``[PAD]`` = 0, ``[CLS]`` = 1, ``[SEP]`` = 2, then the words sorted.

    :meth:`encode` gives ``[CLS] w₁ … wₙ [SEP]`` padded with ``[PAD]`` to ``maxlen`` (a fixed length, so that the
    decoder's positions cannot leak the sentence length).
    """

    def __init__(self, maxlen: int) -> None:
        words = sorted({w for nouns in TOPICS for w in nouns} | {w for p in PATTERNS for w in p.split() if w != SLOT})
        self.vocab: list[str] = [PAD, CLS, SEP, *words]
        self.ids = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.cls_id, self.sep_id = 0, 1, 2
        self.maxlen = maxlen
        longest = max(len(p.split()) for p in PATTERNS) + 2
        if maxlen < longest:
            raise ValueError(f"expected maxlen >= {longest} (the longest sentence with [CLS] and [SEP]), got {maxlen}")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, sentences: Sequence[Sentence]) -> torch.Tensor:
        """(len(sentences), maxlen) long ids."""
        out = torch.full((len(sentences), self.maxlen), self.pad_id, dtype=torch.long)
        for i, s in enumerate(sentences):
            ids = [self.cls_id, *(self.ids[w] for w in s.words), self.sep_id]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def words(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        """The words of one decoded id sequence: a leading ``[CLS]`` skipped, up to the first ``[SEP]`` or
        ``[PAD]``."""
        seq = [int(i) for i in ids]
        if seq and seq[0] == self.cls_id:
            seq = seq[1:]
        out = []
        for i in seq:
            if i in (self.sep_id, self.pad_id):
                break
            out.append(self.vocab[i] if 0 <= i < len(self.vocab) else "?")
        return out


def majority_baseline(train_ids: torch.Tensor, test_ids: torch.Tensor, pad_id: int = 0) -> float:
    """Token accuracy of predicting, at each position, the training set's most frequent token there (the trivial
    baseline of the decoder's targets: positions 1… up to and including [SEP], pads left out)."""
    targets_train, targets_test = train_ids[:, 1:], test_ids[:, 1:]
    majority = torch.mode(targets_train, dim=0).values
    keep = targets_test != pad_id
    return float(((targets_test == majority) & keep).sum() / keep.sum())
