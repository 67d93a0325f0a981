"""The `lic2020_ner_crf` reproduction's rule on stand-in measurements (every branch of decide()), and its helpers:
conlleval chunking, entity F1, the majority-tag baseline, the CoNLL first-piece and PHEE flat-BIO examples, the soft
metric, and `not run` without the data."""

from __future__ import annotations

import math

import pytest

from kexue.data import EventSentence, TaggedSentence
from kexue.data.extraction import Argument, Event
from kexue.models.offsets import char_span
from kexue.reproduce import _ner_tagging as T
from kexue.reproduce import lic2020_ner_crf as L

SOFTMAX = [0.44, 0.45, 0.43]
BASELINE = 0.35
INIT = [0.53, 0.52, 0.54]


def _set(softmax=SOFTMAX, x1=(0.45, 0.44, 0.46), x100=(0.54, 0.55, 0.53), still=(0.07, 0.072, 0.068),
         moved=(6.5, 6.7, 6.6), baseline=BASELINE, test_se=0.02):
    return L.SetMeasurements({"softmax": list(softmax), "crf ×1": list(x1), "crf ×100": list(x100)}, test_se,
                             baseline, {"crf ×1": list(still), "crf ×100": list(moved)}, list(INIT[:len(still)]))


def _judged(parts):
    return [v for *_, v, judged in parts if judged]


def test_holds_when_the_crf_is_competitive_and_only_the_multiplied_transitions_move():
    verdict, reason, parts = L.decide({"CoNLL-2003": _set()})
    assert verdict == "holds", reason
    assert _judged(parts) == ["holds"] * 3 and len(parts) == 4


def test_a_crf_within_the_margin_below_the_softmax_is_still_competitive():
    # CRF 0.005 below softmax on every seed: inside the margin (softmax's seed s.d. 0.01, test s.e. 0.02)
    verdict, _, parts = L.decide({"CoNLL-2003": _set(x100=[s - 0.005 for s in SOFTMAX])})
    assert parts[0][3] == "holds" and verdict == "holds"


def test_not_measured_when_the_softmax_tagger_does_not_beat_the_majority_baseline():
    verdict, reason, parts = L.decide({"CoNLL-2003": _set(softmax=(0.36, 0.33, 0.37))})
    assert verdict == "not measured" and parts == []
    assert "did not learn" in reason and "majority-tag-per-word" in reason


def test_not_measured_with_one_seed():
    one = _set(softmax=[0.44], x1=[0.45], x100=[0.54], still=[0.07], moved=[6.5])
    verdict, reason, _ = L.decide({"CoNLL-2003": one})
    assert verdict == "not measured" and "1 seed(s)" in reason


def test_does_not_hold_when_the_crf_is_clearly_worse_than_the_softmax():
    verdict, reason, parts = L.decide({"CoNLL-2003": _set(x100=[s - 0.1 for s in SOFTMAX], test_se=0.01)})
    assert parts[0][3] == "does not hold" and verdict == "does not hold", reason


def test_does_not_hold_when_the_transitions_move_without_the_multiplier():
    verdict, _, parts = L.decide({"CoNLL-2003": _set(still=(1.5, 1.6, 1.4))})
    assert parts[1][3] == "does not hold" and verdict == "does not hold"


def test_does_not_hold_when_the_multiplied_transitions_do_not_move_either():
    verdict, _, parts = L.decide({"CoNLL-2003": _set(moved=(0.1, 0.09, 0.11))})
    assert parts[2][3] == "does not hold" and verdict == "does not hold"


def test_inconclusive_when_the_crf_softmax_difference_straddles_the_margin():
    # paired differences −0.06, 0.0, −0.03 (mean −0.03, s.e. 0.017) against a margin of 0.02
    verdict, _, parts = L.decide({"CoNLL-2003": _set(x100=(0.38, 0.45, 0.40), test_se=0.02)})
    assert parts[0][3] == "inconclusive" and verdict == "inconclusive"


def test_inconclusive_when_the_unmultiplied_change_is_near_the_initialisation():
    verdict, _, parts = L.decide({"CoNLL-2003": _set(still=(0.3, 0.9, 0.5))})
    assert parts[1][3] == "inconclusive" and verdict == "inconclusive"


def test_the_f1_without_the_multiplier_is_reported_not_judged():
    # ×1 far better than ×100 in F1: the reported part does not hold, the verdict still holds
    verdict, _, parts = L.decide({"CoNLL-2003": _set(x1=(0.6, 0.61, 0.62))})
    assert parts[3][3] == "does not hold" and parts[3][4] is False and verdict == "holds"


def test_a_set_that_did_not_learn_is_named_and_the_other_decides():
    sets = {"CoNLL-2003": _set(), "PHEE": _set(softmax=(0.2, 0.21, 0.19), baseline=0.3)}
    verdict, reason, parts = L.decide(sets)
    assert verdict == "holds" and {p[0] for p in parts} == {"CoNLL-2003"}
    assert "not measured: PHEE" in reason


