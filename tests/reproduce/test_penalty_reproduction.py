"""The `gradient_penalty_inequality` reproduction: its helpers against scikit-learn and autograd (the inequality's two
sides by exact autograd and SVD, the closed-form per-sample parameter gradient against ``vmap``), its two rules on
stand-in measurements (every branch), and a quick run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kexue.reproduce import gradient_penalty_inequality as gpi
from kexue.reproduce._penalty_inequality import cross_entropy_readout, gp_inequality, mlp_param_grad_sq
from kexue.train import param_grad_penalty


def test_two_moons_matches_sklearn_construction():
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = gpi.two_moons(200, 0.0, np.random.default_rng(0))
    ref_x, ref_y = datasets.make_moons(200, noise=0.0, shuffle=False)
    # the same point set (ours is shuffled): compare sorted rows per class
    for c in (0, 1):
        a = np.sort(x[y == c].round(6).view("f4,f4"), axis=0)
        b = np.sort(ref_x[ref_y == c].astype(np.float32).round(6).view("f4,f4"), axis=0)
        assert np.array_equal(a, b)


def test_input_grad_norm_equals_per_sample_loop():
    model = gpi._mlp(0)
    x = torch.randn(6, 2)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    want = []
    for i in range(6):
        xi = x[i:i + 1].clone().requires_grad_(True)
        z = model(xi)[0]
        m = (z[1] - z[0]) if y[i] == 1 else (z[0] - z[1])
        want.append(float(torch.autograd.grad(m, xi)[0].norm()))
    assert gpi.input_grad_norm(model, x, y) == pytest.approx(np.mean(want), rel=1e-6)


def test_math_rule_verified_only_without_violations_and_with_unit_norms():
    assert gpi.decide(0, 0, [1.0, 1.13, 2.8])[0] == "verified"
    assert gpi.decide(1, 0, [1.0, 1.13])[0] == "not verified"
    assert gpi.decide(0, 2, [1.0, 1.13])[0] == "not verified"
    verdict, reason = gpi.decide(0, 0, [1.0, 0.32])
    assert verdict == "not verified" and "0.32" in reason


ACC = {0.0: [0.97, 0.972, 0.968], 1e-3: [0.97, 0.971, 0.969], 1e-2: [0.966, 0.97, 0.965]}
GRAD = {0.0: [10.0, 11.0, 12.0], 1e-3: [7.0, 7.6, 8.5], 1e-2: [4.0, 4.5, 4.7]}


def test_training_rule_holds_with_clearly_lower_gradients_at_matched_accuracy():
    verdict, reason = gpi.decide_training(ACC, GRAD, 0.5)
    assert verdict == "holds"
    assert "λ = 0.001: input-gradient reduction holds" in reason


def test_training_rule_does_not_hold_for_a_small_reduction_or_an_accuracy_drop():
    small = {**GRAD, 1e-3: [9.5, 10.6, 11.5]}  # ≈ 4 % lower
    verdict, reason = gpi.decide_training(ACC, small, 0.5)
    assert verdict == "does not hold" and "λ = 0.001: input-gradient reduction does not hold" in reason
    drop = {**ACC, 1e-2: [0.90, 0.91, 0.905]}
    verdict, reason = gpi.decide_training(drop, GRAD, 0.5)
    assert verdict == "does not hold" and "accuracy does not hold" in reason


def test_training_rule_inconclusive_when_the_reduction_is_noisy():
    noisy = {**GRAD, 1e-2: [4.0, 11.5, 7.0]}
    assert gpi.decide_training(ACC, noisy, 0.5)[0] == "inconclusive"


def test_training_rule_not_measured_when_the_plain_model_did_not_learn():
    flat = {**ACC, 0.0: [0.5, 0.51, 0.49]}
    verdict, reason = gpi.decide_training(flat, GRAD, 0.5)
    assert verdict == "not measured" and reason.startswith("the model did not learn")


def test_quick_run_verified_with_no_violation():
    r = gpi.run(quick=True)
    assert r.kind == "math" and r.verdict == "verified"
    assert r.numbers["training_verdict"] == "not measured in quick mode"
    assert r.numbers["violations"] == 0 and r.numbers["trials"] == 200
    q = r.numbers["ratio_quantiles"]
    assert 0 < q[0] <= q[-1] <= 1
    # Su's correction: variance-preserving initialisations are not near zero in spectral norm (BERT's fixed 0.02 is
    # ≈ 1 only near d = 768: 2·0.02·√d)
    rows = r.numbers["init_spectral_norms"]
    assert min(row[2] for row in rows if not row[1].startswith("BERT")) > 0.9
    for d, name, norm in rows:
        if name.startswith("BERT"):
            assert norm == pytest.approx(2 * 0.02 * d ** 0.5, rel=0.15)


@pytest.mark.parametrize("bias", [True, False])
def test_mlp_closed_form_equals_vmap_per_sample_gradients(bias):
    torch.manual_seed(2)
    layers = [nn.Linear(4, 6, bias=bias).double(), nn.Linear(6, 5, bias=bias).double(), nn.Linear(5, 3).double()]
    model = nn.Sequential(layers[0], nn.Tanh(), layers[1], nn.GELU(), layers[2])
    acts = [torch.tanh, F.gelu, lambda z: z]
    x = torch.randn(7, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (7,))
    got = mlp_param_grad_sq(layers, acts, x, lambda out: F.cross_entropy(out, y, reduction="none"))

    def per_sample(p, xi, yi):
        return F.cross_entropy(torch.func.functional_call(model, p, (xi[None],)), yi[None])

    params = dict(model.named_parameters())
    ref = param_grad_penalty(per_sample, params, (x, y))  # mean over samples
    torch.testing.assert_close(got.mean(), ref, rtol=1e-12, atol=0)
    g1 = torch.autograd.grad(got.mean(), list(model.parameters()))
    g2 = torch.autograd.grad(param_grad_penalty(per_sample, params, (x, y)), list(model.parameters()))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match=r"per_sample_loss must return shape \(7,\)"):
        mlp_param_grad_sq(layers, acts, x, lambda out: out.sum())


# ----------------------------------------------------------------------------------------- the inequality
ACTS = {"tanh": torch.tanh, "relu": torch.relu, "gelu": F.gelu, "sigmoid": torch.sigmoid, "identity": lambda z: z,
        "softplus": F.softplus}


def _random_mlp(seed: int, widths: list[int], bias: bool, gain: float) -> list[nn.Linear]:
    torch.manual_seed(seed)
    layers = [nn.Linear(a, b, bias=bias).double() for a, b in zip(widths[:-1], widths[1:], strict=True)]
    with torch.no_grad():
        for lin in layers:
            lin.weight.mul_(gain)
            if lin.bias is not None:
                lin.bias.normal_(0, 0.5)
    return layers


def _autograd_sides(layers: list[nn.Linear], acts: list, x: torch.Tensor, f) -> tuple[float, float]:
    """‖∇_x f‖² and ‖∇_θ f‖² by plain autograd on the modules (independent of gp_inequality's torch.func code)."""
    x = x.clone().requires_grad_(True)
    h = x
    for lin, act in zip(layers, acts, strict=True):
        h = act(lin(h))
    out = f(h)
    params = [p for lin in layers for p in lin.parameters()]
    grads = torch.autograd.grad(out, [x, *params])
    return float(grads[0].pow(2).sum()), float(sum(g.pow(2).sum() for g in grads[1:]))


@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 10_000), depth=st.integers(1, 5), width=st.lists(st.integers(1, 24), min_size=6,
                                                                                max_size=6),
       act=st.sampled_from(sorted(ACTS)), bias=st.booleans(), gain=st.floats(0.2, 3.0),
       readout=st.sampled_from(["linear", "cross_entropy"]))
