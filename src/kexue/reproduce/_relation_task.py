"""The experiment of the ``lic2020_relation`` reproduction (:mod:`kexue.reproduce.lic2020_relation` judges it).

Two relation-extraction heads on all-MiniLM-L6-v2 (lower blocks frozen, :mod:`kexue.reproduce._lic2020_common`),
trained on WebNLG in CasRel's format and scored by triple F1:

* the LIC2020 baseline's subject–object pointer (kexue.fm/archives/7321): :class:`kexue.heads.SubjectObjectPointer`
  (σ² subject flags, σ⁴ object flags per predicate through a conditional LayerNorm on the last block's pre-norm
  states, one sampled subject per sentence in training, thresholds 0.4);
* GPLinker-style GlobalPointer (kexue.fm/archives/8888, the author's successor): a :class:`kexue.heads.GlobalPointer`
  with two heads for the subject and object spans (RoPE), and two more without RoPE scoring (subject start, object
  start) and (subject end, object end) pairs per predicate, all trained with the sparse ZLPR
  (:func:`kexue.heads.global_pointer_loss`); a triple is a subject span and an object span whose start pair and
  end pair both score > 0 for a predicate. kexue's GlobalPointer keeps only the upper triangle (start <= end), so a
  pair matrix has 2P heads: head p holds the pairs with subject position <= object position at (s, o), head P + p
  the others at (o, s); GPLinker's own pair matrices have no triangle mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from ..data import RelationSentence
from ..data.extraction import WebNLGVariant
from ..heads import GlobalPointer, SubjectObjectPointer, decode_global_pointer, global_pointer_loss, pointer_targets
from ..models import Tokenizer, Transformer
from ..models.offsets import char_span, encoding_mapping, token_span
from ..nn.padding import pad
from ._lic2020_common import TopEncoder, batch_states, fit

Head = Literal["pointer", "global_pointer"]
HEADS: tuple[Head, ...] = ("pointer", "global_pointer")
StrTriple = tuple[str, str, str]


class Encoded(NamedTuple):
    """One sentence: token ids, each token's characters (``[]`` for [CLS]/[SEP]), the gold triples as token spans
    (subject start, subject end, predicate id, object start, object end) and as strings."""

    ids: list[int]
    mapping: list[list[int]]
    spans: list[tuple[int, int, int, int, int]]
    gold: frozenset[StrTriple]
    text: str


def top_predicates(sentences: Sequence[RelationSentence], k: int) -> list[str]:
    """The ``k`` most frequent predicates of ``sentences`` (ties by first appearance)."""
    counts: dict[str, int] = {}
    for s in sentences:
        for t in s.triples:
            counts[t.predicate] = counts.get(t.predicate, 0) + 1
    return sorted(counts, key=lambda p: -counts[p])[:k]


def restrict(sentences: Sequence[RelationSentence], predicates: Sequence[str]) -> list[RelationSentence]:
    """The sentences whose triples all use ``predicates``."""
    keep = set(predicates)
    return [s for s in sentences if all(t.predicate in keep for t in s.triples)]


def _locate(text: str, entity: str) -> tuple[int, int]:
    """The first whole-token occurrence of ``entity`` in the space-tokenised ``text`` (characters, stop exclusive)."""
    i = f" {text} ".find(f" {entity} ")
    return (i, i + len(entity)) if i >= 0 else (text.find(entity), text.find(entity) + len(entity))


def encode(sentences: Sequence[RelationSentence], tok: Tokenizer, predicates: Sequence[str],
           maxlen: int = 128) -> list[Encoded]:
    """Encodings with every triple's entities located at their first whole-token occurrence (CasRel's rule, in
    characters here) and mapped to tokens through the offsets; a triple cut by ``maxlen`` is dropped from the
    training spans (it stays in the gold strings)."""
    pid = {p: i for i, p in enumerate(predicates)}
    out = []
    for s, enc in zip(sentences, tok.encode_raw([s.text for s in sentences], max_length=maxlen), strict=True):
        mapping = encoding_mapping(enc)
        spans = []
        for t in s.triples:
            sub, obj = token_span(mapping, *_locate(s.text, t.subject)), token_span(mapping, *_locate(s.text, t.object))
            if sub is not None and obj is not None:
                spans.append((sub[0], sub[1], pid[t.predicate], obj[0], obj[1]))
        out.append(Encoded(list(enc.ids), mapping, list(dict.fromkeys(spans)),
                           frozenset((t.subject, t.predicate, t.object) for t in s.triples), s.text))
    return out


def last_word(triples: frozenset[StrTriple]) -> frozenset[StrTriple]:
    """WebNLG*'s partial match: each entity reduced to its last word."""
    return frozenset((s.split()[-1] if s.split() else s, p, o.split()[-1] if o.split() else o) for s, p, o in triples)


class F1(NamedTuple):
    f1: float
    precision: float
    recall: float
    predicted: int
    gold: int