def test_chunks_follow_conlleval():
    # O B-PER I-PER I-LOC B-LOC B-LOC O I-ORG I-ORG (types 0 PER, 1 LOC, 2 ORG)
    tags = [0, 1, 2, 4, 3, 3, 0, 6, 6]
    assert T.chunks(tags) == {(0, 1, 2), (1, 3, 3), (1, 4, 4), (1, 5, 5), (2, 7, 8)}
    assert T.chunks([]) == frozenset() and T.chunks([0, 0]) == frozenset()
    assert T.chunks([2]) == {(0, 0, 0)}  # a lone I opens a chunk (seqeval's default mode)


def test_entity_f1_and_its_bootstrap():
    gold = [frozenset({(0, 0, 1), (1, 3, 3)}), frozenset({(2, 0, 0)})]
    pred = [frozenset({(0, 0, 1), (1, 3, 4)}), frozenset({(2, 0, 0), (0, 2, 2)})]
    f = T.entity_f1(pred, gold)
    assert (f.tp, f.n_pred, f.n_gold) == (2, 4, 3)
    assert f.f1 == pytest.approx(4 / 7) and f.precision == 0.5 and f.recall == pytest.approx(2 / 3)
    assert T.entity_f1([frozenset()], [frozenset()]).f1 == 0.0
    assert T.bootstrap_se(gold, gold) == 0.0  # every resample scores 1
    assert T.bootstrap_se(pred, gold) > 0


def test_majority_baseline():
    train = [["Paris", "is", "nice"], ["Paris", "Hilton"], ["Paris"]]
    tags = [[3, 0, 0], [1, 2], [3]]
    out = T.majority_baseline(train, tags, [["Paris", "Hilton", "unseen"]])
    assert out == [frozenset({(1, 0, 0), (0, 1, 1)})]  # Paris → B-LOC (2 of 3), Hilton → I-PER: a new chunk


@pytest.fixture(scope="module")
def tok():
    from kexue.env import minilm_path
    from kexue.models import Tokenizer

    return Tokenizer.from_pretrained(minilm_path())


def test_conll_examples_tag_each_word_at_its_first_piece(tok):
    s = TaggedSentence(("Schwarzenegger", "visited", "Ouagadougou", "."), ("B-PER", "O", "B-LOC", "O"),
                       ("NNP",) * 4, ("O",) * 4, 0)
    (ex,) = T.conll_examples([s], tok, 64)
    pieces = [tok._tok.id_to_token(i) for i in ex.ids]
    assert [pieces[p] for p in ex.units] == ["schwarz", "visited", "ou", "."]
    assert len(ex.ids) > 6 and ex.tags == [1, 0, 3, 0] and ex.gold == {(0, 0, 0), (1, 2, 2)}
    (cut,) = T.conll_examples([s], tok, 4)  # [CLS] + 2 pieces + [SEP]: the later words are truncated away
    assert cut.units[0] == 1 and cut.units[2:] == [-1, -1]


def test_phee_examples_flat_bio_over_event_type_and_role(tok):
    text = "Aspirin caused rash and aspirin caused fever in a boy."

    def arg(role, start, end, pieces=None):
        ps = pieces or ((start, end),)
        return Argument(role, ps, tuple(text[a:b] for a, b in ps))

    ev1 = Event("Adverse_event", arg("Trigger", 8, 14), (arg("Treatment", 0, 7), arg("Treatment.Drug", 0, 7),
                                                         arg("Effect", 15, 19), arg("Subject", 48, 53),
                                                         arg("Effect", 15, 53, ((15, 19), (48, 53)))))
    ev2 = Event("Potential_therapeutic_event", arg("Trigger", 32, 38), (arg("Treatment", 24, 31),
                                                                        arg("Effect", 15, 19)))
    (ex,), counts = T.phee_examples([EventSentence("x", text, (ev1, ev2))], tok, 64)
    assert counts == T.PheeCounts(mentions=6, discontinuous=1, overlapping=1, truncated=0)
    scheme = T.phee_scheme()
    assert scheme.num_labels == 13
    got = {(scheme.pairs[ell], text[slice(*char_span([list(c) for c in ex.chars], a, b))])
           for ell, a, b in ex.gold}
    assert got == {(("Adverse_event", "Treatment"), "Aspirin"), (("Adverse_event", "Effect"), "rash"),
                   (("Adverse_event", "Subject"), "a boy"),
                   (("Potential_therapeutic_event", "Treatment"), "aspirin"),
                   (("Potential_therapeutic_event", "Effect"), "rash")}  # overlapping: in gold, one tagged
    assert len(T.chunks(ex.tags)) == 4
    assert T.soft_event_f1([ex], [ex.gold], scheme) == 1.0
    assert T.soft_event_f1([ex], [frozenset()], scheme) == 0.0


def test_not_run_without_the_data(tmp_path, monkeypatch):
    from kexue.reproduce.runner import run_one

    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    out = run_one("lic2020_ner_crf", quick=True)
    assert out.verdict == "not run" and "kexue data fetch conll2003" in (out.not_run or "")


def test_settings_fit_the_post_ratio():
    assert L.MULTIPLIER == {"softmax": None, "crf ×1": 1.0, "crf ×100": 100.0}
    assert math.isclose(L.POST_LR * L.POST_STEPS, 2e-5 * 7480)
