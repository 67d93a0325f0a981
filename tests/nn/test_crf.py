"""kexue.nn.CRF against brute-force enumeration of every tag path, and against pytorch-crf where its conventions
allow (the first mask position on); constrained BIO decoding, the learning-rate groups, state_dict, gradients."""

from __future__ import annotations

import itertools

import pytest
import torch

from kexue.nn import CRF, TransitionMask, bio_transition_mask, crf_param_groups
from kexue.nn.crf import _forward_algorithm

MASKS = torch.tensor([[1, 1, 1, 1],   # all on
                      [0, 1, 1, 1],   # first off (BERT's [CLS])
                      [1, 1, 1, 0],   # right padding
                      [0, 1, 0, 1],   # holes
                      [1, 0, 0, 0],   # one position
                      [0, 0, 0, 0]],  # none
                     dtype=torch.bool)


def _path_score(crf: CRF, emissions: torch.Tensor, b: int, positions: list[int], path: tuple[int, ...]):
    if not path:
        return torch.zeros((), dtype=emissions.dtype)
    s = crf.start_transitions[path[0]] + crf.end_transitions[path[-1]]
    s = s + sum(emissions[b, t, y] for t, y in zip(positions, path))
    return s + sum(crf.transitions[a, c] for a, c in zip(path, path[1:]))


def _brute(crf: CRF, emissions: torch.Tensor, mask: torch.Tensor, legal=lambda path: True):
    """Per sequence: log Z over all paths of the kept positions, the best legal path and its score."""
    out = []
    with torch.no_grad():
        for b in range(emissions.shape[0]):
            pos = mask[b].nonzero().flatten().tolist()
            paths = list(itertools.product(range(crf.num_tags), repeat=len(pos)))
            scores = torch.stack([_path_score(crf, emissions, b, pos, p) for p in paths])
            ok = torch.tensor([legal(p) for p in paths])
            best = int(torch.where(ok, scores, float("-inf")).argmax())
            out.append((torch.logsumexp(scores, 0), list(paths[best]), scores[best], pos))
    return out


def _crf(num_tags: int, seed: int, boundary: bool = True) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(num_tags, boundary=boundary).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()  # larger than the init, so that transitions matter
    return crf


@pytest.mark.parametrize("boundary", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_log_partition_and_viterbi_equal_brute_force(seed, boundary):
    crf = _crf(3, seed, boundary)
    emissions = torch.randn(len(MASKS), 4, 3, dtype=torch.float64) * 2
    logz = crf.log_partition(emissions, MASKS)
    best = crf.viterbi(emissions, MASKS)
    for b, (z, path, score, pos) in enumerate(_brute(crf, emissions, MASKS)):
        torch.testing.assert_close(logz[b], z, rtol=1e-13, atol=1e-13)
        assert best.tolist()[b] == path
        assert best.tags[b, pos].tolist() == path and (best.tags[b][~MASKS[b]] == -1).all()
        torch.testing.assert_close(best.score[b], score, rtol=1e-13, atol=1e-13)
    assert (logz[-1] == 0) and (best.score[-1] == 0)  # the one empty path


def test_all_81_paths_have_probabilities_summing_to_one():
    crf = _crf(3, 7)
    emissions = torch.randn(1, 4, 3, dtype=torch.float64)
    paths = torch.tensor(list(itertools.product(range(3), repeat=4)))
    assert len(paths) == 81
    nll = crf(emissions.expand(81, -1, -1), paths, reduction="none")
    assert (nll >= 0).all()
    torch.testing.assert_close(torch.exp(-nll).sum(), torch.tensor(1.0, dtype=torch.float64), rtol=1e-13, atol=0)
    with torch.no_grad():  # the NLL is log Z - score(path), score by the formula
        scores = torch.stack([_path_score(crf, emissions, 0, [0, 1, 2, 3], tuple(p.tolist())) for p in paths])
    torch.testing.assert_close(nll, crf.log_partition(emissions).expand(81) - scores, rtol=1e-13, atol=1e-13)


def test_nll_with_masks_sums_to_one_over_the_kept_positions_and_ignores_skipped_targets():
    crf = _crf(3, 3)
    emissions = torch.randn(1, 5, 3, dtype=torch.float64)
    mask = torch.tensor([[0, 1, 0, 1, 1]], dtype=torch.bool)
    paths = torch.tensor(list(itertools.product(range(3), repeat=3)))
    target = torch.full((27, 5), -100)
    target[:, [1, 3, 4]] = paths
    nll = crf(emissions.expand(27, -1, -1), target, mask.expand(27, -1), reduction="none")
    assert (nll >= 0).all()
    torch.testing.assert_close(torch.exp(-nll).sum(), torch.tensor(1.0, dtype=torch.float64), rtol=1e-13, atol=0)
    # the same as dropping the skipped positions altogether
    torch.testing.assert_close(nll, crf(emissions[:, [1, 3, 4]].expand(27, -1, -1), paths, reduction="none"))


def test_reductions_and_integer_masks():
    crf = _crf(4, 1)
    emissions = torch.randn(3, 6, 4, dtype=torch.float64)
    target = torch.randint(0, 4, (3, 6))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0], [0, 0, 1, 0, 1, 0]])
    per = crf(emissions, target, mask, reduction="none")
    torch.testing.assert_close(crf(emissions, target, mask), per.mean())
    torch.testing.assert_close(crf(emissions, target, mask, reduction="sum"), per.sum())
    torch.testing.assert_close(per, crf(emissions, target, mask.bool(), reduction="none"))
    assert crf.viterbi(emissions, mask).tolist() == crf.viterbi(emissions, mask.bool()).tolist()


