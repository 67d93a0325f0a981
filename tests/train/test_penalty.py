"""Gradient penalties (kexue.fm/archives/7234) and the parameter-gradient penalties (kexue.fm/archives/8796).

References: ``torch.func.grad`` of the loss as a function of the embedding output; a central finite difference of the
gradient at the point moved along the (held) input gradient; per-sample loops of ``torch.autograd.grad``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kexue.train import (
    PenalizedLoss,
    batch_param_grad_penalty,
    double_backward_attention,
    embedding_gradient_penalty,
    gradient_penalty_loss,
    input_grad_penalty,
    param_grad_penalty,
    record_output,
)


class Bag(nn.Module):
    """Embedding -> masked mean pool -> MLP: the spec's small model for the FGM / penalty equivalence."""

    def __init__(self, vocab: int = 20, dim: int = 6, hidden: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, classes))

    def head(self, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(e.dtype)
        return self.mlp((e * m).sum(1) / m.sum(1))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(ids), mask)


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = Bag().double()
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, 20, (4, 7), generator=g)
    ids[1, :3] = ids[0, :3]  # repeated tokens across and within rows
    ids[2, 4] = ids[2, 5]
    mask = torch.ones(4, 7, dtype=torch.long)
    mask[3, 5:] = 0
    y = torch.randint(0, 3, (4,), generator=g)
    return model, ids, mask, y


def _grads(model: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.parameters())))


def test_penalty_value_matches_func_grad_of_the_loss_in_the_embedding_output():
    model, ids, mask, y = _setup()
    e = model.emb(ids)
    loss = F.cross_entropy(model.head(e, mask), y)
    pen = embedding_gradient_penalty(loss, e, epsilon=0.7)
    ref_g = torch.func.grad(lambda e: F.cross_entropy(model.head(e, mask), y))(e.detach())
    torch.testing.assert_close(pen, 0.5 * 0.7 * ref_g.pow(2).sum(), rtol=1e-12, atol=0)
    pen_n = embedding_gradient_penalty(loss, e, epsilon=0.7, form="norm")
    torch.testing.assert_close(pen_n, 0.7 * ref_g.norm(), rtol=1e-12, atol=0)


def test_penalty_gradient_equals_finite_difference_of_the_moved_gradient():
    """∇_θ[½‖∇_eL‖²] = d/dh ∇_θ L(e + h·g)|_{h=0}, g = ∇_eL held constant (the first-order FGM equivalence)."""
    model, ids, mask, y = _setup(3)
    e = model.emb(ids)
    loss = F.cross_entropy(model.head(e, mask), y)
    g = torch.autograd.grad(loss, e, retain_graph=True)[0].detach()
    pen_grad = _grads(model, embedding_gradient_penalty(loss, e, epsilon=1.0))

    def moved(h: float) -> list[torch.Tensor]:
        return _grads(model, F.cross_entropy(model.head(model.emb(ids) + h * g, mask), y))

    errs = []
    for h in (1e-2, 1e-3):
        fd = [(a - b) / (2 * h) for a, b in zip(moved(h), moved(-h), strict=True)]
        errs.append(max(float((a - b).abs().max()) for a, b in zip(fd, pen_grad, strict=True)))
    scale = max(float(p.abs().max()) for p in pen_grad)
    assert scale > 1e-4  # the penalty really moves the gradient (bert4torch's constant penalty would not)
    assert errs[1] < 1e-6 * scale
    assert errs[1] < errs[0] / 50  # O(h²)


def test_penalty_changes_the_parameter_gradient():
    model, ids, mask, y = _setup(4)
    e = model.emb(ids)
    loss = F.cross_entropy(model.head(e, mask), y)
    plain = _grads(model, loss)
    e = model.emb(ids)
    loss = F.cross_entropy(model.head(e, mask), y)
    pen = _grads(model, loss + embedding_gradient_penalty(loss, e))
    assert any(not torch.allclose(a, b, rtol=1e-6, atol=1e-9) for a, b in zip(plain, pen, strict=True))


