"""The exposure_bias reproduction: its task, the exact reference model, its evaluation and its verdict rule."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from kexue.models.decoding import beam_search, greedy_search
from kexue.reproduce import _exposure_task as task
from kexue.reproduce import exposure_bias as repro
from kexue.reproduce.result import VERDICTS_BY_KIND


def test_task_is_a_noisy_reading_of_a_random_walk():
    sources, targets = task.sample(2000, torch.Generator().manual_seed(0))
    same = total = 0
    for s, t in zip(sources, targets):
        assert task.LENGTHS[0] <= len(s) <= task.LENGTHS[1] and len(t) == len(s)
        walk = [y - task.DIGIT0 for y in t]
        assert all(0 <= y <= 9 for y in walk) and all(0 <= x - task.DIGIT0 <= 9 for x in s)
        assert all((b - a) % 10 < task.STEPS for a, b in zip(walk, walk[1:]))
        same += sum(a == b for a, b in zip(s, t))
        total += len(t)
    # a reading is the walk's digit with probability 1 − q + q/10
    expected = 1 - task.NOISE + task.NOISE / 10
    assert same / total == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / total))
    assert task.copy_rate(sources, targets) == pytest.approx(same / total)


def _brute_force_tf(reading: list[int], noise: float, steps: int) -> list[np.ndarray]:
    """p(y_t, y_{t−1} | s) up to a constant, for every t (row 0 at t = 0: no prefix), by enumerating every walk
    (a start digit and n − 1 moves) with its probability 0.1 · Π 1/K · Π p(s_t | y_t)."""
    n = len(reading)
    out = [np.zeros((10, 10)) for _ in range(n)]
    for start, *moves in itertools.product(range(10), *[range(steps)] * (n - 1)):
        walk = [start]
        for k in moves:
            walk.append((walk[-1] + k) % 10)
        p = 0.1 * steps ** -(n - 1)
        for y, x in zip(walk, reading):
            p *= (1 - noise) * (x == y) + noise / 10
        out[0][0, walk[0]] += p
        for t in range(1, n):
            out[t][walk[t - 1], walk[t]] += p
    return out


def _best(joint: list[np.ndarray], t: int, prev: int | None) -> int:
    """argmax over y_t of the enumerated p(y_t, y_{t−1} = prev | s) (row 0 at t = 0)."""
    return int(np.argmax(joint[t][0 if prev is None else prev]))


def test_exact_reference_is_the_argmax_of_the_enumerated_posterior():
    g = torch.Generator().manual_seed(3)
    sources, targets = task.sample(6, g, lengths=(5, 5), noise=0.4)
    ref = task.exact_reference(sources, targets, noise=0.4, shifts=[1, 5, 9, 2, 7, 3])
    for i, (src, tgt) in enumerate(zip(sources, targets)):
        s = [x - task.DIGIT0 for x in src]
        y = [x - task.DIGIT0 for x in tgt]
        joint = _brute_force_tf(s, 0.4, task.STEPS)
        tf = sum(_best(joint, t, y[t - 1] if t else None) == y[t] for t in range(5)) / 5
        free: list[int] = []
        for t in range(5):
            free.append(_best(joint, t, free[-1] if free else None))
        forced = y[:task.ERROR_AT + 1]
        forced[task.ERROR_AT] = (forced[task.ERROR_AT] + [1, 5, 9, 2, 7, 3][i]) % 10
        for t in range(task.ERROR_AT + 1, 5):
            forced.append(_best(joint, t, forced[-1]))
        assert ref["tf"][i] == pytest.approx(tf)
        assert ref["free"][i] == pytest.approx(sum(a == b for a, b in zip(free, y)) / 5)
        assert ref["free_exact"][i] == float(free == y)
        assert ref["recovery"][i] == pytest.approx(float(forced[4] == y[4]))


def test_toy_table_agrees_with_enumeration():
    table, toy, ok = repro._toy()
    assert ok and toy["greedy"] == "(a, b)" and toy["beam2"] == "(c, d)"
    assert toy["beam2_prob"] == pytest.approx(0.36) and toy["greedy_prob"] == pytest.approx(0.33)


def test_evaluate_scores_exact_token_and_recovery_accuracy(monkeypatch):
    sources, targets = task.sample(20, torch.Generator().manual_seed(1))
    model = task._model(0).eval()
    # a decoder that gets the first half of the samples right and the second half wrong after 3 tokens
    gold = {tuple(s): t for s, t in zip(sources, targets)}

    def fake_generate(model, source_ids, source_mask, eos_id, beam_size=1, max_len=32, length_penalty=0.0,
                      target_start=None):
        outs = []
        for row, m in zip(source_ids.tolist(), source_mask.tolist()):
            src = tuple(row[1:sum(m) - 1])
            t = list(gold[src])
            if sources.index(list(src)) >= 10:
                t = t[:3] + [(y - task.DIGIT0 + 1) % 10 + task.DIGIT0 for y in t[3:]]
            outs.append(t)
        return outs

    monkeypatch.setattr(task, "generate", fake_generate)
    res = task.evaluate(model, sources, targets, beams=(1,))
    assert res["all"]["beam1_exact"] == pytest.approx(0.5)
    expected_tok = sum([1.0] * 10 + [3 / len(t) for t in targets[10:]]) / 20
    assert res["all"]["beam1_token_acc"] == pytest.approx(expected_tok)
    assert 0.0 <= res["all"]["tf_token_acc"] <= 1.0
    assert 0.0 <= res["all"]["recovery_token_acc"] <= 1.0
    per_source_free = [1.0] * 10 + [3 / len(t) for t in targets[10:]]
    assert len(res["gap_per_source"]) == 20
    assert sum(res["gap_per_source"]) / 20 == pytest.approx(res["all"]["tf_token_acc"] - sum(per_source_free) / 20)


def test_recovery_scores_the_continuation_after_the_forced_error(monkeypatch):
    sources, targets = task.sample(6, torch.Generator().manual_seed(2))
    model = task._model(0).eval()
    seen = []

    class Step:  # an oracle that continues the gold walk whatever it was fed
        def __init__(self, model, ids, mask, target_start):
            self.gold = [targets[sources.index(r[1:sum(m) - 1])] for r, m in zip(ids.tolist(), mask.tolist())]
            self.t = 0

        def __call__(self, tokens, parents):
            if tokens is not None:
                seen.append(tokens.clone())
            lp = torch.full((len(self.gold), task.VOCAB), -10.0)
            for r, g in enumerate(self.gold):
                lp[r, g[self.t] if self.t < len(g) else task.SEP] = 0.0
            self.t += 1
            return lp

    monkeypatch.setattr(task, "UniLMStep", Step)
    scores = task._recovery(model, sources, targets, batch_size=4)
    assert torch.equal(scores, torch.ones(6))
    fed = torch.stack(seen[:task.ERROR_AT + 1], 1)  # the first batch's forced prefix
    shifts = task.recovery_shifts(6)
    for r in range(4):
        assert fed[r, :task.ERROR_AT].tolist() == targets[r][:task.ERROR_AT]
        wrong = (targets[r][task.ERROR_AT] - task.DIGIT0 + shifts[r]) % 10 + task.DIGIT0
        assert fed[r, task.ERROR_AT] == wrong != targets[r][task.ERROR_AT]  # the error was injected


# -- the rule, on stand-in measurements -----------------------------------------------------------------------------

B, R, P = task.BASELINE, task.REPLACE, task.PENALTY


def _m(free_r=(0.05, 0.06, 0.04), rec_r=(0.2, 0.25, 0.22), free_p=(0.02, 0.03, 0.025), tf_b=(0.87, 0.875, 0.872),
       gap=0.05, toy_ok=True, seeds=3) -> repro.Measurements:
    """Measurements with the given remedy − baseline differences per seed (baseline free 0.8, recovery 0.6)."""
    base_free, base_rec = [0.80, 0.81, 0.79][:seeds], [0.60, 0.62, 0.58][:seeds]
    return repro.Measurements(
        toy_ok=toy_ok, copy_rate=0.82, step=600,
        tf={B: list(tf_b[:seeds]), R: [0.87] * seeds, P: [0.87] * seeds},
        free={B: base_free, R: [b + d for b, d in zip(base_free, free_r)],
              P: [b + d for b, d in zip(base_free, free_p)]},
        recovery={B: base_rec, R: [b + d for b, d in zip(base_rec, rec_r)], P: list(base_rec)},
        gap_by_source=[gap + 0.01 * ((i % 5) - 2) for i in range(200)])


@pytest.mark.parametrize("m, verdict, words", [
    (_m(), "holds", "replacement: free-running"),
    (_m(toy_ok=False), "not measured", "toy"),
    (_m(tf_b=(0.83, 0.835, 0.83)), "not measured", "did not learn"),  # within 0.02 of the copy rate
    (_m(tf_b=(0.80, 0.95, 0.86)), "not measured", "did not learn"),  # above, but not by 2 s.e.
    (_m(gap=0.0), "not measured", "no exposure bias"),
    (_m(seeds=1), "not measured", "not measured in quick mode"),
    (_m(free_r=(-0.05, -0.06, -0.04)), "does not hold", "replacement: free-running"),  # replacement hurts
    (_m(rec_r=(-0.1, -0.12, -0.11)), "does not hold", "recovery"),  # no recovery
    (_m(free_p=(-0.02, -0.03, -0.025)), "does not hold", "gradient penalty"),  # the penalty hurts
    (_m(free_p=(0.05, -0.05, 0.0)), "inconclusive", "gradient penalty"),  # within the seed noise
    (_m(free_r=(0.1, -0.08, 0.0), free_p=(-0.02, -0.03, -0.025)), "does not hold", "inconclusive"),
])
def test_decide_reaches_every_branch(m, verdict, words):
    got, reason = repro.decide(m)
    assert got == verdict and got in VERDICTS_BY_KIND["empirical"]
    assert words in reason


def test_decide_quick_reason_says_what_was_measured():
    verdict, reason = repro.decide(_m(seeds=1))
    assert verdict == "not measured" and "learned" in reason and "exposure bias" in reason


def test_effects_are_paired_over_seeds():
    e = repro.effects(_m())
    assert e["replacement: free-running token accuracy"].mean == pytest.approx(0.05)
    assert e["replacement: free-running token accuracy"].se == pytest.approx(0.01 / math.sqrt(3))  # sd of .05,.06,.04
    assert e["replacement: recovery after a wrong token"].n == 3


def _fake_eval(free: float, rec: float, tf: float = 0.87, n: int = 40) -> dict:
    band = {"tf_token_acc": tf, "beam1_token_acc": free, "beam1_exact": 0.2, "beam3_token_acc": free,
            "beam3_exact": 0.2, "recovery_token_acc": rec}
    return {"all": band, **{b: band for b in task.BANDS}, "gap_per_source": [tf - free + 0.01 * (i % 3)
                                                                            for i in range(n)]}


@pytest.mark.parametrize("quick, expected", [(True, "not measured"), (False, "holds")])
def test_run_builds_its_result_from_the_rule(monkeypatch, quick, expected):
    offsets = {B: (0.0, 0.0), R: (0.05, 0.2), task.REPLACE_SEQ: (0.04, 0.15), P: (0.02, 0.0)}
    calls = []

    def fake_train(variant, seed, steps, checkpoints=(), probe=None, **kw):
        calls.append((variant, seed, steps))
        df, dr = offsets[variant]
        noise = 0.003 * seed
        return None, 0.01, [2.0, 1.0], {c: _fake_eval(0.8 + df + noise, 0.6 + dr + noise) for c in checkpoints}

    monkeypatch.setattr(repro, "train", fake_train)
    result = repro.run(quick=quick)
    assert result.kind == "empirical" and result.verdict == expected
    assert {v for v, _, _ in calls} == set(repro.QUICK_VARIANTS if quick else task.VARIANTS)
    assert len({s for _, s, _ in calls}) == (1 if quick else repro.MIN_SEEDS)
    assert result.post_figure.startswith("CSL") and "0.36" in result.our_figure
    assert "not measured in quick mode" in result.reason if quick else "replacement" in result.reason


@pytest.mark.slow
def test_quick_run_end_to_end():
    result = repro.run(quick=True)
    assert result.kind == "empirical" and result.verdict in VERDICTS_BY_KIND["empirical"]
    assert result.numbers["toy"]["beam2"] == "(c, d)"
    losses = result.numbers["final_train_loss"]  # below the uniform guess: every variant trains
    assert all(loss[0] < math.log(task.VOCAB) for loss in losses.values())


def test_toy_greedy_keeps_ab_and_beam_two_returns_cd():
    vocab = ("<eos>", "a", "b", "c", "d")
    # brute force over the two-step table: exact sequence probabilities
    probs = {(x, y): task.TOY_FIRST[x] * task.TOY_SECOND[x][y] for x in task.TOY_FIRST for y in task.TOY_SECOND[x]}
    best = max(probs, key=probs.get)
    assert best == ("c", "d") and probs[best] == pytest.approx(0.36)
    greedy_first = max(task.TOY_FIRST, key=task.TOY_FIRST.get)
    greedy = (greedy_first, max(task.TOY_SECOND[greedy_first], key=task.TOY_SECOND[greedy_first].get))
    assert greedy == ("a", "b")

    def words(h):
        return tuple(vocab[i] for i in h.tokens[:-1])

    assert words(greedy_search(task.toy_step(vocab), 1, 0, 5)[0]) == greedy
    assert words(beam_search(task.toy_step(vocab), 1, 0, 1, 5)[0][0]) == greedy
    beam2 = beam_search(task.toy_step(vocab), 1, 0, 2, 5)[0]
    assert words(beam2[0]) == best
    assert math.exp(beam2[0].log_prob) == pytest.approx(probs[best])
    assert math.exp(beam2[1].log_prob) == pytest.approx(probs[greedy])
