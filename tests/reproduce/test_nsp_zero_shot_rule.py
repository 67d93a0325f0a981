"""The ``nsp_zero_shot`` reproduction's rules on stand-in measurements (every branch of :func:`decide` and
:func:`mechanics_verdict`), and its checkpoint path end to end on a tiny saved BERT with an NSP head."""

from __future__ import annotations

import shutil

import torch

from kexue.reproduce import nsp_zero_shot as nsp
from kexue.reproduce.nsp_zero_shot import ABOVE_CHANCE, Accuracy, decide, mechanics_verdict


def _acc(correct: int, n: int = 1000, chance: float = 0.25, sd: float = 0.1, name: str = "AG News") -> Accuracy:
    return Accuracy(name, correct, n, chance, sd)


def test_mechanics_verdict():
    assert mechanics_verdict([["a", "x", "yes"], ["b", "y", "skipped"]]) == "verified"
    assert mechanics_verdict([["a", "x", "yes"], ["b", "y", "no"]]) == "not verified"
    assert mechanics_verdict([]) == "not verified"


def test_holds_far_above_chance():
    verdict, why = decide(True, [_acc(818), _acc(800, chance=0.5, name="SST-2")])
    assert verdict == "holds", why


def test_does_not_hold_near_chance():
    verdict, why = decide(True, [_acc(818), _acc(270)])
    assert verdict == "does not hold" and "(does not hold)" in why


def test_inconclusive_at_the_bar():
    bar = round((0.25 + ABOVE_CHANCE) * 200)
    verdict, _ = decide(True, [_acc(bar, n=200)])
    assert verdict == "inconclusive"


def test_not_measured_branches():
    assert decide(False, [_acc(818)])[0] == "not measured"
    assert decide(True, []) == ("not measured", "no evaluation set was found in the data folder")
    verdict, why = decide(True, [_acc(818, sd=0.0)])
    assert verdict == "not measured" and "missing or untrained head" in why


def test_checkpoint_path_end_to_end(tmp_path, monkeypatch, minilm_dir):
    from kexue.models import Transformer, save_pretrained

    torch.manual_seed(0)
    model = Transformer(nsp._tiny_config(30522)).eval()
    save_pretrained(model, tmp_path)
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_dir / f, tmp_path / f)
    texts = {"sst2": (["a fine film", "dull and flat"], [1, 0]),
             "agnews": (["stocks fell", "the team won", "rates rose", "a new chip"], [2, 1, 2, 3])}
    monkeypatch.setattr(nsp, "_texts", lambda name, n: (texts[name][0], torch.tensor(texts[name][1]).numpy()))
    monkeypatch.setenv(nsp.NSP_MODEL_ENV, str(tmp_path))
    r = nsp.run(quick=True)
    assert r.kind == "empirical" and r.verdict in ("holds", "does not hold", "inconclusive", "not measured")
    assert set(r.numbers["accuracy"]) == {"SST-2", "AG News"}
    assert r.tables[-1].rows[0][1] == 2 and r.tables[-1].rows[1][1] == 4

