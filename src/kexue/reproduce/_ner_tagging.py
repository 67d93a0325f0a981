"""BIO tagging with all-MiniLM-L6-v2 for ``lic2020_ner_crf``: examples, entity F1, trivial baselines, training.

The tag layout is the LIC2020 event script's (kexue.fm/archives/7321): O = 0, B = 2ℓ + 1, I = 2ℓ + 2 for span type
ℓ. A sentence is tagged over *units*: CoNLL-2003's words, each represented by its **first word piece** (the other
pieces are neither trained nor decoded: the CRF's mask skips them), and PHEE's word pieces, all of them (PHEE gives
raw text, no words). The encoder is the frozen bottom of MiniLM with its top blocks fine-tuned
(:mod:`kexue.reproduce._lic2020_common`), then Dense(num_labels), then a CRF (:class:`kexue.nn.CRF`, bert4keras's
form without start/end scores) or a per-unit softmax.

Entity F1 is the exact span match of seqeval's default (conlleval) mode, computed here: a chunk starts at B-x, or at
I-x after O or after a tag of another type, and runs while I-x follows; F1 = 2·TP/(#pred + #gold) over the test set.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.extraction import EventSentence, TaggedSentence
from ..heads import BIOScheme, soft_f1
from ..models import Tokenizer, Transformer
from ..models.offsets import char_span, encoding_mapping, token_span
from ..nn import CRF, bio_transition_mask, crf_param_groups
from ._lic2020_common import TopEncoder, batch_states

#: A span: (type ℓ, first unit, last unit), both included.
Span = tuple[int, int, int]
CONLL_TYPES = ("PER", "LOC", "ORG", "MISC")
#: PHEE's main arguments; with its two event types they make the (event_type, role) pairs of the flat BIO scheme.
PHEE_ROLES = ("Subject", "Treatment", "Effect")
PHEE_EVENTS = ("Adverse_event", "Potential_therapeutic_event")


@dataclass(frozen=True)
class Example:
    """A tagged sentence: token ``ids`` (with [CLS] and [SEP]), the token position of each unit (-1: truncated
    away), the gold tag of each unit, the gold spans (over units), and for soft matching the text and each unit's
    characters."""

    ids: list[int]
    units: list[int]
    tags: list[int]
    gold: frozenset[Span]
    text: str = ""
    chars: tuple[tuple[int, ...], ...] = ()


class PheeCounts(NamedTuple):
    """What the flat BIO view of PHEE leaves out: discontinuous main-argument mentions (dropped from training and
    gold), contiguous ones not tagged because they overlap one placed before (kept in gold: misses for every model),
    and ones cut off by truncation."""

    mentions: int
    discontinuous: int
    overlapping: int
    truncated: int


def chunks(tags: Sequence[int]) -> frozenset[Span]:
    """conlleval/seqeval (default mode) chunks of a tag sequence in the O/B/I layout."""
    out: list[Span] = []
    cur: list[int] | None = None  # [type, start]
    for i, x in enumerate([*tags, 0]):
        typ = (x - 1) // 2 if x else -1
        if cur is not None and (x == 0 or x % 2 == 1 or typ != cur[0]):
            out.append((cur[0], cur[1], i - 1))
            cur = None
        if x and cur is None:
            cur = [typ, i]
    return frozenset(out)


class EntityF1(NamedTuple):
    f1: float
    precision: float
    recall: float
    tp: int
    n_pred: int
    n_gold: int


def entity_f1(pred: Sequence[frozenset[Span]], gold: Sequence[frozenset[Span]]) -> EntityF1:
    """Micro F1 of exact span matches over sentences (spans are compared with their type)."""
    tp = sum(len(p & g) for p, g in zip(pred, gold, strict=True))
    n_pred, n_gold = sum(map(len, pred)), sum(map(len, gold))
    f1 = 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0
    return EntityF1(f1, tp / n_pred if n_pred else 0.0, tp / n_gold if n_gold else 0.0, tp, n_pred, n_gold)


def bootstrap_se(pred: Sequence[frozenset[Span]], gold: Sequence[frozenset[Span]], draws: int = 1000,
                 seed: int = 0) -> float:
    """Standard error of the entity F1 over resamples of the test sentences: the test set's own noise."""
    tp = np.array([len(p & g) for p, g in zip(pred, gold, strict=True)], float)
    tot = np.array([len(p) + len(g) for p, g in zip(pred, gold, strict=True)], float)
    idx = np.random.default_rng(seed).integers(0, len(tp), (draws, len(tp)))
    den = tot[idx].sum(1)
    return float(np.std(np.where(den > 0, 2 * tp[idx].sum(1) / np.maximum(den, 1), 0.0), ddof=1))