def test_float32_matches_float64_on_a_bert_like_batch():
    crf64 = _crf(9, 2)
    crf32 = CRF(9)
    crf32.load_state_dict(crf64.state_dict())
    emissions = torch.randn(8, 64, 9, dtype=torch.float64) * 3
    mask = torch.arange(64) < torch.randint(1, 65, (8, 1))
    mask[:, 0] = False
    z64 = crf64.log_partition(emissions, mask)
    z32 = crf32.log_partition(emissions.float(), mask)
    assert z32.dtype == torch.float32
    torch.testing.assert_close(z32.double(), z64, rtol=1e-5, atol=1e-4)
    assert crf32.viterbi(emissions.float(), mask).tolist() == crf64.viterbi(emissions, mask).tolist()
    # float32 emissions into a float64 CRF compute in float64
    torch.testing.assert_close(crf64.log_partition(emissions.float(), mask), crf64.log_partition(
        emissions.float().double(), mask))


def test_underflowing_sums_fall_back_to_logsumexp():
    # tag 0 leads by 200 and 0 -> 1 costs 200 while 1 -> 1 is free: in float32 the fast form's sum for tag 1,
    # exp(-200) + exp(-200), underflows (clamped, it reads exp(-87)); the last step makes tag 1 the only way out, so
    # the error reaches log Z unless the row is flagged and recomputed
    crf = CRF(2, boundary=False)
    with torch.no_grad():
        crf.transitions.copy_(torch.tensor([[0.0, -200.0], [0.0, 0.0]]))
    emissions = torch.tensor([[[200.0, 0.0], [200.0, 0.0], [-1000.0, 0.0]], [[1.0, 0.0]] * 3])
    trans, start, end = crf._weights(torch.float32)
    with torch.no_grad():
        fast, bad = _forward_algorithm(emissions, torch.ones(2, 3, dtype=torch.bool), trans, start, end, fast=True)
    assert bad.tolist() == [True, False]
    crf64 = CRF(2, boundary=False).double()
    crf64.load_state_dict(crf.state_dict())
    want = crf64.log_partition(emissions.double())
    for b, (z, *_rest) in enumerate(_brute(crf64, emissions.double(), torch.ones(2, 3, dtype=torch.bool))):
        torch.testing.assert_close(want[b], z, rtol=1e-13, atol=1e-13)
    assert abs(fast[0].item() - want[0].item()) > 50  # the unflagged fast form alone would be far off
    leaf = emissions.clone().requires_grad_(True)
    logz = crf.log_partition(leaf)
    torch.testing.assert_close(logz.double(), want, rtol=1e-6, atol=1e-5)
    logz.sum().backward()
    assert torch.isfinite(leaf.grad).all() and torch.isfinite(crf.transitions.grad).all()


