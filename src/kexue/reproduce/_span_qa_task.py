"""The experiment of the ``lic2020_span_qa`` reproduction (:mod:`kexue.reproduce.lic2020_span_qa` judges it).

The LIC2020 reading-comprehension baseline (kexue.fm/archives/7321) on SQuAD v1.1 dev split by article: the input
is [CLS] question [SEP] context [SEP] (the question capped at 64 tokens, the context filling the rest of maxlen),
a :class:`kexue.heads.SpanPointerHead` on the top of all-MiniLM-L6-v2 (the lower blocks frozen,
:mod:`kexue.reproduce._lic2020_common`), cross-entropy on the gold start and end (one gold answer drawn per step,
as the script), and :func:`kexue.heads.decode_span` with and without the length limit; the answer is sliced from
the original context through the fast tokenizer's offsets. Scored by SQuAD's official EM and F1.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from ..data import QAExample
from ..heads import SpanPointerHead, decode_span, span_loss
from ..models import Tokenizer, Transformer
from ..models.offsets import char_span, encoding_mapping, token_span
from ..nn.padding import pad
from ._lic2020_common import TopEncoder, batch_states, bottom_states, fit

MAX_QUESTION = 64


# ------------------------------------------------------------------------------- SQuAD's official metric
def normalize_answer(s: str) -> str:
    """SQuAD v1.1's ``normalize_answer``: lower case, punctuation removed, the articles a/an/the removed,
    whitespace collapsed."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction: str, gold: str) -> float:
    """SQuAD v1.1's token F1 of the normalised answers (bag of words)."""
    pred, truth = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = collections.Counter(pred) & collections.Counter(truth)
    same = sum(common.values())
    if same == 0:
        return 0.0
    p, r = same / len(pred), same / len(truth)
    return 2 * p * r / (p + r)


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def score(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(EM, F1), each the maximum over the gold answers (SQuAD's ``metric_max_over_ground_truths``)."""
    return max(exact_match(prediction, g) for g in golds), max(f1_score(prediction, g) for g in golds)


# ------------------------------------------------------------------------------- features
class Feature(NamedTuple):
    """One question's encoding: token and segment ids, the context tokens' mask, each token's characters of the
    context (``[]`` outside it), and the gold answers' (start, end) token spans that lie whole in the window."""

    ids: list[int]
    type_ids: list[int]
    context: list[bool]
    mapping: list[list[int]]
    targets: list[tuple[int, int]]
    example: QAExample


def cap_question(tok: Tokenizer, question: str, limit: int = MAX_QUESTION) -> str:
    """``question`` cut after its ``limit``-th token (through the tokens' offsets)."""
    m = encoding_mapping(tok.encode_raw([question], max_length=limit + 2)[0])
    last = [c for c in m if c]
    return question[: last[-1][-1] + 1] if last else question


def encode(examples: Sequence[QAExample], tok: Tokenizer, maxlen: int) -> list[Feature]:
    """Features of ``examples`` at ``maxlen`` tokens (the context truncated to fill it). An answer located in the
    context segment through the offsets (the script searched the token ids anywhere in the sequence, question
    included); an answer cut by the truncation is not a target."""
    questions = [cap_question(tok, e.question) for e in examples]
    encs = tok.encode_raw(questions, [e.context for e in examples], max_length=maxlen)
    out = []
    for e, enc in zip(examples, encs, strict=True):
        seq = enc.sequence_ids
        ctx = [s == 1 for s in seq]
        mapping = [m if c else [] for m, c in zip(encoding_mapping(enc), ctx)]
        targets = []
        for a in e.answers:
            stop = a.start + len(a.text)
            span = token_span(mapping, a.start, stop)
            if span is not None and mapping[span[0]][0] <= a.start and mapping[span[1]][-1] + 1 >= stop:
                targets.append(span)
        out.append(Feature(list(enc.ids), list(enc.type_ids), ctx, mapping, list(dict.fromkeys(targets)), e))
    return out


def answer_text(f: Feature, start: int, end: int) -> str:
    a, b = char_span(f.mapping, start, end)
    return f.example.context[a:b]


def trivial(features: Sequence[Feature], max_k: int = 4) -> dict[int, tuple[float, float]]:
    """{k: (EM, F1)} of answering with the first k context tokens, k = 1..max_k (no model)."""
    out = {}
    for k in range(1, max_k + 1):
        em, f1 = [], []
        for f in features:
            first = f.context.index(True)
            last = min(first + k - 1, len(f.context) - 1 - f.context[::-1].index(True))
            s = score(answer_text(f, first, last), [a.text for a in f.example.answers])
            em.append(s[0])
            f1.append(s[1])
        out[k] = (float(np.mean(em)), float(np.mean(f1)))
    return out


def select(examples: Sequence[QAExample], tok: Tokenizer, n: int, max_context: int | None, seed: int
           ) -> list[QAExample]:
    """``n`` examples drawn with ``seed`` (order kept) among those whose context has at most ``max_context`` tokens
    (None: all)."""
    if max_context is not None:
        paras = list(dict.fromkeys(e.context for e in examples))
        short = {p for p, enc in zip(paras, tok.encode_raw(paras, max_length=max_context + 3))
                 if len(enc.ids) - 2 <= max_context}
        examples = [e for e in examples if e.context in short]
    if n >= len(examples):
        return list(examples)
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), n, replace=False))
    return [examples[i] for i in keep]


