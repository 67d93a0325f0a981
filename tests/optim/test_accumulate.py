"""Accumulation hidden in momentum: exactness for SGDM, Adam's modes against torch.optim.Adam, the counter,
state_dict, weight decay on update steps, and gradient release inside backward."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from kexue.optim import AccumAdam, AccumAdamW, AccumSGDM, warmup_linear


def _mlp(dtype=torch.float64, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def _batches(n: int, seed: int = 1, dtype=torch.float64, size: int = 4):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 8, generator=g, dtype=dtype), torch.randint(0, 3, (size,), generator=g))
            for _ in range(n)]


def _loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def _grads(model, batch):
    model.zero_grad()
    _loss(model, batch).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def _run_micro(model, opt, batches, sched=None):
    for b in batches:
        opt.zero_grad()
        _loss(model, b).backward()
        opt.step()
        if sched is not None:
            sched.step()  # every micro-step: the schedule reads the optimizer's update count
    return model


def _max_diff(a, b):
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


# ------------------------------------------------------------------------------------------------- SGDM: exact
K, CYCLES, BETA, LR = 4, 40, 0.9, 0.1


def test_sgdm_equals_torch_sgd_on_the_accumulated_gradient_with_a_schedule():
    from transformers import get_linear_schedule_with_warmup

    batches = _batches(K * CYCLES)
    ours = _mlp()
    ref = copy.deepcopy(ours)
    opt = AccumSGDM(ours.parameters(), lr=LR, momentum=BETA, k=K)
    _run_micro(ours, opt, batches, warmup_linear(opt, 5, CYCLES))
    assert opt.update_count == CYCLES

    # Reference: explicit accumulation, torch.optim.SGD(momentum=β, dampening=β) (m = βm + (1 − β)g), the schedule
    # from transformers. torch starts its buffer at the raw first gradient, not at (1 − β)g: feed (1 − β)ḡ once.
    ref_opt = torch.optim.SGD(ref.parameters(), lr=LR, momentum=BETA, dampening=BETA)
    ref_sched = get_linear_schedule_with_warmup(ref_opt, 5, CYCLES)
    for c in range(CYCLES):
        gs = [_grads(ref, b) for b in batches[c * K:(c + 1) * K]]
        for i, p in enumerate(ref.parameters()):
            p.grad = sum(g[i] for g in gs) / K * ((1 - BETA) if c == 0 else 1.0)
        ref_opt.step()
        ref_sched.step()
    assert _max_diff(ours, _mlp()) > 1e-2
    assert _max_diff(ours, ref) <= 1e-12


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_sgdm_equals_a_hand_written_reference_with_decoupled_decay(weight_decay):
    batches = _batches(K * 10, seed=2)
    ours = _mlp(seed=3)
    ref = copy.deepcopy(ours)
    opt = AccumSGDM(ours.parameters(), lr=LR, momentum=BETA, k=K, weight_decay=weight_decay)
    _run_micro(ours, opt, batches)
    m = [torch.zeros_like(p) for p in ref.parameters()]
    for c in range(10):
        gs = [_grads(ref, b) for b in batches[c * K:(c + 1) * K]]
        with torch.no_grad():
            for i, p in enumerate(ref.parameters()):
                m[i] = BETA * m[i] + (1 - BETA) * sum(g[i] for g in gs) / K
                p.mul_(1 - LR * weight_decay).sub_(LR * m[i])
    assert _max_diff(ours, ref) <= 1e-12


# ------------------------------------------------------------------------------------------------- Adam
@pytest.mark.parametrize("cls,ref_cls,wd", [(AccumAdam, torch.optim.Adam, 0.0), (AccumAdam, torch.optim.Adam, 0.1),
                                            (AccumAdamW, torch.optim.AdamW, 0.1)])
@pytest.mark.parametrize("mode", ["exact_m", "tilde_beta", "plain"])
def test_k1_is_torch_adam(cls, ref_cls, wd, mode):
    batches = _batches(30, seed=4)
    ours = _mlp(seed=5)
    ref = copy.deepcopy(ours)
    _run_micro(ours, cls(ours.parameters(), lr=1e-2, weight_decay=wd, k=1, mode=mode), batches)
    _run_micro(ref, ref_cls(ref.parameters(), lr=1e-2, weight_decay=wd, foreach=False), batches)
    assert _max_diff(ours, ref) <= (0.0 if mode != "exact_m" else 1e-14)


@pytest.mark.parametrize("mode", ["tilde_beta", "plain"])
def test_update_every_step_modes_are_adam_with_their_beta(mode):
    batches = _batches(24, seed=6)
    ours = _mlp(seed=7)
    ref = copy.deepcopy(ours)
    _run_micro(ours, AccumAdamW(ours.parameters(), lr=1e-2, k=4, mode=mode, update_every_k=False), batches)
    b1, b2 = (0.9, 0.999) if mode == "plain" else (1 - 0.1 / 4, 1 - 0.001 / 4)
    _run_micro(ref, torch.optim.AdamW(ref.parameters(), lr=1e-2, betas=(b1, b2), foreach=False), batches)
    assert _max_diff(ours, ref) == 0.0


def _adam_reference(model, batches, k, *, mode, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, inside=False):
    """Float64 transcription of the post's built-in Adam (exact_m) and of the β̃ / plain variants updating every k."""
    b1, b2 = betas
    if mode == "tilde_beta":
        b1, b2 = 1 - (1 - b1) / k, 1 - (1 - b2) / k
    ps = list(model.parameters())
    m = [torch.zeros_like(p) for p in ps]
    v = [torch.zeros_like(p) for p in ps]
    for t, b in enumerate(batches, start=1):
        gs = _grads(model, b)
        with torch.no_grad():
            for i, g in enumerate(gs):
                if mode == "exact_m":
                    chi_prev = 1.0 if (t - 1) % k == 0 else 0.0
                    m[i] = ((b1 - 1) * chi_prev + 1) * m[i] + (1 - b1) / k * g
                    v[i] = ((b2 - 1) * chi_prev + 1) * v[i] + (1 - b2) / k * g * g
                else:
                    m[i] = b1 * m[i] + (1 - b1) * g
                    v[i] = b2 * v[i] + (1 - b2) * g * g
            if t % k == 0:
                n = t // k if mode == "exact_m" else t
                for i, p in enumerate(ps):
                    mh, vh = m[i] / (1 - b1 ** n), v[i] / (1 - b2 ** n)
                    p -= lr * mh / ((vh + eps).sqrt() if inside else vh.sqrt() + eps)
    return model


