"""The synthetic task of the exposure_bias reproduction (kexue.fm/archives/7259): transcribing a noisy random walk.

The target is a random walk on the digits mod 10: y_1 uniform, y_t = (y_{t−1} + k_t) mod 10 with k_t uniform on
{0, …, K − 1} (K = :data:`STEPS`). The source is a noisy reading of it, one digit per target digit:
s_t = y_t with probability 1 − q, else a uniform digit (q = :data:`NOISE`). The model must denoise, using the walk's
constraint (y_t − y_{t−1} ∈ {0, …, K − 1}) and the neighbouring readings.

Why this task: the teacher-forced (TF) model is p(y_t | y_<t, s), and even the *exact* one is not perfect here (a
corrupted reading next to ambiguous neighbours leaves y_t uncertain), so errors are made at any training length. In
free running the model conditions on its own outputs; after a wrong y_t the exact TF model believes its prefix and
continues the walk from the wrong digit, although the readings s_{t+1}, … say otherwise: wrong prefixes never occur
in training, which is the post's analysis. The gap between TF and free-running accuracy therefore survives
convergence (the first running-sum task, y_t = Σ x_i mod 10, was solved perfectly by step 800 and left no exposure
bias to remove), and a model trained on corrupted prefixes can learn to trust the readings and recover.

:func:`exact_reference` scores the exact TF model (the walk's hidden Markov model, by backward messages) on given
sources: the ceiling of TF accuracy, its own free-running accuracy and its recovery after a forced wrong token.
:func:`train` trains a 2-layer UniLM-masked kexue Transformer one of four ways (:data:`VARIANTS`); :func:`evaluate`
scores it: teacher-forced and free-running (greedy, beam) token accuracy and exact match, and recovery (the gold
prefix with token :data:`ERROR_AT` made wrong, then greedy, scored on the tokens after the error).

:func:`toy_step` is the post's two-step toy (:data:`TOY_FIRST`, :data:`TOY_SECOND`) as a decoding step function.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..models import Transformer, TransformerConfig
from ..models.decoding import StepFn, UniLMStep, generate
from ..train.exposure_bias import RandomTokenReplacement, pack_unilm, penalized_unilm_loss, unilm_seq2seq_loss

PAD, CLS, SEP, DIGIT0 = 0, 1, 2, 3
VOCAB = DIGIT0 + 10
LENGTHS = (8, 18)  # source (= target) lengths, inclusive
NOISE = 0.2  # q: probability that a reading is replaced by a uniform digit
STEPS = 3  # K: the walk moves by 0, 1 or 2
#: Index of the target token that recovery makes wrong (the 4th).
ERROR_AT = 3
BANDS = {"8–14": (8, 14), "15–18": (15, 18)}
#: Target positions restart at 1, level with the first reading (see pack_unilm): y_t sits at the position of s_t.
TARGET_START = 1
BASELINE, REPLACE, REPLACE_SEQ, PENALTY = ("baseline", "replace (target pool)", "replace (sequence pool)",
                                           "gradient penalty")
VARIANTS = (BASELINE, REPLACE, REPLACE_SEQ, PENALTY)


def sample(n: int, g: torch.Generator, lengths: tuple[int, int] = LENGTHS, noise: float = NOISE,
           steps: int = STEPS) -> tuple[list[list[int]], list[list[int]]]:
    """``n`` (source, target) pairs as token ids (digit d is ``DIGIT0 + d``)."""
    sources, targets = [], []
    for _ in range(n):
        length = int(torch.randint(lengths[0], lengths[1] + 1, (1,), generator=g))
        start = torch.randint(0, 10, (1,), generator=g)
        moves = torch.randint(0, steps, (length,), generator=g)
        moves[0] = 0
        walk = (start + moves.cumsum(0)) % 10
        noisy = torch.rand(length, generator=g) < noise
        reading = torch.where(noisy, torch.randint(0, 10, (length,), generator=g), walk)
        sources.append((reading + DIGIT0).tolist())
        targets.append((walk + DIGIT0).tolist())
    return sources, targets


def copy_rate(sources: list[list[int]], targets: list[list[int]]) -> float:
    """Token accuracy of copying the reading (y_t := s_t): the trivial rate a model must beat (about 1 − 0.9q)."""
    hits = sum(a == b for s, t in zip(sources, targets) for a, b in zip(s, t))
    return hits / sum(len(t) for t in targets)


def _matrices(noise: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
    trans = np.zeros((10, 10))
    for y in range(10):
        for k in range(steps):
            trans[y, (y + k) % 10] += 1.0 / steps
    emit = np.full((10, 10), noise / 10) + (1 - noise) * np.eye(10)
    return trans, emit


class _ExactDecoder:
    """The exact model of :func:`exact_reference` for one reading ``s`` (digits 0–9): the backward messages β and
    the argmax / greedy decoding on top of them."""

    def __init__(self, trans: np.ndarray, emit: np.ndarray, s: list[int]) -> None:
        self.trans, self.emit, self.s = trans, emit, s
        n = len(s)
        self.beta = np.ones((n, 10))
        for t in range(n - 2, -1, -1):
            self.beta[t] = trans @ (emit[:, s[t + 1]] * self.beta[t + 1])
            self.beta[t] /= self.beta[t].sum()

    def best(self, t: int, prev: int | None) -> int:
        """argmax_y T[prev, y]·E[y, s_t]·β_t(y) (a uniform prior at t = 0)."""
        prior = np.full(10, 0.1) if prev is None else self.trans[prev]
        return int(np.argmax(prior * self.emit[:, self.s[t]] * self.beta[t]))

    def greedy(self, prefix: list[int]) -> list[int]:
        """``prefix`` continued greedily on its own outputs to the reading's length."""
        seq = list(prefix)
        for t in range(len(seq), len(self.s)):
            seq.append(self.best(t, seq[-1] if seq else None))
        return seq


