"""The `hubness_sampling` reproduction's rule on stand-in measurements (every branch: both learned guards, the
mechanism, each quality proxy, the diversity comparison at matched quality and beyond truncation's reach), and the
interpolation that matches truncation to hub-filtered quality."""

from __future__ import annotations

import math

import pytest

from kexue.reproduce import hubness_sampling as H

GAPS = {16: [1.52, 1.55, 1.54], 64: [1.81, 1.82, 1.80], 128: [1.74, 1.76, 1.73]}
MEAN_IMAGE, NOISE = 0.073, 0.55
#: distance and entropy along ψ = 1 (random), 0.9, ..., 0.3; the distance falls to ψ = 0.5 and then rises.
DIST = (1.70, 1.68, 1.65, 1.62, 1.60, 1.58, 1.59, 1.61)
ENT = (2.24, 2.24, 2.23, 2.22, 2.20, 2.15, 2.08, 2.00)
CONF = (0.62, 0.60, 0.58, 0.55, 0.51, 0.48, 0.44, 0.40)


def _seed(i: int, hub_conf=0.66, hub_dist=1.61, hub_ent=2.215, recon=0.018, random_conf=None) -> H.SeedScores:
    jitter = 0.002 * (i - 1)
    srcs = ["random", *[H._src(p) for p in H.PSIS]]
    conf = {s: c + jitter for s, c in zip(srcs, CONF)}
    if random_conf is not None:
        conf["random"] = random_conf + jitter
    dist = {s: d + jitter for s, d in zip(srcs, DIST)}
    ent = {s: e + jitter for s, e in zip(srcs, ENT)}
    conf["hub"], dist["hub"], ent["hub"] = hub_conf + jitter, hub_dist + jitter, hub_ent + jitter
    return H.SeedScores(recon + jitter / 10, conf, dist, ent)


def _seeds(**kw):
    return [_seed(i, **kw) for i in range(3)]


def test_holds_when_hubs_are_central_better_and_no_less_diverse():
    verdict, reason, comps = H.decide(GAPS, _seeds(), MEAN_IMAGE, NOISE)
    assert verdict == "holds", reason
    assert len(comps) == 6 and all(d == "holds" for _, _, d in comps)


def test_not_measured_when_reconstruction_is_no_better_than_the_mean_image():
    verdict, reason, comps = H.decide(GAPS, _seeds(recon=0.08), MEAN_IMAGE, NOISE)
    assert verdict == "not measured" and "did not learn" in reason and "mean image" in reason
    assert "mechanism: d = 16" in reason and len(comps) == 3


def test_not_measured_when_random_samples_are_no_more_confident_than_noise():
    verdict, reason, _ = H.decide(GAPS, _seeds(random_conf=0.55), MEAN_IMAGE, NOISE)
    assert verdict == "not measured" and "noise images" in reason


def test_does_not_hold_when_accepted_latents_are_not_nearer_the_centre():
    gaps = {**GAPS, 64: [-0.30, -0.28, -0.31]}
    verdict, reason, comps = H.decide(gaps, _seeds(), MEAN_IMAGE, NOISE)
    assert verdict == "does not hold" and "d = 64: mean ‖z‖ of the pool − of the accepted = -0.297" in reason
    assert [d for w, _, d in comps if w.startswith("d = 64")] == ["does not hold"]


def test_inconclusive_when_no_latent_cleared_the_threshold():
    gaps = {**GAPS, 16: [math.nan, math.nan]}
    verdict, _, comps = H.decide(gaps, _seeds(), MEAN_IMAGE, NOISE)
    assert verdict == "inconclusive" and comps[0][2] == "inconclusive"


def test_does_not_hold_when_hub_samples_are_less_confident():
    verdict, reason, comps = H.decide(GAPS, _seeds(hub_conf=0.53), MEAN_IMAGE, NOISE)
    assert verdict == "does not hold" and "confidence: hub − random = -0.09" in reason
    assert dict((w, d) for w, _, d in comps)["distance to the nearest real digit: random − hub"] == "holds"


def test_does_not_hold_when_hub_samples_are_farther_from_real_digits():
    verdict, _, comps = H.decide(GAPS, _seeds(hub_dist=1.75), MEAN_IMAGE, NOISE)
    assert verdict == "does not hold"
    assert dict((w, d) for w, _, d in comps)["distance to the nearest real digit: random − hub"] == "does not hold"


def test_diversity_decided_against_truncation_at_matched_distance():
    # hub at distance 1.61 matches ψ = 0.65 (entropy 2.21); truncation's cost 0.03, margin 0.015
    costly = H.decide(GAPS, _seeds(hub_ent=2.10), MEAN_IMAGE, NOISE)
    assert costly[0] == "does not hold" and costly[2][-1][2] == "does not hold"
    similar = H.decide(GAPS, _seeds(hub_ent=2.205), MEAN_IMAGE, NOISE)
    assert similar[0] == "holds"  # 0.005 below truncation, inside half its cost
    noisy = [_seed(i, hub_ent=e) for i, e in enumerate((2.16, 2.22, 2.25))]
    assert H.decide(GAPS, noisy, MEAN_IMAGE, NOISE)[2][-1][2] == "inconclusive"


def test_hub_quality_beyond_the_truncation_grid_is_compared_with_truncations_closest_point():
    # truncation's distance bottoms out at ψ = 0.5 (1.58, entropy 2.15, cost 0.09, margin 0.045)
    verdict, reason, comps = H.decide(GAPS, _seeds(hub_dist=1.50), MEAN_IMAGE, NOISE)
    assert verdict == "holds" and "for 3 of 3 seeds truncation never reaches hub's distance" in reason
    assert comps[-1][1].mean == pytest.approx(2.215 - 2.15)
    verdict, _, comps = H.decide(GAPS, _seeds(hub_dist=1.50, hub_ent=2.0), MEAN_IMAGE, NOISE)
    assert verdict == "does not hold" and comps[-1][2] == "does not hold"


def test_matched_truncation_interpolates_along_the_falling_branch():
    s = _seed(1)
    m = H.matched_truncation(s, 1.61)
    assert m.psi == pytest.approx(0.65) and m.entropy == pytest.approx(2.21) and m.conf == pytest.approx(0.53)
    assert H.matched_truncation(s, 1.70).psi == 1.0 and H.matched_truncation(s, 1.80).entropy == 2.24
    # 1.61 is reached between ψ = 0.7 (1.62) and 0.6 (1.60), not on the rising branch below ψ = 0.5 (ψ = 0.3 is 1.61)
    assert H.matched_truncation(s, 1.585).psi == pytest.approx(0.525)
    assert H.matched_truncation(s, 1.585).reached
    beyond = H.matched_truncation(s, 1.57)
    assert not beyond.reached and beyond.psi == 0.5 and beyond.entropy == pytest.approx(2.15)


def test_threshold_ladder_choice():
    import torch

    h = torch.tensor([60] * 2 + [22] * 8 + [3] * 90)
    assert H._choose(h, 0.02) == (50, 0.02)
    assert H._choose(h, 0.05) == (20, 0.10)
    assert H._choose(h, 0.5) == (10, 0.10)