def triple_f1(pred: Sequence[frozenset[StrTriple]], gold: Sequence[frozenset[StrTriple]],
              variant: WebNLGVariant) -> F1:
    """Micro F1 over all sentences: exact strings (``exact``), or last words of both (``star``, CasRel's partial
    match). An empty prediction scores precision 0 (nothing correct)."""
    if variant == "star":
        pred, gold = [last_word(p) for p in pred], [last_word(g) for g in gold]
    hit = sum(len(p & g) for p, g in zip(pred, gold, strict=True))
    n_p, n_g = sum(map(len, pred)), sum(map(len, gold))
    prec, rec = hit / n_p if n_p else 0.0, hit / n_g if n_g else 0.0
    return F1(2 * prec * rec / (prec + rec) if hit else 0.0, prec, rec, n_p, n_g)


def text_mask(examples: Sequence[Encoded], idx: Sequence[int]) -> Tensor:
    """(batch, seq) True on the tokens of the text (not [CLS], [SEP] or padding)."""
    return pad([torch.tensor([bool(m) for m in examples[i].mapping], dtype=torch.long) for i in idx])[0].bool()


# ------------------------------------------------------------------------------------------- the two heads
class PointerModel(nn.Module):
    def __init__(self, model: Transformer, n_top: int, num_predicates: int) -> None:
        super().__init__()
        self.top = TopEncoder(model, n_top)
        self.head = SubjectObjectPointer(model.config.hidden_size, num_predicates)

    def loss(self, x: Tensor, keep: Tensor, spans: list[list[tuple[int, int, int, int, int]]],
             g: torch.Generator) -> Tensor:
        target = pointer_targets(spans, x.shape[1], self.head.num_predicates, generator=g)
        h, pre = self.top(x, keep)
        return self.head.loss(self.head(h, target.subject_ids, pre_norm=pre), target, keep)

    def predict(self, x: Tensor, keep: Tensor, text: Tensor) -> list[set[tuple[int, int, int, int, int]]]:
        h, pre = self.top(x, keep)
        return [{(t[0], t[1], t[2], t[3], t[4]) for t in row} for row in self.head.extract(h, text, pre_norm=pre)]


