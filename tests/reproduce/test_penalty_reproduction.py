"""The `gradient_penalty_inequality` reproduction: its helpers against scikit-learn and autograd, its two rules on
stand-in measurements (every branch), and a quick run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kexue.reproduce import gradient_penalty_inequality as gpi


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