def gold_lengths(features: Sequence[Feature]) -> np.ndarray:
    """Per question, the token length of its shortest gold answer inside the window (0: none inside)."""
    return np.array([min((e - s + 1 for s, e in f.targets), default=0) for f in features])


# ------------------------------------------------------------------------------- the model
class SpanModel(torch.nn.Module):
    def __init__(self, model: Transformer, n_top: int) -> None:
        super().__init__()
        self.top = TopEncoder(model, n_top)
        self.head = SpanPointerHead(model.config.hidden_size)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.top(x, keep)
        return self.head(h, keep)


class Setting(NamedTuple):
    n_train: int
    n_test: int
    maxlen: int
    n_top: int
    epochs: int
    batch: int
    lr: float


class SeedRun(NamedTuple):
    """One seed: per test question (EM, F1) with the length limit and without, and the training losses."""

    limited: np.ndarray  # (n_test, 2)
    unlimited: np.ndarray  # (n_test, 2)
    losses: list[float]
    lengths: np.ndarray  # (n_test,) token length of each prediction without the limit


class Prepared(NamedTuple):
    train: list[Feature]
    test: list[Feature]
    train_states: list[torch.Tensor]
    test_states: list[torch.Tensor]


def prepare(model: Transformer, tok: Tokenizer, train: Sequence[QAExample], test: Sequence[QAExample],
            s: Setting) -> Prepared:
    """Features (training questions without a whole answer in the window dropped) and the frozen part's states."""
    n_frozen = len(model.blocks) - s.n_top
    tr = [f for f in encode(train, tok, s.maxlen) if f.targets]
    te = encode(test, tok, s.maxlen)
    return Prepared(tr, te, bottom_states(model, [f.ids for f in tr], n_frozen, type_ids=[f.type_ids for f in tr]),
                    bottom_states(model, [f.ids for f in te], n_frozen, type_ids=[f.type_ids for f in te]))


def run_seed(model: Transformer, data: Prepared, s: Setting, seed: int, max_answer_len: int = 16,
             eval_batch: int = 64) -> SeedRun:
    torch.manual_seed(seed)
    net = SpanModel(model, s.n_top)

    def loss_fn(idx: list[int], g: torch.Generator) -> torch.Tensor:
        x, keep = batch_states(data.train_states, idx)
        picks = [data.train[i].targets[int(torch.randint(len(data.train[i].targets), (1,), generator=g))]
                 for i in idx]
        zs, ze = net(x, keep)
        return span_loss(zs, ze, torch.tensor(picks))

    losses = fit(list(net.parameters()), len(data.train), loss_fn, epochs=s.epochs, batch=s.batch, lr=s.lr,
                 seed=seed, modules=[net])
    limited: list[tuple[float, float]] = []
    unlimited: list[tuple[float, float]] = []
    lengths: list[int] = []
    with torch.no_grad():
        for b in range(0, len(data.test), eval_batch):
            idx = list(range(b, min(b + eval_batch, len(data.test))))
            x, keep = batch_states(data.test_states, idx)
            zs, ze = net(x, keep)
            ctx = pad([torch.tensor(data.test[i].context, dtype=torch.long) for i in idx])[0].bool()
            for lim, out in ((max_answer_len, limited), (None, unlimited)):
                pred = decode_span(zs, ze, ctx, max_answer_len=lim)
                for j, i in enumerate(idx):
                    f = data.test[i]
                    st, en = int(pred.start[j]), int(pred.end[j])
                    if lim is None:
                        lengths.append(en - st + 1)
                    out.append(score(answer_text(f, st, en), [a.text for a in f.example.answers]))
    return SeedRun(np.array(limited), np.array(unlimited), losses, np.array(lengths))
