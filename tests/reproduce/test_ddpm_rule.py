"""The `ddpm` reproduction's rule on stand-in measurements (every branch: the learned guard on each set, the math
part, greedy collapse in distance and diversity, the unrescaled schedule, inconclusive spreads), its metrics, its math
checks and the diffusers-missing path."""

from __future__ import annotations

import sys

import pytest
import torch

from kexue.generative import Schedule
from kexue.reproduce import _ddpm_checks as C
from kexue.reproduce import _ddpm_tasks as K
from kexue.reproduce import ddpm as D


def _set(stochastic=(0.005, 0.006, 0.004), greedy=(0.84, 0.85, 0.85), noise=(0.044, 0.043, 0.044),
         unrescaled=(0.009, 0.010, 0.008), div_stochastic=(1.0, 0.99, 1.01), div_greedy=(0.03, 0.04, 0.03)):
    out = {"stochastic": list(stochastic), "greedy": list(greedy), "noise": list(noise),
           "div_stochastic": list(div_stochastic), "div_greedy": list(div_greedy)}
    if unrescaled is not None:
        out["unrescaled"] = list(unrescaled)
    return out


def test_holds_when_samples_learn_greedy_collapses_and_unrescaled_is_worse():
    verdict, reason, comps = D.decide(True, {"moons": _set(), "digits": _set(
        stochastic=(14.6, 15.0, 13.9), greedy=(240.0, 230.0, 250.0), noise=(105.0, 106.0, 104.0),
        unrescaled=(30.0, 28.0, 33.0), div_stochastic=(2.23, 2.25, 2.2), div_greedy=(1.2, 1.3, 1.1))})
    assert verdict == "holds", reason
    assert len(comps) == 6 and all(d == "holds" for _, _, d in comps)
    assert "digits: Fréchet distance, greedy − stochastic" in reason and "math: verified" in reason


def test_not_measured_when_samples_do_not_beat_the_noise_baseline():
    verdict, reason, comps = D.decide(True, {"moons": _set(stochastic=(0.05, 0.04, 0.045))})
    assert verdict == "not measured" and comps == []
    assert "did not learn" in reason and "moons" in reason and "x_T noise baseline" in reason


def test_not_measured_when_any_set_did_not_learn():
    verdict, reason, _ = D.decide(True, {"moons": _set(), "ring": _set(stochastic=(0.03, 0.06, 0.05))})
    assert verdict == "not measured" and "on ring" in reason


def test_does_not_hold_when_the_math_part_is_not_verified():
    verdict, reason, _ = D.decide(False, {"moons": _set()})
    assert verdict == "does not hold" and "math: not verified" in reason


def test_does_not_hold_when_the_unrescaled_schedule_does_better():
    """The quick run's finding on moons: Su's unrescaled T = 200 schedule gives a lower energy distance."""
    verdict, reason, comps = D.decide(True, {"moons": _set(unrescaled=(0.002, 0.003, 0.0015))})
    assert verdict == "does not hold"
    assert [d for w, _, d in comps if "unrescaled" in w] == ["does not hold"]
    assert "unrescaled − rescaled schedule" in reason


def test_does_not_hold_when_greedy_does_not_collapse():
    verdict, _, comps = D.decide(True, {"moons": _set(greedy=(0.001, 0.002, 0.001), div_greedy=(1.2, 1.1, 1.3))})
    assert verdict == "does not hold"
    assert [d for w, _, d in comps if "greedy" in w] == ["does not hold", "does not hold"]


def test_inconclusive_when_the_schedules_differ_within_the_seed_spread():
    verdict, _, comps = D.decide(True, {"moons": _set(unrescaled=(0.009, 0.001, 0.006))})
    assert verdict == "inconclusive" and comps[-1][2] == "inconclusive"


def test_the_schedule_comparison_is_left_out_where_not_measured():
    verdict, _, comps = D.decide(True, {"moons": _set(unrescaled=None)})
    assert verdict == "holds" and len(comps) == 2 and not any("unrescaled" in w for w, _, _ in comps)