def _tag(tag: str) -> int:
    if tag == "O":
        return 0
    prefix, typ = tag.split("-", 1)
    return 2 * CONLL_TYPES.index(typ) + (1 if prefix == "B" else 2)


def conll_examples(sentences: Sequence[TaggedSentence], tok: Tokenizer, max_length: int) -> list[Example]:
    """Words joined by single spaces; each word's unit is the token that starts at its first character."""
    texts = [" ".join(s.tokens) for s in sentences]
    out = []
    for s, enc in zip(sentences, tok.encode_raw(texts, max_length=max_length), strict=True):
        first: dict[int, int] = {}
        for k, ((a, _), special) in enumerate(zip(enc.offsets, enc.special_tokens_mask, strict=True)):
            if not special:
                first.setdefault(a, k)
        starts = np.cumsum([0, *(len(w) + 1 for w in s.tokens[:-1])]).tolist()
        tags = [_tag(t) for t in s.tags]
        out.append(Example(list(enc.ids), [first.get(c, -1) for c in starts], tags, chunks(tags)))
    return out


def phee_scheme() -> BIOScheme:
    return BIOScheme([(e, r) for e in PHEE_EVENTS for r in PHEE_ROLES])


def phee_examples(sentences: Sequence[EventSentence], tok: Tokenizer, max_length: int
                  ) -> tuple[list[Example], PheeCounts]:
    """Flat BIO over (event_type, role) of the main arguments, every word piece a unit; overlapping mentions after
    the first are left untagged (``overlap="skip"``) but stay in gold."""
    scheme = phee_scheme()
    out, n, disc, trunc = [], 0, 0, 0
    overlapping = 0
    for s, enc in zip(sentences, tok.encode_raw([s.text for s in sentences], max_length=max_length), strict=True):
        mapping = encoding_mapping(enc)
        units = [k for k, m in enumerate(mapping) if m]
        covered = mapping[units[-1]][-1] + 1 if units else 0
        spans: list[tuple[str, str, int, int]] = []
        for ev in s.events:
            for arg in ev.arguments:
                if arg.role not in PHEE_ROLES:
                    continue
                n += 1
                if len(arg.pieces) > 1:
                    disc += 1
                    continue
                span = token_span(mapping, arg.start, arg.end)
                if span is None or arg.end > covered:
                    trunc += 1
                    continue
                spans.append((ev.event_type, arg.role, span[0] - 1, span[1] - 1))  # unit = token - 1 ([CLS])
        spans = sorted(set(spans), key=lambda a: (a[2], -a[3], a[0], a[1]))  # deterministic order
        tags = scheme.encode(spans, len(units), overlap="skip")
        gold = frozenset((scheme.index[(e, r)], a, b) for e, r, a, b in spans)
        overlapping += len(gold) - len(chunks(tags))
        out.append(Example(list(enc.ids), units, tags, gold, s.text, tuple(tuple(mapping[k]) for k in units)))
    return out, PheeCounts(n, disc, overlapping, trunc)


def majority_baseline(train: Sequence[Sequence[Hashable]], train_tags: Sequence[Sequence[int]],
                      test: Sequence[Sequence[Hashable]]) -> list[frozenset[Span]]:
    """The most frequent training tag of each unit's key (the word, or the token id), O for an unseen key, chunked:
    the trivial baseline the taggers must beat (all-O scores F1 = 0)."""
    counts: defaultdict[Hashable, Counter[int]] = defaultdict(Counter)
    for keys, tags in zip(train, train_tags, strict=True):
        for k, t in zip(keys, tags, strict=True):
            counts[k][t] += 1
    return [chunks([counts[k].most_common(1)[0][0] if k in counts else 0 for k in keys]) for keys in test]


def soft_event_f1(examples: Sequence[Example], spans: Sequence[frozenset[Span]], scheme: BIOScheme) -> float:
    """The LIC2020 event metric (2·LCS/(|pred| + |gold|) per matched argument, :func:`kexue.heads.soft_f1`) on the
    character strings of predicted and gold spans, keyed by (sentence, event_type, role)."""
    def items(which: Sequence[frozenset[Span]]) -> list[tuple[Hashable, str]]:
        out: list[tuple[Hashable, str]] = []
        for i, (ex, ss) in enumerate(zip(examples, which, strict=True)):
            for ell, a, b in ss:
                lo, hi = char_span([list(c) for c in ex.chars], a, b)
                out.append(((i, *scheme.pairs[ell]), ex.text[lo:hi]))
        return out

    return soft_f1(items(spans), items([ex.gold for ex in examples])).f1


