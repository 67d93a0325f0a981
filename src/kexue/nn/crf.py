"""A linear-chain conditional random field: negative log-likelihood, log partition function and Viterbi decoding.

The CRF of bert4keras as the LIC2020 event-extraction baseline uses it ("bert4keras在手，baseline我有：百度LIC2020",
2020-04-02, https://kexue.fm/archives/7321), with the formulas of "简明条件随机场CRF介绍（附带纯Keras实现）"
(2018-05-18, https://kexue.fm/archives/5542). For emissions ``h_t(y)`` (one row per kept position ``t = 1..n`` of a
sequence), transitions ``g(y, y')``, and start and end scores ``s(y)`` and ``e(y)``, a tag path ``y_1..y_n`` scores

    score(y) = s(y_1) + sum_t h_t(y_t) + sum_{t<n} g(y_t, y_{t+1}) + e(y_n),
    P(y | x) = exp(score(y)) / Z(x),    -log P(y | x) = log Z(x) - score(y)   (>= 0),

and ``log Z`` comes from the forward recursion ``a_1(j) = s(j) + h_1(j)``, ``a_{t+1}(j) = logsumexp_i(a_t(i) +
g(i, j)) + h_{t+1}(j)``, ``log Z = logsumexp_j(a_n(j) + e(j))``; Viterbi replaces logsumexp with max and traces the
argmax back.

* bert4keras has the transition matrix only; ``CRF(..., boundary=False)`` is that form (``s = e = 0``, fixed).
  The default adds learned start and end scores as pytorch-crf does (``torchcrf.CRF``, whose parameters load here
  one-to-one: ``start_transitions``, ``end_transitions``, ``transitions[i, j]`` for ``i -> j``).
* :meth:`CRF.forward` returns the **negative** log-likelihood, a loss to minimise; pytorch-crf's ``forward`` returns
  the log-likelihood (and sums over the batch by default; here the default reduction is the mean).
* Masks: ``mask[b, t]`` False (or 0) skips position ``t``: the path runs over the kept positions in order, whatever
  their places, so a mask whose first position is off (BERT's [CLS]) works. pytorch-crf refuses such a mask ("mask
  of the first timestep must all be on"), and a mask with holes gives it a different model. A sequence with no kept
  position has the one empty path: log Z = 0, NLL = 0.
* The post's transition learning-rate multiplier (×100 in the LIC2020 script): ``CRF(num_tags, lr_multiplier=100)``
  and :func:`crf_param_groups` give the CRF's parameters their own optimizer group at ``lr * lr_multiplier``. Under
  Adam a multiplier on the gradient cancels in the update; only the step size has the intended effect (bert4keras's
  reparametrisation ``W = m * V``, ``V`` stored, amounts to that under Adam).
* Constrained decoding: :func:`bio_transition_mask` gives the legal BIO transitions for the layout O = 0, B_l =
  2l + 1, I_l = 2l + 2, and :meth:`CRF.viterbi` takes it (``allowed=``); ``start_tags``/``end_tags`` are
  bert4keras's ``ViterbiDecoder(starts=, ends=)`` (the LIC2020 script forces O at [CLS] with ``starts=[0]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

import torch
from torch import Tensor, nn

from kexue._validate import check_bool, check_choice, check_float, check_int

from .masks import _odd_mask_values, _refuse_odd_mask

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[Reduction, ...] = get_args(Reduction)


@dataclass(frozen=True)
class TransitionMask:
    """Which tag paths :meth:`CRF.viterbi` may return: ``allowed[i, j]`` (bool, ``(num_tags, num_tags)``) permits
    ``i -> j`` between consecutive kept positions; ``start[j]`` and ``end[j]`` (bool, ``(num_tags,)``; None: all)
    permit ``j`` at the first and at the last kept position."""

    allowed: Tensor
    start: Tensor | None = None
    end: Tensor | None = None

    def __post_init__(self) -> None:
        a = self.allowed
        _check_type("allowed", a, "a bool tensor", lambda d: d == torch.bool)
        if a.dim() != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
            raise ValueError(f"expected allowed of shape (num_tags, num_tags), got {tuple(a.shape)}")
        for name in ("start", "end"):
            v = getattr(self, name)
            if v is not None:
                _check_type(name, v, "None or a bool tensor", lambda d: d == torch.bool)
                if tuple(v.shape) != (a.shape[0],):
                    raise ValueError(f"expected {name} of shape ({a.shape[0]},) like allowed, got {tuple(v.shape)}")


def bio_transition_mask(num_types: int) -> TransitionMask:
    """The legal BIO paths over ``num_types`` span types in the layout of the LIC2020 script: O = 0, B_l = 2l + 1,
    I_l = 2l + 2 (``2 * num_types + 1`` tags). Forbidden: ``O -> I_x``, ``B_y -> I_x`` and ``I_y -> I_x`` for
    ``y != x``, and ``I_x`` at the first kept position; everything else (any tag at the end) is allowed."""
    n = check_int("num_types", num_types, minimum=1)
    k = 2 * n + 1
    inside = torch.zeros(k, dtype=torch.bool)
    inside[2::2] = True
    allowed = ~inside.expand(k, k).clone()  # no I_x after anything ...
    for x in range(n):
        allowed[2 * x + 1, 2 * x + 2] = allowed[2 * x + 2, 2 * x + 2] = True  # ... but B_x or I_x
    return TransitionMask(allowed, start=~inside, end=torch.ones(k, dtype=torch.bool))


class ViterbiPath(NamedTuple):
    """The best path per sequence: ``tags`` (long, ``(batch, seq)``) holds the tag of each kept position and -1 at the
    skipped ones; ``score`` (``(batch,)``, no gradient) is the path's score (0 for a sequence with no kept position)."""

    tags: Tensor
    score: Tensor

    def tolist(self) -> list[list[int]]:
        """The tags of the kept positions, one list per sequence (pytorch-crf's ``decode`` form)."""
        return [[t for t in row if t >= 0] for row in self.tags.tolist()]


