"""kexue.generative.simsiam: the toy integrator against its exact invariants and scipy's solve_ivp, the loss against
a hand-written formula and torch's cosine_similarity, where the stop-gradient cuts, the collapse measure on known
cases, and the model's state_dict."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.integrate import solve_ivp
from torch import nn

from kexue.generative import (
    TOY_MODES,
    SimSiam,
    SimSiamOutput,
    collapse_std,
    mlp_encoder,
    mlp_predictor,
    simsiam_loss,
    toy_dynamics,
)

# -- the toy ------------------------------------------------------------------------------------------------------


def _field(mode: str):
    """The post's right-hand sides written out from l = ½(φθ − θ)², independently of the library's."""

    def f(_t, y):
        phi, theta = y
        dphi = -(phi * theta - theta) * theta
        if mode == "stopgrad":
            dtheta = -(phi * theta - theta) * phi
        elif mode == "full":
            dtheta = -(phi * theta - theta) * phi + (phi * theta - theta)
        else:
            dtheta = phi * theta - theta
        return [dphi, dtheta]

    return f


INVARIANTS = {
    "stopgrad": lambda p, t: p**2 - t**2,
    "full": lambda p, t: (p - 1) ** 2 - t**2,
    "direct_only": lambda p, t: p + t**2 / 2,
}


def test_modes_are_the_three_of_the_post():
    assert TOY_MODES == ("stopgrad", "full", "direct_only")


@pytest.mark.parametrize("mode", TOY_MODES)
def test_euler_keeps_the_exact_invariant(mode):
    tr = toy_dynamics(mode=mode, T=20, dt=1e-3)
    inv = INVARIANTS[mode](tr.phi, tr.theta)
    assert np.abs(inv - inv[0]).max() < 2e-3  # Euler, O(dt)
    fine = toy_dynamics(mode=mode, T=20, dt=1e-4)
    inv_f = INVARIANTS[mode](fine.phi, fine.theta)
    # first order: ten times smaller steps, about ten times smaller drift
    assert np.abs(inv_f - inv_f[0]).max() < 0.2 * max(np.abs(inv - inv[0]).max(), 1e-12)


def test_stopgrad_limit_is_phi_one_theta_sqrt_065():
    tr = toy_dynamics(mode="stopgrad", T=40)
    assert tr.phi[-1] == pytest.approx(1.0, abs=1e-3)
    assert tr.theta[-1] == pytest.approx(math.sqrt(0.65), abs=1e-3)  # 0.8062: bounded away from 0
    assert tr.theta.min() >= 0.1 - 1e-12  # θ only grows from θ₀


def test_full_gradient_collapses_theta_and_phi_stops_at_1_minus_sqrt_015():
    tr = toy_dynamics(mode="full", T=120)
    assert abs(tr.theta[-1]) < 1e-6
    assert tr.phi[-1] == pytest.approx(1 - math.sqrt(0.15), abs=1e-3)  # 0.6127, not 1


def test_direct_term_alone_collapses_theta():
    tr = toy_dynamics(mode="direct_only", T=60)
    assert abs(tr.theta[-1]) < 1e-8
    assert tr.phi[-1] == pytest.approx(0.605, abs=1e-3)  # φ + θ²/2 conserved


@pytest.mark.parametrize("mode", TOY_MODES)
def test_euler_agrees_with_solve_ivp(mode):
    tr = toy_dynamics(mode=mode, T=20, dt=1e-3)
    ref = solve_ivp(_field(mode), (0.0, 20.0), [0.6, 0.1], method="RK45", t_eval=tr.t[::500], rtol=1e-10,
                    atol=1e-12)
    assert ref.success
    err = max(np.abs(tr.phi[::500] - ref.y[0]).max(), np.abs(tr.theta[::500] - ref.y[1]).max())
    assert err < 5e-3
    fine = toy_dynamics(mode=mode, T=20, dt=1e-4)
    err_f = max(np.abs(fine.phi[::5000] - ref.y[0]).max(), np.abs(fine.theta[::5000] - ref.y[1]).max())
    assert err_f < 0.2 * err or err_f < 1e-6  # the error shrinks with dt (first order)


def test_trajectory_times_end_at_T_with_a_short_last_step():
    tr = toy_dynamics(T=1.0, dt=0.3)
    np.testing.assert_allclose(tr.t, [0.0, 0.3, 0.6, 0.9, 1.0])
    assert tr.phi.shape == tr.theta.shape == (5,)
    assert (tr.phi[0], tr.theta[0]) == (0.6, 0.1)
    one = toy_dynamics(T=1e-3, dt=1e-3)
    assert len(one.t) == 2  # T/dt a whole number: no sliver step from round-off


# -- the loss -----------------------------------------------------------------------------------------------------


def _views(n=6, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=dtype, requires_grad=True) for _ in range(4)]


def test_loss_equals_the_formula_and_torch_cosine_similarity():
    p1, p2, z1, z2 = _views()

    def d(p, z):  # −mean_i ⟨p_i, z_i⟩ / (‖p_i‖ ‖z_i‖), written out
        p, z = p.detach(), z.detach()
        return -sum(float(p[i] @ z[i]) / (float(p[i].norm()) * float(z[i].norm())) for i in range(len(p))) / len(p)

    hand = 0.5 * (d(p1, z2) + d(p2, z1))
    ref = 0.5 * (-F.cosine_similarity(p1, z2.detach()).mean() - F.cosine_similarity(p2, z1.detach()).mean()).item()
    for sg in (True, False):
        loss = simsiam_loss(p1, p2, z1, z2, stop_grad=sg).detach()
        assert loss.dim() == 0
        assert float(loss) == pytest.approx(hand, abs=1e-12)
        assert float(loss) == pytest.approx(ref, abs=1e-12)


def test_loss_is_symmetric_in_the_two_views():
    p1, p2, z1, z2 = _views(seed=1)
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(simsiam_loss(p2, p1, z2, z1).item(), abs=1e-14)


def test_loss_is_minus_one_for_aligned_pairs():
    p1, p2, _, _ = _views(seed=2)
    assert simsiam_loss(p1, p2, 3.0 * p2.detach(), 0.5 * p1.detach()).item() == pytest.approx(-1.0, abs=1e-12)


def test_stop_gradient_detaches_the_target_branch_only():
    p1, p2, z1, z2 = _views(seed=3)
    simsiam_loss(p1, p2, z1, z2, stop_grad=True).backward()
    assert z1.grad is None and z2.grad is None  # no gradient reaches the targets
    assert p1.grad is not None and p1.grad.abs().sum() > 0 and p2.grad is not None and p2.grad.abs().sum() > 0
    g_p1 = p1.grad.clone()
    p1, p2, z1, z2 = [x.detach().requires_grad_() for x in (p1, p2, z1, z2)]
    simsiam_loss(p1, p2, z1, z2, stop_grad=False).backward()
    assert z1.grad is not None and z1.grad.abs().sum() > 0 and z2.grad is not None and z2.grad.abs().sum() > 0
    torch.testing.assert_close(p1.grad, g_p1)  # the prediction's gradient does not depend on the switch


def test_in_the_model_z_gets_gradient_through_the_predictor_only():
    torch.manual_seed(0)
    enc = nn.Linear(4, 3)
    model = SimSiam(enc, nn.Linear(3, 3))
    x1, x2 = torch.randn(8, 4), torch.randn(8, 4)
    out = model(x1, x2)
    z1 = out.z1.detach().requires_grad_()
    z2 = out.z2.detach().requires_grad_()
    p1, p2 = model.predictor(z1), model.predictor(z2)
    simsiam_loss(p1, p2, z1, z2).backward()
    # with stop-gradient, z's gradient is exactly the predictor path's: ∂D(h(z₁), c)/∂z₁ with c constant
    z1b = out.z1.detach().requires_grad_()
    (0.5 * -F.cosine_similarity(model.predictor(z1b), out.z2.detach()).mean()).backward()
    torch.testing.assert_close(z1.grad, z1b.grad)


# -- collapse measure ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [8, 64, 256])
def test_collapse_std_is_one_on_gaussian_vectors(d):
    z = torch.randn(20000, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
    assert float(collapse_std(z)) == pytest.approx(1.0, abs=0.02)


def test_collapse_std_is_zero_on_identical_rows_and_ignores_scale():
    v = torch.randn(1, 16, generator=torch.Generator().manual_seed(0))
    assert float(collapse_std(v.repeat(50, 1))) == pytest.approx(0.0, abs=1e-6)
    scales = torch.rand(50, 1, generator=torch.Generator().manual_seed(1)) + 0.1
    assert float(collapse_std(v * scales)) == pytest.approx(0.0, abs=1e-6)  # one direction, any length


def test_collapse_std_equals_numpy():
    z = torch.randn(30, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 2.0
    u = z.numpy() / np.linalg.norm(z.numpy(), axis=1, keepdims=True)
    assert float(collapse_std(z)) == pytest.approx(float(u.std(axis=0, ddof=1).mean() * math.sqrt(7)), rel=1e-12)


# -- the model ----------------------------------------------------------------------------------------------------


def test_model_output_and_shapes():
    torch.manual_seed(0)
    model = SimSiam(mlp_encoder(), mlp_predictor())
    out = model(torch.randn(10, 64), torch.randn(10, 64))
    assert isinstance(out, SimSiamOutput)
    assert all(t.shape == (10, 64) for t in out)
    torch.testing.assert_close(out.p1, model.predictor(out.z1))
    loss = simsiam_loss(*out)
    assert -1.0 <= loss.item() <= 1.0
    kinds = [type(m) for m in model.predictor]
    assert nn.BatchNorm1d in kinds and kinds.count(nn.Linear) == 2  # a hidden layer and BatchNorm


def test_state_dict_round_trip():
    torch.manual_seed(0)
    a = SimSiam(mlp_encoder(), mlp_predictor())
    a(torch.randn(16, 64), torch.randn(16, 64))  # BN running statistics move
    torch.manual_seed(1)
    b = SimSiam(mlp_encoder(), mlp_predictor())
    b.load_state_dict(a.state_dict())
    x1, x2 = torch.randn(5, 64), torch.randn(5, 64)
    a.eval(), b.eval()
    for u, v in zip(a(x1, x2), b(x1, x2)):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    assert set(a.state_dict()) == set(b.state_dict())
    assert any(k.endswith("running_mean") for k in a.state_dict())


def test_identity_predictor_gives_p_equal_z():
    model = SimSiam(mlp_encoder(8, 16, 4), nn.Identity())
    out = model(torch.randn(6, 8), torch.randn(6, 8))
    assert out.p1 is out.z1 and out.p2 is out.z2
