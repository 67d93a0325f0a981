"""Bad-input rows: kexue.nn's CRF (the module, its NLL, log partition and Viterbi), TransitionMask,
bio_transition_mask and crf_param_groups."""

from __future__ import annotations

import pytest
import torch
from _matrix import Bad, check

from kexue.nn import CRF, TransitionMask, bio_transition_mask, crf_param_groups

E = torch.zeros(2, 4, 3)
T = torch.zeros(2, 4, dtype=torch.long)
NAN = torch.full((2, 4, 3), float("nan"))
YES = torch.ones(3, 3, dtype=torch.bool)


def crf() -> CRF:
    return CRF(3)


ROWS = [
    Bad("kexue.nn.CRF", "num_tags = 0", lambda: CRF(0), ValueError, r"expected num_tags >= 1, got 0"),
    Bad("kexue.nn.CRF", "num_tags a float", lambda: CRF(2.5), TypeError, r"expected num_tags to be an integer.*2\.5"),
    Bad("kexue.nn.CRF", "lr_multiplier = 0", lambda: CRF(3, lr_multiplier=0), ValueError,
        r"expected lr_multiplier > 0.*got 0"),
    Bad("kexue.nn.CRF", "lr_multiplier nan", lambda: CRF(3, lr_multiplier=float("nan")), ValueError,
        r"expected lr_multiplier to be finite, got nan"),
    Bad("kexue.nn.CRF", "boundary a string", lambda: CRF(3, boundary="no"), TypeError,
        r"expected boundary to be a bool, got 'no'"),

    Bad("kexue.nn.CRF.forward", "emissions a list", lambda: crf()(E.tolist(), T), TypeError,
        r"expected emissions to be a floating-point tensor, got list"),
    Bad("kexue.nn.CRF.forward", "integer emissions", lambda: crf()(T.unsqueeze(2).expand(-1, -1, 3), T), TypeError,
        r"expected emissions to be a floating-point tensor, got torch.int64"),
    Bad("kexue.nn.CRF.forward", "emissions with 4 tags for 3", lambda: crf()(torch.zeros(2, 4, 4), T), ValueError,
        r"expected emissions of shape \(batch >= 1, seq >= 1, 3\), got \(2, 4, 4\)"),
    Bad("kexue.nn.CRF.forward", "2-d emissions", lambda: crf()(E[0], T), ValueError,
        r"expected emissions of shape \(batch >= 1, seq >= 1, 3\), got \(4, 3\)"),
    Bad("kexue.nn.CRF.forward", "empty sequence", lambda: crf()(E[:, :0], T[:, :0]), ValueError,
        r"expected emissions of shape \(batch >= 1, seq >= 1, 3\), got \(2, 0, 3\)"),
    Bad("kexue.nn.CRF.forward", "NaN emissions", lambda: crf()(NAN, T), ValueError,
        r"expected finite emissions, got a NaN or an infinity"),
    Bad("kexue.nn.CRF.forward", "float target", lambda: crf()(E, T.float()), TypeError,
        r"expected target to be an integer tensor, got torch.float32"),
    Bad("kexue.nn.CRF.forward", "target of another shape", lambda: crf()(E, T[:, :3]), ValueError,
        r"expected target of shape \(2, 4\) like emissions, got \(2, 3\)"),
    Bad("kexue.nn.CRF.forward", "target tag 3 of 3", lambda: crf()(E, T + 3), ValueError,
        r"expected target in \[0, 3\) at the kept positions, got 3"),
    Bad("kexue.nn.CRF.forward", "target -100 at a kept position",
        lambda: crf()(E, T.masked_fill(torch.tensor([[0, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool), -100)),
        ValueError, r"expected target in \[0, 3\) at the kept positions, got -100"),
    Bad("kexue.nn.CRF.forward", "float mask", lambda: crf()(E, T, torch.ones(2, 4)), TypeError,
        r"expected mask to be None or a bool or 0/1 integer tensor, got torch.float32"),
    Bad("kexue.nn.CRF.forward", "mask of another shape", lambda: crf()(E, T, torch.ones(2, 5, dtype=torch.bool)),
        ValueError, r"expected mask of shape \(2, 4\) like emissions, got \(2, 5\)"),
    Bad("kexue.nn.CRF.forward", "mask holding 2", lambda: crf()(E, T, torch.full((2, 4), 2)), ValueError,
        r"expected mask values 1 \(kept\) and 0 \(skipped\), got 2"),
    Bad("kexue.nn.CRF.forward", "pytorch-crf's token_mean", lambda: crf()(E, T, reduction="token_mean"), ValueError,
        r"expected reduction to be one of \['mean', 'sum', 'none'\], got 'token_mean'"),

    Bad("kexue.nn.CRF.log_partition", "emissions a numpy array", lambda: crf().log_partition(E.numpy()), TypeError,
        r"expected emissions to be a floating-point tensor, got ndarray"),
    Bad("kexue.nn.CRF.log_partition", "infinite emissions", lambda: crf().log_partition(E - float("inf")), ValueError,
        r"expected finite emissions, got a NaN or an infinity"),
    Bad("kexue.nn.CRF.log_partition", "emissions (batch, tags, seq)", lambda: crf().log_partition(E.transpose(1, 2)),
        ValueError, r"expected emissions of shape \(batch >= 1, seq >= 1, 3\), got \(2, 3, 4\)"),
    Bad("kexue.nn.CRF.log_partition", "mask (seq, batch)", lambda: crf().log_partition(E, T.t() == 0), ValueError,
        r"expected mask of shape \(2, 4\) like emissions, got \(4, 2\)"),

    Bad("kexue.nn.CRF.viterbi", "NaN emissions", lambda: crf().viterbi(NAN), ValueError,
        r"expected finite emissions, got a NaN or an infinity"),
    Bad("kexue.nn.CRF.viterbi", "mask holding -1", lambda: crf().viterbi(E, -torch.ones(2, 4, dtype=torch.long)),
        ValueError, r"expected mask values 1 \(kept\) and 0 \(skipped\), got -1"),
    Bad("kexue.nn.CRF.viterbi", "start tag 3 of 3", lambda: crf().viterbi(E, start_tags=[0, 3]), ValueError,
        r"expected start_tags\[1\] <= 2, got 3"),
    Bad("kexue.nn.CRF.viterbi", "end tags empty", lambda: crf().viterbi(E, end_tags=[]), ValueError,
        r"expected end_tags to hold at least one tag, got \[\]"),
    Bad("kexue.nn.CRF.viterbi", "start_tags an int", lambda: crf().viterbi(E, start_tags=0), TypeError,
        r"expected start_tags to be None or a list of tags, got int"),
    Bad("kexue.nn.CRF.viterbi", "allowed a bare matrix", lambda: crf().viterbi(E, allowed=YES), TypeError,
        r"expected allowed to be None or a kexue.nn.TransitionMask, got Tensor"),
    Bad("kexue.nn.CRF.viterbi", "allowed over 5 tags for 3", lambda: crf().viterbi(E, allowed=bio_transition_mask(2)),
        ValueError, r"expected allowed over 3 tags like the CRF, got 5"),
    Bad("kexue.nn.CRF.viterbi", "no path left", lambda: crf().viterbi(E, start_tags=[0],
                                                                      allowed=TransitionMask(YES, end=~YES[0])),
        ValueError, r"expected start_tags, end_tags and allowed to leave at least one path, got none for sequence 0"),

    Bad("kexue.nn.TransitionMask", "float allowed", lambda: TransitionMask(torch.ones(3, 3)), TypeError,
        r"expected allowed to be a bool tensor, got torch.float32"),
    Bad("kexue.nn.TransitionMask", "allowed not square", lambda: TransitionMask(YES[:2]), ValueError,
        r"expected allowed of shape \(num_tags, num_tags\), got \(2, 3\)"),
    Bad("kexue.nn.TransitionMask", "start a list", lambda: TransitionMask(YES, start=[True] * 3), TypeError,
        r"expected start to be None or a bool tensor, got list"),
    Bad("kexue.nn.TransitionMask", "end of 2 tags for 3", lambda: TransitionMask(YES, end=YES[0, :2]), ValueError,
        r"expected end of shape \(3,\) like allowed, got \(2,\)"),

    Bad("kexue.nn.bio_transition_mask", "num_types = 0", lambda: bio_transition_mask(0), ValueError,
        r"expected num_types >= 1, got 0"),
    Bad("kexue.nn.bio_transition_mask", "num_types a string", lambda: bio_transition_mask("3"), TypeError,
        r"expected num_types to be an integer, got '3'"),
    Bad("kexue.nn.bio_transition_mask", "num_types the tag count's float", lambda: bio_transition_mask(3.5),
        TypeError, r"expected num_types to be an integer, got 3\.5"),

    Bad("kexue.nn.crf_param_groups", "model a list of parameters",
        lambda: crf_param_groups(list(crf().parameters()), 1e-3), TypeError,
        r"expected model to be a torch.nn.Module, got list"),
    Bad("kexue.nn.crf_param_groups", "no CRF in the model", lambda: crf_param_groups(torch.nn.Linear(2, 3), 1e-3),
        ValueError, r"expected model to contain a kexue.nn.CRF, got none among its modules \(Linear\)"),
    Bad("kexue.nn.crf_param_groups", "negative lr", lambda: crf_param_groups(crf(), -1e-3), ValueError,
        r"expected lr >= 0.*got -0.001"),
    Bad("kexue.nn.crf_param_groups", "lr infinite", lambda: crf_param_groups(crf(), float("inf")), ValueError,
        r"expected lr to be finite, got inf"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