def exact_reference(sources: list[list[int]], targets: list[list[int]], noise: float = NOISE, steps: int = STEPS,
                    shifts: list[int] | None = None) -> dict[str, list[float]]:
    """The exact teacher-forced model p(y_t | y_{t−1}, s_{t:}) ∝ T[y_{t−1}, y_t]·E[y_t, s_t]·β_t(y_t), with β the
    backward messages β_t(y) = p(s_{t+1:} | y_t = y) (T the walk's moves, E the reading's noise), scored per source:
    ``tf`` (argmax with gold prefixes), ``free`` (greedy on its own outputs; ``free_exact`` its exact match) and,
    with ``shifts`` (one per source, 1–9), ``recovery`` (gold prefix with token :data:`ERROR_AT` shifted, then
    greedy; accuracy on the tokens after the error)."""
    trans, emit = _matrices(noise, steps)
    out: dict[str, list[float]] = {"tf": [], "free": [], "free_exact": [], "recovery": []}
    for i, (src, tgt) in enumerate(zip(sources, targets)):
        exact = _ExactDecoder(trans, emit, [x - DIGIT0 for x in src])
        y = [x - DIGIT0 for x in tgt]
        n = len(exact.s)
        out["tf"].append(sum(exact.best(t, y[t - 1] if t else None) == y[t] for t in range(n)) / n)
        free = exact.greedy([])
        out["free"].append(sum(a == b for a, b in zip(free, y)) / n)
        out["free_exact"].append(float(free == y))
        if shifts is not None:
            forced = y[:ERROR_AT + 1]
            forced[ERROR_AT] = (forced[ERROR_AT] + shifts[i]) % 10
            rest = exact.greedy(forced)[ERROR_AT + 1:]
            out["recovery"].append(sum(a == b for a, b in zip(rest, y[ERROR_AT + 1:])) / len(rest))
    return out


# -- the model, its training and its evaluation ------------------------------------------------------------------


def _model(seed: int) -> Transformer:
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=VOCAB, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                            max_position_embeddings=LENGTHS[1] + 3, hidden_dropout=0.0, attention_dropout=0.0,
                            mask_type="unilm", with_pooler=False, with_mlm=True)
    return Transformer(cfg)