class Tagger(nn.Module):
    """The top blocks of MiniLM, Dense(num_labels), and a CRF (``crf_multiplier`` set) or a per-unit softmax."""

    def __init__(self, model: Transformer, n_top: int, num_labels: int, crf_multiplier: float | None) -> None:
        super().__init__()
        self.top = TopEncoder(model, n_top)
        self.dense = nn.Linear(model.config.hidden_size, num_labels)
        self.crf = None if crf_multiplier is None else CRF(num_labels, crf_multiplier, boundary=False)

    def emissions(self, x: Tensor, keep: Tensor) -> Tensor:
        return self.dense(self.top(x, keep)[0])


def _batch(states: Sequence[Tensor], examples: Sequence[Example], idx: Sequence[int]
           ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x, keep = batch_states(states, idx)
    mask = torch.zeros(keep.shape, dtype=torch.bool)
    target = torch.zeros(keep.shape, dtype=torch.long)
    for j, i in enumerate(idx):
        for p, t in zip(examples[i].units, examples[i].tags, strict=True):
            if p >= 0:
                mask[j, p], target[j, p] = True, t
    return x, keep, mask, target


def _buckets(n: int, lengths: Sequence[int], batch: int, g: torch.Generator) -> list[list[int]]:
    """Shuffled batches of similar length: random groups of 8 batches, sorted by length inside, cut, shuffled."""
    order = torch.randperm(n, generator=g).tolist()
    out = []
    for c in range(0, n, 8 * batch):
        group = sorted(order[c:c + 8 * batch], key=lambda i: lengths[i])
        out += [group[k:k + batch] for k in range(0, len(group), batch)]
    return [out[k] for k in torch.randperm(len(out), generator=g).tolist()]


class Trained(NamedTuple):
    tagger: Tagger
    losses: list[float]
    transitions0: Tensor | None


def train(model: Transformer, n_top: int, num_labels: int, crf_multiplier: float | None, states: Sequence[Tensor],
          examples: Sequence[Example], *, seed: int, epochs: int, batch: int, lr: float) -> Trained:
    """AdamW (weight decay 0.01) at ``lr`` with linear warm-up over 10 % of the steps and linear decay; the CRF's
    parameters in their own group at ``lr * crf_multiplier`` (:func:`kexue.nn.crf_param_groups`). The seed fixes
    the Dense and CRF initialisation, the dropout and the batch order, so variants of one seed are paired."""
    torch.manual_seed(seed)
    tagger = Tagger(model, n_top, num_labels, crf_multiplier)
    w0 = tagger.crf.transitions.detach().clone() if tagger.crf is not None else None
    groups = crf_param_groups(tagger, lr) if tagger.crf is not None else [{"params": list(tagger.parameters())}]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    total = epochs * math.ceil(len(examples) / batch)
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: min((t + 1) / warm, max(0.0, (total - t) / max(1, total - warm))))
    lengths = [len(e.ids) for e in examples]
    tagger.train()
    losses = []
    for _ in range(epochs):
        for idx in _buckets(len(examples), lengths, batch, g):
            x, keep, mask, target = _batch(states, examples, idx)
            em = tagger.emissions(x, keep)
            loss = tagger.crf(em, target, mask) if tagger.crf is not None else F.cross_entropy(em[mask], target[mask])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    tagger.eval()
    return Trained(tagger, losses, w0)


class Predicted(NamedTuple):
    """Predicted spans per example: per-unit argmax (softmax) or plain Viterbi (CRF), and for a CRF also the
    BIO-constrained Viterbi (:func:`kexue.nn.bio_transition_mask`; None for the softmax)."""

    spans: list[frozenset[Span]]
    constrained: list[frozenset[Span]] | None


@torch.no_grad()
def predict(tagger: Tagger, states: Sequence[Tensor], examples: Sequence[Example], num_types: int,
            batch: int = 64) -> Predicted:
    """Decode the test examples (a truncated unit is O); the emissions are computed once for both decodings."""
    allowed = bio_transition_mask(num_types)
    out: list[frozenset[Span]] = []
    legal: list[frozenset[Span]] = []
    for s in range(0, len(examples), batch):
        idx = list(range(s, min(s + batch, len(examples))))
        x, keep, mask, _ = _batch(states, examples, idx)
        em = tagger.emissions(x, keep)
        decoded = [tagger.crf.viterbi(em, mask).tags, tagger.crf.viterbi(em, mask, allowed=allowed).tags] \
            if tagger.crf is not None else [em.argmax(-1)]
        for labels, into in zip(decoded, (out, legal), strict=False):
            for j, i in enumerate(idx):
                into.append(chunks([int(labels[j, p]) if p >= 0 else 0 for p in examples[i].units]))
    return Predicted(out, legal if tagger.crf is not None else None)