def test_mask_drops_padding_positions():
    model, ids, mask, y = _setup(5)
    e = model.emb(ids)
    e.retain_grad()
    loss = F.cross_entropy(model.head(e, mask), y)
    pen = embedding_gradient_penalty(loss, e, epsilon=2.0, mask=mask)
    g = torch.autograd.grad(loss, e, retain_graph=True)[0]
    ref = (g.pow(2).sum(-1) * mask).sum()  # by hand: the per-position squared norms of the real tokens
    torch.testing.assert_close(pen, ref, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match=r"^expected mask in the leading dimensions of the gradient \(4, 7, 6\) .*"
                                         r"got \(4, 6\)$"):
        embedding_gradient_penalty(loss, e, mask=mask[:, :6])


def test_norm_form_is_safe_at_zero_gradient():
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    loss = (w * x).sum()
    pen = input_grad_penalty(loss, x, form="norm")
    (gw,) = torch.autograd.grad(pen, w)
    assert float(pen.detach()) == 0.0 and torch.isfinite(gw).all()


def test_errors_name_the_bad_value():
    x = torch.randn(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"expected loss to be a scalar tensor, got shape \(3,\)"):
        input_grad_penalty(x * 2, x)
    with pytest.raises(ValueError, match=r"^expected form to be one of \['squared', 'norm'\], got 'cube'$"):
        bad_form: Any = "cube"
        input_grad_penalty((x * 2).sum(), x, form=bad_form)
    other = torch.randn(2, requires_grad=True)
    with pytest.raises(ValueError, match=r"^expected inputs\[0\] to be part of the loss's graph, got a \(2,\) tensor"):
        input_grad_penalty((x * 2).sum(), other)
    with pytest.raises(ValueError, match=r"^expected epsilon >= 0.0, got -1$"):
        embedding_gradient_penalty((x * 2).sum(), x, epsilon=-1)
    with pytest.raises(ValueError, match=r"^expected weight >= 0.0, got -0.5$"):
        input_grad_penalty((x * 2).sum(), x, weight=-0.5)
    with pytest.raises(ValueError, match=r"^expected weight >= 0.0, got -1$"):
        batch_param_grad_penalty((x * 2).sum(), [x], weight=-1)
    with pytest.raises(ValueError, match="^expected a loss that requires grad, got one that does not"):
        input_grad_penalty(torch.tensor(1.0), x)
    with pytest.raises(ValueError, match=r"^expected inputs\[0\] to be a tensor that requires grad .*got a tensor"):
        input_grad_penalty((x * 2).sum(), torch.ones(3))


def test_record_output_counts_calls():
    emb = nn.Embedding(5, 2)
    with record_output(emb) as rec:
        emb(torch.tensor([1]))
        emb(torch.tensor([2]))
    with pytest.raises(RuntimeError, match=r"^expected the module to run once inside record_output\(\), got 2 runs$"):
        _ = rec.output
    emb(torch.tensor([1]))
    assert len(rec.outputs) == 2  # the hook is gone after the block


def test_record_output_refuses_a_module_that_returns_no_tensor():
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    pair = Pair()
    with pytest.raises(TypeError, match=r"^expected Pair to return a tensor inside record_output\(\), got tuple$"):
        with record_output(pair):
            pair(torch.ones(1))


