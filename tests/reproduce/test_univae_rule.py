"""The `univae` reproduction's rule on stand-in measurements (every branch: the mechanics, the learned guards, the
reconstruction bar, the post's direction of the latent swaps and its reverse), the synthetic language it runs on, and
its mechanics checks (including that the leakage check fails on a model that leaks)."""

from __future__ import annotations

import math

import pytest
import torch

import kexue.generative.univae as univae_module
from kexue.generative.univae import UniVAE
from kexue.models.config import TransformerConfig
from kexue.nn import unilm_mask
from kexue.reproduce import _templated_language as T
from kexue.reproduce import _univae_mechanics as M
from kexue.reproduce import univae as U

BASELINE = 0.27
RECON = [0.97, 1.0, 0.95, 1.0, 0.98, 0.96, 1.0, 0.99]
LM = [0.7, 0.75, 0.6, 0.8, 0.72, 0.7, 0.66, 0.71]  # teacher-forced accuracy with another sentence's z


def _swaps(lower=(190, 5, 20, 170), top=(10, 185, 195, 3), n=200):
    """One seed's (topic_a, topic_b, pattern_a, pattern_b) counts of the lower (layer 3) and the top (layer 4) latent
    layer; the defaults follow the post (lower: topic kept, pattern changed; top: pattern kept, topic changed)."""
    return [U.SwapCounts(3, n, *lower), U.SwapCounts(4, n, *top)]


POST_SPLIT = [_swaps(), _swaps((180, 10, 30, 160), (20, 170, 185, 5)), _swaps((195, 2, 10, 185), (5, 190, 198, 1))]
REVERSE = [_swaps((5, 190, 195, 3), (190, 5, 10, 180)), _swaps((15, 180, 185, 8), (182, 10, 20, 170)),
           _swaps((8, 186, 190, 4), (194, 2, 6, 190))]


def _decide(recon=None, shuffled=None, swaps=POST_SPLIT, baseline=BASELINE, **kw):
    """decide() over len(swaps) seeds: each seed's reconstruction is ``recon`` shifted by 0.01 per seed."""
    seeds = len(swaps)
    recon = recon or RECON
    rec = [[r - 0.01 * k for r in recon] for k in range(seeds)]
    sh = [list(shuffled or LM[:len(recon)]) for _ in range(seeds)]
    return U.decide(True, rec, sh, [baseline] * seeds, swaps, **kw)


def test_holds_when_reconstruction_is_high_and_the_layers_split_as_the_post_says_in_every_seed():
    verdict, reason, comps = _decide()
    assert verdict == "holds", reason
    assert len(comps) == 5 and all(d == "holds" for _, _, d in comps)
    assert all(e.n == 3 for _, e, _ in comps)  # every estimate is over the seeds
    assert "swap layer 4 (top): A's pattern kept > 1/2" in reason and "other way round" not in reason


def test_not_measured_when_the_mechanics_fail():
    verdict, reason, comps = U.decide(False, [RECON] * 3, [LM] * 3, [BASELINE] * 3, POST_SPLIT)
    assert verdict == "not measured" and "mechanics" in reason and comps == []


def test_not_measured_when_one_seed_does_not_beat_the_majority_baseline():
    rec = [RECON, [0.25, 0.3, 0.28, 0.26, 0.27, 0.25, 0.3, 0.26], RECON]
    verdict, reason, _ = U.decide(True, rec, [LM] * 3, [BASELINE] * 3, POST_SPLIT)
    assert verdict == "not measured" and "did not learn" in reason and "majority token" in reason
    assert reason.startswith("seed 1: ")


def test_not_measured_when_the_latent_carries_nothing():
    verdict, reason, comps = _decide(shuffled=[r - 0.01 * (-1) ** i for i, r in enumerate(RECON)])
    assert verdict == "not measured" and "carries no information" in reason and comps == []