class _Compact(NamedTuple):
    """Emissions with the kept positions moved to the front (order kept): ``emissions`` ``(batch, n_max, tags)``,
    ``lengths`` ``(batch,)``, ``active`` ``(batch, n_max)`` bool, ``order`` ``(batch, n_max)`` (original positions)
    or None when the mask was already left-aligned."""

    emissions: Tensor
    lengths: Tensor
    active: Tensor
    order: Tensor | None


class CRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags, batch-first: emissions ``(batch, seq, num_tags)``.

    Parameters ``transitions`` ``(num_tags, num_tags)`` (``[i, j]`` scores ``i -> j``), and with ``boundary=True``
    ``start_transitions`` and ``end_transitions`` ``(num_tags,)`` (with ``boundary=False``, bert4keras's form, they
    are fixed zeros, not parameters). All start uniform in [-0.1, 0.1] as in pytorch-crf. ``lr_multiplier`` is read
    by :func:`crf_param_groups`. Works in float32 and float64 (``crf.double()``); the arithmetic runs in the
    promoted dtype of the emissions and the parameters. See the module docstring for the formulas and the masks.

    The LIC2020 tagger (``P`` (event type, role) pairs, BIO tags, ``mask`` 0 at [CLS], [SEP] and padding)::

        crf = CRF(2 * P + 1, lr_multiplier=100)
        loss = crf(dense(hidden), target, mask)                       # NLL, mean over the batch
        opt = torch.optim.AdamW(crf_param_groups(model, 2e-5))        # the CRF at 2e-3
        best = crf.viterbi(dense(hidden), mask, allowed=bio_transition_mask(P))
        best.tags                                                     # (batch, seq), -1 where mask is 0
    """

    def __init__(self, num_tags: int, lr_multiplier: float = 1.0, boundary: bool = True) -> None:
        super().__init__()
        self.num_tags = check_int("num_tags", num_tags, minimum=1)
        self.lr_multiplier = check_float("lr_multiplier", lr_multiplier, low=0.0, low_open=True)
        self.boundary = check_bool("boundary", boundary)
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.start_transitions: Tensor
        self.end_transitions: Tensor
        if self.boundary:
            self.start_transitions = nn.Parameter(torch.empty(num_tags))
            self.end_transitions = nn.Parameter(torch.empty(num_tags))
        else:
            self.register_buffer("start_transitions", torch.zeros(num_tags), persistent=False)
            self.register_buffer("end_transitions", torch.zeros(num_tags), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, lr_multiplier={self.lr_multiplier:g}, boundary={self.boundary}"

    def forward(self, emissions: Tensor, target: Tensor, mask: Tensor | None = None,
                reduction: Reduction = "mean") -> Tensor:
        """Negative log-likelihood ``log Z - score(target)`` per sequence, reduced by ``reduction`` (``"mean"`` and
        ``"sum"`` over the batch, ``"none"``: ``(batch,)``). ``target`` (integer, ``(batch, seq)``) holds tags in
        ``[0, num_tags)`` at the kept positions; its values at skipped positions are not read (-100 is fine)."""
        check_choice("reduction", reduction, Reduction)
        keep = self._check(emissions, mask)
        _check_type("target", target, "an integer tensor", _is_integer)
        if target.shape != emissions.shape[:2]:
            raise ValueError(f"expected target of shape {tuple(emissions.shape[:2])} like emissions, got "
                             f"{tuple(target.shape)}")
        bad = keep & ((target < 0) | (target >= self.num_tags))
        if bool(bad.any()):
            raise ValueError(f"expected target in [0, {self.num_tags}) at the kept positions, got "
                             f"{int(target[bad][0])}")
        c = self._compact(emissions, keep)
        tags = target.long() if c.order is None else target.long().gather(1, c.order)
        tags = tags[:, :c.emissions.shape[1]].masked_fill(~c.active, 0)
        nll = self._log_partition(c) - self._path_score(c, tags)
        return nll if reduction == "none" else nll.sum() if reduction == "sum" else nll.mean()

    def log_partition(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """``log Z`` per sequence, ``(batch,)``: the logsumexp of the scores of all tag paths over the kept
        positions (0 for a sequence with none)."""
        return self._log_partition(self._compact(emissions, self._check(emissions, mask)))

    @torch.no_grad()
    def viterbi(self, emissions: Tensor, mask: Tensor | None = None, start_tags: Sequence[int] | None = None,
                end_tags: Sequence[int] | None = None, allowed: TransitionMask | None = None) -> ViterbiPath:
        """The highest-scoring tag path of each sequence (:class:`ViterbiPath`), among the paths that begin with one
        of ``start_tags`` and end with one of ``end_tags`` (None: any) and, with ``allowed``, take only the
        transitions it allows (e.g. :func:`bio_transition_mask`). The backtrace runs over the batch at once."""
        keep = self._check(emissions, mask)
        k = self.num_tags
        trans, start, end = self._weights(emissions.dtype)
        start_ok = _tag_set("start_tags", start_tags, k, emissions.device)
        end_ok = _tag_set("end_tags", end_tags, k, emissions.device)
        if allowed is not None:
            if not isinstance(allowed, TransitionMask):
                raise TypeError(f"expected allowed to be None or a kexue.nn.TransitionMask, got "
                                f"{type(allowed).__name__}")
            if allowed.allowed.shape[0] != k:
                raise ValueError(f"expected allowed over {k} tags like the CRF, got {allowed.allowed.shape[0]}")
            trans = trans.masked_fill(~allowed.allowed.to(trans.device), float("-inf"))
            for ok, extra in ((start_ok, allowed.start), (end_ok, allowed.end)):
                if extra is not None:
                    ok &= extra.to(ok.device)
        start = start.masked_fill(~start_ok, float("-inf"))
        end = end.masked_fill(~end_ok, float("-inf"))
        c = self._compact(emissions, keep)
        e, n, active = c.emissions.to(trans.dtype), c.lengths, c.active
        batch, steps = e.shape[:2]
        score = start + e[:, 0]
        history = []
        into = trans.t().contiguous()  # [j, i]: the max runs over the contiguous last dim (1.5x faster)
        for t in range(1, steps):
            best, idx = (score.unsqueeze(1) + into).max(dim=2)
            score = torch.where(active[:, t, None], best + e[:, t], score)
            history.append(idx)
        score, last = (score + end).max(dim=1)
        score = score.masked_fill(n == 0, 0.0)
        if bool(torch.isneginf(score).any()):
            raise ValueError("expected start_tags, end_tags and allowed to leave at least one path, got none for "
                             f"sequence {int(torch.isneginf(score).nonzero()[0])}")
        tags = torch.full((batch, steps), -1, dtype=torch.long, device=e.device)
        cur = last
        for t in range(steps - 1, -1, -1):
            on = active[:, t]
            tags[:, t] = torch.where(on, cur, -1)
            if t > 0:
                cur = torch.where(on, history[t - 1].gather(1, cur.unsqueeze(1)).squeeze(1), cur)
        full = torch.full(emissions.shape[:2], -1, dtype=torch.long, device=e.device)
        if c.order is None:
            full[:, :steps] = tags
        else:
            full.scatter_(1, c.order, tags)
        return ViterbiPath(full, score)

    # -- internals -------------------------------------------------------------------------------------------------

    def _check(self, emissions: Tensor, mask: Tensor | None) -> Tensor:
        """The kept positions as a bool ``(batch, seq)`` tensor, after checking ``emissions`` and ``mask``."""
        _check_type("emissions", emissions, "a floating-point tensor", lambda d: d.is_floating_point)
        if emissions.dim() != 3 or emissions.shape[2] != self.num_tags or emissions.numel() == 0:
            raise ValueError(f"expected emissions of shape (batch >= 1, seq >= 1, {self.num_tags}), got "
                             f"{tuple(emissions.shape)}")
        if not bool(torch.isfinite(emissions).all()):
            raise ValueError("expected finite emissions, got a NaN or an infinity")
        if mask is None:
            return torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        _check_type("mask", mask, "None or a bool or 0/1 integer tensor", lambda d: d == torch.bool or _is_integer(d))
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"expected mask of shape {tuple(emissions.shape[:2])} like emissions, got "
                             f"{tuple(mask.shape)}")
        if mask.dtype != torch.bool:
            if bool(_odd_mask_values(mask)):
                _refuse_odd_mask(mask, "mask", "kept", "skipped")
            mask = mask != 0
        return mask.to(emissions.device)

    def _weights(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        dt = torch.promote_types(dtype, self.transitions.dtype)
        return self.transitions.to(dt), self.start_transitions.to(dt), self.end_transitions.to(dt)

    @staticmethod
    def _compact(emissions: Tensor, keep: Tensor) -> _Compact:
        """Move the kept positions to the front (a stable sort of the mask), trimmed to the longest sequence."""
        lengths = keep.sum(1)
        steps = max(int(lengths.max()), 1)
        active = torch.arange(steps, device=keep.device) < lengths.unsqueeze(1)
        if bool((keep[:, :steps] == active).all()):  # already left-aligned (the usual right padding)
            return _Compact(emissions[:, :steps], lengths, active, None)
        order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :steps]
        e = emissions.gather(1, order.unsqueeze(2).expand(-1, -1, emissions.shape[2]))
        return _Compact(e, lengths, active, order)

    def _log_partition(self, c: _Compact) -> Tensor:
        trans, start, end = self._weights(c.emissions.dtype)
        e = c.emissions.to(trans.dtype)
        logz, bad = _forward_algorithm(e, c.active, trans, start, end, fast=True)
        if bool(bad.any()):  # rare: a sum underflowed in the fast form, so these rows take the logsumexp form
            rows = bad.nonzero().squeeze(1)
            exact, _ = _forward_algorithm(e[rows], c.active[rows], trans, start, end, fast=False)
            logz = logz.index_put((rows,), exact)
        return logz.masked_fill(c.lengths == 0, 0.0)

    def _path_score(self, c: _Compact, tags: Tensor) -> Tensor:
        """score(tags) over the compacted positions; ``tags`` is 0 at the inactive ones (which add nothing)."""
        trans, start, end = self._weights(c.emissions.dtype)
        e = c.emissions.to(trans.dtype)
        on = c.active.to(trans.dtype)
        emit = (e.gather(2, tags.unsqueeze(2)).squeeze(2) * on).sum(1)
        step = (trans[tags[:, :-1], tags[:, 1:]] * on[:, 1:]).sum(1)
        last = tags.gather(1, (c.lengths - 1).clamp_min(0).unsqueeze(1)).squeeze(1)
        return emit + step + (start[tags[:, 0]] + end[last]) * on[:, 0]


def _forward_algorithm(e: Tensor, active: Tensor, trans: Tensor, start: Tensor, end: Tensor,
                       fast: bool) -> tuple[Tensor, Tensor]:
    """``log Z`` per row by the forward recursion, and the rows (bool) whose fast form may have lost precision.

    ``fast=False``: ``a_{t+1}(j) = logsumexp_i(a_t(i) + g(i, j)) + h_{t+1}(j)`` on a (batch, tags, tags) tensor.
    ``fast=True``: the same sum as a matrix product, ``a_{t+1}(j) = m_t + c_j + log sum_i exp(a_t(i) - m_t)
    exp(g(i, j) - c_j) + h_{t+1}(j)`` with ``m_t = max_i a_t(i)`` and ``c_j = max_i g(i, j)`` (both held constant:
    their gradients cancel), one BLAS call per step instead of four passes over batch x tags x tags (15x faster at
    131 tags). Each factor is <= 1, so a term lost to underflow is below the smallest normal number; a row is
    flagged when some sum is within ``tags / eps`` of that, where the lost terms could matter.
    """
    alpha = start + e[:, 0]
    bad = torch.zeros(e.shape[0], dtype=torch.bool, device=e.device)
    if fast and e.shape[1] > 1:
        info = torch.finfo(e.dtype)
        col = trans.detach().amax(0)
        expt = torch.exp(trans - col)
        sums = []
        for t in range(1, e.shape[1]):
            m = alpha.detach().amax(1, keepdim=True)
            s = torch.exp(alpha - m) @ expt
            sums.append(s.detach())
            nxt = m + col + torch.log(s.clamp_min(info.tiny)) + e[:, t]
            alpha = torch.where(active[:, t, None], nxt, alpha)
        small = torch.stack(sums, 1) < info.tiny * e.shape[2] / info.eps
        bad = (small & active[:, 1:, None]).flatten(1).any(1)
    elif not fast:
        for t in range(1, e.shape[1]):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + e[:, t]
            alpha = torch.where(active[:, t, None], nxt, alpha)
    return torch.logsumexp(alpha + end, dim=1), bad


def crf_param_groups(model: nn.Module, lr: float) -> list[dict[str, Any]]:
    """Optimizer parameter groups for ``model`` (which is, or holds, one or more :class:`CRF`): the parameters of
    each CRF at ``lr * crf.lr_multiplier``, all others at ``lr`` (groups without parameters left out). Pass the list
    to any ``torch.optim`` optimizer: ``AdamW(crf_param_groups(model, 2e-5))``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected model to be a torch.nn.Module, got {type(model).__name__}")
    lr = check_float("lr", lr, low=0.0)
    crfs = [m for m in model.modules() if isinstance(m, CRF)]
    if not crfs:
        raise ValueError(f"expected model to contain a kexue.nn.CRF, got none among its modules "
                         f"({type(model).__name__})")
    seen: set[int] = set()
    groups: list[dict[str, Any]] = []
    for crf in crfs:
        params = [p for p in crf.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            groups.append({"params": params, "lr": lr * crf.lr_multiplier})
    rest = [p for p in model.parameters() if id(p) not in seen]
    return ([{"params": rest, "lr": lr}] if rest else []) + groups


def _tag_set(name: str, tags: Sequence[int] | None, k: int, device: torch.device) -> Tensor:
    ok = torch.zeros(k, dtype=torch.bool, device=device)
    if tags is None:
        return ok.fill_(True)
    if isinstance(tags, (str, bytes, Tensor)) or not isinstance(tags, Sequence):
        raise TypeError(f"expected {name} to be None or a list of tags, got {type(tags).__name__}")
    if len(tags) == 0:
        raise ValueError(f"expected {name} to hold at least one tag, got {tags!r}")
    for i, t in enumerate(tags):
        ok[check_int(f"{name}[{i}]", t, minimum=0, maximum=k - 1)] = True
    return ok


def _is_integer(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def _check_type(name: str, x: object, what: str, dtype_ok: Callable[[torch.dtype], bool]) -> None:
    """``TypeError("expected NAME to be WHAT, got ...")`` unless ``x`` is a tensor whose dtype passes."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected {name} to be {what}, got {type(x).__name__}")
    if not dtype_ok(x.dtype):
        raise TypeError(f"expected {name} to be {what}, got {x.dtype}")


__all__ = ["CRF", "REDUCTIONS", "Reduction", "TransitionMask", "ViterbiPath", "bio_transition_mask",
           "crf_param_groups"]
