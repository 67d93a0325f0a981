"""Incremental decoding with KVCache equals the full forward; recompute (checkpointing) gives the same gradients."""

from __future__ import annotations

import pytest
import torch

from kexue.models import KVCache, Transformer, TransformerConfig

SMALL = dict(vocab_size=60, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=48,
             max_position_embeddings=40, hidden_dropout=0.0, attention_dropout=0.0, with_mlm=True)


def _model(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(**{**SMALL, **kw})).eval()


@pytest.mark.parametrize("variant", [dict(), dict(talking_heads=True), dict(residual_attention=True),
                                     dict(norm="pre"), dict(attention_key_size=12)])
def test_lm_incremental_equals_full(variant):
    model = _model(mask_type="lm", **variant)
    ids = torch.randint(1, 60, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids).mlm_logits
        cache = model.new_cache()
        parts = [model(ids[:, :5], cache=cache).mlm_logits]
        for t in range(5, 12):
            parts.append(model(ids[:, t:t + 1], cache=cache).mlm_logits)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=0)
    assert cache.length == 12


def test_unilm_incremental_with_padded_sources():
    model = _model(mask_type="unilm")
    g = torch.Generator().manual_seed(2)
    src = torch.randint(1, 60, (2, 6), generator=g)
    src_mask = torch.ones(2, 6, dtype=torch.long)
    src_mask[1, 4:] = 0  # the second source is shorter: padded on the right
    src = src.masked_fill(src_mask == 0, 0)
    tgt = torch.randint(1, 60, (2, 5), generator=g)
    ids = torch.cat([src, tgt], dim=1)
    seg = torch.cat([torch.zeros(2, 6, dtype=torch.long), torch.ones(2, 5, dtype=torch.long)], dim=1)
    mask = torch.cat([src_mask, torch.ones(2, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        full = model(ids, attention_mask=mask, token_type_ids=seg).mlm_logits
        cache = model.new_cache()
        out = [model(src, attention_mask=src_mask, token_type_ids=torch.zeros_like(src), cache=cache).mlm_logits]
        for t in range(5):
            seg_t = torch.ones(2, 1, dtype=torch.long)
            out.append(model(tgt[:, t:t + 1], token_type_ids=seg_t, cache=cache).mlm_logits)
    got = torch.cat(out, dim=1)
    real = mask.bool()
    torch.testing.assert_close(got[real], full[real], atol=1e-5, rtol=0)


def test_reorder_selects_beams():
    model = _model(mask_type="lm")
    ids = torch.randint(1, 60, (3, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        cache = model.new_cache()
        model(ids[:, :5], cache=cache)
        cache.reorder(torch.tensor([2, 2, 0]))
        step = model(ids[[2, 2, 0], 5:6], cache=cache).mlm_logits
        full = model(ids[[2, 2, 0]]).mlm_logits[:, 5:6]
    torch.testing.assert_close(step, full, atol=1e-5, rtol=0)


def test_cache_refusals():
    with pytest.raises(ValueError, match="expected mask_type 'lm' or 'unilm' with a key/value cache .*, got "
                                         "mask_type='bidirectional'"):
        _model()(torch.ones(1, 3, dtype=torch.long), cache=KVCache(3))
    with pytest.raises(ValueError, match=r"expected kind='softmax' with a key/value cache .*, got kind='linear'"):
        _model(mask_type="lm", attention="linear")(torch.ones(1, 3, dtype=torch.long), cache=KVCache(3))
    with pytest.raises(ValueError, match=r"expected a cache of the model's 3 layers \(model.new_cache\(\)\), got 2 "
                                         r"layers"):
        _model(mask_type="lm")(torch.ones(1, 3, dtype=torch.long), cache=KVCache(2))


@pytest.mark.parametrize("policy", ["tail_once", "block"])
@pytest.mark.parametrize("variant", [dict(), dict(residual_attention=True), dict(norm="pre"),
                                     dict(norm="none", residual_gate="rezero"), dict(talking_heads=True)])
def test_recompute_gives_identical_gradients_with_dropout(variant, policy):
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = Transformer(TransformerConfig(**{**SMALL, "hidden_dropout": 0.2, "attention_dropout": 0.2},
                                              **variant)).train()
        if ckpt:
            model.gradient_checkpointing_enable(policy=policy)
        if variant.get("residual_gate"):  # gates start at 0: open them so every branch matters
            with torch.no_grad():
                for b in model.blocks:
                    b.gate.fill_(0.7)
        ids = torch.randint(1, 60, (4, 10), generator=torch.Generator().manual_seed(5))
        mask = torch.ones(4, 10, dtype=torch.long)
        mask[0, 7:] = 0
        torch.manual_seed(123)  # the same dropout masks in both runs
        out = model(ids, attention_mask=mask)
        out.mlm_logits.logsumexp(-1).mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-6, rtol=1e-5, msg=n)


@pytest.mark.parametrize("policy", ["tail_once", "block"])
def test_recompute_is_skipped_in_eval_and_without_grad(monkeypatch, policy):
    import kexue.models.recompute as R

    model = _model()
    model.gradient_checkpointing_enable(policy=policy)
    calls = []
    real = R.checkpoint

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(R, "checkpoint", spy)
    model(torch.ones(1, 4, dtype=torch.long))  # eval mode
    model.train()
    with torch.no_grad():
        model(torch.ones(1, 4, dtype=torch.long))
    assert calls == []
    model(torch.ones(1, 4, dtype=torch.long)).last_hidden_state.sum().backward()
    assert len(calls) == 3


@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("policy", ["tail_once", "block"])
def test_recompute_gives_the_same_hidden_states(norm, policy):
    """Every block's output (output_hidden_states) in training mode with dropout on: with recompute as without it
    (tail_once computes a post-norm block's output inside the next block's checkpoint)."""
    outs = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = Transformer(TransformerConfig(**{**SMALL, "hidden_dropout": 0.2, "attention_dropout": 0.2},
                                              norm=norm)).train()
        if ckpt:
            model.gradient_checkpointing_enable(policy=policy)
        ids = torch.randint(1, 60, (2, 9), generator=torch.Generator().manual_seed(3))
        torch.manual_seed(9)
        out = model(ids, output_hidden_states=True)
        outs.append(out)
    plain, rec = outs
    assert len(rec.hidden_states) == len(plain.hidden_states) == SMALL["num_layers"] + 1
    for a, b in zip(rec.hidden_states, plain.hidden_states, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.testing.assert_close(rec.last_hidden_state, plain.last_hidden_state, atol=1e-6, rtol=0)