@pytest.mark.parametrize("mode", ["exact_m", "tilde_beta", "plain"])
@pytest.mark.parametrize("inside", [False, True])
def test_adam_modes_match_their_transcription(mode, inside):
    batches = _batches(32, seed=8)
    ours = _mlp(seed=9)
    ref = copy.deepcopy(ours)
    opt = AccumAdam(ours.parameters(), lr=1e-2, k=4, mode=mode, eps_inside_root=inside)
    _run_micro(ours, opt, batches)
    _adam_reference(ref, batches, 4, mode=mode, inside=inside)
    assert _max_diff(ours, _mlp(seed=9)) > 1e-3
    assert _max_diff(ours, ref) <= 1e-12


def test_exact_m_first_moment_is_exact_second_moment_overestimates():
    batches = _batches(4, seed=10)
    ours = _mlp(seed=11)
    ref = copy.deepcopy(ours)
    opt = AccumAdam(ours.parameters(), lr=1e-2, k=4)
    _run_micro(ours, opt, batches)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2, foreach=False)
    gs = [_grads(ref, b) for b in batches]
    for i, p in enumerate(ref.parameters()):
        p.grad = sum(g[i] for g in gs) / 4
    ref_opt.step()
    for p, q in zip(ours.parameters(), ref.parameters()):
        a, b = opt.state[p], ref_opt.state[q]
        torch.testing.assert_close(a["exp_avg"], b["exp_avg"], rtol=1e-13, atol=1e-16)
        assert (a["exp_avg_sq"] >= b["exp_avg_sq"] * (1 - 1e-12)).all()  # mean of squares >= square of mean
        assert (a["exp_avg_sq"] > b["exp_avg_sq"] * 1.01).any()


