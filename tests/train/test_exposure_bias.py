"""kexue.train.exposure_bias: random replacement statistics, the toy beam example, beam search against brute force and
transformers' beam search, incremental UniLM decoding against full forwards."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import stats

from kexue.models import Transformer, TransformerConfig
from kexue.train.exposure_bias import (
    TOY_FIRST,
    TOY_SECOND,
    RandomTokenReplacement,
    beam_search,
    generate,
    greedy_search,
    pack_unilm,
    toy_step,
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
        out, labels, chosen = rtr.unilm(ids, seg, mask, return_mask=True)
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
    _, _, chosen = rtr.unilm(ids, seg, mask, return_mask=True)
    n = ((seg == 1) & mask.bool() & (ids != SEP)).sum(1)
    assert torch.equal(chosen.sum(1), torch.floor(0.3 * n.double() + 0.5).long())


def test_sample_probability_with_exact_fraction():
    batch = _unilm_batch(2000, seed=3)
    rtr = RandomTokenReplacement(0.5, 0.3, exact_fraction=True, protect_ids=(PAD, CLS, SEP),
                                 generator=torch.Generator().manual_seed(4))
    _, _, chosen = rtr.unilm(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], return_mask=True)
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
    out, _, chosen = rtr.unilm(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                               return_mask=True)
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
    out, _, chosen = rtr.unilm(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                               return_mask=True)
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
    with pytest.raises(ValueError, match="expected token_prob in \\[0, 1\\], got 1.5"):
        RandomTokenReplacement(token_prob=1.5)
    with pytest.raises(ValueError, match="unknown pool 'source'"):
        RandomTokenReplacement(pool="source")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pool='vocab' needs vocab_size"):
        RandomTokenReplacement(pool="vocab")
    rtr = RandomTokenReplacement()
    with pytest.raises(ValueError, match="target_mask shape \\(2, 3\\) != input_ids shape \\(2, 4\\)"):
        rtr(torch.ones(2, 4, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool))


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


# -- decoding: the toy, brute force, transformers ----------------------------------------------------------------


def test_toy_greedy_keeps_ab_and_beam_two_returns_cd():
    vocab = ("<eos>", "a", "b", "c", "d")
    # brute force over the two-step table: exact sequence probabilities
    probs = {(x, y): TOY_FIRST[x] * TOY_SECOND[x][y] for x in TOY_FIRST for y in TOY_SECOND[x]}
    best = max(probs, key=probs.get)
    assert best == ("c", "d") and probs[best] == pytest.approx(0.36)
    greedy_first = max(TOY_FIRST, key=TOY_FIRST.get)
    greedy = (greedy_first, max(TOY_SECOND[greedy_first], key=TOY_SECOND[greedy_first].get))
    assert greedy == ("a", "b")

    def words(h):
        return tuple(vocab[i] for i in h.tokens[:-1])

    assert words(greedy_search(toy_step(vocab), 1, 0, 5)[0]) == greedy
    assert words(beam_search(toy_step(vocab), 1, 0, 1, 5)[0][0]) == greedy
    beam2 = beam_search(toy_step(vocab), 1, 0, 2, 5)[0]
    assert words(beam2[0]) == best
    assert math.exp(beam2[0].log_prob) == pytest.approx(probs[best])
    assert math.exp(beam2[1].log_prob) == pytest.approx(probs[greedy])


def _tree_step(vocab: int, seed: int, batch: int = 1):
    """A step function whose next-token distribution is a fixed random function of (row, prefix)."""
    state = {}

    def dist(row: int, prefix: tuple[int, ...]) -> torch.Tensor:
        g = torch.Generator().manual_seed(hash((seed, row, prefix)) % (2**31))
        return torch.log_softmax(2.0 * torch.randn(vocab, generator=g, dtype=torch.float64), -1)

    def step(tokens, parents):
        if tokens is None:
            state["rows"] = [(int(p), ()) for p in parents]
        else:
            state["rows"] = [(state["rows"][int(p)][0], state["rows"][int(p)][1] + (int(t),))
                             for p, t in zip(parents, tokens)]
        return torch.stack([dist(r, pre) for r, pre in state["rows"]])

    return step, dist


@pytest.mark.parametrize("length_penalty", [0.0, 0.5, 1.0, 2.0])
def test_wide_beam_equals_brute_force(length_penalty):
    vocab, eos, max_len = 3, 0, 4
    step, dist = _tree_step(vocab, seed=11, batch=2)
    # a beam wider than every candidate set keeps everything, so it must find the exact best sequence
    hyps = beam_search(step, 2, eos, beam_size=vocab**max_len, max_len=max_len, length_penalty=length_penalty)
    for row in range(2):
        scored = []
        for n in range(1, max_len + 1):
            for seq in itertools.product(range(vocab), repeat=n):
                if eos in seq[:-1] or (n < max_len and seq[-1] != eos):
                    continue  # EOS ends a sequence; only max_len may end without it
                lp = sum(float(dist(row, seq[:i])[seq[i]]) for i in range(n))
                scored.append((lp / n**length_penalty, list(seq)))
        scored.sort(reverse=True)
        assert hyps[row][0].tokens == scored[0][1]
        assert hyps[row][0].score == pytest.approx(scored[0][0], abs=1e-12)


def test_beam_one_equals_greedy():
    step_a, _ = _tree_step(6, seed=5)
    step_b, _ = _tree_step(6, seed=5)
    g = greedy_search(step_a, 3, 0, 7)
    b = beam_search(step_b, 3, 0, 1, 7)
    assert [h.tokens for h in g] == [hs[0].tokens for hs in b]
    assert [h.log_prob for h in g] == pytest.approx([hs[0].log_prob for hs in b])


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_beam_search_matches_transformers(length_penalty):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    vocab, eos, k, new = 12, 3, 3, 5
    cfg = GPT2Config(vocab_size=vocab, n_positions=32, n_embd=16, n_layer=1, n_head=2, bos_token_id=0,
                     eos_token_id=eos, pad_token_id=0, tie_word_embeddings=False)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # sharper distributions and a likely EOS, so hypotheses end at different lengths
        model.lm_head.weight.mul_(6)
        model.transformer.ln_f.bias[0] = 1.5
        model.lm_head.weight[eos, 0] = 1.0
    prompt = torch.tensor([[1, 5, 7], [2, 9, 4], [6, 6, 8]])
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), num_beams=k, num_return_sequences=k,
                         length_penalty=length_penalty, early_stopping="never", do_sample=False, max_new_tokens=new,
                         eos_token_id=eos, pad_token_id=0, output_scores=True, return_dict_in_generate=True)
    state = {}

    def step(tokens, parents):
        state["seq"] = prompt[parents] if tokens is None else torch.cat([state["seq"][parents], tokens[:, None]], 1)
        with torch.no_grad():
            return torch.log_softmax(model(state["seq"]).logits[:, -1].float(), -1)

    hyps = beam_search(step, 3, eos, k, new, length_penalty)
    ref = out.sequences[:, prompt.shape[1]:].tolist()
    for i in range(3 * k):
        seq = ref[i][:ref[i].index(eos) + 1] if eos in ref[i] else ref[i]
        h = hyps[i // k][i % k]
        assert h.tokens == seq
        assert h.score == pytest.approx(float(out.sequences_scores[i]), abs=1e-5)
    if length_penalty < 2:  # at α = 2 every kept hypothesis runs to max_len
        assert len({len(h.tokens) for hs in hyps for h in hs}) > 1  # hypotheses of different lengths compared


def test_decode_bad_input():
    with pytest.raises(ValueError, match="expected beam_size >= 1, got 0"):
        beam_search(toy_step(), 1, 0, 0, 5)
    with pytest.raises(ValueError, match="expected max_len >= 1, got 0"):
        greedy_search(toy_step(), 1, 0, 0)


# -- UniLM decoding with the KV cache ----------------------------------------------------------------------------


def _unilm_model(**kw) -> Transformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=24, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                            max_position_embeddings=40, hidden_dropout=0.0, attention_dropout=0.0, with_mlm=True,
                            with_pooler=False, mask_type="unilm", **kw)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        model.mlm.bias[SEP] = 1.5  # make EOS plausible so hypotheses end at different lengths
    return model


def _full_step(model, source_lists, target_start=None):
    """A reference step function without the cache: the whole packed sequence each step."""
    state = {}

    def step(tokens, parents):
        if tokens is None:
            state["tgt"] = [[] for _ in parents]
        else:
            state["tgt"] = [state["tgt"][int(p)] + [int(t)] for p, t in zip(parents, tokens)]
        src = [source_lists[i % len(source_lists)] for i in range(len(state["tgt"]))]
        if tokens is not None:
            src = [state["src"][int(p)] for p in parents]
        state["src"] = src
        rows = []
        for s, t in zip(src, state["tgt"]):
            b = pack_unilm([s], [t], CLS, SEP, PAD, target_start=target_start)
            ids, seg = b["input_ids"][:, :-1], b["token_type_ids"][:, :-1]  # drop the closing [SEP]
            pos = b["position_ids"][:, :-1] if target_start is not None else None
            with torch.no_grad():
                rows.append(torch.log_softmax(model(ids, token_type_ids=seg, position_ids=pos).mlm_logits[0, -1], -1))
        return torch.stack(rows)

    return step


@pytest.mark.parametrize("norm, target_start", [("post", None), ("pre", None), ("post", 1)])
def test_unilm_incremental_beam_equals_full_forward_beam(norm, target_start):
    model = _unilm_model(norm=norm)
    sources = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]  # different lengths: the batch is right-padded
    packed = pack_unilm(sources, None, CLS, SEP, PAD)
    from kexue.train.exposure_bias import UniLMStep

    for k, lp in ((1, 0.0), (3, 0.0), (3, 1.0)):
        fast = beam_search(UniLMStep(model, packed["input_ids"], packed["attention_mask"], target_start), 3, SEP, k,
                           6, lp)
        slow = beam_search(_full_step(model, sources, target_start), 3, SEP, k, 6, lp)
        for hf, hs in zip(fast, slow):
            assert [h.tokens for h in hf] == [h.tokens for h in hs]
            assert [h.score for h in hf] == pytest.approx([h.score for h in hs], abs=1e-4)
    # the returned log-probability is the teacher-forced one of the decoded target
    best = beam_search(UniLMStep(model, packed["input_ids"], packed["attention_mask"], target_start), 3, SEP, 3, 6)
    for src, hyps in zip(sources, best):
        h = hyps[0]
        tgt = h.tokens[:-1] if h.finished else h.tokens
        b = pack_unilm([src], [tgt], CLS, SEP, PAD, target_start=target_start)
        ids, seg = b["input_ids"], b["token_type_ids"]
        pos = b.get("position_ids")
        if not h.finished:
            ids, seg = ids[:, :-1], seg[:, :-1]
            pos = pos[:, :-1] if pos is not None else None
        with torch.no_grad():
            lp = torch.log_softmax(model(ids, token_type_ids=seg, position_ids=pos).mlm_logits[0].double(), -1)
        start = len(src) + 2  # first target position
        total = sum(float(lp[start - 1 + i, ids[0, start + i]]) for i in range(len(h.tokens)))
        assert h.log_prob == pytest.approx(total, abs=1e-4)
    lengths = {len(h.tokens) for hs in best for h in hs}
    assert len(lengths) > 1


def test_generate_greedy_and_beam():
    model = _unilm_model()
    sources = [[5, 6, 7], [8, 9]]
    packed = pack_unilm(sources, None, CLS, SEP, PAD)
    greedy = generate(model, packed["input_ids"], packed["attention_mask"], SEP, beam_size=1, max_len=6)
    ref = greedy_search(_full_step(model, sources), 2, SEP, 6)
    assert greedy == [h.tokens[:-1] if h.finished else h.tokens for h in ref]
    beam = generate(model, packed["input_ids"], packed["attention_mask"], SEP, beam_size=3, max_len=6)
    assert len(beam) == 2 and all(SEP not in t for t in beam)
    model.train()
    with pytest.raises(ValueError, match="eval mode"):
        generate(model, packed["input_ids"], packed["attention_mask"], SEP)


def test_unilm_step_refusals():
    from kexue.train.exposure_bias import UniLMStep

    torch.manual_seed(0)
    lm = Transformer(TransformerConfig(vocab_size=20, hidden_size=16, num_layers=1, num_heads=2,
                                       intermediate_size=16, with_mlm=True, mask_type="lm"))
    with pytest.raises(ValueError, match="mask_type='unilm', got mask_type='lm'"):
        UniLMStep(lm, torch.ones(1, 3, dtype=torch.long))
    model = _unilm_model()
    with pytest.raises(ValueError, match="right-padded"):
        UniLMStep(model, torch.ones(1, 3, dtype=torch.long), torch.tensor([[0, 1, 1]]))


# -- the gradient-penalty remedy -----------------------------------------------------------------------------------


def test_penalized_unilm_loss_is_half_the_squared_embedding_output_gradient():
    from kexue.train.exposure_bias import penalized_unilm_loss

    model = _unilm_model()
    model.train()
    batch = pack_unilm([[5, 6, 7], [8]], [[9, 10], [11, 12, 13]], CLS, SEP, PAD)
    total, loss, penalty = penalized_unilm_loss(model, batch, epsilon=1.0)
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
    diffs = [float((a - b).abs().max()) for a, b in zip(plain, pen) if a is not None and b is not None]
    assert max(diffs) > 1e-6
