"""The `lic2020_span_qa` reproduction's rule on stand-in measurements (every branch: the learned guard, the length
limit helping, hurting, within the noise), SQuAD's official metric, the features (the answer located in the context
segment, sliced back exactly), the trivial baseline, and `not run` without the data."""

from __future__ import annotations

import numpy as np
import pytest

from kexue.data import Answer, QAExample
from kexue.reproduce import _span_qa_task as T
from kexue.reproduce import lic2020_span_qa as Q

N = 200


def _runs(f1_limit: float, gain: np.ndarray, seeds: int = 3, spread: float = 0.01) -> tuple[list, list]:
    """Per-seed (EM, F1) arrays: the limited decoder's scores and the unlimited ones = limited − gain."""
    limited, unlimited = [], []
    for s in range(seeds):
        rng = np.random.default_rng(s)
        f1 = np.clip(f1_limit + spread * (s - 1) + rng.normal(0, 0.3, N), 0, 1)
        em = (f1 > 0.8).astype(float)
        limited.append(np.stack([em, f1], 1))
        unlimited.append(np.stack([em - gain, f1 - gain], 1))
    return limited, unlimited


def test_holds_when_the_limit_raises_em_and_f1():
    gain = np.zeros(N)
    gain[:40] = 1.0  # 40 of 200 questions: the limit turns a wrong long span into the right answer
    verdict, reason, comps = Q.decide(*_runs(0.4, gain), baseline_f1=0.06)
    assert verdict == "holds", reason
    assert [d for _, _, d in comps] == ["holds", "holds"] and comps[0][1].n == N


def test_not_measured_when_f1_does_not_beat_the_trivial_answer():
    limited, unlimited = _runs(0.06, np.zeros(N))
    level = float(np.mean([a[:, 1].mean() for a in limited]))  # the stand-ins' mean F1: no better than the baseline
    verdict, reason, comps = Q.decide(limited, unlimited, baseline_f1=level)
    assert verdict == "not measured" and "did not learn" in reason and comps == []


def test_does_not_hold_when_the_limit_cuts_off_right_answers():
    gain = np.zeros(N)
    gain[:40] = -1.0
    verdict, _, comps = Q.decide(*_runs(0.4, gain), baseline_f1=0.06)
    assert verdict == "does not hold" and comps[1][2] == "does not hold"


def test_inconclusive_when_the_two_decoders_agree():
    verdict, reason, comps = Q.decide(*_runs(0.4, np.zeros(N)), baseline_f1=0.06)
    assert verdict == "inconclusive" and all(d == "inconclusive" for _, _, d in comps), reason


def test_inconclusive_when_gains_and_losses_balance_within_the_noise():
    gain = np.zeros(N)
    gain[:20], gain[20:39] = 1.0, -1.0
    verdict, _, comps = Q.decide(*_runs(0.4, gain), baseline_f1=0.06)
    assert verdict == "inconclusive" and comps[1][2] == "inconclusive"


def test_the_per_question_difference_is_averaged_over_seeds():
    gain = np.zeros(N)
    gain[:10] = 1.0
    limited, unlimited = _runs(0.4, gain, seeds=2)
    unlimited[1] = limited[1].copy()  # the second model gains nothing
    _, _, comps = Q.decide(limited, unlimited, baseline_f1=0.06)
    assert comps[1][1].mean == pytest.approx(10 * 0.5 / N)


def test_squad_metric_is_the_official_one():
    assert T.normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert T.exact_match("the Broncos", "Broncos.") == 1.0
    assert T.f1_score("Denver Broncos team", "the Denver Broncos") == pytest.approx(0.8)
    assert T.f1_score("a", "the") == 0.0  # both empty after normalisation: no common token
    assert T.score("Broncos", ["Carolina Panthers", "Denver Broncos"]) == (0.0, pytest.approx(2 / 3))


@pytest.fixture(scope="module")
def tok():
    from kexue.reproduce._minilm import model_and_tokenizer

    return model_and_tokenizer()[1]


def test_features_locate_the_answer_in_the_context_and_slice_it_back(tok):
    context = "Paris is big. In Paris, the Café de Flore opened in 1887."
    q = "When did the Café in Paris open?"
    ex = QAExample("q1", "t", context, q, (Answer("1887", context.index("1887")), Answer("Paris", 0)))
    (f,) = T.encode([ex], tok, 64)
    assert f.ids[0] == tok.token_to_id("[CLS]") and sum(f.context) == len(tok.tokenize(context))
    # "Paris" occurs in the question first: the label is the context's occurrence (answer_start 0), not the question's
    assert [T.answer_text(f, s, e) for s, e in f.targets] == ["1887", "Paris"]
    assert all(f.context[s] and f.context[e] for s, e in f.targets)
    s, e = f.targets[1]
    assert f.mapping[s] == [0, 1, 2, 3, 4] and s > len(tok.tokenize(q)) + 1
    (cut,) = T.encode([ex], tok, len(tok.tokenize(q)) + 8)  # the window ends before "1887"
    assert [T.answer_text(cut, s, e) for s, e in cut.targets] == ["Paris"]
    assert T.gold_lengths([f, cut]).tolist() == [1, 1]


def test_the_question_is_capped_at_64_tokens(tok):
    q = " ".join(["word"] * 80) + "?"
    assert len(tok.tokenize(T.cap_question(tok, q))) == T.MAX_QUESTION
    assert T.cap_question(tok, "Who?") == "Who?"


def test_trivial_answers_are_the_first_context_tokens(tok):
    context = "Denver Broncos won the game in Santa Clara."
    ex = QAExample("q", "t", context, "Who won?", (Answer("Denver Broncos", 0),))
    base = T.trivial(T.encode([ex], tok, 64), max_k=3)
    assert base[1] == (0.0, pytest.approx(2 / 3)) and base[2] == (1.0, 1.0) and base[3][0] == 0.0


def test_not_run_without_the_data(tmp_path, monkeypatch):
    from kexue.reproduce.runner import run_one

    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    out = run_one("lic2020_span_qa", quick=True)
    assert out.verdict == "not run" and "kexue data fetch squad_v1.1" in (out.not_run or "")
