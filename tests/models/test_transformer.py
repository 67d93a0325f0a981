"""The Transformer's own behaviour: masks, norm placement, heads, state_dict round trip."""

from __future__ import annotations

import pytest
import torch

from kexue.models import Transformer, TransformerConfig

SMALL = dict(vocab_size=60, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
             max_position_embeddings=20, hidden_dropout=0.0, attention_dropout=0.0)


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(**SMALL)).eval()
    ids = torch.randint(1, 60, (1, 7))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 7), torch.zeros(1, 4)], dim=1).long()
    with torch.no_grad():
        a = model(ids).last_hidden_state
        b = model(padded, attention_mask=mask).last_hidden_state[:, :7]
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_lm_mask_is_causal():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(**SMALL, mask_type="lm")).eval()
    ids = torch.randint(1, 60, (2, 9))
    changed = ids.clone()
    changed[:, 5:] = torch.randint(1, 60, (2, 4))
    with torch.no_grad():
        a, b = model(ids).last_hidden_state, model(changed).last_hidden_state
    torch.testing.assert_close(a[:, :5], b[:, :5], atol=1e-6, rtol=0)
    assert (a[:, 5:] - b[:, 5:]).abs().max() > 1e-3


def test_unilm_mask_sees_whole_source_and_causal_target():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(**SMALL, mask_type="unilm")).eval()
    ids = torch.randint(1, 60, (1, 10))
    seg = torch.tensor([[0] * 4 + [1] * 6])
    with torch.no_grad():
        base = model(ids, token_type_ids=seg).last_hidden_state
        # changing the last source token changes every position (the source is bidirectional)
        src = ids.clone()
        src[0, 3] = (src[0, 3] + 1) % 59 + 1
        out_src = model(src, token_type_ids=seg).last_hidden_state
        # changing target token 7 leaves the source and earlier target tokens unchanged
        tgt = ids.clone()
        tgt[0, 7] = (tgt[0, 7] + 1) % 59 + 1
        out_tgt = model(tgt, token_type_ids=seg).last_hidden_state
    assert (out_src[0, 0] - base[0, 0]).abs().max() > 1e-3
    torch.testing.assert_close(out_tgt[:, :7], base[:, :7], atol=1e-6, rtol=0)
    assert (out_tgt[0, 7:] - base[0, 7:]).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"expected token_type_ids with mask_type='unilm' .*, got None"):
        model(ids)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_block_norm_placement_by_hand(norm):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(**{**SMALL, "num_layers": 1}, norm=norm)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    ids = torch.randint(1, 60, (2, 6))
    blk = model.blocks[0]
    with torch.no_grad():
        x = model.embeddings(ids, None, None)
        if norm == "pre":
            h = x + blk.attn(blk.attn_norm(x)).output
            y = model.final_norm(h + blk.ffn(blk.ffn_norm(h)))
        else:
            h = blk.attn_norm(x + blk.attn(x).output)
            y = blk.ffn_norm(h + blk.ffn(h))
        torch.testing.assert_close(model(ids).last_hidden_state, y, atol=1e-6, rtol=0)
    assert (model.final_norm is not None) == (norm == "pre")


def test_mlm_head_is_tied_to_word_embeddings():
    model = Transformer(TransformerConfig(**SMALL, with_mlm=True))
    names = [n for n, _ in model.named_parameters()]
    assert not any("decoder" in n for n in names)
    out = model(torch.randint(1, 60, (1, 5)))
    out.mlm_logits.sum().backward()
    assert model.embeddings.word.weight.grad is not None


def test_hidden_states_order_and_count():
    model = Transformer(TransformerConfig(**SMALL)).eval()
    out = model(torch.randint(1, 60, (1, 5)), output_hidden_states=True)
    assert len(out.hidden_states) == SMALL["num_layers"] + 1
    assert out.hidden_states[-1] is out.last_hidden_state
    assert model(torch.randint(1, 60, (1, 5))).hidden_states is None


def test_state_dict_round_trip():
    torch.manual_seed(1)
    a = Transformer(TransformerConfig(**SMALL, with_mlm=True, with_nsp=True)).eval()
    torch.manual_seed(2)
    b = Transformer(TransformerConfig(**SMALL, with_mlm=True, with_nsp=True)).eval()
    b.load_state_dict(a.state_dict())
    ids = torch.randint(1, 60, (2, 6))
    assert torch.equal(a(ids).nsp_logits, b(ids).nsp_logits)


def test_init_is_bert_normal():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(hidden_size=256, num_heads=4, num_layers=1, intermediate_size=512))
    w = model.blocks[0].ffn.up.weight
    assert abs(w.std().item() - 0.02) < 0.001
    assert w.abs().max().item() > 0.04  # not truncated at 2 std
    assert model.embeddings.word.weight[0].abs().sum() == 0  # padding row
    assert model.blocks[0].attn.q.bias.abs().sum() == 0