def test_gradient_penalty_loss_on_transformers_matches_inputs_embeds_path():
    """The hook-recorded embedding output of a transformers BERT gives the penalty computed with inputs_embeds."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=2,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = transformers.BertForSequenceClassification(cfg).double().train()
    ids = torch.randint(1, 50, (3, 6), generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 1])

    def loss_fn(m, b):
        return F.cross_entropy(m(input_ids=b).logits, y)

    out = gradient_penalty_loss(model, ids, loss_fn, epsilon=1.0)
    assert isinstance(out, PenalizedLoss) and out._fields == ("total", "loss", "penalty")
    total, loss, pen = out
    got = torch.autograd.grad(total, list(model.parameters()), allow_unused=True)
    e = model.get_input_embeddings()(ids)
    with double_backward_attention():  # SDPA's fused CPU kernel has no double backward
        ref_loss = F.cross_entropy(model(inputs_embeds=e).logits, y)
    g = torch.autograd.grad(ref_loss, e, create_graph=True)[0]
    ref_total = ref_loss + 0.5 * g.pow(2).sum()
    ref = torch.autograd.grad(ref_total, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(pen, 0.5 * g.pow(2).sum(), rtol=1e-10, atol=0)
    for a, b in zip(got, ref, strict=True):
        if b is None:
            assert a is None or float(a.abs().max()) == 0.0
        else:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_gradient_penalty_loss_under_bf16_autocast_is_close_to_float32():
    from kexue.models import Transformer, TransformerConfig

    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=40, hidden_size=32, num_layers=2, num_heads=4,
                                          intermediate_size=64, max_position_embeddings=16, hidden_dropout=0.0,
                                          attention_dropout=0.0, with_pooler=False))
    ids = torch.randint(1, 40, (4, 8), generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 1, 0])
    head = nn.Linear(32, 2)

    def loss_fn(m, b):
        return F.cross_entropy(head(m(b).last_hidden_state.mean(1).float()), y)

    pens, grads = {}, {}
    for dt in (None, torch.bfloat16):
        model.zero_grad()
        total, loss, pen = gradient_penalty_loss(model, ids, loss_fn, epsilon=1.0, autocast_dtype=dt)
        assert pen.dtype == torch.float32
        total.backward()  # the double backward runs through the bf16 graph
        pens[dt] = float(pen.detach())
        grads[dt] = torch.cat([p.grad.flatten() for p in model.blocks.parameters()])
    assert pens[None] > 0
    assert abs(pens[torch.bfloat16] - pens[None]) < 0.1 * pens[None]
    assert F.cosine_similarity(grads[None], grads[torch.bfloat16], dim=0) > 0.99


# ----------------------------------------------------------------------------------------- parameter penalties
def _mlp_params(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (5,))
    return model, x, y


def test_param_grad_penalty_equals_per_sample_loop_and_is_differentiable():
    model, x, y = _mlp_params()
    params = dict(model.named_parameters())

    def per_sample(p, xi, yi):
        return F.cross_entropy(torch.func.functional_call(model, p, (xi[None],)), yi[None])

    pen = param_grad_penalty(per_sample, params, (x, y), weight=0.3)
    ref = 0
    for i in range(5):
        gs = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), list(model.parameters()),
                                 create_graph=True)
        ref = ref + sum(g.pow(2).sum() for g in gs)
    ref = 0.3 * ref / 5
    torch.testing.assert_close(pen, ref, rtol=1e-12, atol=0)
    got = torch.autograd.grad(pen, list(model.parameters()))
    want = torch.autograd.grad(ref, list(model.parameters()))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match=r"^expected inputs\[1\] to have the 5 samples of inputs\[0\], got 4$"):
        param_grad_penalty(per_sample, params, (x, y[:4]))
    with pytest.raises(ValueError, match=r"^expected at least one batched input tensor, got none$"):
        param_grad_penalty(per_sample, params, ())


def test_batch_param_grad_penalty_equals_autograd_norm():
    model, x, y = _mlp_params(1)
    loss = F.cross_entropy(model(x), y)
    pen = batch_param_grad_penalty(loss, list(model.parameters()), weight=2.0)
    gs = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    torch.testing.assert_close(pen, 2.0 * sum(g.pow(2).sum() for g in gs), rtol=1e-12, atol=0)
    assert pen.requires_grad