# ------------------------------------------------------------------------------------------------- counting, state
def test_counter_and_update_flags():
    p = nn.Parameter(torch.zeros(3))
    opt = AccumSGDM([p], lr=0.1, k=3)
    seen = []
    for _ in range(7):
        will = opt.will_update
        p.grad = torch.ones(3)
        opt.step()
        seen.append((will, opt.is_update_step, opt.update_count, opt.micro_step))
    assert seen == [(False, False, 0, 1), (False, False, 0, 2), (True, True, 1, 3), (False, False, 1, 4),
                    (False, False, 1, 5), (True, True, 2, 6), (False, False, 2, 7)]
    assert not AccumSGDM([nn.Parameter(torch.zeros(1))], lr=0.1, k=3).is_update_step


def test_parameters_move_only_on_update_steps_and_decay_applies_there():
    p = nn.Parameter(torch.ones(5, dtype=torch.float64))
    opt = AccumAdamW([p], lr=0.1, weight_decay=0.5, k=4)
    values = []
    for _ in range(8):
        p.grad = torch.zeros_like(p)  # zero gradients: only the decay moves p
        opt.step()
        values.append(p.detach()[0].item())
    assert values == [1.0, 1.0, 1.0, 0.95, 0.95, 0.95, 0.95, 0.95 * 0.95]


@pytest.mark.parametrize("cls", [AccumSGDM, AccumAdamW])
def test_state_dict_round_trip_mid_cycle(cls):
    batches = _batches(20, seed=12)
    kw = {"lr": 1e-2, "k": 4}
    a = _mlp(seed=13)
    _run_micro(a, cls(a.parameters(), **kw), batches)
    b = _mlp(seed=13)
    opt_b = cls(b.parameters(), **kw)
    _run_micro(b, opt_b, batches[:6])  # stop in the middle of the second cycle
    saved = copy.deepcopy(opt_b.state_dict())
    assert saved["accumulate"]["micro_step"] == 6
    c = copy.deepcopy(b)
    opt_c = cls(c.parameters(), **kw)
    opt_c.load_state_dict(saved)
    assert opt_c.micro_step == 6 and opt_c.update_count == 1
    _run_micro(c, opt_c, batches[6:])
    assert _max_diff(a, c) == 0.0
    with pytest.raises(ValueError, match="expected a state dict saved with this optimizer's .*'k': 2.*, got one "
                                         "saved with .*'k': 4"):
        cls(_mlp().parameters(), lr=1e-2, k=2).load_state_dict(saved)
    with pytest.raises(ValueError, match="expected a state dict saved by an accumulating optimizer .*, got one "
                                         "without it"):
        ref = torch.optim.SGD(_mlp().parameters(), lr=1e-2)
        cls(_mlp().parameters(), **kw).load_state_dict(ref.state_dict())


def test_bf16_parameters_keep_fp32_state_through_a_round_trip():
    p = nn.Parameter(torch.randn(4, 4).bfloat16())
    opt = AccumAdamW([p], k=2)
    for _ in range(3):
        p.grad = torch.randn(4, 4).bfloat16()
        opt.step()
    q = nn.Parameter(p.detach().clone())
    opt2 = AccumAdamW([q], k=2)
    opt2.load_state_dict(opt.state_dict())
    for key in ("exp_avg", "exp_avg_sq"):
        assert opt2.state[q][key].dtype == torch.float32
        assert torch.equal(opt2.state[q][key], opt.state[p][key])