class GPLinkerModel(nn.Module):
    """Entity spans (heads 0 subject, 1 object; RoPE) and per-predicate start and end pairs (2P heads each, no RoPE,
    see the module docstring)."""

    def __init__(self, model: Transformer, n_top: int, num_predicates: int, entity_size: int = 64,
                 pair_size: int = 16) -> None:
        super().__init__()
        d = model.config.hidden_size
        self.p = num_predicates
        self.top = TopEncoder(model, n_top)
        self.entity = GlobalPointer(d, 2, entity_size)
        self.starts = GlobalPointer(d, 2 * num_predicates, pair_size, rope=False)
        self.ends = GlobalPointer(d, 2 * num_predicates, pair_size, rope=False)

    def scores(self, x: Tensor, keep: Tensor, text: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h, _ = self.top(x, keep)
        return self.entity(h, text), self.starts(h, text), self.ends(h, text)

    def _cell(self, p: int, a: int, b: int) -> tuple[int, int, int]:
        return (p, a, b) if a <= b else (self.p + p, b, a)

    def targets(self, spans: list[list[tuple[int, int, int, int, int]]]) -> tuple[Tensor, Tensor, Tensor]:
        ent: list[list[set[tuple[int, int]]]] = [[set(), set()] for _ in spans]
        st: list[list[set[tuple[int, int]]]] = [[set() for _ in range(2 * self.p)] for _ in spans]
        en: list[list[set[tuple[int, int]]]] = [[set() for _ in range(2 * self.p)] for _ in spans]
        for i, row in enumerate(spans):
            for ss, se, p, os_, oe in row:
                ent[i][0].add((ss, se))
                ent[i][1].add((os_, oe))
                h, a, b = self._cell(p, ss, os_)
                st[i][h].add((a, b))
                h, a, b = self._cell(p, se, oe)
                en[i][h].add((a, b))
        return _span_tensor(ent), _span_tensor(st), _span_tensor(en)

    def loss(self, x: Tensor, keep: Tensor, text: Tensor, spans: list[list[tuple[int, int, int, int, int]]]
             ) -> Tensor:
        e, s, t = self.scores(x, keep, text)
        te, ts, tt = self.targets(spans)
        return global_pointer_loss(e, te) + global_pointer_loss(s, ts) + global_pointer_loss(t, tt)

    def predict(self, x: Tensor, keep: Tensor, text: Tensor) -> list[set[tuple[int, int, int, int, int]]]:
        e, s, t = self.scores(x, keep, text)
        ents = decode_global_pointer(e)
        out: list[set[tuple[int, int, int, int, int]]] = [set() for _ in range(x.shape[0])]
        by_row: dict[int, tuple[list[tuple[int, int]], list[tuple[int, int]]]] = {}
        for b, a, z, c in zip(ents.batch.tolist(), ents.start.tolist(), ents.end.tolist(), ents.channel.tolist()):
            by_row.setdefault(b, ([], []))[c].append((a, z))
        for b, (subs, objs) in by_row.items():
            for ss, se in subs:
                for os_, oe in objs:
                    for p in range(self.p):
                        if s[b][self._cell(p, ss, os_)] > 0 and t[b][self._cell(p, se, oe)] > 0:
                            out[b].add((ss, se, p, os_, oe))
        return out


def _span_tensor(rows: list[list[set[tuple[int, int]]]]) -> Tensor:
    """(batch, heads, S, 2) gold spans per (row, head), padded with (-1, -1)."""
    width = max(1, max((len(h) for r in rows for h in r), default=0))
    out = torch.full((len(rows), len(rows[0]), width, 2), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        for j, h in enumerate(r):
            if h:
                out[i, j, : len(h)] = torch.tensor(sorted(h))
    return out


# ------------------------------------------------------------------------------------------- training and scoring
class Setting(NamedTuple):
    k_predicates: int
    n_train: int
    n_test: int | None
    n_top: int
    epochs: int
    batch: int
    lr: float  # the top block's
    head_lr: float  # the head's (new, randomly initialised)


class HeadRun(NamedTuple):
    f1: F1
    predictions: list[frozenset[StrTriple]]
    losses: list[float]


def strings(example: Encoded, spans: set[tuple[int, int, int, int, int]], predicates: Sequence[str]
            ) -> frozenset[StrTriple]:
    """Token-span triples as (subject, predicate, object) strings sliced from the original text."""
    out = set()
    for ss, se, p, os_, oe in spans:
        a, b = char_span(example.mapping, ss, se)
        c, d = char_span(example.mapping, os_, oe)
        out.add((example.text[a:b], predicates[p], example.text[c:d]))
    return frozenset(out)


def run_head(head: Head, model: Transformer, s: Setting, seed: int, train: Sequence[Encoded],
             train_states: Sequence[Tensor], test: Sequence[Encoded], test_states: Sequence[Tensor],
             predicates: Sequence[str], variant: WebNLGVariant, eval_batch: int = 64) -> HeadRun:
    torch.manual_seed(seed)
    net: PointerModel | GPLinkerModel = (PointerModel(model, s.n_top, len(predicates)) if head == "pointer"
                                         else GPLinkerModel(model, s.n_top, len(predicates)))

    def loss_fn(idx: list[int], g: torch.Generator) -> Tensor:
        x, keep = batch_states(train_states, idx)
        spans = [train[i].spans for i in idx]
        if isinstance(net, PointerModel):
            return net.loss(x, keep, spans, g)
        return net.loss(x, keep, text_mask(train, idx), spans)

    head_params = [p for name, p in net.named_parameters() if not name.startswith("top.")]
    groups = [{"params": list(net.top.parameters()), "lr": s.lr}, {"params": head_params, "lr": s.head_lr}]
    losses = fit(groups, len(train), loss_fn, epochs=s.epochs, batch=s.batch, lr=s.lr, seed=seed, modules=[net])
    preds: list[frozenset[StrTriple]] = []
    with torch.no_grad():
        for b in range(0, len(test), eval_batch):
            idx = list(range(b, min(b + eval_batch, len(test))))
            x, keep = batch_states(test_states, idx)
            for i, spans in zip(idx, net.predict(x, keep, text_mask(test, idx)), strict=True):
                preds.append(strings(test[i], spans, predicates))
    return HeadRun(triple_f1(preds, [e.gold for e in test], variant), preds, losses)


class Bootstrap(NamedTuple):
    """Variances over test-sentence resamples of each head's F1 and of their difference (``b`` − ``a``)."""

    var_a: float
    var_b: float
    var_diff: float


def paired_bootstrap(pred_a: Sequence[frozenset[StrTriple]], pred_b: Sequence[frozenset[StrTriple]],
                     gold: Sequence[frozenset[StrTriple]], variant: WebNLGVariant, draws: int = 200,
                     seed: int = 0) -> Bootstrap:
    """The test-sampling noise of two heads' triple F1 on the same sentences: both scored on the same resamples
    of the test sentences (with replacement), ``draws`` times."""
    if variant == "star":
        pred_a, pred_b, gold = ([last_word(x) for x in xs] for xs in (pred_a, pred_b, gold))
    counts = torch.tensor([[len(a & g), len(a), len(b & g), len(b), len(g)]
                           for a, b, g in zip(pred_a, pred_b, gold, strict=True)], dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(gold), (draws, len(gold)), generator=g)
    c = counts[idx].sum(1)  # (draws, 5)

    def f1(hit: Tensor, n_pred: Tensor, n_gold: Tensor) -> Tensor:
        return 2 * hit / (n_pred + n_gold).clamp(min=1)  # = 2PR/(P + R), 0 without hits

    fa, fb = f1(c[:, 0], c[:, 1], c[:, 4]), f1(c[:, 2], c[:, 3], c[:, 4])
    return Bootstrap(float(fa.var()), float(fb.var()), float((fb - fa).var()))