def test_inequality_holds_for_random_mlps(seed, depth, width, act, bias, gain, readout):
    d_in, widths = width[0], width[: depth + 1]
    if readout == "cross_entropy":
        widths[-1] = max(widths[-1], 2)
    layers = _random_mlp(seed, widths, bias, gain)
    acts = [ACTS[act]] * depth
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(d_in, generator=g, dtype=torch.float64)
    if readout == "linear":
        r = torch.randn(widths[-1], generator=g, dtype=torch.float64)
        def f(y: torch.Tensor) -> torch.Tensor:
            return y @ r
    else:
        f = cross_entropy_readout(int(torch.randint(0, widths[-1], (1,), generator=g)))
    res = gp_inequality(layers, acts, x, f)
    gx2, gtheta2 = _autograd_sides(layers, acts, x, f)
    assert res["grad_x_sq"] == pytest.approx(gx2, rel=1e-10, abs=1e-300)
    assert res["rhs"] == pytest.approx(gtheta2, rel=1e-10, abs=1e-300)
    assert res["lhs"] <= res["rhs"] * (1 + 1e-10) + 1e-300
    for lw, rw, lb, rb in res["per_layer"]:
        assert lw <= rw * (1 + 1e-10) + 1e-300
        assert lb <= rb * (1 + 1e-10) + 1e-300
    loose = gp_inequality(layers, acts, x, f, norm="frobenius")
    assert loose["lhs"] <= res["lhs"] * (1 + 1e-12) + 1e-300  # Frobenius ≥ spectral: a looser bound


