"""Parametrisation options of the Transformer-initialisation post: RMSNorm, no-norm blocks, residual gates."""

from __future__ import annotations

import pytest
import torch

from kexue.models import Transformer, TransformerConfig, load_pretrained, save_pretrained

SMALL = dict(vocab_size=50, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=48,
             max_position_embeddings=16, hidden_dropout=0.0, attention_dropout=0.0)


def _model(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(**{**SMALL, **kw}))


def test_rmsnorm_is_the_formula():
    model = _model(norm_kind="rmsnorm", layer_norm_eps=1e-6)
    norm = model.blocks[0].attn_norm
    x = torch.randn(3, 32)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(32) + 0.5)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight  # ε inside the root
    torch.testing.assert_close(norm(x), expected, atol=1e-6, rtol=1e-6)
    assert [n for n, _ in norm.named_parameters()] == ["weight"]


@pytest.mark.parametrize("gate", ["rezero", "ramp"])
def test_gated_blocks_start_as_identity(gate):
    model = _model(norm="none", residual_gate=gate, residual_gate_ramp_steps=4 if gate == "ramp" else None).eval()
    ids = torch.randint(1, 50, (2, 7))
    emb = model.embeddings(ids, None, None)
    torch.testing.assert_close(model(ids).last_hidden_state, emb)


def test_rezero_gate_learns():
    model = _model(norm="none", residual_gate="rezero").train()
    model(torch.randint(1, 50, (2, 7))).last_hidden_state.pow(2).sum().backward()
    assert model.blocks[0].gate.grad is not None and model.blocks[0].gate.grad.abs().sum() > 0


def test_ramp_advances_per_optimizer_step_not_per_forward():
    model = _model(norm="pre", residual_gate="ramp", residual_gate_ramp_steps=4).train()
    assert "blocks.0.gate" in model.state_dict() and "blocks.0.gate" not in dict(model.named_parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.attach_ramp(opt)
    ids = torch.randint(1, 50, (2, 7))
    for _ in range(3):  # three forwards, one step
        model(ids).last_hidden_state.sum().backward()
    assert model.blocks[0].gate.tolist() == [0.0, 0.0]
    opt.step()
    assert model.blocks[0].gate.tolist() == [0.25, 0.25]
    for _ in range(10):
        opt.step()
    assert model.blocks[2].gate.tolist() == [1.0, 1.0]  # capped
    again = _model(norm="pre", residual_gate="ramp", residual_gate_ramp_steps=4)
    again.load_state_dict(model.state_dict())
    assert again.blocks[1].gate.tolist() == [1.0, 1.0]


def test_gate_multiplies_the_branch_in_post_norm():
    model = _model(residual_gate="ramp", residual_gate_ramp_steps=2).eval()
    model.advance_ramp()
    blk = model.blocks[0]
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        h = blk.attn_norm(x + 0.5 * blk.attn(x).output)
        expected = blk.ffn_norm(h + 0.5 * blk.ffn(h))
        torch.testing.assert_close(blk(x, None)[0], expected, atol=1e-6, rtol=0)


def test_bad_values_and_hf_refusals(tmp_path):
    with pytest.raises(ValueError, match="expected residual_gate_ramp_steps, a positive integer, with "
                                         "residual_gate='ramp' .*, got None"):
        TransformerConfig(residual_gate="ramp")
    with pytest.raises(ValueError, match=r"expected norm_kind to be one of \['layernorm', 'rmsnorm'\], got "
                                         r"'batchnorm'"):
        TransformerConfig(norm_kind="batchnorm")
    with pytest.raises(ValueError, match="expected a model with residual_gate='ramp' for advance_ramp, got "
                                         "residual_gate='none'"):
        _model().advance_ramp()
    with pytest.raises(ValueError, match="expected a model with residual_gate='ramp' for attach_ramp"):
        _model().attach_ramp(torch.optim.SGD(_model().parameters(), lr=0.1))
    with pytest.raises(ValueError, match="norm_kind='rmsnorm'"):
        save_pretrained(_model(norm_kind="rmsnorm"), tmp_path)
    save_pretrained(_model(), tmp_path)
    with pytest.raises(ValueError, match=r"expected config overrides that build a model able to hold a bert "
                                         r"checkpoint, got \['norm'\]"):
        load_pretrained(tmp_path, norm="none")
