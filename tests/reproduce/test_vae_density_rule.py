"""The `vae_density` reproduction's rule on stand-in measurements (every branch: the learned guard, the PPCA part,
the rise with M, saturation, IWAE against VAE), and its baseline."""

from __future__ import annotations

import numpy as np
import torch

from kexue.reproduce import vae_density as V

N = 400
BASELINE = -25.0


def _examples(levels: dict[int, float], seeds: int = 3, noise: float = 0.02, offset: float = 0.0) -> dict:
    """Per-seed held-out estimates: level(M) + a per-digit value shared across M (nested draws) + small noise."""
    out: dict[int, list[np.ndarray]] = {m: [] for m in V.MS}
    for s in range(seeds):
        rng = np.random.default_rng(s)
        base = rng.normal(0, 3, N)
        for m in V.MS:
            out[m].append(base + levels[m] + offset + rng.normal(0, noise, N))
    return out


RISING = {1: -21.3, 10: -21.0, 100: -20.93, 1000: -20.91}


def _measurements(vae=RISING, iwae=None, iwae_offset=0.9, **kw):
    return {"vae": _examples(vae, **kw), "iwae": _examples(iwae or RISING, offset=iwae_offset, **kw)}


def test_holds_when_the_estimate_rises_saturates_and_iwae_is_higher():
    verdict, reason, comps = V.decide(True, _measurements(), BASELINE)
    assert verdict == "holds", reason
    assert len(comps) == 9 and all(d == "holds" for _, _, d in comps)
    assert "PPCA: verified" in reason


def test_not_measured_when_the_vae_does_not_beat_independent_pixels():
    low = {m: v - 10 for m, v in RISING.items()}
    verdict, reason, comps = V.decide(True, _measurements(vae=low), BASELINE)
    assert verdict == "not measured" and "did not learn" in reason and comps == []


def test_does_not_hold_when_ppca_is_not_verified():
    verdict, reason, _ = V.decide(False, _measurements(), BASELINE)
    assert verdict == "does not hold" and "PPCA: not verified" in reason


def test_does_not_hold_when_the_estimate_falls_with_m():
    falling = {**RISING, 1000: -21.1}
    verdict, reason, _ = V.decide(True, _measurements(iwae=falling), BASELINE)
    assert verdict == "does not hold"
    assert "iwae: log p̂(M = 1000) − log p̂(M = 100)" in reason and "does not hold" in reason


def test_does_not_hold_when_the_estimate_does_not_saturate():
    linear = {1: -21.3, 10: -21.0, 100: -20.9, 1000: -20.5}  # the rise 100 → 1000 exceeds 10 → 100
    verdict, reason, comps = V.decide(True, _measurements(vae=linear), BASELINE)
    assert verdict == "does not hold"
    assert [d for w, _, d in comps if w.startswith("vae: rise")] == ["does not hold"]


def test_does_not_hold_when_iwae_training_is_lower():
    verdict, _, comps = V.decide(True, _measurements(iwae_offset=-0.5), BASELINE)
    assert verdict == "does not hold" and comps[-1][2] == "does not hold"


def test_inconclusive_when_iwae_and_vae_are_within_the_seed_spread():
    m = _measurements(iwae_offset=0.0)
    for s, shift in enumerate((0.3, -0.25, 0.02)):  # per-seed differences that straddle 0
        for arr in m["iwae"].values():
            arr[s] += shift
    verdict, _, comps = V.decide(True, m, BASELINE)
    assert comps[-1][2] == "inconclusive" and verdict == "inconclusive"


def test_inconclusive_when_the_top_step_is_within_the_monte_carlo_noise():
    flat = {**RISING, 1000: RISING[100] + 0.001}
    verdict, reason, _ = V.decide(True, _measurements(vae=flat, noise=0.5), BASELINE)
    assert verdict == "inconclusive" and "vae: log p̂(M = 1000) − log p̂(M = 100)" in reason


def test_the_baseline_is_the_independent_pixel_log_likelihood():
    train = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    test = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([3 / 5, 2 / 5])  # add-one smoothing: (2 + 1)/(3 + 2), (1 + 1)/(3 + 2)
    want = float(torch.log(p[0]) + torch.log(1 - p[1]))
    assert abs(V._baseline(train, test) - want) < 1e-6


def test_the_ppca_part_is_verified():
    out = V._ppca()
    assert out["verified"] and out["exact_error"] < V.EXACT_TOL
    assert out["gaps"][1] > out["gaps"][10] > out["gaps"][100] > 0