def test_does_not_hold_when_reconstruction_is_clearly_below_the_bar():
    verdict, _, comps = _decide(recon=[0.7, 0.75, 0.72, 0.71, 0.74], shuffled=[0.5, 0.6, 0.55, 0.5, 0.6])
    assert verdict == "does not hold"
    assert comps[0][2] == "does not hold" and all(d == "holds" for _, _, d in comps[1:])


def test_inconclusive_when_reconstruction_straddles_the_bar_over_seeds():
    rec = [[0.99] * 5, [0.8] * 5, [0.93] * 5]  # seed means 0.99, 0.80, 0.93: the interval holds 0.9
    verdict, _, comps = U.decide(True, rec, [LM[:5]] * 3, [BASELINE] * 3, POST_SPLIT)
    assert verdict == "inconclusive" and comps[0][2] == "inconclusive"


def test_does_not_hold_when_the_top_layer_keeps_the_topic_in_every_seed():
    swaps = [_swaps(top=(180, 10, 190, 5)), _swaps(top=(170, 15, 185, 5)), _swaps(top=(190, 3, 195, 2))]
    verdict, _, comps = _decide(swaps=swaps)
    assert verdict == "does not hold"
    judged = {what: d for what, _, d in comps}
    assert judged["swap layer 4 (top): A's topic kept < 1/2"] == "does not hold"


def test_inconclusive_when_the_seeds_split_the_factors_differently():
    # each run splits cleanly, but one the post's way and one the other way: the spread over seeds decides
    verdict, reason, comps = _decide(swaps=[POST_SPLIT[0], REVERSE[0], POST_SPLIT[1]])
    assert verdict == "inconclusive", reason
    assert all(d == "inconclusive" for _, _, d in comps[1:])
    assert "other way round" not in reason


def test_the_reverse_split_is_named_in_the_reason():
    verdict, reason, _ = _decide(swaps=REVERSE)
    assert verdict == "does not hold" and "other way round" in reason


def test_rates_of_zero_and_one_in_every_seed_are_decided():
    verdict, _, comps = _decide(swaps=[_swaps(lower=(200, 0, 0, 200), top=(0, 200, 200, 0))] * 3)
    assert verdict == "holds" and all(e.se == 0 for _, e, _ in comps[1:])


@pytest.mark.parametrize("target", [U.RECON_TARGET, None])
def test_one_seed_is_inconclusive_however_clean_its_split(target):
    perfect = [_swaps(lower=(200, 0, 0, 200), top=(0, 200, 200, 0))]
    verdict, reason, comps = _decide(swaps=perfect, target=target)
    assert verdict == "inconclusive" and reason.startswith(U.ONE_RUN)
    assert all(d == "inconclusive" and e.n == 1 for _, e, d in comps)
    assert "nan" not in reason
    # and a single run the wrong way round does not make it "does not hold" either
    assert _decide(swaps=REVERSE[:1], target=target)[0] == "inconclusive"


def test_quick_mode_leaves_reconstruction_unjudged():
    verdict, reason, comps = _decide(recon=[0.8, 0.82, 0.79, 0.85, 0.81], target=None)
    assert verdict == "holds" and len(comps) == 4 and "reconstruction" not in reason


def test_decide_wants_the_same_seeds_in_every_measurement():
    with pytest.raises(ValueError, match="expected recon, shuffled, baseline and swaps for the same seeds"):
        U.decide(True, [RECON] * 3, [LM] * 2, [BASELINE] * 3, POST_SPLIT)


# -- the synthetic language ----------------------------------------------------------------------------------------


def test_every_sentence_parses_back_to_its_topic_and_pattern():
    sentences = T.all_sentences()
    assert len({s.words for s in sentences}) == len(sentences)
    assert all(T.parse(s.words) == (s.topic, s.pattern) for s in sentences)
    tok = T.WordTokenizer(12)
    assert 45 <= tok.vocab_size - 3 <= 55


