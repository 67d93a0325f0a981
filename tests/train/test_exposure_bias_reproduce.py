"""The exposure_bias reproduction: its task, its evaluation and its verdict rule."""

from __future__ import annotations

import math

import pytest
import torch

from kexue.reproduce import exposure_bias as repro


def test_task_is_the_running_sum_mod_10():
    sources, targets = repro._sample(50, torch.Generator().manual_seed(0))
    for s, t in zip(sources, targets):
        assert repro.LENGTHS[0] <= len(s) <= repro.LENGTHS[1] and len(t) == len(s)
        digits = [x - repro.DIGIT0 for x in s]
        assert all(0 <= d <= 2 for d in digits)
        running = [sum(digits[:i + 1]) % 10 for i in range(len(digits))]
        assert [y - repro.DIGIT0 for y in t] == running


def test_toy_table_agrees_with_enumeration():
    table, toy, ok = repro._toy()
    assert ok and toy["greedy"] == "(a, b)" and toy["beam2"] == "(c, d)"
    assert toy["beam2_prob"] == pytest.approx(0.36) and toy["greedy_prob"] == pytest.approx(0.33)


def test_evaluate_scores_exact_token_and_recovery_accuracy(monkeypatch):
    sources, targets = repro._sample(20, torch.Generator().manual_seed(1))
    model = repro._model(0).eval()
    # a decoder that gets the first half of the samples right and the second half wrong after 3 tokens
    gold = {tuple(s): t for s, t in zip(sources, targets)}

    def fake_generate(model, source_ids, source_mask, eos_id, beam_size=1, max_len=32, length_penalty=0.0,
                      target_start=None):
        outs = []
        for row, m in zip(source_ids.tolist(), source_mask.tolist()):
            src = tuple(row[1:sum(m) - 1])
            t = list(gold[src])
            if sources.index(list(src)) >= 10:
                t = t[:3] + [(y - repro.DIGIT0 + 1) % 10 + repro.DIGIT0 for y in t[3:]]
            outs.append(t)
        return outs

    monkeypatch.setattr(repro, "generate", fake_generate)
    res = repro.evaluate(model, sources, targets, beams=(1,))
    assert res["all"]["beam1_exact"] == pytest.approx(0.5)
    expected_tok = sum([1.0] * 10 + [3 / len(t) for t in targets[10:]]) / 20
    assert res["all"]["beam1_token_acc"] == pytest.approx(expected_tok)
    assert 0.0 <= res["all"]["tf_token_acc"] <= 1.0
    assert 0.0 <= res["all"]["recovery_token_acc"] <= 1.0


def test_recovery_scores_the_continuation_after_the_forced_error(monkeypatch):
    sources, targets = repro._sample(6, torch.Generator().manual_seed(2))
    model = repro._model(0).eval()
    seen = []

    class Step:  # an oracle that continues the gold running sum whatever it was fed
        def __init__(self, model, ids, mask, target_start):
            self.gold = [targets[sources.index(r[1:sum(m) - 1])] for r, m in zip(ids.tolist(), mask.tolist())]
            self.t = 0

        def __call__(self, tokens, parents):
            if tokens is not None:
                seen.append(tokens.clone())
            lp = torch.full((len(self.gold), repro.VOCAB), -10.0)
            for r, g in enumerate(self.gold):
                lp[r, g[self.t] if self.t < len(g) else repro.SEP] = 0.0
            self.t += 1
            return lp

    monkeypatch.setattr(repro, "UniLMStep", Step)
    scores = repro._recovery(model, sources, targets, batch_size=4)
    assert torch.equal(scores, torch.ones(6))
    fed = torch.stack(seen[:repro.ERROR_AT + 1], 1)  # the first batch's forced prefix
    for r in range(4):
        assert fed[r, :repro.ERROR_AT].tolist() == targets[r][:repro.ERROR_AT]
        assert fed[r, repro.ERROR_AT] != targets[r][repro.ERROR_AT]  # the error was injected


def _fake_results(em: dict[str, list[float]], gap: dict[str, float]):
    """evaluate() outputs with given greedy exact match per seed and teacher-forced − free token gap."""
    out = {}
    for v, ems in em.items():
        out[v] = []
        for e in ems:
            band = {"tf_token_acc": 0.9, "beam1_exact": e, "beam1_token_acc": 0.9 - gap[v], "beam3_exact": e,
                    "beam3_token_acc": 0.9 - gap[v], "recovery_token_acc": 0.5}
            out[v].append({"all": band, **{b: band for b in repro.BANDS}})
    return out


@pytest.mark.parametrize("case, expected", [
    ("better", "holds"), ("worse", "does not hold"), ("same", "inconclusive"), ("one_seed", "inconclusive")])
def test_verdict_follows_its_rule(monkeypatch, case, expected):
    seeds = 1 if case == "one_seed" else 3
    base = [0.50, 0.52, 0.48][:seeds]
    shift = {"better": 0.1, "worse": -0.1, "same": 0.0, "one_seed": 0.1}[case]
    em = {v: base for v in repro.VARIANTS}
    em["replace (target pool)"] = [x + shift for x in base]
    gap = {v: 0.1 for v in repro.VARIANTS}
    gap["replace (target pool)"] = 0.05
    fake = _fake_results(em, gap)

    def fake_train(variant, seed, steps, checkpoints=(), probe=None, **kw):
        return None, 0.01, [1.0, 0.5], {c: fake[variant][seed] for c in checkpoints}

    monkeypatch.setattr(repro, "train", fake_train)
    result = repro.run(quick=seeds == 1)
    assert result.verdict == expected


@pytest.mark.slow
def test_quick_run_end_to_end():
    result = repro.run(quick=True)
    assert result.verdict == "inconclusive"
    assert result.numbers["toy"]["beam2"] == "(c, d)"
    losses = result.numbers["final_train_loss"]  # below the uniform guess: every variant trains
    assert all(loss[0] < math.log(repro.VOCAB) for loss in losses.values())
