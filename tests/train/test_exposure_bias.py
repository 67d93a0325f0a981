"""kexue.train.exposure_bias: random replacement statistics, the UniLM batch layout and loss, and the gradient-penalty
remedy against a hand-computed embedding-output gradient."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from scipy import stats

from kexue.train import PenalizedLoss
from kexue.train.exposure_bias import (
    CorruptedBatch,
    RandomTokenReplacement,
    pack_unilm,
    penalized_unilm_loss,
    unilm_seq2seq_loss,
)

PAD, CLS, SEP = 0, 1, 2


# -- random replacement ----------------------------------------------------------------------------------------


def _unilm_batch(n: int = 400, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sources, targets = [], []
    for _ in range(n):
        ls, lt = int(torch.randint(3, 9, (1,), generator=g)), int(torch.randint(4, 12, (1,), generator=g))
        sources.append(torch.randint(3, 20, (ls,), generator=g).tolist())
        targets.append(torch.randint(20, 40, (lt,), generator=g).tolist())  # disjoint from the source ids
    return pack_unilm(sources, targets, CLS, SEP, PAD)


def _binomial_ok(successes: int, trials: int, p: float, z: float = 5.0) -> bool:
    return abs(successes - trials * p) <= z * math.sqrt(trials * p * (1 - p))


@pytest.mark.parametrize("pool", ["target", "sequence", "vocab"])
def test_replacement_rates_and_untouched_labels(pool):
    batch = _unilm_batch()
    ids, seg, mask = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    eligible = (seg == 1) & mask.bool() & (ids != SEP)
    n = eligible.sum(1).double()
    rtr = RandomTokenReplacement(0.5, 0.3, pool=pool, protect_ids=(PAD, CLS, SEP), vocab_size=40,
                                 generator=torch.Generator().manual_seed(1))
    draws = 20
    touched = replaced = 0
    for _ in range(draws):
        out, labels, chosen = rtr.unilm(ids, seg, mask)
        assert torch.equal(labels, ids)  # labels are the gold tokens
        assert not bool((chosen & ~eligible).any())  # never the source, [SEP], [CLS] or padding
        assert torch.equal(out[~chosen], ids[~chosen])
        touched += int(chosen.any(dim=1).sum())
        replaced += int(chosen.sum())
    # exact expectations: a row is touched with probability 0.5·(1 − 0.7^n); 0.5·0.3·n tokens are replaced
    p_touch = 0.5 * (1 - 0.7**n)
    mean_t, var_t = draws * p_touch.sum(), draws * (p_touch * (1 - p_touch)).sum()
    assert abs(touched - mean_t) <= 5 * var_t.sqrt()
    # per row X = coin · Binomial(n, 0.3): Var X = 0.5·n·0.3·0.7 + 0.25·(0.3 n)²
    mean_r = draws * (0.15 * n).sum()
    var_r = draws * (0.5 * n * 0.21 + 0.25 * (0.3 * n) ** 2).sum()
    assert abs(replaced - mean_r) <= 5 * var_r.sqrt()


def test_exact_fraction_replaces_round_of_token_prob():
    batch = _unilm_batch(200)
    ids, seg, mask = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    rtr = RandomTokenReplacement(1.0, 0.3, exact_fraction=True, protect_ids=(PAD, CLS, SEP),
                                 generator=torch.Generator().manual_seed(0))
    _, _, chosen = rtr.unilm(ids, seg, mask)
    n = ((seg == 1) & mask.bool() & (ids != SEP)).sum(1)
    assert torch.equal(chosen.sum(1), torch.floor(0.3 * n.double() + 0.5).long())


def test_sample_probability_with_exact_fraction():
    batch = _unilm_batch(2000, seed=3)
    rtr = RandomTokenReplacement(0.5, 0.3, exact_fraction=True, protect_ids=(PAD, CLS, SEP),
                                 generator=torch.Generator().manual_seed(4))
    _, _, chosen = rtr.unilm(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    # every target here has ≥ 4 tokens, so round(0.3·n) ≥ 1: a row is touched iff its coin came up
    assert _binomial_ok(int(chosen.any(1).sum()), 2000, 0.5)


@pytest.mark.parametrize("pool", ["target", "sequence"])
def test_replacements_are_uniform_over_the_pool(pool):
    # one fixed row, many draws: the replacement token follows the pool's token frequencies (with multiplicity,
    # as np.random.choice(token_ids) in the released code)
    src, tgt = [5, 5, 6, 7], [20, 20, 20, 21, 22, 23]
    batch = pack_unilm([src] * 4000, [tgt] * 4000, CLS, SEP, PAD)
    rtr = RandomTokenReplacement(1.0, 0.3, pool=pool, protect_ids=(PAD, CLS, SEP),
                                 generator=torch.Generator().manual_seed(7))
    out, _, chosen = rtr.unilm(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    drawn = out[chosen]
    pool_tokens = tgt if pool == "target" else [CLS, *src, SEP, *tgt, SEP]
    values = sorted(set(pool_tokens))
    expected = torch.tensor([pool_tokens.count(v) for v in values], dtype=torch.float64) / len(pool_tokens)
    observed = torch.tensor([int((drawn == v).sum()) for v in values], dtype=torch.float64)
    assert int(observed.sum()) == drawn.numel()  # nothing outside the pool
    assert stats.chisquare(observed.numpy(), (expected * drawn.numel()).numpy()).pvalue > 1e-4


def test_vocab_pool_never_draws_protected_ids():
    batch = _unilm_batch(300)
    rtr = RandomTokenReplacement(1.0, 1.0, pool="vocab", vocab_size=8, protect_ids=(PAD, CLS, SEP),
                                 generator=torch.Generator().manual_seed(0))
    out, _, chosen = rtr.unilm(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    assert set(out[chosen].unique().tolist()) == {3, 4, 5, 6, 7}


def test_replacement_is_repeatable_and_state_dict_round_trips():
    batch = _unilm_batch(50)
    args = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    a = RandomTokenReplacement(protect_ids=(PAD, CLS, SEP), generator=torch.Generator().manual_seed(3))
    a.unilm(*args)
    state = a.state_dict()
    first = a.unilm(*args)[0]
    b = RandomTokenReplacement(pool="sequence", generator=torch.Generator())
    b.load_state_dict(state)
    assert b.pool == "target" and b.protect_ids == [PAD, CLS, SEP]
    assert torch.equal(b.unilm(*args)[0], first)
    assert not torch.equal(a.unilm(*args)[0], first)  # the stream moves on: fresh corruptions each call


def test_replacement_bad_input():
    with pytest.raises(ValueError, match=r"^expected token_prob <= 1.0, got 1.5$"):
        RandomTokenReplacement(token_prob=1.5)
    with pytest.raises(ValueError, match=r"^expected apply_prob >= 0.0, got -0.1$"):
        RandomTokenReplacement(apply_prob=-0.1)
    with pytest.raises(ValueError, match=r"^expected pool to be one of \['target', 'sequence', 'vocab'\], got 'sou"):
        bad_pool: Any = "source"
        RandomTokenReplacement(pool=bad_pool)
    with pytest.raises(ValueError, match=r"^expected vocab_size \(an integer\) with pool='vocab', got None$"):
        RandomTokenReplacement(pool="vocab")
    with pytest.raises(ValueError, match=r"^expected vocab_size >= 4, got 3$"):
        RandomTokenReplacement(pool="vocab", vocab_size=3, protect_ids=(0, 1, 2))
    with pytest.raises(ValueError, match=r"^expected protect_ids in the vocabulary \[0, 10\), got \[12\]$"):
        RandomTokenReplacement(pool="vocab", vocab_size=10, protect_ids=(0, 12))
    rtr = RandomTokenReplacement()
    with pytest.raises(ValueError, match=r"^expected target_mask in the shape of input_ids, \(2, 4\), got \(2, 3"):
        rtr(torch.ones(2, 4, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^expected token_type_ids in the shape of input_ids, \(2, 4\), got \(2,"):
        rtr.unilm(torch.ones(2, 4, dtype=torch.long), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(KeyError, match="expected a RandomTokenReplacement state_dict with 'pool'"):
        rtr.load_state_dict({"apply_prob": 0.5, "token_prob": 0.3})


def test_replacement_returns_one_named_type():
    batch = _unilm_batch(4)
    rtr = RandomTokenReplacement(protect_ids=(PAD, CLS, SEP), generator=torch.Generator().manual_seed(2))
    out = rtr.unilm(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    assert isinstance(out, CorruptedBatch) and out._fields == ("input_ids", "labels", "replaced")
    assert out.replaced.dtype == torch.bool and torch.equal(out.labels, batch["input_ids"])


# -- UniLM batches and loss ------------------------------------------------------------------------------------


def test_pack_unilm_layout():
    b = pack_unilm([[7, 8], [9]], [[10], [11, 12, 13]], CLS, SEP, PAD)
    assert b["input_ids"].tolist() == [[CLS, 7, 8, SEP, 10, SEP, PAD], [CLS, 9, SEP, 11, 12, 13, SEP]]
    assert b["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]]
    assert pack_unilm([[7]], None, CLS, SEP)["input_ids"].tolist() == [[CLS, 7, SEP]]
    restarted = pack_unilm([[7, 8], [9]], [[10], [11, 12, 13]], CLS, SEP, PAD, target_start=1)
    assert restarted["position_ids"].tolist() == [[0, 1, 2, 3, 1, 2, 0], [0, 1, 2, 1, 2, 3, 4]]


def test_unilm_loss_equals_per_token_cross_entropy():
    b = pack_unilm([[7, 8], [9]], [[10], [11, 12, 13]], CLS, SEP, PAD)
    logits = torch.randn(2, 7, 15, generator=torch.Generator().manual_seed(0))
    got = unilm_seq2seq_loss(logits, b["input_ids"], b["token_type_ids"], b["attention_mask"])
    terms = []
    for r in range(2):
        ids = b["input_ids"][r].tolist()
        seg = b["token_type_ids"][r].tolist()
        for t in range(1, 7):
            if seg[t] == 1:  # predicted from position t - 1
                terms.append(-torch.log_softmax(logits[r, t - 1], -1)[ids[t]])
    torch.testing.assert_close(got, torch.stack(terms).mean())
    per_token = unilm_seq2seq_loss(logits, b["input_ids"], b["token_type_ids"], b["attention_mask"], reduction="none")
    torch.testing.assert_close(per_token.sum(), torch.stack(terms).sum())


def test_unilm_batch_and_loss_bad_input(unilm_model):
    with pytest.raises(ValueError, match=r"^expected as many targets as sources \(2\), got 1$"):
        pack_unilm([[7], [8]], [[9]], CLS, SEP)
    with pytest.raises(ValueError, match=r"^expected at least one source, got none$"):
        pack_unilm([], None, CLS, SEP)
    with pytest.raises(ValueError, match=r"^expected target_start >= 0, got -1$"):
        pack_unilm([[7]], [[8]], CLS, SEP, target_start=-1)
    b = pack_unilm([[7, 8]], [[10]], CLS, SEP, PAD)
    logits = torch.zeros(1, 6, 15)
    bad: Any = "avg"
    with pytest.raises(ValueError, match=r"^expected reduction to be one of \['mean', 'sum', 'none'\], got 'avg'$"):
        unilm_seq2seq_loss(logits, b["input_ids"], b["token_type_ids"], reduction=bad)
    with pytest.raises(ValueError, match=r"^expected logits \(batch, seq, vocab\) matching target \(1, 6\), got"):
        unilm_seq2seq_loss(logits[:, :5], b["input_ids"], b["token_type_ids"])
    with pytest.raises(ValueError, match=r"^expected attention_mask in the shape of target, \(1, 6\), got \(1, 5\)"):
        unilm_seq2seq_loss(logits, b["input_ids"], b["token_type_ids"], b["attention_mask"][:, :5])
    with pytest.raises(KeyError, match="expected batch to hold 'token_type_ids'"):
        penalized_unilm_loss(unilm_model(SEP), {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]})


def test_penalized_unilm_loss_is_half_the_squared_embedding_output_gradient(unilm_model):
    model = unilm_model(SEP)
    model.train()
    batch = pack_unilm([[5, 6, 7], [8]], [[9, 10], [11, 12, 13]], CLS, SEP, PAD)
    out = penalized_unilm_loss(model, batch, epsilon=1.0)
    assert isinstance(out, PenalizedLoss) and out._fields == ("total", "loss", "penalty")
    total, loss, penalty = out
    # second computation: the token-embedding output replaced by a leaf tensor through a forward hook
    with torch.no_grad():
        e = model.embeddings.word(batch["input_ids"])
    leaf = e.clone().requires_grad_(True)
    handle = model.embeddings.word.register_forward_hook(lambda m, i, o: leaf)
    try:
        logits = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch["token_type_ids"]).mlm_logits
    finally:
        handle.remove()
    ref_loss = unilm_seq2seq_loss(logits, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    (g,) = torch.autograd.grad(ref_loss, leaf)
    g = g * batch["attention_mask"][..., None]
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(penalty, 0.5 * g.pow(2).sum(), rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(total, loss + penalty)
    # the penalty back-propagates (double backward): it changes the parameter gradients
    plain = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True, allow_unused=True)
    pen = torch.autograd.grad(total, list(model.parameters()), allow_unused=True)
    diffs = [float((a - b).abs().max()) for a, b in zip(plain, pen, strict=True) if a is not None and b is not None]
    assert max(diffs) > 1e-6
