"""kexue.train.mlm: BERT masking against transformers' collator, the embedding correction against a Monte Carlo estimate
and the post's formula, DropToken against masked keys in every layer (kexue and transformers' BERT)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from kexue.models import Transformer, TransformerConfig, save_pretrained
from kexue.train.mlm import DropToken, MaskedBatch, MLMMasking, expected_embedding_correction_

PAD, MASK, CLS, SEP = 0, 1, 2, 3


def _within(observed: float, p: float, n: int, z: float = 5.0) -> bool:
    return abs(observed - p) <= z * math.sqrt(p * (1 - p) / n)


# -- masking -------------------------------------------------------------------------------------------------------


def test_masking_rates_match_transformers_collator(minilm_dir):
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    g = torch.Generator().manual_seed(0)
    body = torch.randint(1000, 20000, (400, 30), generator=g)
    ids = torch.cat([torch.full((400, 1), tok.cls_token_id), body, torch.full((400, 1), tok.sep_token_id)], 1)
    specials = (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)
    ours = MLMMasking(tok.mask_token_id, len(tok), protect_ids=specials, generator=torch.Generator().manual_seed(1))
    hf = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, seed=2)

    def fractions(masked, labels):
        sel = labels != -100
        n = int(sel.sum())
        is_mask = masked[sel] == tok.mask_token_id
        kept = masked[sel] == labels[sel]
        return n, {"select": n / sel.numel() * ids.shape[1] / (ids.shape[1] - 2), "mask": float(is_mask.float().mean()),
                   "keep": float(kept.float().mean()), "random": float((~is_mask & ~kept).float().mean())}

    n_o, f_o = fractions(*ours(ids)[:2])
    batch = hf([{"input_ids": row} for row in ids.tolist()])
    n_h, f_h = fractions(batch["input_ids"], batch["labels"])
    assert not bool((batch["labels"][:, [0, -1]] != -100).any())
    expected = {"select": 0.15, "mask": 0.8, "keep": 0.1, "random": 0.1}
    for key, p in expected.items():
        n_o_key = ids.numel() - 2 * ids.shape[0] if key == "select" else n_o
        n_h_key = ids.numel() - 2 * ids.shape[0] if key == "select" else n_h
        assert _within(f_h[key], p, n_h_key), (key, f_h[key])  # the reference behaves as documented
        assert _within(f_o[key], p, n_o_key), (key, f_o[key])
        assert abs(f_o[key] - f_h[key]) <= 5 * math.sqrt(p * (1 - p) * (1 / n_o_key + 1 / n_h_key)), key


def test_masking_labels_protection_and_kinds():
    ids = torch.randint(4, 50, (64, 20), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1] = CLS, SEP
    attn = torch.ones_like(ids)
    attn[:8, 15:] = 0
    ids[:8, 15:] = PAD
    m = MLMMasking(MASK, 50, protect_ids=(PAD, CLS, SEP), generator=torch.Generator().manual_seed(1))
    masked, labels, kinds = m(ids, attn)
    sel = labels != -100
    assert torch.equal(sel, kinds > 0)
    assert torch.equal(labels[sel], ids[sel])
    assert not bool(sel[:, [0, -1]].any()) and not bool(sel[~attn.bool()].any())
    assert bool((masked[kinds == 1] == MASK).all())
    assert torch.equal(masked[kinds == 2], ids[kinds == 2])
    assert torch.equal(masked[kinds == 0], ids[kinds == 0])


def test_masking_collate_pads_and_masks():
    examples = [[CLS, 5, 6, 7, SEP], {"input_ids": [CLS, 8, SEP]}, torch.tensor([CLS, 9, 10, SEP])]
    m = MLMMasking(MASK, 30, select=1.0, p_mask=1.0, p_keep=0.0, p_random=0.0, protect_ids=(PAD, CLS, SEP))
    batch = m.collate(examples)
    assert batch["attention_mask"].tolist() == [[1] * 5, [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]
    assert batch["input_ids"].tolist() == [[CLS, MASK, MASK, MASK, SEP], [CLS, MASK, SEP, PAD, PAD],
                                           [CLS, MASK, MASK, SEP, PAD]]
    assert batch["labels"].tolist() == [[-100, 5, 6, 7, -100], [-100, 8, -100, -100, -100],
                                        [-100, 9, 10, -100, -100]]
    loader = torch.utils.data.DataLoader([[CLS, 5, SEP]] * 4, batch_size=2, collate_fn=m.collate)
    assert [b["input_ids"].shape for b in loader] == [(2, 3), (2, 3)]


def test_masking_exact_fraction_and_unigram_draws():
    ids = torch.randint(4, 30, (50, 40), generator=torch.Generator().manual_seed(0))
    m = MLMMasking(MASK, 30, exact_fraction=True, generator=torch.Generator().manual_seed(0))
    _, labels, _ = m(ids)
    assert bool(((labels != -100).sum(1) == 6).all())  # round(0.15 · 40)
    q = torch.zeros(30)
    q[10], q[11] = 3.0, 1.0  # random replacements from a unigram distribution
    m = MLMMasking(MASK, 30, select=1.0, p_mask=0.0, p_keep=0.0, p_random=1.0, random_dist=q,
                   generator=torch.Generator().manual_seed(0))
    masked, _, _ = m(ids)
    assert set(masked.unique().tolist()) == {10, 11}
    assert _within(float((masked == 10).float().mean()), 0.75, masked.numel())


def test_masking_state_dict_round_trips():
    ids = torch.randint(4, 30, (8, 16), generator=torch.Generator().manual_seed(0))
    a = MLMMasking(MASK, 30, protect_ids=(PAD,), generator=torch.Generator().manual_seed(5))
    a(ids)
    state = a.state_dict()
    first = a(ids)
    b = MLMMasking(MASK, 30)
    b.load_state_dict(state)
    assert b.protect_ids == [PAD]
    for x, y in zip(b(ids), first):
        assert torch.equal(x, y)


def test_masking_bad_input():
    with pytest.raises(ValueError, match="p_mask \\+ p_keep \\+ p_random = 1, got 0.8 \\+ 0.1 \\+ 0.2"):
        MLMMasking(MASK, 30, p_random=0.2)
    with pytest.raises(ValueError, match=r"^expected mask_id <= 29, got 30$"):
        MLMMasking(30, 30)
    with pytest.raises(ValueError, match=r"^expected vocab_size >= 1, got 0$"):
        MLMMasking(0, 0)
    with pytest.raises(ValueError, match=r"^expected select <= 1.0, got 1.5$"):
        MLMMasking(MASK, 30, select=1.5)
    with pytest.raises(ValueError, match=r"^expected p_keep >= 0.0, got -0.1$"):
        MLMMasking(MASK, 30, p_mask=1.0, p_keep=-0.1, p_random=0.1)
    with pytest.raises(ValueError, match="random_dist of shape \\(30,\\), got \\(29,\\)"):
        MLMMasking(MASK, 30, random_dist=torch.ones(29))
    with pytest.raises(ValueError,
                       match=r"^expected random_dist to be finite and non-negative with a positive sum, got min"):
        MLMMasking(MASK, 30, random_dist=-torch.ones(30))
    with pytest.raises(ValueError, match=r"^expected protect_ids in the vocabulary \[0, 30\), got \[40\]$"):
        MLMMasking(MASK, 30, protect_ids=(40,))
    masking = MLMMasking(MASK, 30)
    with pytest.raises(ValueError, match=r"^expected attention_mask in the shape of input_ids, \(2, 4\), got \(2, 3"):
        masking(torch.ones(2, 4, dtype=torch.long), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^expected at least one example to collate, got none$"):
        masking.collate([])


def test_masking_returns_one_named_type():
    out = MLMMasking(MASK, 30, generator=torch.Generator().manual_seed(0))(torch.randint(3, 30, (2, 8)))
    assert isinstance(out, MaskedBatch) and out._fields == ("input_ids", "labels", "kinds")
    assert torch.equal(out.kinds == 0, out.labels == -100)


# -- the expected-embedding correction ----------------------------------------------------------------------------


@pytest.mark.parametrize("unigram", [False, True])
def test_correction_equals_monte_carlo_expectation(unigram):
    vocab, dim = 12, 5
    weight = torch.randn(vocab, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    q = torch.arange(1, vocab + 1, dtype=torch.float64) if unigram else None
    masking = MLMMasking(MASK, vocab, random_dist=q, generator=torch.Generator().manual_seed(1))
    n = 100_000
    corrected = weight.clone()
    masking.correct_embeddings_(corrected)
    for token in (4, 7):
        masked = masking(torch.full((1, n), token)).input_ids
        mc = weight[masked[0]].mean(0)  # E[embedding of the corrupted input], sampled through the transform
        se = weight[masked[0]].std(0) / math.sqrt(n)
        assert bool(((mc - corrected[token]).abs() <= 5 * se + 1e-12).all()), (mc, corrected[token])


def test_correction_is_the_posts_formula():
    weight = torch.randn(30, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    e = weight.clone()
    expected_embedding_correction_(weight, MASK, exclude_ids=(PAD, CLS))
    # the post: E[i] ← 0.85·E[i] + 0.15·(0.8·E[mask] + 0.1·E[i] + 0.1·mean(E)) = 0.865 E[i] + 0.12 E[mask] + 0.015 mean
    ref = 0.85 * e + 0.15 * (0.8 * e[MASK] + 0.1 * e + 0.1 * e.mean(0))
    rows = [i for i in range(30) if i not in (PAD, CLS)]
    torch.testing.assert_close(weight[rows], ref[rows], rtol=0, atol=1e-14)
    torch.testing.assert_close(weight[rows], 0.865 * e[rows] + 0.12 * e[MASK] + 0.015 * e.mean(0), rtol=0,
                               atol=1e-14)
    assert torch.equal(weight[[PAD, CLS]], e[[PAD, CLS]])


def test_correction_of_a_table_padded_beyond_the_vocabulary_draws_random_tokens_from_the_vocabulary():
    """A table with more rows than the masking's vocabulary (padded to a multiple of 8, say): the random-token term
    averages the masking's vocab_size rows only, as __call__ draws them (before: the mean over every row); a table
    with fewer rows is refused."""
    vocab, rows = 10, 16
    weight = torch.randn(rows, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    e = weight.clone()
    MLMMasking(MASK, vocab).correct_embeddings_(weight)
    torch.testing.assert_close(weight, 0.865 * e + 0.12 * e[MASK] + 0.015 * e[:vocab].mean(0), rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match=r"^expected weight with the masking's 10 rows \(vocab_size\) or more, got 8$"):
        MLMMasking(MASK, vocab).correct_embeddings_(torch.zeros(8, 4))


def test_correction_touches_only_token_embeddings_of_a_model():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=40, hidden_size=16, num_layers=1, num_heads=2,
                                          intermediate_size=32, with_mlm=True))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masking = MLMMasking(MASK, 40, protect_ids=(PAD, CLS, SEP))
    masking.correct_embeddings_(model.embeddings.word)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"embeddings.word.weight"}
    assert torch.equal(after["embeddings.word.weight"][PAD], before["embeddings.word.weight"][PAD])
    with pytest.raises(ValueError, match=r"^expected mask_id <= 39, got 41$"):
        expected_embedding_correction_(model.embeddings.word, 41)


# -- DropToken -----------------------------------------------------------------------------------------------------

SMALL = dict(vocab_size=60, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
             max_position_embeddings=64, hidden_dropout=0.0, attention_dropout=0.0)


def _batch(b: int = 4, t: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 60, (b, t), generator=g)
    ids[:, 0] = CLS
    attn = torch.ones(b, t, dtype=torch.long)
    lengths = [t, t - 5, t - 9, 12][:b]
    for r, n in enumerate(lengths):
        ids[r, n - 1] = SEP
        ids[r, n:] = PAD
        attn[r, n:] = 0
    seg = (torch.arange(t)[None] >= 8).long().expand(b, t) * attn
    return ids, attn, seg


def test_droptoken_equals_masking_dropped_keys_in_every_layer():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(**SMALL)).eval()
    ids, attn, seg = _batch()
    drop = DropToken(0.3, protect_ids=(CLS, SEP), generator=torch.Generator().manual_seed(3)).train()
    out = drop(ids, attn, seg)
    assert bool((out.kept.sum(1) < attn.sum(1)).all())  # something was dropped in every row
    with torch.no_grad():
        short = model(**out.model_inputs()).last_hidden_state
        full = model(ids, attention_mask=out.kept.long(), token_type_ids=seg).last_hidden_state
    for r in range(ids.shape[0]):
        n = int(out.kept[r].sum())
        torch.testing.assert_close(short[r, :n], full[r][out.kept[r]], atol=1e-5, rtol=0)


def test_droptoken_equals_transformers_bert_with_dropped_keys_masked(tmp_path):
    from transformers import BertModel

    torch.manual_seed(1)
    model = Transformer(TransformerConfig(**SMALL)).eval()
    save_pretrained(model, tmp_path)
    bert = BertModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ids, attn, seg = _batch(seed=1)
    out = DropToken(0.25, protect_ids=(CLS, SEP), generator=torch.Generator().manual_seed(4)).train()(ids, attn, seg)
    with torch.no_grad():
        short = model(**out.model_inputs()).last_hidden_state
        ref = bert(input_ids=ids, attention_mask=out.kept.long(), token_type_ids=seg).last_hidden_state
    for r in range(ids.shape[0]):
        n = int(out.kept[r].sum())
        torch.testing.assert_close(short[r, :n], ref[r][out.kept[r]], atol=1e-5, rtol=0)
    # the gathered batch also drives transformers' BERT directly (it takes position_ids too)
    with torch.no_grad():
        hf_short = bert(**out.model_inputs()).last_hidden_state
    for r in range(ids.shape[0]):
        n = int(out.kept[r].sum())
        torch.testing.assert_close(hf_short[r, :n], short[r, :n], atol=1e-5, rtol=0)


def test_correction_on_a_transformers_model():
    from transformers import BertConfig, BertForMaskedLM

    from kexue.train import find_input_embedding

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32))
    emb = find_input_embedding(model)
    e = emb.weight.detach().clone()
    MLMMasking(MASK, 40, protect_ids=(PAD, CLS, SEP)).correct_embeddings_(emb)
    rows = [i for i in range(40) if i not in (PAD, CLS, SEP)]
    torch.testing.assert_close(model.bert.embeddings.word_embeddings.weight[rows],
                               0.865 * e[rows] + 0.12 * e[MASK] + 0.015 * e.mean(0))
    # tied decoder: the output layer moved with it (the post's caveat)
    assert model.cls.predictions.decoder.weight.data_ptr() == emb.weight.data_ptr()


def test_droptoken_keeps_positions_protection_and_rate():
    ids, attn, seg = _batch(b=4, t=24)
    big_ids = ids.repeat(200, 1)
    big_attn, big_seg = attn.repeat(200, 1), seg.repeat(200, 1)
    out = DropToken(0.2, protect_ids=(CLS, SEP), generator=torch.Generator().manual_seed(0)).train()(
        big_ids, big_attn, big_seg)
    kept = out.kept
    protected = (big_ids == CLS) | (big_ids == SEP)
    assert bool(kept[protected].all()) and not bool(kept[~big_attn.bool()].any())
    droppable = big_attn.bool() & ~protected
    assert _within(1 - float(kept[droppable].float().mean()), 0.2, int(droppable.sum()))
    for r in (0, 1, 2, 3, 401):
        n = int(kept[r].sum())
        pos = torch.arange(24)[kept[r]]
        assert torch.equal(out.position_ids[r, :n], pos)  # original positions, never re-indexed
        assert torch.equal(out.input_ids[r, :n], big_ids[r][kept[r]])
        assert torch.equal(out.token_type_ids[r, :n], big_seg[r][kept[r]])
        assert out.attention_mask[r].tolist() == [1] * n + [0] * (out.input_ids.shape[1] - n)
        assert bool((out.input_ids[r, n:] == PAD).all())
    assert out.input_ids.shape[1] == int(kept.sum(1).max())


def test_droptoken_eval_min_keep_and_exact_fraction():
    ids, attn, seg = _batch()
    drop = DropToken(0.5, protect_ids=(CLS, SEP))
    drop.eval()
    out = drop(ids, attn, seg)
    assert torch.equal(out.kept, attn.bool()) and torch.equal(out.input_ids[:, :ids.shape[1]], ids)
    drop = DropToken(0.99, min_keep=3, protect_ids=(CLS, SEP), generator=torch.Generator().manual_seed(0)).train()
    out = drop(ids, attn, seg)
    assert out.kept.sum(1).tolist() == [5, 5, 5, 5]  # [CLS], [SEP] and the three largest draws
    drop = DropToken(0.25, exact_fraction=True, min_keep=0, protect_ids=(CLS, SEP),
                     generator=torch.Generator().manual_seed(0)).train()
    out = drop(ids, attn, seg)
    n = attn.sum(1) - 2
    assert torch.equal(attn.sum(1) - out.kept.sum(1), torch.floor(0.25 * n.double() + 0.5).long())


def test_droptoken_bad_input():
    with pytest.raises(ValueError, match=r"^expected rate < 1.0, got 1.0$"):
        DropToken(1.0)
    with pytest.raises(ValueError, match=r"^expected min_keep >= 0, got -1$"):
        DropToken(0.1, min_keep=-1)
    with pytest.raises(TypeError, match=r"^expected pad_id to be an integer, got 0.5 \(float\)$"):
        bad_pad: Any = 0.5
        DropToken(0.1, pad_id=bad_pad)
    with pytest.raises(ValueError, match=r"^expected attention_mask in the shape of input_ids, \(2, 4\), got \(2, 3"):
        DropToken(0.1)(torch.ones(2, 4, dtype=torch.long), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^expected position_ids of shape \(2, 4\) or \(1, 4\) for input_ids"):
        DropToken(0.1)(torch.ones(2, 4, dtype=torch.long), position_ids=torch.zeros(3, 4, dtype=torch.long))