def test_math_verified_counts_parity_only_when_it_ran():
    ok = {"parametrisations": True, "derivation": True, "marginal": True, "post_numbers": True}
    assert D.math_verified({"ok": ok, "parity_ok": None})
    assert D.math_verified({"ok": ok, "parity_ok": True})
    assert not D.math_verified({"ok": ok, "parity_ok": False})
    assert not D.math_verified({"ok": ok | {"marginal": False}, "parity_ok": True})


def test_parity_is_not_run_without_diffusers(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now raises ImportError
    assert C.diffusers_parity() is None
    assert "pip install" in C.DIFFUSERS_INSTALL


def test_the_parametrisations_and_the_derivation_check_out():
    out = C.parametrisations(steps=50, batch=8)
    assert out["param_loss"] <= C.GRAD_TOL and out["param_grad"] <= C.GRAD_TOL
    assert out["rotation"] <= C.IDENTITY_TOL and out["skip"] <= C.IDENTITY_TOL and out["naive_grad"] <= C.GRAD_TOL


def test_the_marginal_check_rejects_a_wrong_schedule():
    """The Monte Carlo check passes for the chain it simulates and fails when the closed form is another's."""
    s = Schedule.rescaled(20)
    assert all(r["mean_z"] <= C.MC_Z and r["var_z"] <= C.MC_Z for r in C.marginal(s, 4000, (5, 20)))
    wrong = Schedule(s.alpha.clone())
    wrong.alpha_bar = s.alpha_bar**0.8  # a closed form that is not the chain's
    wrong.beta_bar = torch.sqrt(1 - wrong.alpha_bar**2)
    rows = C.marginal(wrong, 4000, (5,))
    assert max(rows[0]["mean_z"], rows[0]["var_z"]) > C.MC_Z


def test_the_post_numbers():
    n = C.post_numbers()
    assert n["su_1000"] == pytest.approx(0.00648, abs=5e-6) and n["calls_1000"] == 1000
    assert n["rescaled_200"] == pytest.approx(n["e^-5"], rel=1e-9)
    assert n["linear_1000"] == pytest.approx(0.00635, abs=5e-6)


def test_energy_distance_of_a_shift_and_of_two_draws():
    x = torch.zeros(2, 2)
    y = torch.tensor([[3.0, 4.0], [3.0, 4.0]])
    assert K.energy_distance(x, y) == pytest.approx(10.0)  # 2·5 − 0 − 0
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1500, 2, generator=g), torch.randn(1500, 2, generator=g)
    assert abs(K.energy_distance(a, b)) < 0.01 < K.energy_distance(a, b + 0.5)
    assert K.spread(x) == 0.0 and K.spread(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == 5.0


def test_digit_scores_on_a_fixed_classifier():
    clf = K.Classifier()
    with torch.no_grad():
        clf.head.weight.zero_()
        clf.head.bias.copy_(torch.arange(10.0) * 0 + torch.nn.functional.one_hot(torch.tensor(3), 10) * 50)
    images = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    s = K.digit_scores(clf, images, images)
    assert s["fd"] == pytest.approx(0.0, abs=1e-6) and s["entropy"] == 0.0 and s["confidence"] > 0.99


def test_a_toy_seed_runs_end_to_end_on_a_tiny_size():
    data = K.toy_data("ring", 200, 100)
    assert data.train.mean(0).abs().max() < 1e-5 and (data.train.std(0) - 1).abs().max() < 1e-5
    out, pts = K.toy_seed(data, 0, K.ToySize(steps=10, train_steps=3, hidden=8, depth=1, batch=16, lr=1e-3,
                                             n_samples=50))
    assert set(pts) == {"stochastic", "greedy", "unrescaled", "noise", "floor"}
    assert all(p.shape == (50, 2) for p in pts.values())
    assert {"stochastic", "spread_greedy", "nn_floor", "within_noise", "loss_unrescaled"} <= set(out)
