"""AdaFactor: presets against torch.optim.Adafactor and transformers.Adafactor, the bert4keras preset against a
float64 transcription of the post's equations, the multi-tensor path against the per-tensor one, state."""

from __future__ import annotations

import copy
import math
from typing import get_args

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kexue.optim import ADAFACTOR_PRESETS, AdaFactor, AdaFactorPreset, factored_axes
from kexue.reproduce._optim_state import state_nbytes, state_numel


class SmallNet(nn.Module):
    """1-D (biases, LayerNorm), 2-D (Linear) and 3-D (Conv1d) parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3)
        self.lin1 = nn.Linear(64, 32)
        self.norm = nn.LayerNorm(32)
        self.lin2 = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).flatten(1)
        return self.lin2(torch.tanh(self.norm(self.lin1(h))))


def _train(model: nn.Module, make_opt, steps: int = 50, seed: int = 0) -> nn.Module:
    opt = make_opt(model.parameters())
    g = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    for _ in range(steps):
        x = torch.randn(16, 4, 10, generator=g).to(dtype)
        y = torch.randint(0, 5, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def _max_diff(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


@pytest.fixture(scope="module")
def net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet()


def test_small_net_has_1d_2d_3d_parameters(net):
    assert {p.dim() for p in net.parameters()} == {1, 2, 3}


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("kwargs", [{}, {"weight_decay": 0.1}, {"lr": 3e-3}])
def test_torch_preset_matches_torch_adafactor(net, foreach, kwargs):
    ours = _train(copy.deepcopy(net), lambda ps: AdaFactor.preset("torch", ps, foreach=foreach, **kwargs))
    ref = _train(copy.deepcopy(net), lambda ps: torch.optim.Adafactor(ps, foreach=True, **kwargs))
    assert _max_diff(ours, net) > 1e-2  # training moved the parameters
    assert _max_diff(ours, ref) <= 1e-6


_HF_CASES = [
    ("transformers", {}, {}),
    ("transformers", {"beta1": 0.9, "weight_decay": 0.1}, {"beta1": 0.9, "weight_decay": 0.1}),
    ("transformers", {"warmup_init": True}, {"warmup_init": True}),
    ("transformers", {"scale_parameter": False}, {"scale_parameter": False}),
    ("t5", {}, {"lr": 1e-3, "relative_step": False, "scale_parameter": False, "warmup_init": False}),
]


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("preset,ours_kw,ref_kw", _HF_CASES)
def test_hf_presets_match_transformers_adafactor(net, foreach, preset, ours_kw, ref_kw):
    from transformers import Adafactor

    ours = _train(copy.deepcopy(net), lambda ps: AdaFactor.preset(preset, ps, foreach=foreach, **ours_kw))
    ref = _train(copy.deepcopy(net), lambda ps: Adafactor(ps, **ref_kw))
    assert _max_diff(ours, net) > 1e-5  # training moved the parameters (warmup_init: by little)
    assert _max_diff(ours, ref) <= 1e-6


# ------------------------------------------------------------------ the post's equations, transcribed in float64
def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x)))


def _post_reference(theta0: dict[str, np.ndarray], grads: list[dict[str, np.ndarray]], *, lr: float | None = 1e-3,
                    c: float = 0.8, eps1: float = 1e-30, eps2: float = 1e-3, d: float = 1.0, beta1: float = 0.0,
                    root_eps: bool = True, scale: bool = True, unscaled: tuple[str, ...] = ()) -> dict:
    """The post's equations with sums, as written: v^r_i = Σ_j (g² + ε₁), v^c_j = Σ_i (g² + ε₁),
    v̂ = v^r v^c / Σ_j v^c_j; u = g/√v̂ (bert4keras: √(v̂ + ε₁)); û = u/max(1, RMS(u)/d)·max(ε₂, RMS(θ)).
    A matrix of shape (..., m, n) with n ≥ m ≥ 128 is factored over its last two axes slice by slice (they are
    its two largest); anything smaller keeps the full v. Momentum (bert4keras) is an EMA of the clipped u."""
    theta = {k: v.copy() for k, v in theta0.items()}
    vr, vc, v, m = {}, {}, {}, {k: np.zeros_like(x) for k, x in theta.items()}
    for t, gs in enumerate(grads, start=1):
        b2 = 1.0 - t ** (-c)
        if lr is None:
            alpha = min(1e-2, 1.0 / math.sqrt(t)) * (1.0 if scale else 0.05)
        else:
            alpha = lr
        for k, g in gs.items():
            g2 = g * g + eps1
            if g.ndim >= 2 and min(g.shape[-2:]) >= 128:
                assert g.shape[-1] >= g.shape[-2] and all(s <= g.shape[-2] for s in g.shape[:-2])
                vr[k] = b2 * vr.get(k, 0.0) + (1 - b2) * g2.sum(axis=-1)  # Σ_j over the largest axis
                vc[k] = b2 * vc.get(k, 0.0) + (1 - b2) * g2.sum(axis=-2)
                v_hat = vr[k][..., :, None] * vc[k][..., None, :] / vc[k].sum(axis=-1)[..., None, None]
            else:
                v[k] = b2 * v.get(k, 0.0) + (1 - b2) * g2
                v_hat = v[k]
            u = g / np.sqrt(v_hat + eps1) if root_eps else g / np.sqrt(v_hat)
            u = u / max(1.0, _rms(u) / d)
            if beta1 > 0:
                m[k] = beta1 * m[k] + (1 - beta1) * u
                u = m[k]
            s = max(eps2, _rms(theta[k])) if scale and k not in unscaled else 1.0
            theta[k] = theta[k] - alpha * u * s
    return theta


def _random_problem(steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    theta = {"w": rng.normal(0, 0.05, (200, 300)), "b": np.zeros(300), "t3": rng.normal(0, 0.1, (3, 130, 140)),
             "small": rng.normal(0, 0.1, (16, 300))}
    grads = [{k: rng.normal(0, 1, x.shape) * rng.uniform(0.1, 10) for k, x in theta.items()} for _ in range(steps)]
    return theta, grads


def _run_ours(theta0, grads, make_opt, dtype=torch.float64):
    params = {k: torch.nn.Parameter(torch.tensor(v, dtype=dtype)) for k, v in theta0.items()}
    opt = make_opt(list(params.items()))
    for gs in grads:
        for k, g in gs.items():
            params[k].grad = torch.tensor(g, dtype=dtype)
        opt.step()
    return {k: p.detach().double().numpy() for k, p in params.items()}, opt


_POST_CASES = [
    ({}, {}),  # the preset itself: ε₁ in the root as well
    ({"eps1_mode": "add"}, {"root_eps": False}),  # the post's equations exactly (ε₁ added to g² only)
    ({"beta1": 0.9}, {"beta1": 0.9}),
    ({"lr": None}, {"lr": None}),
    ({"lr": None, "scale_parameter": False}, {"lr": None, "scale": False}),
    ({"exclude_from_parameter_scale": ["^b$"]}, {"unscaled": ("b",)}),
]


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("ours_kw,ref_kw", _POST_CASES)
def test_bert4keras_preset_matches_the_posts_equations(foreach, ours_kw, ref_kw):
    theta0, grads = _random_problem(12)
    ref = _post_reference(theta0, grads, **ref_kw)
    ours, opt = _run_ours(theta0, grads, lambda ps: AdaFactor.preset("bert4keras", ps, foreach=foreach, **ours_kw))
    # the rule: w, t3 factored (second-largest axis >= 128), small (16 < 128) and b not
    assert "exp_avg_sq_row" in opt.state[opt.param_groups[0]["params"][0]]
    for k in theta0:
        assert np.abs(ours[k] - theta0[k]).max() > 1e-7, k  # every tensor moved
        assert np.abs(ours[k] - ref[k]).max() <= 1e-10, k


def test_factored_state_is_m_plus_n():
    p = torch.nn.Parameter(torch.zeros(200, 300, dtype=torch.float64))
    opt = AdaFactor([p])
    p.grad = torch.ones_like(p)
    opt.step()
    st = opt.state[p]
    assert st["exp_avg_sq_row"].shape == (200, 1) and st["exp_avg_sq_col"].shape == (1, 300)
    # t = 1: β̂₂ = 0, so the statistics are exactly the means of g² + ε₁
    torch.testing.assert_close(st["exp_avg_sq_row"], torch.full((200, 1), 1.0 + 1e-30, dtype=torch.float64),
                               rtol=1e-14, atol=0)


def test_factored_axes_rules():
    assert factored_axes((200, 300), 128, "largest") == (1, 0)
    assert factored_axes((300, 200), 128, "largest") == (0, 1)
    assert factored_axes((127, 300), 128, "largest") is None
    assert factored_axes((300,), 128, "largest") is None
    assert factored_axes((5, 300, 200), 128, "largest") == (1, 2)  # the two largest, wherever they are
    assert factored_axes((300, 5, 200), 128, "largest") == (0, 2)
    assert factored_axes((300, 5, 200), 0, "last") == (2, 1)  # torch/transformers: the last two
    assert factored_axes((2, 3), 0, "last") == (1, 0)
    assert factored_axes((256, 256), 128, "largest") == (1, 0)  # ties: the later axis counts as larger


@pytest.mark.parametrize("preset", ["bert4keras", "paper", "transformers", "t5", "torch"])
@pytest.mark.parametrize("beta1", [0.0, 0.9])
def test_foreach_matches_per_tensor(preset, beta1):
    theta0, grads = _random_problem(5, seed=3)
    kw = {"beta1": beta1, "weight_decay": 0.01}
    a, _ = _run_ours(theta0, grads, lambda ps: AdaFactor.preset(preset, ps, foreach=True, **kw))
    b, _ = _run_ours(theta0, grads, lambda ps: AdaFactor.preset(preset, ps, foreach=False, **kw))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-13)


@settings(deadline=None, max_examples=25)
@given(shape=st.lists(st.integers(1, 9), min_size=0, max_size=4), min_dim=st.integers(0, 6),
       factor_dims=st.sampled_from(["largest", "last"]), eps1_mode=st.sampled_from(["add", "add_and_root", "floor"]),
       momentum_on=st.sampled_from(["clipped", "scaled_update"]), seed=st.integers(0, 2**16))
def test_foreach_matches_per_tensor_any_shape(shape, min_dim, factor_dims, eps1_mode, momentum_on, seed):
    g = torch.Generator().manual_seed(seed)
    init = torch.randn(shape, generator=g, dtype=torch.float64)
    grads = [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3)]
    out = []
    for foreach in (True, False):
        p = torch.nn.Parameter(init.clone())
        opt = AdaFactor([p], min_dim_size_to_factor=min_dim, factor_dims=factor_dims, eps1_mode=eps1_mode,
                        momentum_on=momentum_on, beta1=0.5, foreach=foreach, eps1=None if eps1_mode == "floor"
                        else 1e-30)
        for gr in grads:
            p.grad = gr.clone()
            opt.step()
        out.append(p.detach())
    torch.testing.assert_close(out[0], out[1], rtol=1e-12, atol=1e-13)


def test_bf16_parameters_keep_fp32_state_and_match_an_fp32_run():
    theta0, grads = _random_problem(4, seed=5)
    theta0 = {k: v for k, v in theta0.items() if k in ("w", "b")}
    grads = [{k: g[k] for k in theta0} for g in grads]
    for foreach in (True, False):
        ours, opt = _run_ours(theta0, grads, lambda ps, fe=foreach: AdaFactor(ps, foreach=fe), dtype=torch.bfloat16)
        assert all(v.dtype == torch.float32 for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
        ref = _post_reference({k: torch.tensor(v).bfloat16().double().numpy() for k, v in theta0.items()},
                              [{k: torch.tensor(v).bfloat16().double().numpy() for k, v in g.items()}
                               for g in grads])
        for k in ours:  # bf16 rounding of the stored parameters only
            assert np.abs(ours[k] - ref[k]).max() <= 2e-2 * max(1.0, np.abs(ref[k]).max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_state_dict_round_trip_continues_identically(dtype):
    theta0, grads = _random_problem(8, seed=7)
    kw = {"beta1": 0.9, "weight_decay": 0.01}

    def params():
        return {k: torch.nn.Parameter(torch.tensor(v, dtype=dtype)) for k, v in theta0.items()}

    def feed(ps, opt, gs):
        for gg in gs:
            for k, g in gg.items():
                ps[k].grad = torch.tensor(g, dtype=dtype)
            opt.step()

    a = params()
    opt_a = AdaFactor(list(a.items()), **kw)
    feed(a, opt_a, grads)
    b = params()
    opt_b = AdaFactor(list(b.items()), **kw)
    feed(b, opt_b, grads[:4])
    saved = copy.deepcopy(opt_b.state_dict())
    c = {k: torch.nn.Parameter(v.detach().clone()) for k, v in b.items()}
    opt_c = AdaFactor(list(c.items()), **kw)
    opt_c.load_state_dict(saved)
    assert all(v.dtype == torch.float32 for s in opt_c.state.values() for v in s.values() if torch.is_tensor(v))
    for k, v in opt_b.state[b["w"]].items():
        assert torch.equal(torch.as_tensor(v), torch.as_tensor(opt_c.state[c["w"]][k])), k
    feed(c, opt_c, grads[4:])
    for k in a:
        assert torch.equal(a[k], c[k]), k


def test_optimizer_state_of_a_minilm_sized_model_is_under_one_percent_of_adamw():
    from kexue.models import Transformer, TransformerConfig

    cfg = TransformerConfig(vocab_size=30522, hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536)
    torch.manual_seed(0)
    model = Transformer(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    assert 22e6 < n_params < 23e6
    ids = torch.randint(1, 30522, (2, 8))

    def one_step(opt):
        model.zero_grad()
        model(ids).last_hidden_state.square().mean().backward()
        for p in model.parameters():  # a dense gradient everywhere (pooler and unused rows included)
            p.grad = torch.randn_like(p) if p.grad is None else p.grad + 1e-3 * torch.randn_like(p)
        opt.step()
        return opt

    saved = [p.detach().clone() for p in model.parameters()]
    ada = one_step(AdaFactor(model.parameters()))
    with torch.no_grad():
        for p, s in zip(model.parameters(), saved):
            p.copy_(s)
    adamw = one_step(torch.optim.AdamW(model.parameters()))
    assert state_numel(adamw) == 2 * n_params
    assert state_nbytes(ada) < 0.01 * state_nbytes(adamw)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"decay_exponent": 1.0}, ValueError, "expected decay_exponent < 1.0, got 1.0"),
    ({"decay_exponent": 0.0}, ValueError, "expected decay_exponent > 0.0, got 0.0"),
    ({"beta1": 1.0}, ValueError, "expected beta1 < 1.0, got 1.0"),
    ({"beta2": 1.0}, ValueError, "expected beta2 < 1.0, got 1.0"),
    ({"lr": -1.0}, ValueError, "expected lr >= 0.0, got -1.0"),
    ({"lr": "0.1"}, TypeError, "expected lr to be a real number, got '0.1'"),
    ({"eps1": -1.0}, ValueError, "expected eps1 > 0.0, got -1.0"),
    ({"eps2": float("nan")}, ValueError, "expected eps2 to be finite, got nan"),
    ({"weight_decay": -1.0}, ValueError, "expected weight_decay >= 0.0, got -1.0"),
    ({"unscaled_relative_factor": 0.0}, ValueError, "expected unscaled_relative_factor > 0.0, got 0.0"),
    ({"eps1_mode": "root"}, ValueError, "expected eps1_mode to be one of \\['add', 'add_and_root', 'floor'\\], "
                                        "got 'root'"),
    ({"factor_dims": "first"}, ValueError, "expected factor_dims to be one of \\['largest', 'last'\\], got 'first'"),
    ({"momentum_on": "raw"}, ValueError, "expected momentum_on to be one of \\['clipped', 'scaled_update'\\], "
                                         "got 'raw'"),
    ({"weight_decay_on": "grad"}, ValueError, "expected weight_decay_on to be one of \\['lr', 'step'\\], got 'grad'"),
    ({"min_dim_size_to_factor": -1}, ValueError, "expected min_dim_size_to_factor >= 0, got -1"),
    ({"warmup_init": True}, ValueError,
     "expected relative_step=True or lr=None with warmup_init=True .*, got relative_step=False and lr=0.001"),
    ({"warmup_init": True, "relative_step": True}, ValueError,
     "expected lr=None with warmup_init=True .*, got lr=0.001"),
    ({"clip_threshold": 0.0}, ValueError, "expected clip_threshold > 0.0, got 0.0"),
    ({"exclude_from_parameter_scale": [3]}, TypeError,
     "expected exclude_from_parameter_scale to hold parameters or name patterns, got 3"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        AdaFactor([torch.nn.Parameter(torch.zeros(3))], **kwargs)


def test_presets_are_the_literal_names():
    assert tuple(ADAFACTOR_PRESETS) == get_args(AdaFactorPreset)


def test_bad_preset_and_unnamed_patterns():
    with pytest.raises(ValueError, match="expected name to be one of \\['bert4keras', 'paper', 'transformers', 't5', "
                                         "'torch'\\], got 'adam'"):
        AdaFactor.preset("adam", [torch.nn.Parameter(torch.zeros(3))])
    with pytest.raises(ValueError, match="expected named parameters .*, got exclude_from_parameter_scale name "
                                         "patterns for parameters that have no names"):
        AdaFactor([torch.nn.Parameter(torch.zeros(3))], exclude_from_parameter_scale=["bias"])
    with pytest.raises(TypeError):
        AdaFactor.preset("torch", [torch.nn.Parameter(torch.zeros(3))], no_such_option=1)


def test_sparse_gradients_are_refused():
    emb = nn.Embedding(10, 4, sparse=True)
    opt = AdaFactor(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="expected dense gradients .*, got sparse gradients for a \\(10, 4\\) "
                                           "parameter"):
        opt.step()


def test_complex_parameters_and_changed_factoring_are_refused():
    z = nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(ValueError, match="expected real parameters, got a complex \\(3,\\) one \\(torch.complex64\\) "
                                         "at index 1 of param group 0"):
        AdaFactor([nn.Parameter(torch.zeros(2)), z])
    w = nn.Parameter(torch.zeros(4, 6))
    opt = AdaFactor([w], min_dim_size_to_factor=0)
    w.grad = torch.ones_like(w)
    opt.step()  # factored state
    opt.param_groups[0]["min_dim_size_to_factor"] = 100
    with pytest.raises(RuntimeError, match="expected AdaFactor state with 'exp_avg_sq' for the \\(4, 6\\) parameter, "
                                           "got state without it"):
        opt.step()


def test_exclude_by_tensor_and_zero_initialised_bias():
    # A zero-initialised bias under parameter scaling moves by ε₂·lr per step; excluded, it moves by lr.
    moved = {}
    for excl in (False, True):
        b = torch.nn.Parameter(torch.zeros(64))
        opt = AdaFactor([b], exclude_from_parameter_scale=[b] if excl else [])
        b.grad = torch.ones(64)
        opt.step()
        moved[excl] = b.detach().abs().max().item()
    assert moved[False] == pytest.approx(1e-3 * 1e-3, rel=1e-5)
    assert moved[True] == pytest.approx(1e-3, rel=1e-5)


def test_step_size_is_documented_rule():
    g = dict(AdaFactor([torch.nn.Parameter(torch.zeros(1))]).defaults)
    assert AdaFactor.step_size(g, 7) == 1e-3
    assert AdaFactor.step_size({**g, "lr": None}, 4) == 1e-2
    assert AdaFactor.step_size({**g, "lr": None}, 400) == 1e-2
    assert AdaFactor.step_size({**g, "lr": None}, 40000) == pytest.approx(1 / 200)
    assert AdaFactor.step_size({**g, "lr": None, "scale_parameter": False}, 40000) == pytest.approx(0.05 / 200)
    assert AdaFactor.step_size({**g, "lr": 3e-3, "relative_step": True}, 4) == 3e-3  # torch: lr is the cap
    assert AdaFactor.step_size({**g, "lr": None, "relative_step": True, "warmup_init": True}, 10) == pytest.approx(1e-5)


def _adafactor_state(params, **kw):
    opt = AdaFactor(params, lr=1e-2, min_dim_size_to_factor=4, **kw)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    return copy.deepcopy(opt.state_dict())


def _factored_pair(rows=6, cols=5):
    return [nn.Parameter(torch.ones(rows, cols)), nn.Parameter(torch.ones(cols))]


def test_load_state_dict_refuses_another_optimizers_state_and_what_does_not_fit():
    from kexue.optim import AccumAdamW

    # Before: AdaFactor loaded an AccumAdamW state and failed at its next step() with KeyError: 'foreach'.
    params = _factored_pair()
    adamw = AccumAdamW(params, k=2)
    for p in params:
        p.grad = torch.ones_like(p)
    adamw.step()
    opt = AdaFactor(_factored_pair(), lr=1e-2, min_dim_size_to_factor=4)
    with pytest.raises(ValueError, match="expected a state dict saved by AdaFactor \\(parameter groups with options "
                                         "\\[.*'foreach'.*\\]\\), got parameter group 0 with options "
                                         "\\[.*'betas'.*\\]"):
        opt.load_state_dict(adamw.state_dict())
    assert opt.state_dict()["state"] == {} and opt.param_groups[0]["lr"] == 1e-2

    with pytest.raises(ValueError, match="expected 1 parameters in parameter group 0 \\(as this AdaFactor has\\), "
                                         "got 2"):
        AdaFactor(_factored_pair()[:1]).load_state_dict(_adafactor_state(_factored_pair()))
    with pytest.raises(ValueError, match="expected a state dict with 2 parameter groups \\(as this AdaFactor has\\), "
                                         "got 1"):
        AdaFactor([{"params": [p]} for p in _factored_pair()]).load_state_dict(_adafactor_state(_factored_pair()))
    # a factored (6, 5) state into a (6, 7) parameter: the statistics have other shapes ("largest" picks other axes)
    with pytest.raises(ValueError, match="expected state 'exp_avg_sq_row' of shape \\(6, 1\\) for the \\(6, 7\\) "
                                         "parameter at index 0 of parameter group 0, got \\(1, 5\\)"):
        AdaFactor([nn.Parameter(torch.ones(6, 7)), nn.Parameter(torch.ones(5))]).load_state_dict(
            _adafactor_state(_factored_pair()))
    # the momentum the saved group's beta1 > 0 implies is missing
    saved = _adafactor_state(_factored_pair(), beta1=0.9)
    del saved["state"][0]["exp_avg"]
    with pytest.raises(ValueError, match="expected state keys \\['exp_avg', 'exp_avg_sq_col', 'exp_avg_sq_row', "
                                         "'step'\\] for the \\(6, 5\\) parameter at index 0 of parameter group 0, got "
                                         "\\['exp_avg_sq_col', 'exp_avg_sq_row', 'step'\\] \\(missing \\['exp_avg'\\], "
                                         "unexpected \\[\\]\\)"):
        AdaFactor(_factored_pair()).load_state_dict(saved)
    # a factored state where the saved settings do not factor: the full second moment is expected
    saved = _adafactor_state(_factored_pair())
    saved["param_groups"][0]["min_dim_size_to_factor"] = 128
    with pytest.raises(ValueError, match="missing \\['exp_avg_sq'\\], unexpected \\['exp_avg_sq_col', "
                                         "'exp_avg_sq_row'\\]"):
        AdaFactor(_factored_pair()).load_state_dict(saved)
