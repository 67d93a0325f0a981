"""kexue.models.decoding: beam search against brute force and transformers' beam search, beam 1 against greedy,
incremental UniLM decoding on the KV cache against full forwards."""

from __future__ import annotations

import itertools

import pytest
import torch

from kexue.models import Transformer, TransformerConfig
from kexue.models.decoding import UniLMStep, beam_search, generate, greedy_search
from kexue.train.exposure_bias import pack_unilm

PAD, CLS, SEP = 0, 1, 2


# -- beam search: brute force, greedy, transformers ----------------------------------------------------------------


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
                             for p, t in zip(parents, tokens, strict=True)]
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
    step, _ = _tree_step(4, seed=0)
    with pytest.raises(ValueError, match="expected beam_size >= 1, got 0"):
        beam_search(step, 1, 0, 0, 5)
    with pytest.raises(ValueError, match="expected max_len >= 1, got 0"):
        greedy_search(step, 1, 0, 0)
    with pytest.raises(ValueError, match="expected batch_size >= 1, got 0"):
        greedy_search(step, 0, 0, 5)
    with pytest.raises(ValueError, match="expected eos_id >= 0, got -1"):
        beam_search(step, 1, -1, 2, 5)
    with pytest.raises(ValueError, match="expected length_penalty to be finite, got nan"):
        beam_search(step, 1, 0, 2, 5, length_penalty=float("nan"))
    with pytest.raises(TypeError, match=r"expected beam_size to be an integer, got 2.0 \(float\)"):
        beam_search(step, 1, 0, 2.0, 5)


# -- UniLM decoding with the KV cache ----------------------------------------------------------------------------


def _full_step(model, source_lists, target_start=None):
    """A reference step function without the cache: the whole packed sequence each step."""
    state = {}

    def step(tokens, parents):
        if tokens is None:
            state["tgt"] = [[] for _ in parents]
        else:
            state["tgt"] = [state["tgt"][int(p)] + [int(t)] for p, t in zip(parents, tokens, strict=True)]
        src = [source_lists[i % len(source_lists)] for i in range(len(state["tgt"]))]
        if tokens is not None:
            src = [state["src"][int(p)] for p in parents]
        state["src"] = src
        rows = []
        for s, t in zip(src, state["tgt"], strict=True):
            b = pack_unilm([s], [t], CLS, SEP, PAD, target_start=target_start)
            ids, seg = b["input_ids"][:, :-1], b["token_type_ids"][:, :-1]  # drop the closing [SEP]
            pos = b["position_ids"][:, :-1] if target_start is not None else None
            with torch.no_grad():
                rows.append(torch.log_softmax(model(ids, token_type_ids=seg, position_ids=pos).mlm_logits[0, -1], -1))
        return torch.stack(rows)

    return step


@pytest.mark.parametrize("norm, target_start", [("post", None), ("pre", None), ("post", 1)])
def test_unilm_incremental_beam_equals_full_forward_beam(norm, target_start, unilm_model):
    model = unilm_model(SEP, norm=norm)
    sources = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]  # different lengths: the batch is right-padded
    packed = pack_unilm(sources, None, CLS, SEP, PAD)
    for k, lp in ((1, 0.0), (3, 0.0), (3, 1.0)):
        fast = beam_search(UniLMStep(model, packed["input_ids"], packed["attention_mask"], target_start), 3, SEP, k,
                           6, lp)
        slow = beam_search(_full_step(model, sources, target_start), 3, SEP, k, 6, lp)
        for hf, hs in zip(fast, slow, strict=True):
            assert [h.tokens for h in hf] == [h.tokens for h in hs]
            assert [h.score for h in hf] == pytest.approx([h.score for h in hs], abs=1e-4)
    # the returned log-probability is the teacher-forced one of the decoded target
    best = beam_search(UniLMStep(model, packed["input_ids"], packed["attention_mask"], target_start), 3, SEP, 3, 6)
    for src, hyps in zip(sources, best, strict=True):
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


def test_generate_greedy_and_beam(unilm_model):
    model = unilm_model(SEP)
    sources = [[5, 6, 7], [8, 9]]
    packed = pack_unilm(sources, None, CLS, SEP, PAD)
    greedy = generate(model, packed["input_ids"], packed["attention_mask"], SEP, beam_size=1, max_len=6)
    ref = greedy_search(_full_step(model, sources), 2, SEP, 6)
    assert greedy == [h.tokens[:-1] if h.finished else h.tokens for h in ref]
    beam = generate(model, packed["input_ids"], packed["attention_mask"], SEP, beam_size=3, max_len=6)
    assert len(beam) == 2 and all(SEP not in t for t in beam)
    model.train()
    with pytest.raises(ValueError, match=r"expected the model in eval mode .*, got it in training mode"):
        generate(model, packed["input_ids"], packed["attention_mask"], SEP)


def test_unilm_step_refusals(unilm_model):
    torch.manual_seed(0)
    lm = Transformer(TransformerConfig(vocab_size=20, hidden_size=16, num_layers=1, num_heads=2,
                                       intermediate_size=16, with_mlm=True, mask_type="lm"))
    with pytest.raises(ValueError, match="expected a kexue Transformer with mask_type='unilm', got mask_type='lm'"):
        UniLMStep(lm, torch.ones(1, 3, dtype=torch.long))
    model = unilm_model(SEP)
    no_head = Transformer(model.config.replace(with_mlm=False))
    with pytest.raises(ValueError, match=r"expected a model with an MLM head \(with_mlm=True.*\), got one without"):
        UniLMStep(no_head, torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected source_mask of source_ids' shape \(1, 3\), got \(1, 2\)"):
        UniLMStep(model, torch.ones(1, 3, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="expected target_start >= 0, got -1"):
        UniLMStep(model, torch.ones(1, 3, dtype=torch.long), target_start=-1)
    step = UniLMStep(model, torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected a first call with tokens=None \(it runs the sources\), got "
                                         r"tokens first"):
        step(torch.tensor([1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="right-padded"):
        UniLMStep(model, torch.ones(1, 3, dtype=torch.long), torch.tensor([[0, 1, 1]]))