def test_max_update_norm_clips_the_step_direction():
    p = nn.Parameter(torch.zeros(10, dtype=torch.float64))
    opt = AccumSGDM([p], lr=0.5, momentum=0.0, k=2, max_update_norm=0.1)
    for _ in range(2):
        p.grad = torch.full_like(p, 100.0)
        opt.step()
    assert torch.linalg.vector_norm(p.detach()).item() == pytest.approx(0.5 * 0.1, rel=1e-9)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"k": 0}, ValueError, "expected k >= 1, got 0"),
    ({"k": 2.0}, TypeError, "expected k to be an integer, got 2.0"),
    ({"mode": "exact"}, ValueError, "expected mode to be one of \\['exact_m', 'tilde_beta', 'plain'\\], got 'exact'"),
    ({"update_every_k": 1}, TypeError, "expected update_every_k to be a bool, got 1"),
    ({"k": 2, "update_every_k": False}, ValueError,
     "expected mode='tilde_beta' or 'plain' with update_every_k=False .*, got mode='exact_m'"),
    ({"lr": -1.0}, ValueError, "expected lr >= 0.0, got -1.0"),
    ({"weight_decay": -0.1}, ValueError, "expected weight_decay >= 0.0, got -0.1"),
    ({"betas": (0.9, 1.0)}, ValueError, "expected betas\\[1\\] < 1.0, got 1.0"),
    ({"betas": (-0.1, 0.9)}, ValueError, "expected betas\\[0\\] >= 0.0, got -0.1"),
    ({"betas": 0.9}, TypeError, "expected betas to be a pair \\(beta1, beta2\\), got 0.9"),
    ({"betas": (0.9, 0.99, 0.999)}, ValueError, "expected betas to be a pair \\(beta1, beta2\\), got 3 values"),
    ({"eps": -1e-8}, ValueError, "expected eps > 0.0, got -1e-08"),
    ({"max_update_norm": 0.0}, ValueError, "expected max_update_norm > 0.0, got 0.0"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        AccumAdamW([nn.Parameter(torch.zeros(2))], **kwargs)


def test_sgdm_momentum_is_checked():
    with pytest.raises(ValueError, match="expected momentum < 1.0, got 1.5"):
        AccumSGDM([nn.Parameter(torch.zeros(2))], lr=0.1, momentum=1.5)


# ------------------------------------------------------------------------------------------------- gradient release
def _kexue_model():
    from kexue.models import Transformer, TransformerConfig

    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                            max_position_embeddings=16, with_mlm=True, hidden_dropout=0.0, attention_dropout=0.0)
    return Transformer(cfg)


def _kexue_loss(model, ids):
    out = model(ids)  # MLM logits through the decoder tied to the word embeddings
    return nn.functional.cross_entropy(out.mlm_logits.flatten(0, 1), ids.flatten())


def _hf_model():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=16, num_labels=3, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(cfg)


def _hf_loss(model, ids):
    return model(input_ids=ids, labels=ids[:, 0] % 3).loss


@pytest.mark.parametrize("which", ["kexue", "transformers"])
@pytest.mark.parametrize("cls,kw", [(AccumAdamW, {"lr": 1e-3}), (AccumSGDM, {"lr": 0.1, "weight_decay": 0.01})])
def test_gradient_release_matches_the_ordinary_path(which, cls, kw):
    make, loss_fn = (_kexue_model, _kexue_loss) if which == "kexue" else (_hf_model, _hf_loss)
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(1, 100, (2, 10), generator=g) for _ in range(12)]

    ordinary = make()
    opt = cls(ordinary.parameters(), k=4, **kw)
    for ids in data:
        opt.zero_grad()
        loss_fn(ordinary, ids).backward()
        opt.step()

    released = make()
    params = [p for p in released.parameters() if p.requires_grad]
    opt_r = cls(released.parameters(), k=4, **kw)
    live_max = 0

    def count_live(_p):  # registered after the release hooks: sees the grads still alive at each moment
        nonlocal live_max
        live_max = max(live_max, sum(q.grad is not None for q in params))

    with opt_r.release_gradients():
        for p in params:
            p.register_post_accumulate_grad_hook(count_live)
        for ids in data:
            loss_fn(released, ids).backward()
            assert all(p.grad is None for p in params)
            opt_r.step()
    assert live_max == 0  # each gradient was folded and freed before the next hook ran
    assert opt_r.update_count == 3
    assert _max_diff(released, make()) > 1e-4
    assert _max_diff(ordinary, released) == 0.0