def test_gradients_finite_and_checked_by_finite_differences():
    crf = _crf(3, 5)
    emissions = torch.randn(len(MASKS), 4, 3, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (len(MASKS), 4))
    crf(emissions, target, MASKS, reduction="sum").backward()
    assert all(torch.isfinite(p.grad).all() for p in crf.parameters()) and torch.isfinite(emissions.grad).all()
    assert (emissions.grad[~MASKS] == 0).all()  # skipped positions do not count
    # the max shifts of the fast recursion are held constant: their gradients cancel, so autograd must still agree
    # with finite differences, for the emissions and for the CRF's parameters
    assert torch.autograd.gradcheck(lambda e: crf(e, target, MASKS, reduction="sum"), (emissions.detach()
                                                                                      .requires_grad_(True),))
    names = [n for n, _ in crf.named_parameters()]

    def loss_of(*weights):
        return torch.func.functional_call(crf, dict(zip(names, weights)), (emissions.detach(), target, MASKS),
                                          {"reduction": "sum"})

    assert torch.autograd.gradcheck(loss_of, tuple(p.detach().clone().requires_grad_(True)
                                                   for p in crf.parameters()))


# -- pytorch-crf -----------------------------------------------------------------------------------------------------


@pytest.fixture
def torchcrf():
    return pytest.importorskip("torchcrf")


@pytest.mark.filterwarnings("ignore:where received a uint8 condition")  # pytorch-crf's own mask
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_with_pytorch_crf(torchcrf, dtype):
    torch.manual_seed(0)
    ours = CRF(7).to(dtype)
    theirs = torchcrf.CRF(7, batch_first=True).to(dtype)
    theirs.load_state_dict(ours.state_dict())
    emissions = torch.randn(6, 20, 7, dtype=dtype) * 3
    target = torch.randint(0, 7, (6, 20))
    mask = torch.arange(20) < torch.tensor([[20], [1], [7], [19], [12], [20]])
    tol = {"rtol": 1e-12, "atol": 1e-11} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-4}
    for reduction in ("none", "sum", "mean"):
        torch.testing.assert_close(ours(emissions, target, mask, reduction=reduction),
                                   -theirs(emissions, target, mask, reduction=reduction), **tol)
    assert ours.viterbi(emissions, mask).tolist() == theirs.decode(emissions, mask)
    assert ours.viterbi(emissions).tolist() == theirs.decode(emissions)
    ours(emissions, target, mask, reduction="sum").backward()
    (-theirs(emissions, target, mask, reduction="sum")).backward()
    grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, **tol)


def test_pytorch_crf_refuses_a_first_position_off_which_we_take(torchcrf):
    crf = _crf(3, 0)
    theirs = torchcrf.CRF(3, batch_first=True).double()
    theirs.load_state_dict(crf.state_dict())
    emissions = torch.randn(2, 5, 3, dtype=torch.float64)
    mask = torch.tensor([[0, 1, 1, 1, 1], [0, 1, 1, 0, 0]], dtype=torch.bool)
    with pytest.raises(ValueError, match="first timestep"):
        theirs.decode(emissions, mask)
    # ours on the mask = theirs on the sequences with [CLS] dropped
    assert crf.viterbi(emissions, mask).tolist() == theirs.decode(emissions[:, 1:], mask[:, 1:])
    torch.testing.assert_close(crf.log_partition(emissions, mask), theirs._compute_normalizer(
        emissions[:, 1:].transpose(0, 1), mask[:, 1:].transpose(0, 1)))


# -- constrained decoding ------------------------------------------------------------------------------------------


