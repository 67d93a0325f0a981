"""Helpers of the `adversarial` reproduction (reproduce/_adversarial_task.py): the vocabulary cut leaves the model's
outputs and FGM's perturbation unchanged, the equivalence check, batching and the attack evaluation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from kexue.models import Transformer, TransformerConfig
from kexue.nn.padding import pad
from kexue.reproduce import _adversarial_task as task
from kexue.train import FGM


def _encoder() -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=300, hidden_size=32, num_layers=2, num_heads=4,
                                         intermediate_size=64, max_position_embeddings=40, hidden_dropout=0.0,
                                         attention_dropout=0.0, with_pooler=False))


def _data(n: int, seed: int = 0) -> tuple[list[list[int]], np.ndarray]:
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, 300, rng.integers(3, 12)).tolist() for _ in range(n)]
    return seqs, rng.integers(0, 2, n)


def test_vocabulary_cut_keeps_outputs_and_the_fgm_perturbation():
    enc = _encoder()
    seqs, labels = _data(12)
    full = task.Classifier(copy.deepcopy(enc), 2, seed=0)
    cut_enc = copy.deepcopy(enc)
    remap = task.prune_vocabulary(cut_enc, seqs)
    cut = task.Classifier(cut_enc, 2, seed=0)
    ids, mask = pad(seqs)
    ids_cut = ids.clone().apply_(lambda t: remap[t])
    y = torch.as_tensor(labels)
    torch.testing.assert_close(cut(ids_cut, mask), full(ids, mask), rtol=0, atol=0)
    deltas = []
    for model, i in ((full, ids), (cut, ids_cut)):
        w = model.encoder.embeddings.word.weight
        before = w.detach().clone()
        with FGM.preset("post", model).perturbed(task.classifier_loss(model, (i, mask, y))):
            deltas.append((w.detach() - before)[i.flatten()])
    torch.testing.assert_close(deltas[1], deltas[0], rtol=1e-6, atol=1e-9)  # the same δ on every token used


def test_equivalence_is_second_order_and_mixing_scopes_is_not():
    rows = task.equivalence()
    assert task.difference_order(rows, "weight") == pytest.approx(2.0, abs=0.05)
    assert task.difference_order(rows, "output") == pytest.approx(2.0, abs=0.05)
    assert task.difference_order(rows, "mixed") == pytest.approx(1.0, abs=0.05)
    assert min(r["cosine"] for r in rows if r["scope"] != "mixed") > 1 - 1e-9


def test_batches_cover_every_example_once():
    seqs, labels = _data(37)
    seen = []
    for ids, mask, y in task.length_batches(seqs, labels, 8, torch.Generator().manual_seed(0)):
        for row, m, lab in zip(ids, mask, y, strict=True):
            seen.append((tuple(row[: int(m.sum())].tolist()), int(lab)))
    assert sorted(seen) == sorted((tuple(s), int(lab)) for s, lab in zip(seqs, labels, strict=True))


def test_attack_at_zero_is_clean_and_the_attack_hurts():
    enc = _encoder()
    seqs, labels = _data(40, seed=3)
    model = task.Classifier(enc, 2, seed=1).eval()
    res = task.evaluate(model, (seqs, labels), (0.0, 0.5))
    assert res["attack 0"] == res["clean"]
    assert res["attack 0.5"] <= res["clean"]
    assert not model.encoder.embeddings.word._forward_hooks  # the attack's hooks are gone



def test_per_example_outcomes_come_in_one_fixed_order():
    seqs, labels = _data(150, seed=3)
    model = task.Classifier(_encoder(), 2, seed=1).eval()
    with torch.no_grad():  # always predicts class 0: correct exactly where the label is 0
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([10.0, 0.0]))
    per: dict[str, np.ndarray] = {}
    res = task.evaluate(model, (seqs, labels), (0.5,), per)
    order = np.concatenate([y.numpy() for _, _, y in task.length_batches(seqs, labels, 64, None)])
    assert set(per) == {"clean", "attack 0.5"} and per["clean"].shape == (150,)
    np.testing.assert_array_equal(per["clean"], (order == 0).astype(float))
    assert per["clean"].mean() == res["clean"] and per["attack 0.5"].mean() == res["attack 0.5"]
