"""The `lic2020_relation` reproduction's rule on stand-in measurements (every branch: the learned guard for each head,
GlobalPointer ahead, behind, within the noise; the seed and bootstrap parts of the s.e.), triple F1 (exact and
WebNLG*'s last word), the bootstrap, the encodings and the GPLinker pair cells, and `not run` without the data."""

from __future__ import annotations

import math

import pytest
import torch

from kexue.data import RelationSentence, Triple
from kexue.reproduce import _relation_task as R
from kexue.reproduce import lic2020_relation as L

NO_BOOT = R.Bootstrap(1e-4, 1e-4, 1e-4)


def _scores(pointer, gp, boot=NO_BOOT):
    return [L.SeedScore(p, g, boot) for p, g in zip(pointer, gp, strict=True)]


def test_holds_when_global_pointer_is_ahead_in_every_variant():
    s = {"exact": _scores([0.30, 0.32, 0.31], [0.40, 0.41, 0.43]), "star": _scores([0.35, 0.36], [0.45, 0.44])}
    verdict, reason, comps = L.decide(s)
    assert verdict == "holds", reason
    assert [d for _, _, d in comps] == ["holds", "holds"] and comps[0][1].mean == pytest.approx(0.10333, abs=1e-4)


def test_does_not_hold_when_global_pointer_is_behind():
    verdict, _, comps = L.decide({"exact": _scores([0.30, 0.32, 0.31], [0.10, 0.12, 0.09])})
    assert verdict == "does not hold" and comps[0][2] == "does not hold"


def test_does_not_hold_when_one_variant_is_behind_and_the_other_ahead():
    s = {"exact": _scores([0.30, 0.32, 0.31], [0.40, 0.41, 0.43]), "star": _scores([0.35, 0.36], [0.15, 0.14])}
    assert L.decide(s)[0] == "does not hold"


def test_inconclusive_within_the_seed_spread():
    verdict, _, comps = L.decide({"exact": _scores([0.30, 0.40, 0.20], [0.35, 0.25, 0.31])})
    assert verdict == "inconclusive" and comps[0][2] == "inconclusive"


def test_inconclusive_within_the_bootstrap_noise_with_one_seed():
    verdict, reason, comps = L.decide({"exact": _scores([0.20], [0.23], R.Bootstrap(1e-4, 1e-4, 0.02**2))})
    assert verdict == "inconclusive" and comps[0][1].se == pytest.approx(0.02) and "1 seed" in reason
    # the same difference with a small bootstrap variance is decided
    assert L.decide({"exact": _scores([0.20], [0.23], R.Bootstrap(1e-4, 1e-4, 0.005**2))})[0] == "holds"


@pytest.mark.parametrize("which", ["pointer", "global_pointer"])
def test_not_measured_when_a_head_predicts_nothing(which):
    zeros, good = [0.0, 0.0, 0.0], [0.3, 0.31, 0.29]
    s = _scores(zeros, good) if which == "pointer" else _scores(good, zeros)
    verdict, reason, comps = L.decide({"exact": s})
    assert verdict == "not measured" and L.LABEL[which] in reason and comps == []


def test_combined_adds_seed_and_bootstrap_variances():
    e = L.combined([0.1, 0.3], [0.01, 0.03])
    assert e.mean == pytest.approx(0.2) and e.se == pytest.approx(math.sqrt(0.01 + 0.02))  # s²/n = 0.02/2
    assert L.combined([0.1], [0.04]).se == pytest.approx(0.2)


def test_triple_f1_exact_and_last_word():
    gold = [frozenset({("Alan Bean", "birthPlace", "Wheeler , Texas"), ("Alan Bean", "nationality", "US")}),
            frozenset({("Apollo 12", "operator", "NASA")})]
    pred = [frozenset({("Bean", "birthPlace", "Texas"), ("Alan Bean", "nationality", "US")}), frozenset()]
    f = R.triple_f1(pred, gold, "exact")
    assert (f.precision, f.recall, f.predicted, f.gold) == (0.5, pytest.approx(1 / 3), 2, 3)
    assert f.f1 == pytest.approx(0.4)
    assert R.triple_f1(pred, gold, "star").f1 == pytest.approx(2 * 1.0 * (2 / 3) / (1 + 2 / 3))
    assert R.triple_f1([frozenset(), frozenset()], gold, "exact").f1 == 0.0


def test_bootstrap_variance_of_a_head_against_itself_is_zero_and_positive_otherwise():
    gold = [frozenset({("a", "p", "b")}), frozenset({("c", "p", "d")}), frozenset({("e", "q", "f")})] * 5
    good = list(gold)
    half = [g if i % 2 else frozenset() for i, g in enumerate(gold)]
    b = R.paired_bootstrap(good, good, gold, "exact", draws=50)
    assert b.var_diff == 0.0 and b.var_a == 0.0
    b = R.paired_bootstrap(half, good, gold, "exact", draws=50)
    assert b.var_a > 0 and b.var_diff > 0 and b.var_b == 0.0


@pytest.fixture(scope="module")
def tok():
    from kexue.reproduce._minilm import model_and_tokenizer

    return model_and_tokenizer()[1]


def test_encode_locates_whole_tokens_and_slices_triples_back(tok):
    text = "Ann went to Annapolis ; Ann is in Maryland ."
    s = RelationSentence(text, (Triple("Ann", "visited", "Annapolis"), Triple("Annapolis", "isPartOf", "Maryland")))
    (e,) = R.encode([s], tok, ["isPartOf", "visited"])
    assert R.strings(e, set(e.spans), ["isPartOf", "visited"]) == e.gold
    (ss, se, p, os_, oe) = e.spans[0]
    assert (ss, se, p) == (1, 1, 1) and e.mapping[ss] == [0, 1, 2]  # "Ann" itself, not the start of "Annapolis"


def test_global_pointer_pair_cells_keep_the_upper_triangle():
    net = R.GPLinkerModel.__new__(R.GPLinkerModel)
    torch.nn.Module.__init__(net)
    net.p = 3
    ent, starts, ends = net.targets([[(5, 6, 1, 2, 3), (1, 1, 2, 4, 4)]])
    assert ent.shape == (1, 2, 2, 2)
    got = {(h, a, b) for h in range(6) for a, b in starts[0, h].tolist() if a >= 0}
    assert got == {(3 + 1, 2, 5), (2, 1, 4)}  # subject after object: head P + p at (o, s)
    assert all(a <= b for h in range(6) for a, b in ends[0, h].tolist() if a >= 0)


def test_not_run_without_the_data(tmp_path, monkeypatch):
    from kexue.reproduce.runner import run_one

    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    out = run_one("lic2020_relation", quick=True)
    assert out.verdict == "not run" and "kexue data fetch webnlg" in (out.not_run or "")