def _bio_legal(num_types: int):
    """The BIO rule written from its definition, one path at a time."""
    def legal(path) -> bool:
        prev = "O"
        for tag in path:
            kind = "O" if tag == 0 else ("B", (tag - 1) // 2) if tag % 2 else ("I", (tag - 2) // 2)
            if kind != "O" and kind[0] == "I" and (prev == "O" or prev[1] != kind[1]):
                return False
            prev = kind
        return True
    return legal


def test_bio_transition_mask_is_the_rule():
    m = bio_transition_mask(3)
    legal = _bio_legal(3)
    assert m.allowed.shape == (7, 7)
    for i, j in itertools.product(range(7), repeat=2):
        assert bool(m.allowed[i, j]) == (legal((i, j)) or (i > 0 and i % 2 == 0 and legal((i - 1, i, j))))
    assert m.start.tolist() == [legal((j,)) for j in range(7)] and bool(m.end.all())


@pytest.mark.parametrize("seed", range(3))
def test_constrained_viterbi_equals_brute_force_over_legal_paths(seed):
    crf = _crf(5, seed)  # 2 span types
    with torch.no_grad():
        crf.transitions[0, 2] = crf.transitions[0, 4] = crf.transitions[1, 4] = 5.0  # make illegal moves tempting
        crf.start_transitions[2] = 5.0
    emissions = torch.randn(len(MASKS), 4, 5, dtype=torch.float64) * 2
    legal = _bio_legal(2)
    allowed = bio_transition_mask(2)
    best = crf.viterbi(emissions, MASKS, allowed=allowed)
    free = crf.viterbi(emissions, MASKS)
    assert not all(legal(p) for p in free.tolist())  # without constraints some path is illegal
    for b, (_, path, score, _pos) in enumerate(_brute(crf, emissions, MASKS, legal)):
        assert legal(best.tolist()[b]) and best.tolist()[b] == path
        torch.testing.assert_close(best.score[b], score, rtol=1e-13, atol=1e-13)


def test_start_and_end_tags_restrict_the_path():
    crf = _crf(3, 4)
    emissions = torch.randn(len(MASKS), 4, 3, dtype=torch.float64)
    best = crf.viterbi(emissions, MASKS, start_tags=[0, 1], end_tags=[1, 2])
    def rule(p) -> bool:
        return not p or (p[0] in (0, 1) and p[-1] in (1, 2))

    for b, (_, path, score, _pos) in enumerate(_brute(crf, emissions, MASKS, rule)):
        assert best.tolist()[b] == path
        torch.testing.assert_close(best.score[b], score, rtol=1e-13, atol=1e-13)
    # the same through a TransitionMask
    ends = torch.tensor([False, True, True])
    via_mask = crf.viterbi(emissions, MASKS, allowed=TransitionMask(torch.ones(3, 3, dtype=torch.bool), ends.flip(0),
                                                                    ends))
    assert via_mask.tolist() == best.tolist()
    with pytest.raises(ValueError, match="expected start_tags, end_tags and allowed to leave at least one path, got "
                                         "none for sequence 4"):
        crf.viterbi(emissions, MASKS, start_tags=[0], end_tags=[1, 2])  # sequence 4 has one position


# -- the learning-rate groups, state_dict ---------------------------------------------------------------------------


def test_param_groups_give_the_crf_its_multiplier_and_adam_steps_by_it():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), CRF(5, lr_multiplier=100))
    groups = crf_param_groups(model, 1e-3)
    crf = model[1]
    assert [g["lr"] for g in groups] == [1e-3, 1e-3 * 100]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in crf.parameters()}
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model[0].parameters()}
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(groups)
    x, target = torch.randn(3, 6, 4), torch.randint(0, 5, (3, 6))
    crf(model[0](x), target).backward()
    opt.step()
    moved = [(p.detach() - b).abs().max().item() for p, b in zip(model.parameters(), before)]
    # Adam's first step moves each weight by lr (sign of the gradient)
    assert moved[:2] == pytest.approx([1e-3, 1e-3], rel=1e-3)
    assert moved[2:] == pytest.approx([0.1, 0.1, 0.1], rel=1e-3)
    assert crf_param_groups(crf, 2.0) == [{"params": list(crf.parameters()), "lr": 200.0}]


def test_a_gradient_multiplier_cancels_under_adam():
    # the spec's reason for a parameter group: Adam's step ignores the gradient's scale
    steps = []
    for scale in (1.0, 100.0):
        p = torch.nn.Parameter(torch.zeros(3))
        opt = torch.optim.Adam([p], lr=1e-3)
        for g in (torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.3, 0.1, -1.0])):
            p.grad = g * scale
            opt.step()
        steps.append(p.detach().clone())
    torch.testing.assert_close(steps[0], steps[1], rtol=1e-5, atol=1e-9)


def test_state_dict_round_trip_and_bert4keras_form():
    a = _crf(4, 0)
    b = CRF(4).double()
    b.load_state_dict(a.state_dict())
    emissions = torch.randn(2, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(a.log_partition(emissions), b.log_partition(emissions))
    plain = CRF(4, boundary=False)
    assert list(plain.state_dict()) == ["transitions"] and [n for n, _ in plain.named_parameters()] == ["transitions"]
    assert (plain.start_transitions == 0).all() and (plain.end_transitions == 0).all()
    assert "lr_multiplier=1" in repr(plain) and "boundary=False" in repr(plain)
