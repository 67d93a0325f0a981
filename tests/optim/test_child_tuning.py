"""ChildTuning: mask statistics, which parameters move, rescaling, increment masking, weight decay, the Fisher
information against per-sample gradients from torch.func, the percentile against numpy, state."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kexue.optim import AccumAdamW, AdaFactor, ChildTuning, fisher_information, fisher_mask
from kexue.optim.child_tuning import _percentile


def _z(sd: float = 5.0) -> float:
    return sd  # a 5-sigma band: a failure is a bug, not bad luck


def _param(shape=(100_000,), value=1.0, dtype=torch.float64) -> nn.Parameter:
    return nn.Parameter(torch.full(shape, value, dtype=dtype))


@pytest.mark.parametrize("p_keep", [0.1, 0.2, 0.5])
def test_f_mask_fraction_and_fresh_draws(p_keep):
    w = _param()
    opt = ChildTuning(torch.optim.SGD([w], lr=0.0), reserve_p=p_keep, generator=torch.Generator().manual_seed(0))
    masks = []
    for _ in range(3):
        w.grad = torch.ones_like(w)
        masks.append(opt.current_masks()[w].clone())
        opt.step()
    n = w.numel()
    for m in masks:
        assert abs(m.double().mean().item() - p_keep) < _z() * math.sqrt(p_keep * (1 - p_keep) / n)
    overlap = (masks[0] & masks[1]).double().mean().item()  # independent draws: P(both) = p²
    assert abs(overlap - p_keep**2) < _z() * math.sqrt(p_keep**2 * (1 - p_keep**2) / n)


def test_f_masked_gradient_mean_and_variance_match_the_closed_form():
    # g·ε/p with ε ~ Bernoulli(p): mean g, variance g²(1 − p)/p (the paper's SGD view with σ = 0)
    p_keep, g = 0.3, 2.0
    w = _param(value=0.0)
    opt = ChildTuning(torch.optim.SGD([w], lr=1.0), reserve_p=p_keep, generator=torch.Generator().manual_seed(1))
    w.grad = torch.full_like(w, g)
    opt.step()
    masked = -w.detach()  # SGD with lr 1 from 0: θ = −g·ε/p
    n = w.numel()
    var = g * g * (1 - p_keep) / p_keep
    assert abs(masked.mean().item() - g) < _z() * math.sqrt(var / n)
    assert masked.var().item() == pytest.approx(var, rel=_z() * math.sqrt(2 / n) * 3)
    assert set(torch.unique(masked).tolist()) == {0.0, g / p_keep}


def test_f_generator_reproduces_and_global_rng_is_used_without_one():
    def run(gen):
        w = _param((1000,), value=0.0)
        opt = ChildTuning(torch.optim.SGD([w], lr=1.0), reserve_p=0.4, generator=gen)
        for _ in range(3):
            w.grad = torch.ones_like(w)
            opt.step()
        return w.detach()

    assert torch.equal(run(torch.Generator().manual_seed(5)), run(torch.Generator().manual_seed(5)))
    assert not torch.equal(run(torch.Generator().manual_seed(5)), run(torch.Generator().manual_seed(6)))
    torch.manual_seed(3)
    a = run(None)
    torch.manual_seed(3)
    assert torch.equal(a, run(None))


def test_fraction_of_parameters_that_move_sgd_and_adam():
    n, p_keep = 50_000, 0.2
    # plain SGD: exactly the kept entries move, a fraction p
    w = _param((n,))
    opt = ChildTuning(torch.optim.SGD([w], lr=0.1), reserve_p=p_keep, generator=torch.Generator().manual_seed(2))
    w.grad = torch.ones_like(w)
    before = w.detach().clone()
    mask = opt.current_masks()[w].clone()
    opt.step()
    moved = w.detach() != before
    assert torch.equal(moved, mask)
    assert abs(moved.double().mean().item() - p_keep) < _z() * math.sqrt(p_keep * (1 - p_keep) / n)
    # Adam: a zero gradient is not a zero update; after two steps entries kept either time move: 1 − (1 − p)²
    w = _param((n,))
    opt = ChildTuning(torch.optim.Adam([w], lr=0.1), reserve_p=p_keep, generator=torch.Generator().manual_seed(3))
    w.grad = torch.ones_like(w)
    opt.step()
    before = w.detach().clone()
    w.grad = torch.ones_like(w)
    opt.step()
    frac = (w.detach() != before).double().mean().item()
    both = 1 - (1 - p_keep) ** 2  # kept at step 1 (momentum) or at step 2 (gradient)
    assert abs(frac - both) < _z() * math.sqrt(both * (1 - both) / n)


@pytest.mark.parametrize("rescale", [True, False])
def test_d_mode_moves_exactly_the_mask_and_rescales_as_the_post(rescale):
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(40, 30, dtype=torch.float64))
    b = nn.Parameter(torch.randn(30, dtype=torch.float64))
    mask = torch.rand(40, 30) < 0.2
    opt = ChildTuning(torch.optim.SGD([w, b], lr=0.1), mode="D", reserve_p=0.2, masks={w: mask}, rescale=rescale)
    w0, b0 = w.detach().clone(), b.detach().clone()
    gw, gb = torch.randn_like(w), torch.randn_like(b)
    w.grad, b.grad = gw.clone(), gb.clone()
    opt.step()
    factor = 1 / 0.2 if rescale else 1.0  # the post divides by p; the official code does not
    torch.testing.assert_close(w.detach(), w0 - 0.1 * gw * mask * factor, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(b.detach(), b0 - 0.1 * gb)  # no mask: updates normally


def test_update_target_masks_the_increment_and_keeps_the_full_state():
    torch.manual_seed(1)
    ref_w = nn.Parameter(torch.randn(300, dtype=torch.float64))
    w = nn.Parameter(ref_w.detach().clone())
    ref = torch.optim.Adam([ref_w], lr=0.01)
    opt = ChildTuning(torch.optim.Adam([w], lr=0.01), reserve_p=0.3, mask_on="update",
                      generator=torch.Generator().manual_seed(4))
    for _ in range(5):
        g = torch.randn(300, dtype=torch.float64)
        w_before, ref_before = w.detach().clone(), ref_w.detach().clone()
        mask = opt.current_masks()[w].clone()
        ref_w.grad, w.grad = g.clone(), g.clone()
        ref.step()
        opt.step()
        delta_ref = ref_w.detach() - ref_before
        torch.testing.assert_close(w.detach() - w_before, delta_ref * mask / 0.3, rtol=1e-10, atol=1e-14)
        with torch.no_grad():
            ref_w.copy_(w)  # same parameters next step, so the gradients' effect on the state is comparable
    torch.testing.assert_close(opt.state[w]["exp_avg"], ref.state[ref_w]["exp_avg"])  # full gradient in the state


@pytest.mark.parametrize("base_cls,decoupled", [(torch.optim.AdamW, True), (torch.optim.SGD, False)])
def test_mask_weight_decay(base_cls, decoupled):
    mask = torch.tensor([True, False, True, False])
    out = {}
    for masked in (False, True):
        w = nn.Parameter(torch.ones(4, dtype=torch.float64))
        opt = ChildTuning(base_cls([w], lr=0.1, weight_decay=0.5), mode="D", reserve_p=0.5, masks={w: mask},
                          mask_weight_decay=masked)
        w.grad = torch.zeros_like(w)  # zero gradients: only the decay moves w
        opt.step()
        out[masked] = w.detach().clone()
        assert opt.param_groups[0]["weight_decay"] == 0.5  # restored after the step
    if decoupled:
        assert torch.equal(out[False], torch.full((4,), 0.95, dtype=torch.float64))  # masked is not frozen
        assert torch.equal(out[True], torch.tensor([0.95, 1.0, 0.95, 1.0], dtype=torch.float64))
    else:  # L2 enters the gradient, which is masked and rescaled (D mode with the post's /p)
        assert torch.equal(out[True], torch.tensor([1 - 0.1 * 0.5 / 0.5, 1.0, 1 - 0.1 * 0.5 / 0.5, 1.0],
                                                   dtype=torch.float64))
        assert torch.equal(out[False], torch.full((4,), 0.95, dtype=torch.float64))  # SGD adds λθ after the mask


def test_accumulating_base_keeps_one_f_mask_per_cycle():
    w = _param((1000,), value=0.0)
    opt = ChildTuning(AccumAdamW([w], lr=0.1, k=3, weight_decay=0.0), reserve_p=0.5,
                      generator=torch.Generator().manual_seed(7))
    seen = []
    for _ in range(6):
        w.grad = torch.ones_like(w)
        seen.append(opt.current_masks()[w].clone())
        opt.step()
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[1], seen[2])
    assert torch.equal(seen[3], seen[5]) and not torch.equal(seen[2], seen[3])
    assert opt.update_count == 2 and opt.is_update_step  # forwarded from the base
    # only entries kept in the cycle moved, and the moved set is the mask of the first cycle ∪ the second
    assert torch.equal(w.detach() != 0, seen[0] | seen[3])


def test_schedulers_and_param_filter():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    base = torch.optim.SGD(model.named_parameters(), lr=1.0)
    opt = ChildTuning(base, reserve_p=0.5, param_filter=lambda n, p: n.startswith("1."),
                      generator=torch.Generator().manual_seed(0))
    assert set(map(id, opt.current_masks())) == {id(model[1].weight), id(model[1].bias)}
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.25)
    assert base.param_groups[0]["lr"] == 0.25 and sched.get_last_lr() == [0.25]


def test_state_dict_round_trip_f_and_d():
    def train(opt, w, grads):
        for g in grads:
            w.grad = g.clone()
            opt.step()

    torch.manual_seed(2)
    grads = [torch.randn(500, dtype=torch.float64) for _ in range(8)]
    a = _param((500,), value=0.5)
    opt_a = ChildTuning(torch.optim.AdamW([a], lr=0.01), reserve_p=0.3, generator=torch.Generator().manual_seed(8))
    train(opt_a, a, grads)
    b = _param((500,), value=0.5)
    opt_b = ChildTuning(torch.optim.AdamW([b], lr=0.01), reserve_p=0.3, generator=torch.Generator().manual_seed(8))
    train(opt_b, b, grads[:3])
    saved = copy.deepcopy(opt_b.state_dict())
    c = nn.Parameter(b.detach().clone())
    opt_c = ChildTuning(torch.optim.AdamW([c], lr=0.01), reserve_p=0.3, generator=torch.Generator().manual_seed(99))
    opt_c.load_state_dict(saved)
    train(opt_c, c, grads[3:])
    assert torch.equal(a, c)

    mask = torch.rand(500) < 0.3
    d = _param((500,))
    opt_d = ChildTuning(torch.optim.SGD([d], lr=0.1), mode="D", reserve_p=0.3, masks={d: mask})
    e = _param((500,))
    opt_e = ChildTuning(torch.optim.SGD([e], lr=0.1), mode="D", reserve_p=0.3, masks={e: torch.ones(500, dtype=bool)})
    opt_e.load_state_dict(opt_d.state_dict())
    assert torch.equal(opt_e.masks[e], mask)
    with pytest.raises(ValueError, match="expected a state dict saved with this ChildTuning's .*'reserve_p': 0.2.*, "
                                         "got one saved with .*'reserve_p': 0.3"):
        ChildTuning(torch.optim.SGD([e], lr=0.1), mode="D", reserve_p=0.2, masks={e: mask}).load_state_dict(
            opt_d.state_dict())
    with pytest.raises(ValueError, match="expected a state dict saved by ChildTuning .*, got one without it"):
        opt_e.load_state_dict(torch.optim.SGD([e], lr=0.1).state_dict())
    f = _param((500,))
    with pytest.raises(ValueError, match="expected a ChildTuning with a generator .*, got generator=None"):
        ChildTuning(torch.optim.AdamW([f], lr=0.01), reserve_p=0.3).load_state_dict(saved)


def test_bad_arguments_are_named():
    w = _param((4,))
    sgd = torch.optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError, match="expected reserve_p > 0.0, got 0.0"):
        ChildTuning(sgd, reserve_p=0.0)
    with pytest.raises(ValueError, match="expected reserve_p <= 1.0, got 1.5"):
        ChildTuning(sgd, reserve_p=1.5)
    with pytest.raises(ValueError, match="expected masks with mode='D' .*, got None"):
        ChildTuning(sgd, mode="D")
    with pytest.raises(ValueError, match="expected masks=None with mode='F' .*, got masks for 1 parameters"):
        ChildTuning(sgd, masks={w: torch.ones(4, dtype=bool)})
    with pytest.raises(ValueError, match="expected param_filter=None with mode='D' .*, got a filter"):
        ChildTuning(sgd, mode="D", masks={w: torch.ones(4, dtype=bool)}, param_filter=lambda n, p: True)
    with pytest.raises(ValueError, match="expected mask_on='grad' with mask_weight_decay=True .*, got "
                                         "mask_on='update'"):
        ChildTuning(sgd, mask_on="update", mask_weight_decay=True)
    with pytest.raises(ValueError, match="bool mask of shape \\(4,\\), got torch.float32 \\(4,\\)"):
        ChildTuning(sgd, mode="D", masks={w: torch.ones(4)})
    with pytest.raises(ValueError, match="expected masks keyed by parameters of the base optimizer, got a \\(4,\\) "
                                         "tensor that is not one"):
        ChildTuning(sgd, mode="D", masks={_param((4,)): torch.ones(4, dtype=bool)})
    with pytest.raises(ValueError, match="expected mode to be one of \\['F', 'D'\\], got 'G'"):
        ChildTuning(sgd, mode="G")
    with pytest.raises(ValueError, match="expected mask_on to be one of \\['grad', 'update'\\], got 'grads'"):
        ChildTuning(sgd, mask_on="grads")
    with pytest.raises(TypeError, match="expected base to be a torch.optim.Optimizer, got list"):
        ChildTuning([w])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected a base whose weight decay rule is known .*, got AdaFactor"):
        ChildTuning(AdaFactor([w], weight_decay=0.1), mask_weight_decay=True)
    accum = AccumAdamW([w], k=2)
    accum.release_gradients()
    with pytest.raises(RuntimeError, match="expected a base optimizer on the ordinary path .*, got one that releases "
                                           "gradients inside backward"):
        ChildTuning(accum).step()


# ---------------------------------------------------------------------------------------------- Fisher
class _Clf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(6, 8)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.drop(torch.tanh(self.body(x))))


def _nll(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def test_fisher_with_single_examples_is_the_posts_per_sample_formula():
    torch.manual_seed(0)
    model = _Clf().double()
    x = torch.randn(20, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (20,))
    ours = fisher_information(model, [(x[i:i + 1], y[i:i + 1]) for i in range(20)], _nll)
    # reference: per-sample gradients of log p(y|x) with torch.func, squared and averaged, in eval mode
    from torch.func import functional_call, grad, vmap

    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters()}

    def logp(ps, xi, yi):
        out = functional_call(model, ps, (xi[None],))
        return torch.log_softmax(out, -1)[0].gather(0, yi[None])[0]

    per = vmap(grad(logp), in_dims=(None, 0, 0))(params, x, y)
    for k in params:
        torch.testing.assert_close(ours[k], per[k].square().mean(0), rtol=1e-12, atol=1e-15)


def test_fisher_restores_mode_and_grads_and_clips_per_tensor():
    torch.manual_seed(1)
    model = _Clf().double().train()
    marker = torch.full_like(model.head.bias, 7.0)
    model.head.bias.grad = marker.clone()
    data = [(torch.randn(4, 6, dtype=torch.float64), torch.randint(0, 3, (4,))) for _ in range(3)]
    clipped = fisher_information(model, data, _nll, max_grad_norm=1e-3)
    assert model.training and torch.equal(model.head.bias.grad, marker) and model.body.weight.grad is None
    for s in clipped.values():  # each tensor's gradient has norm ≤ 1e-3, so Σ F ≤ 1e-6
        assert s.sum().item() <= 1e-6 * (1 + 1e-9)
    # dropout off by default: deterministic; train_mode=True turns it on
    a, b = fisher_information(model, data, _nll), fisher_information(model, data, _nll)
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(5)
    c = fisher_information(model, data, _nll, train_mode=True)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("scope", ["global", "per_tensor"])
def test_fisher_mask_keeps_the_top_fraction(scope):
    torch.manual_seed(2)
    model = _Clf().double()
    data = [(torch.randn(8, 6, dtype=torch.float64), torch.randint(0, 3, (8,))) for _ in range(4)]
    scores = fisher_information(model, data, _nll, param_filter=lambda n, p: n.startswith("body"))
    masks = fisher_mask(model, data, _nll, 0.2, scope=scope, param_filter=lambda n, p: n.startswith("body"))
    assert set(map(id, masks)) == {id(model.body.weight), id(model.body.bias)}
    named = dict(model.named_parameters())
    if scope == "global":
        allscores = np.concatenate([s.numpy().ravel() for s in scores.values()])
        thr = np.percentile(allscores, 80)
        for n, s in scores.items():
            assert torch.equal(masks[named[n]], torch.from_numpy(s.numpy() >= thr))
        kept = sum(m.sum().item() for m in masks.values())
        assert abs(kept - 0.2 * allscores.size) <= 1
    else:
        for n, s in scores.items():
            assert torch.equal(masks[named[n]], torch.from_numpy(s.numpy() >= np.percentile(s.numpy(), 80)))


@settings(deadline=None, max_examples=40)
@given(values=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=60),
       q=st.floats(0.0, 100.0))
def test_percentile_is_numpy_percentile(values, q):
    x = np.array(values)
    ours = _percentile(torch.tensor(x), q).item()
    assert ours == pytest.approx(float(np.percentile(x, q)), rel=1e-12, abs=1e-12)


def test_fisher_errors():
    model = _Clf()
    with pytest.raises(ValueError, match="expected at least one trainable parameter that param_filter accepts, "
                                         "got none"):
        fisher_information(model, [], _nll, param_filter=lambda n, p: False)
    with pytest.raises(ValueError, match="expected a loader that yields batches, got one that yielded none"):
        fisher_information(model, [], _nll)
    with pytest.raises(ValueError, match="expected max_grad_norm > 0.0, got 0.0"):
        fisher_information(model, [], _nll, max_grad_norm=0.0)
    with pytest.raises(ValueError, match="expected a non-empty tensor, got one with no element"):
        _percentile(torch.zeros(0), 50.0)
    with pytest.raises(ValueError, match="scope to be one of .* got 'layer'"):
        fisher_mask(model, [], _nll, 0.2, scope="layer")  # type: ignore[arg-type]


def test_load_state_dict_refuses_what_does_not_fit():
    # Before: torch's own group-size message, or masks of another shape loaded and failing at the next step().
    w = _param((6,))
    opt = ChildTuning(torch.optim.SGD([w], lr=0.1), mode="D", reserve_p=0.3, masks={w: torch.rand(6) < 0.3})
    saved = copy.deepcopy(opt.state_dict())
    v = _param((7,))
    other = ChildTuning(torch.optim.SGD([v], lr=0.1), mode="D", reserve_p=0.3, masks={v: torch.ones(7, dtype=bool)})
    with pytest.raises(ValueError, match="expected the masks entry of parameter 0 to have its shape \\(7,\\), got "
                                         "\\(6,\\)"):
        other.load_state_dict(saved)
    assert torch.equal(other.masks[v], torch.ones(7, dtype=bool))
    bad = copy.deepcopy(saved)
    bad["child_tuning"]["masks"] = {3: bad["child_tuning"]["masks"][0]}
    with pytest.raises(ValueError, match="expected masks for parameter indices 0..0, got index 3"):
        ChildTuning(torch.optim.SGD([w], lr=0.1), mode="D", reserve_p=0.3, masks={w: torch.ones(6, dtype=bool)}
                    ).load_state_dict(bad)
    two = ChildTuning(torch.optim.SGD([{"params": [w]}, {"params": [_param((6,))]}], lr=0.1), mode="D", reserve_p=0.3,
                      masks={w: torch.ones(6, dtype=bool)})
    with pytest.raises(ValueError, match="expected a state dict with 2 parameter groups \\(as this ChildTuning "
                                         "over SGD has\\), got 1"):
        two.load_state_dict(saved)
    with pytest.raises(ValueError, match="expected a state dict saved by ChildTuning over AdamW \\(parameter "
                                         "groups with options \\[.*'betas'.*\\]\\), got parameter group 0 with "
                                         "options \\[.*'momentum'.*\\]"):
        ChildTuning(torch.optim.AdamW([w], lr=0.1), mode="D", reserve_p=0.3, masks={w: torch.ones(6, dtype=bool)}
                    ).load_state_dict(saved)