def test_release_handle_removes_the_hooks():
    model = _mlp()
    opt = AccumSGDM(model.parameters(), lr=0.1, k=2)
    handle = opt.release_gradients()
    with pytest.raises(RuntimeError, match="expected gradient release off before release_gradients\\(\\), got it "
                                           "already on"):
        opt.release_gradients()
    handle.remove()
    _loss(model, _batches(1)[0]).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_sparse_gradients_are_refused():
    emb = nn.Embedding(10, 4, sparse=True)
    opt = AccumAdamW(emb.parameters(), k=2)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="expected dense gradients \\(AccumAdamW keeps dense state\\), got sparse "
                                           "gradients for a \\(10, 4\\) parameter"):
        opt.step()


# ------------------------------------------------------------------------------------------------- issue 13
@pytest.mark.parametrize("cls", [AccumSGDM, AccumAdam, AccumAdamW])
def test_complex_parameters_are_refused_with_their_place(cls):
    # Before: accepted, and the first update step wrote a real value into the complex parameter (1.09-0.21j became
    # 1.08+0j, the imaginary part erased).
    real = nn.Parameter(torch.randn(2))
    cplx = nn.Parameter(torch.randn(3, dtype=torch.complex64))
    with pytest.raises(ValueError, match="expected real parameters, got a complex \\(3,\\) one \\(torch.complex64\\) "
                                         "at index 1 of param group 0"):
        cls([real, cplx], lr=0.1)
    opt = cls([real], lr=0.1)
    with pytest.raises(ValueError, match="expected real parameters, got a complex \\(3,\\) one \\(torch.complex64\\) "
                                         "at index 0 of param group 1"):
        opt.add_param_group({"params": [cplx]})


@pytest.mark.parametrize("cls,kw", [(AccumAdamW, {"lr": 1e-2}), (AccumSGDM, {"lr": 0.1}),
                                    (AccumAdam, {"lr": 1e-2, "mode": "plain"})])
def test_gradient_release_refuses_a_second_backward_in_one_micro_step(cls, kw):
    # Before: two backward passes per micro-step were each folded, so Adam's second moment held g1² + g2² instead of
    # (g1 + g2)², and the parameters drifted from the ordinary path without a word.
    batches = _batches(4, seed=21)
    model = _mlp(seed=22)
    opt = cls(model.parameters(), k=2, **kw)
    with opt.release_gradients():
        _loss(model, batches[0]).backward()
        with pytest.raises(RuntimeError, match="expected one backward\\(\\) per micro-step with gradient release on, "
                                               "got a second backward\\(\\) for a \\(3,\\) parameter before step\\(\\)"
                                               ".*sum the losses and call backward\\(\\) once"):
            _loss(model, batches[1]).backward()
    # summing the losses first (the fix the message names) gives the ordinary path's result
    ordinary = _mlp(seed=22)
    opt_o = cls(ordinary.parameters(), k=2, **kw)
    released = _mlp(seed=22)
    opt_r = cls(released.parameters(), k=2, **kw)
    with opt_r.release_gradients():
        for i in range(0, 4, 2):
            for m, o in ((ordinary, opt_o), (released, opt_r)):
                o.zero_grad()
                if m is ordinary:
                    _loss(m, batches[i]).backward()
                    _loss(m, batches[i + 1]).backward()
                else:
                    (_loss(m, batches[i]) + _loss(m, batches[i + 1])).backward()
                o.step()
    assert opt_r.update_count == 1
    assert _max_diff(ordinary, released) < 1e-12