def test_parse_says_none_for_mixed_topics_and_broken_skeletons():
    assert T.parse("the dog likes the cat".split()) == (0, 0)
    assert T.parse("the dog likes the bread".split()) == (None, 0)  # one noun each: a tie
    assert T.parse("the dog likes the cat the bread".split()) == (0, None)
    assert T.parse("likes the".split()) == (None, None)


def test_the_tokenizer_round_trips_and_the_split_holds_out_every_cell():
    train, test = T.split(0.15, seed=0)
    assert not {s.words for s in train} & {s.words for s in test}
    assert {(s.topic, s.pattern) for s in test} == {(t, p) for t in range(10) for p in range(10)}
    tok = T.WordTokenizer(12)
    ids = tok.encode(test[:5])
    assert ids.shape == (5, 12) and (ids[:, 0] == tok.cls_id).all()
    assert [tuple(tok.words(r)) for r in ids] == [s.words for s in test[:5]]
    with pytest.raises(ValueError, match="expected maxlen >= 11"):
        T.WordTokenizer(6)


def test_majority_baseline_counts_the_per_position_mode():
    tok = T.WordTokenizer(12)
    a = T.fill(0, 0, ["dog", "cat"])
    b = T.fill(0, 1, ["bread", "soup"])
    train = tok.encode([a, a, b])
    # on b: 'the' 'likes' 'the' [SEP] match a's positions, the two nouns do not: 4 of 6
    assert T.majority_baseline(train, tok.encode([b])) == pytest.approx(4 / 6)


# -- the mechanics checks ------------------------------------------------------------------------------------------


def test_brute_force_masks_on_a_small_layout():
    ind, uni = M.brute_force_masks([0, 0, 1, 1])
    assert ind == [[True, True, False, False], [True, True, False, False],
                   [False, False, True, False], [False, False, True, True]]
    assert [row[0] for row in uni] == [True] * 4 and uni[2][1] is False
    assert M.masks_check(6)["ok"]


def test_vmf_rate_is_the_kl_to_uniform():
    assert M.vmf_rate(8, 1e-6) == pytest.approx(0.0, abs=1e-9)
    # large kappa: KL ≈ (d−1)/2·log(κ/(2πe)) + log|S^{d−1}| (the vMF is nearly Gaussian on the tangent plane)
    d, k = 8, 1e4
    area = math.log(2) + d / 2 * math.log(math.pi) - math.lgamma(d / 2)
    assert M.vmf_rate(d, k) == pytest.approx((d - 1) / 2 * math.log(k / (2 * math.pi * math.e)) + area, abs=2e-3)
    assert M.vmf_rate(8, 16.0) < M.vmf_rate(8, 64.0)


def _tiny_univae():
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=20, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32,
                               hidden_dropout=0.0, attention_dropout=0.0, max_position_embeddings=16)
    return UniVAE(config, num_latent_layers=2, z_dim=4, kappa=8.0, maxlen=6)


def test_the_leakage_check_passes_on_univae_and_fails_when_the_decoder_sees_the_encoder(monkeypatch):
    model = _tiny_univae()
    ids = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 8, 9, 2, 0, 0], [1, 10, 11, 12, 13, 2]])
    leak = M.leakage_check(model, ids, pad_id=0)
    assert leak["ok"] and all(leak["identical"].values()) and leak["control_diff"] > 0
    # the top layers with the UniLM mask: the decoder sees every encoder column, not only the replaced [CLS]
    monkeypatch.setattr(univae_module, "uniae_mask", unilm_mask)
    leak = M.leakage_check(model, ids, pad_id=0)
    assert not leak["ok"] and not leak["identical"]["random tokens"] and leak["max_diff"]["random tokens"] > 0


def test_missing_sts_data_is_skipped_with_the_fetch_command(monkeypatch, tmp_path):
    from kexue.reproduce import _univae_real as R

    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    skipped: list[str] = []
    assert R.load_sentences(skipped) == ([], [])
    assert len(skipped) == 2 and all("kexue data fetch" in s for s in skipped)