def test_inequality_is_tight_when_delta_is_the_top_singular_direction():
    """One linear layer, f = r·y with r the top left singular vector of W: ∇_x f = Wᵀr has norm σ_max, so the
    weight and bias inequalities are equalities (this fails if an index or a norm is wrong)."""
    layers = _random_mlp(7, [5, 4], bias=True, gain=1.3)
    W = layers[0].weight.detach()
    u = torch.linalg.svd(W).U[:, 0]
    x = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    res = gp_inequality(layers, [lambda z: z], x, lambda y: y @ u)
    (lw, rw, lb, rb), = res["per_layer"]
    assert lw == pytest.approx(rw, rel=1e-12) and lb == pytest.approx(rb, rel=1e-12)
    assert res["ratio"] == pytest.approx(1.0, rel=1e-12)


def test_inequality_second_layer_uses_the_jacobian_of_its_input():
    """Two linear layers (identity activations): J_2 = W1. With f = r·y, δ₂ = r, ∇_x f = W1ᵀW2ᵀr; the second layer's
    left side is ‖W1ᵀW2ᵀr‖²‖h2‖²/(‖W2‖²‖W1‖²), by hand."""
    layers = _random_mlp(11, [3, 5, 4], bias=False, gain=1.0)
    W1, W2 = (lin.weight.detach() for lin in layers)
    x = torch.randn(3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    r = torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    res = gp_inequality(layers, [lambda z: z] * 2, x, lambda y: y @ r)
    gx = W1.T @ W2.T @ r
    h2 = W1 @ x
    s = torch.linalg.matrix_norm
    want = float(gx.pow(2).sum() * h2.pow(2).sum() / (s(W2, 2) ** 2 * s(W1, 2) ** 2))
    assert res["per_layer"][1][0] == pytest.approx(want, rel=1e-12)
    assert res["per_layer"][1][1] == pytest.approx(float(r.pow(2).sum() * h2.pow(2).sum()), rel=1e-12)
    assert res["per_layer"][0][2] == 0.0 and res["per_layer"][0][3] == 0.0  # bias-free: no "1 +" term


def test_inequality_fails_for_the_batch_mean_gradient_as_the_spec_warns():
    """The statement is per sample; the helper refuses a batch (the norm of a sum is not the sum of norms)."""
    layers = _random_mlp(0, [3, 2], bias=True, gain=1.0)
    with pytest.raises(ValueError, match=r"per sample: expected x of shape \(3,\), got \(4, 3\)"):
        gp_inequality(layers, [torch.tanh], torch.randn(4, 3, dtype=torch.float64), lambda y: y.sum())
    with pytest.raises(ValueError, match="one activation per layer: 1 layers, 2 activations"):
        gp_inequality(layers, [torch.tanh] * 2, torch.randn(3, dtype=torch.float64), lambda y: y.sum())
    with pytest.raises(ValueError, match="f must return a scalar"):
        gp_inequality(layers, [torch.tanh], torch.randn(3, dtype=torch.float64), lambda y: y)


def test_dead_relu_network_gives_zero_not_nan():
    layers = _random_mlp(0, [3, 4, 2], bias=True, gain=1.0)
    with torch.no_grad():
        layers[0].bias.fill_(-100.0)  # every ReLU of the first layer is off: J_2 = 0 and ∇_x f = 0
    res = gp_inequality(layers, [torch.relu, lambda z: z], torch.randn(3, dtype=torch.float64), lambda y: y.sum())
    assert res["lhs"] == 0.0 and math.isfinite(res["ratio"]) and res["rhs"] > 0