def _trained_state(cls, model, **kw):
    opt = cls(model.parameters(), lr=1e-2, k=2, **kw)
    _run_micro(model, opt, _batches(3, seed=31))
    return copy.deepcopy(opt.state_dict())


def _wide_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 17), nn.Tanh(), nn.Linear(17, 3)).to(torch.float64)


def _without_kind(sd):
    sd = copy.deepcopy(sd)
    del sd["accumulate"]["optimizer"]
    return sd


def _drop_key(sd, key):
    sd = copy.deepcopy(sd)
    del sd["state"][0][key]
    return sd


def _add_state(sd):
    sd = copy.deepcopy(sd)
    sd["state"][99] = dict(sd["state"][0])
    return sd


@pytest.mark.parametrize("make_opt,make_sd,match", [
    (lambda: AccumAdamW(_mlp().parameters(), k=2), lambda: _trained_state(AccumAdam, _mlp()),
     "expected a state dict saved by AccumAdamW, got one saved by AccumAdam"),
    (lambda: AccumAdamW(_mlp().parameters(), k=2), lambda: _without_kind(_trained_state(AccumSGDM, _mlp())),
     "expected a state dict saved by AccumAdamW \\(parameter groups with options \\[.*'betas'.*\\]\\), got parameter "
     "group 0 with options \\[.*'momentum'.*\\]"),
    (lambda: AccumAdamW([{"params": _mlp()[0].parameters()}, {"params": _mlp()[2].parameters()}], k=2),
     lambda: _trained_state(AccumAdamW, _mlp()),
     "expected a state dict with 2 parameter groups \\(as this AccumAdamW has\\), got 1"),
    (lambda: AccumAdamW(_mlp()[0].parameters(), k=2), lambda: _trained_state(AccumAdamW, _mlp()),
     "expected 2 parameters in parameter group 0 \\(as this AccumAdamW has\\), got 4"),
    (lambda: AccumAdamW(_mlp().parameters(), k=2), lambda: _drop_key(_trained_state(AccumAdamW, _mlp()), "exp_avg_sq"),
     "expected state keys \\[.*'exp_avg_sq'.*\\] for the \\(16, 8\\) parameter at index 0 of parameter group 0, got "
     "\\[.*\\] \\(missing \\['exp_avg_sq'\\], unexpected \\[\\]\\)"),
    (lambda: AccumSGDM(_wide_mlp().parameters(), lr=0.1, k=2), lambda: _trained_state(AccumSGDM, _mlp()),
     "expected state 'exp_avg' of shape \\(17, 8\\) for the \\(17, 8\\) parameter at index 0 of parameter group 0, "
     "got \\(16, 8\\)"),
    (lambda: AccumSGDM(_mlp().parameters(), lr=0.1, k=2), lambda: _add_state(_trained_state(AccumSGDM, _mlp())),
     "expected state only for the saved parameters \\[0, 1, 2, 3\\], got state for \\[99\\]"),
], ids=["kind", "options", "groups", "params", "keys", "shapes", "unknown-state"])
def test_load_state_dict_refuses_what_does_not_fit_before_changing_anything(make_opt, make_sd, match):
    # Before: torch loaded these as far as it could (another kind's moments and options, wrong shapes) and failed
    # later in step(), or never.
    opt = make_opt()
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(make_sd())
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"] and after["state"] == {} and opt.micro_step == 0


def test_releases_gradients_says_whether_release_is_on():
    p = torch.nn.Parameter(torch.ones(3))
    opt = AccumAdam([p], lr=0.1, k=2)
    assert opt.releases_gradients is False
    handle = opt.release_gradients()
    assert opt.releases_gradients is True
    handle.remove()
    assert opt.releases_gradients is False
