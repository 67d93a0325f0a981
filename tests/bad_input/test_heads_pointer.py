"""Bad-input rows: kexue.heads' subject–object pointer (kexue.fm/archives/7321)."""

from __future__ import annotations

import pytest
import torch
from _matrix import Bad, check

from kexue.heads import PointerTargets, SubjectObjectPointer, decode_pointers, pointer_targets, powered_sigmoid

E = "kexue.heads.SubjectObjectPointer"
H = SubjectObjectPointer(4, 3)
X = torch.zeros(2, 5, 4)
IDS = torch.tensor([[0, 1], [2, 2]])
ON = torch.ones(2, 5, dtype=torch.bool)
LOGITS = (torch.zeros(2, 5, 2), torch.zeros(2, 5, 3, 2))
TARGET = PointerTargets(torch.zeros(2, 5, 2), IDS, torch.zeros(2, 5, 3, 2))
SPO = [(0, 1, 0, 2, 3)]

ROWS = [
    Bad(E, "num_predicates = 0", lambda: SubjectObjectPointer(4, 0), ValueError,
        r"expected num_predicates >= 1, got 0"),
    Bad(E, "object_power a float", lambda: SubjectObjectPointer(4, 2, object_power=0.5), TypeError,
        r"object_power.*0\.5"),
    Bad(E, "subject_power = 0", lambda: SubjectObjectPointer(4, 2, subject_power=0), ValueError,
        r"expected subject_power >= 1, got 0"),
    Bad(E, "cond_dim = 0", lambda: SubjectObjectPointer(4, 2, cond_dim=0), ValueError,
        r"expected cond_dim >= 1, got 0"),
    Bad(E, "eps negative", lambda: SubjectObjectPointer(4, 2, eps=-1e-5), ValueError,
        r"expected eps > 0\.0, got -1e-05"),
    Bad(f"{E}.forward", "subject start after end", lambda: H(X, torch.tensor([[0, 1], [3, 2]])), ValueError,
        r"expected subject_ids with start <= end, got \(3, 2\) in row 1"),
    Bad(f"{E}.forward", "subject past the sequence", lambda: H(X, torch.tensor([[0, 5], [2, 2]])), ValueError,
        r"expected subject_ids values in \[0, 5\), got 0\.\.5"),
    Bad(f"{E}.forward", "float subject_ids", lambda: H(X, IDS.float()), TypeError,
        r"expected subject_ids to be an integer tensor, got torch\.float32"),
    Bad(f"{E}.forward", "pre_norm of another shape", lambda: H(X, IDS, pre_norm=torch.zeros(2, 6, 4)), ValueError,
        r"expected pre_norm of hidden_states' shape \(2, 5, 4\), got \(2, 6, 4\)"),
    Bad(f"{E}.forward", "wrong width", lambda: H(torch.zeros(2, 5, 3), IDS), ValueError,
        r"expected hidden_states of shape \(batch, seq, 4\), got \(2, 5, 3\)"),
    Bad(f"{E}.subject_logits", "2-d states", lambda: H.subject_logits(torch.zeros(5, 4)), ValueError,
        r"expected hidden_states of shape \(batch, seq, 4\), got \(5, 4\)"),
    Bad(f"{E}.subject_logits", "integer states", lambda: H.subject_logits(X.long()), TypeError,
        r"expected hidden_states to be a floating-point tensor, got torch\.int64"),
    Bad(f"{E}.object_logits", "one subject for two rows", lambda: H.object_logits(X, torch.tensor([[0, 1]])),
        ValueError, r"expected subject_ids of shape \(2, 2\).*got \(1, 2\)"),
    Bad(f"{E}.object_logits", "pre_norm of another width", lambda: H.object_logits(torch.zeros(2, 5, 8), IDS),
        ValueError, r"expected pre_norm of shape \(batch, seq, 4\), got \(2, 5, 8\)"),
    Bad(f"{E}.loss", "object logits for 2 predicates", lambda: H.loss((LOGITS[0], torch.zeros(2, 5, 2, 2)), TARGET,
        ON), ValueError, r"expected logits\.object of shape \(2, 5, 3, 2\), got \(2, 5, 2, 2\)"),
    Bad(f"{E}.loss", "labels above 1", lambda: H.loss(LOGITS, TARGET._replace(subject=torch.full((2, 5, 2), 2.0)),
        ON), ValueError, r"expected target\.subject values in \[0, 1\], got 2\.0"),
    Bad(f"{E}.loss", "object labels of another shape", lambda: H.loss(LOGITS, TARGET._replace(
        object=torch.zeros(2, 5, 2)), ON), ValueError, r"expected target\.object of shape \(2, 5, 3, 2\)"),
    Bad(f"{E}.loss", "all padding", lambda: H.loss(LOGITS, TARGET, torch.zeros(2, 5, dtype=torch.bool)), ValueError,
        r"expected mask with at least one real token"),
    Bad(f"{E}.loss", "target a dict", lambda: H.loss(LOGITS, {"subject": 1}, ON), TypeError,
        r"expected target to be a PointerTargets .*got dict"),
    Bad(f"{E}.extract", "threshold above 1", lambda: H.extract(X, ON, start_threshold=1.5), ValueError,
        r"expected start_threshold <= 1\.0, got 1\.5"),
    Bad(f"{E}.extract", "mask of another shape", lambda: H.extract(X, torch.ones(2, 4, dtype=torch.bool)),
        ValueError, r"expected mask of shape \(2, 5\), got \(2, 4\)"),
    Bad(f"{E}.extract", "pre_norm of another shape", lambda: H.extract(X, ON, pre_norm=torch.zeros(1, 5, 4)),
        ValueError, r"expected pre_norm of hidden_states' shape \(2, 5, 4\), got \(1, 5, 4\)"),
    Bad("kexue.heads.decode_pointers", "last dim 3", lambda: decode_pointers(torch.zeros(1, 4, 3)), ValueError,
        r"expected probs of shape \(batch, seq, 2\) or \(batch, seq, channels, 2\), got \(1, 4, 3\)"),
    Bad("kexue.heads.decode_pointers", "end_threshold negative", lambda: decode_pointers(torch.zeros(1, 4, 2),
        end_threshold=-0.1), ValueError, r"expected end_threshold >= 0\.0, got -0\.1"),
    Bad("kexue.heads.decode_pointers", "integer probs", lambda: decode_pointers(torch.zeros(1, 4, 2,
        dtype=torch.long)), TypeError, r"expected probs to be a floating-point tensor, got torch\.int64"),
    Bad("kexue.heads.decode_pointers", "mask of another shape", lambda: decode_pointers(torch.zeros(1, 4, 2),
        torch.ones(1, 3, dtype=torch.bool)), ValueError, r"expected mask of shape \(1, 4\), got \(1, 3\)"),
    Bad("kexue.heads.powered_sigmoid", "power 0", lambda: powered_sigmoid(torch.zeros(2), 0), ValueError,
        r"expected power >= 1, got 0"),
    Bad("kexue.heads.powered_sigmoid", "a list", lambda: powered_sigmoid([0.0], 2), TypeError,
        r"expected logits to be a floating-point tensor, got list"),
    Bad("kexue.heads.pointer_targets", "a sentence without triples", lambda: pointer_targets([SPO, []], 5, 1),
        ValueError, r"expected at least one triple per sentence .*got none in sentence 1"),
    Bad("kexue.heads.pointer_targets", "object past seq_len", lambda: pointer_targets([[(0, 1, 0, 2, 5)]], 5, 1),
        ValueError, r"expected spans with 0 <= start <= end < seq_len = 5, got \(0, 1, 0, 2, 5\)"),
    Bad("kexue.heads.pointer_targets", "predicate out of range", lambda: pointer_targets([[(0, 1, 3, 2, 3)]], 5, 2),
        ValueError, r"expected predicate in \[0, 2\), got 3"),
    Bad("kexue.heads.pointer_targets", "a 4-tuple", lambda: pointer_targets([[(0, 1, 0, 2)]], 5, 1), ValueError,
        r"expected triples of \(subject_start, .*got \(0, 1, 0, 2\)"),
    Bad("kexue.heads.pointer_targets", "generator an int", lambda: pointer_targets([SPO], 5, 1, generator=0),
        TypeError, r"expected generator to be a torch\.Generator or None, got int"),
    Bad("kexue.heads.pointer_targets", "seq_len = 0", lambda: pointer_targets([SPO], 0, 1), ValueError,
        r"expected seq_len >= 1, got 0"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