def train(variant: str, seed: int, steps: int, batch_size: int = 32, lr: float = 3e-3,
          checkpoints: tuple[int, ...] = (), probe: Callable[[Transformer], Any] | None = None,
          ) -> tuple[Transformer, float, list[float], dict[int, Any]]:
    """Train one variant; returns the model (eval mode), the seconds per step, the loss curve and
    ``probe(model)`` at each step count in ``checkpoints`` (the model in eval mode meanwhile; not timed)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
    model = _model(seed)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    g = torch.Generator().manual_seed(1000 + seed)
    replace = None
    if variant.startswith("replace"):
        replace = RandomTokenReplacement(0.5, 0.3, pool="target" if "target" in variant else "sequence",
                                         protect_ids=(PAD, CLS, SEP), generator=torch.Generator().manual_seed(seed))
    curve: list[float] = []
    probed: dict[int, Any] = {}
    elapsed = 0.0
    for step in range(1, steps + 1):
        start = time.perf_counter()
        batch = pack_unilm(*sample(batch_size, g), CLS, SEP, PAD, target_start=TARGET_START)
        if replace is not None:
            batch["input_ids"], batch["labels"], _ = replace.unilm(batch["input_ids"], batch["token_type_ids"],
                                                                   batch["attention_mask"])
        if variant == PENALTY:
            loss, _, _ = penalized_unilm_loss(model, batch, epsilon=1.0)
        else:
            logits = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                           token_type_ids=batch["token_type_ids"], position_ids=batch["position_ids"]).mlm_logits
            loss = unilm_seq2seq_loss(logits, batch.get("labels", batch["input_ids"]), batch["token_type_ids"],
                                      batch["attention_mask"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        curve.append(loss.item())
        opt.step()
        sched.step()
        elapsed += time.perf_counter() - start
        if probe is not None and step in checkpoints:
            probed[step] = probe(model.eval())
            model.train()
    return model.eval(), elapsed / steps, curve, probed


@torch.no_grad()
def evaluate(model: Transformer, sources: list[list[int]], targets: list[list[int]], beams: tuple[int, ...] = (1, 3),
             batch_size: int = 256) -> dict[str, Any]:
    """Exact match and free-running token accuracy per decoder and length band, teacher-forced accuracy and
    recovery; ``gap_per_source``: TF − greedy free-running token accuracy per source."""
    out: dict[str, Any] = {}
    lengths = torch.tensor([len(s) for s in sources])
    # teacher forcing: argmax next-token predictions with gold prefixes
    tf_correct = torch.zeros(len(sources))
    for i in range(0, len(sources), batch_size):
        b = pack_unilm(sources[i:i + batch_size], targets[i:i + batch_size], CLS, SEP, PAD, target_start=TARGET_START)
        logits = model(b["input_ids"], attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"],
                       position_ids=b["position_ids"]).mlm_logits
        pred = logits[:, :-1].argmax(-1)
        gold = b["input_ids"][:, 1:]
        w = (b["token_type_ids"][:, 1:] == 1) & b["attention_mask"][:, 1:].bool() & (gold != SEP)
        tf_correct[i:i + batch_size] = ((pred == gold) & w).sum(1).float() / w.sum(1).float()
    per: dict[str, torch.Tensor] = {"tf_token_acc": tf_correct}
    for k in beams:
        exact, tok = torch.zeros(len(sources)), torch.zeros(len(sources))
        for i in range(0, len(sources), batch_size):
            src = pack_unilm(sources[i:i + batch_size], None, CLS, SEP, PAD)
            outs = generate(model, src["input_ids"], src["attention_mask"], SEP, beam_size=k,
                            max_len=LENGTHS[1] + 2, target_start=TARGET_START)
            for j, (hyp, ref) in enumerate(zip(outs, targets[i:i + batch_size])):
                exact[i + j] = float(hyp == ref)
                tok[i + j] = sum(p == q for p, q in zip(hyp, ref)) / len(ref)
        per[f"beam{k}_exact"] = exact
        per[f"beam{k}_token_acc"] = tok
    per["recovery_token_acc"] = _recovery(model, sources, targets, batch_size)
    for band, (lo, hi) in BANDS.items():
        sel = (lengths >= lo) & (lengths <= hi)
        out[band] = {key: float(v[sel].mean()) for key, v in per.items()}
    out["all"] = {key: float(v.mean()) for key, v in per.items()}
    if "beam1_token_acc" in per:  # the exposure-bias gap of each source, for the rule's guard
        out["gap_per_source"] = (per["tf_token_acc"] - per["beam1_token_acc"]).tolist()
    return out


def recovery_shifts(n: int) -> list[int]:
    """The wrong-token shifts (1–9, mod 10) of :func:`_recovery`, one per held-out source, fixed by seed 4242."""
    return torch.randint(1, 10, (n,), generator=torch.Generator().manual_seed(4242)).tolist()


@torch.no_grad()
def _recovery(model: Transformer, sources: list[list[int]], targets: list[list[int]], batch_size: int) -> Tensor:
    """Per source: force the gold target prefix with token ERROR_AT made wrong (shifted by 1–9 mod 10), let the model
    continue greedily, and score the continuation against the gold targets after the error. A model that trusts its
    prefix walks on from the wrong digit; one that trusts the readings gets back on the gold walk."""
    shifts = torch.tensor(recovery_shifts(len(sources)))
    scores = torch.zeros(len(sources))
    for i in range(0, len(sources), batch_size):
        src_list, tgt_list = sources[i:i + batch_size], targets[i:i + batch_size]
        n = len(src_list)
        src = pack_unilm(src_list, None, CLS, SEP, PAD)
        step = UniLMStep(model, src["input_ids"], src["attention_mask"], TARGET_START)
        rows = torch.arange(n)
        forced = torch.tensor([t[:ERROR_AT + 1] for t in tgt_list])
        wrong = (forced[:, ERROR_AT] - DIGIT0 + shifts[i:i + n]) % 10 + DIGIT0
        forced[:, ERROR_AT] = wrong
        log_probs = step(None, rows)
        for j in range(ERROR_AT + 1):
            log_probs = step(forced[:, j], rows)
        rest = max(len(t) for t in tgt_list) - ERROR_AT - 1
        preds = []
        for _ in range(rest):
            tok = log_probs.argmax(-1)
            preds.append(tok)
            log_probs = step(tok, rows)
        pred = torch.stack(preds, 1)
        for j, t in enumerate(tgt_list):
            gold = torch.tensor(t[ERROR_AT + 1:])
            scores[i + j] = float((pred[j, :len(gold)] == gold).float().mean())
    return scores


# -- the post's two-step toy -------------------------------------------------------------------------------------------

#: The post's two-step distribution: p(a) = 0.6, p(c) = 0.4; p(b|a) = 0.55, p(d|a) = 0.45, p(b|c) = 0.1,
#: p(d|c) = 0.9. Greedy keeps (a, b) at 0.33; beam 2 returns (c, d) at 0.36.
TOY_FIRST = {"a": 0.6, "c": 0.4}
TOY_SECOND = {"a": {"b": 0.55, "d": 0.45}, "c": {"b": 0.1, "d": 0.9}}


def toy_step(vocab: Sequence[str] = ("<eos>", "a", "b", "c", "d")) -> StepFn:
    """A :data:`~kexue.models.decoding.StepFn` over the post's toy: two steps from :data:`TOY_FIRST` and
    :data:`TOY_SECOND`, then EOS with probability 1 (token 0 is EOS)."""
    index = {s: i for i, s in enumerate(vocab)}
    state: dict[str, Tensor] = {"prefix": torch.zeros(0, 0, dtype=torch.long)}

    def table(prefix: list[int]) -> Tensor:
        p = torch.zeros(len(vocab), dtype=torch.float64)
        if len(prefix) == 0:
            for s, q in TOY_FIRST.items():
                p[index[s]] = q
        elif len(prefix) == 1 and vocab[prefix[0]] in TOY_SECOND:
            for s, q in TOY_SECOND[vocab[prefix[0]]].items():
                p[index[s]] = q
        else:
            p[0] = 1.0
        return p.log()

    def step(tokens: Tensor | None, parents: Tensor) -> Tensor:
        if tokens is None:
            state["prefix"] = torch.zeros(len(parents), 0, dtype=torch.long)
        else:
            state["prefix"] = torch.cat([state["prefix"][parents], tokens[:, None]], dim=1)
        return torch.stack([table(row.tolist()) for row in state["prefix"]])

    return step


