"""The "semi-pointer, semi-tagging" subject–object head of relation extraction, with conditional LayerNorm.

Post: "bert4keras在手，baseline我有：百度LIC2020" (With bert4keras in hand, baselines are easy: Baidu LIC2020),
2020-04-02, https://kexue.fm/archives/7321 — its DuIE 2.0 baseline (CasRel-like: subjects first, then the objects
of each predicate given one subject).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_float, check_generator, check_int
from ..nn import ConditionalLayerNorm
from ._common import check_mask, check_states


class SpanTriple(NamedTuple):
    """A (subject, predicate, object) triple in token indices; spans are inclusive."""

    subject_start: int
    subject_end: int
    predicate: int
    object_start: int
    object_end: int


class PointerLogits(NamedTuple):
    """Scores before the powered sigmoid: ``subject`` (batch, seq, 2) start/end flags, ``object`` (batch, seq,
    num_predicates, 2) per predicate, given the subject."""

    subject: Tensor
    object: Tensor


class PointerTargets(NamedTuple):
    """A training batch's labels (:func:`pointer_targets`): ``subject`` (batch, seq, 2) 0/1 flags of every gold
    subject, ``subject_ids`` (batch, 2) the sampled subject's (start, end) fed to the object head, ``object`` (batch,
    seq, num_predicates, 2) the flags of that subject's objects (all zero when the sample is no real subject)."""

    subject: Tensor
    subject_ids: Tensor
    object: Tensor


class Spans(NamedTuple):
    """Decoded spans as parallel (m,) long tensors: ``batch`` row, ``start`` and ``end`` (inclusive) and ``channel``
    (the predicate for objects, 0 for subjects), ordered by (batch, start, channel)."""

    batch: Tensor
    start: Tensor
    end: Tensor
    channel: Tensor


def powered_sigmoid(logits: Tensor, power: int) -> Tensor:
    """q = σ(z)^power, the head's flag probability (kexue.fm/archives/7321: squared for subjects, 4th power for
    objects). A threshold of 0.4 on q is a threshold of 0.4^(1/power) on σ (0.63 for squares, 0.80 for 4th
    powers): the power makes a confident flag cost more to reach."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise TypeError(f"expected logits to be a floating-point tensor, got "
                        f"{getattr(logits, 'dtype', type(logits).__name__)}")
    return torch.sigmoid(logits) ** check_int("power", power, 1)


def _powered_bce(z: Tensor, y: Tensor, k: int) -> Tensor:
    """Elementwise BCE(y, σ(z)^k) from the logits, exact in float: log q = k·log σ(z) and
    log(1 − q) = log(1 − σ) + log(1 + σ + … + σ^(k−1)) = −softplus(z) + log Σ_{i<k} σ(z)^i (the sum lies in [1, k])."""
    s = torch.sigmoid(z)
    geometric = sum((s ** i for i in range(1, k)), torch.ones_like(s))
    log_q = k * F.logsigmoid(z)
    log_not_q = -F.softplus(z) + torch.log(geometric)
    return -(y * log_q + (1 - y) * log_not_q)


def _check_flags(name: str, target: object, shape: tuple[int, ...]) -> Tensor:
    if not isinstance(target, Tensor) or target.is_complex():
        raise TypeError(f"expected {name} to be a tensor, got {type(target).__name__}")
    if tuple(target.shape) != shape:
        raise ValueError(f"expected {name} of shape {shape}, got {tuple(target.shape)}")
    t = target.float() if not target.is_floating_point() else target
    bad = (t < 0) | (t > 1) | t.isnan()
    if bool(bad.any()):
        raise ValueError(f"expected {name} values in [0, 1], got {t[bad][0].item()!r}")
    return t


def _check_subject_ids(subject_ids: object, batch: int, seq: int) -> Tensor:
    if not isinstance(subject_ids, Tensor) or subject_ids.is_floating_point() or subject_ids.dtype == torch.bool:
        raise TypeError(f"expected subject_ids to be an integer tensor, got "
                        f"{getattr(subject_ids, 'dtype', type(subject_ids).__name__)}")
    if tuple(subject_ids.shape) != (batch, 2):
        raise ValueError(f"expected subject_ids of shape ({batch}, 2) (start, end per row), got "
                         f"{tuple(subject_ids.shape)}")
    ids = subject_ids.long()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= seq):
        raise ValueError(f"expected subject_ids values in [0, {seq}), got {ids.min().item()}..{ids.max().item()}")
    backwards = ids[:, 0] > ids[:, 1]
    if bool(backwards.any()):
        row = int(backwards.nonzero()[0])
        raise ValueError(f"expected subject_ids with start <= end, got {tuple(ids[row].tolist())} in row {row}")
    return ids


class SubjectObjectPointer(nn.Module):
    """Subject flags, then per-predicate object flags conditioned on one subject (kexue.fm/archives/7321).

    Subject head, on the encoder's (normalised) output h:  q^s_t = σ(W_s h_t + b_s)^subject_power  (start, end).
    Object head, on the last block's residual sum *before* its final LayerNorm, u (the script reads the
    second-to-last layer on purpose):

        c = [u_{s_start}; u_{s_end}],   v_t = CLN(u_t | c),   q^o_{t,p} = σ(W_o v_t + b_o)_{p}^object_power

    with CLN a :class:`kexue.nn.ConditionalLayerNorm` (γ, β shifted by zero-initialised projections of c) and
    (start, end) flags per predicate p. Keeping the powers inside the head keeps the decoding thresholds (0.4 on q)
    meaning the same thing. Without ``pre_norm`` the object head reads ``hidden_states``. For kexue's post-norm
    :class:`~kexue.models.Transformer`, u is the input of the last block's ``ffn_norm``; a forward pre-hook takes
    it: ``model.blocks[-1].ffn_norm.register_forward_pre_hook(lambda m, args: store.append(args[0]))``.

    Args:
        hidden: the encoder width.
        num_predicates: P, the number of (flattened) predicates.
        subject_power, object_power: the powers (2 and 4 in the post), integers >= 1.
        cond_dim: the condition's width at the conditional LayerNorm. None (default): c itself (2·hidden), as the
            script; an integer first maps c to it with a bias-free linear layer (bert4keras's ``hidden_units``).
        eps: the conditional LayerNorm's ε.

    ``forward(hidden_states, subject_ids, pre_norm=None) -> PointerLogits``; train with :meth:`loss` and
    :func:`pointer_targets`, decode with :meth:`extract`.
    """

    def __init__(self, hidden: int, num_predicates: int, subject_power: int = 2, object_power: int = 4,
                 cond_dim: int | None = None, eps: float = 1e-12) -> None:
        super().__init__()
        self.hidden = check_int("hidden", hidden, 1)
        self.num_predicates = check_int("num_predicates", num_predicates, 1)
        self.subject_power = check_int("subject_power", subject_power, 1)
        self.object_power = check_int("object_power", object_power, 1)
        width = 2 * self.hidden if cond_dim is None else check_int("cond_dim", cond_dim, 1)
        self.cond_proj = None if cond_dim is None else nn.Linear(2 * self.hidden, width, bias=False)
        self.subject = nn.Linear(self.hidden, 2)
        self.norm = ConditionalLayerNorm(self.hidden, width, eps=eps)
        self.object = nn.Linear(self.hidden, 2 * self.num_predicates)

    def subject_logits(self, hidden_states: Tensor) -> Tensor:
        """(batch, seq, 2) subject start/end scores; q = σ(·)^subject_power."""
        return self.subject(check_states("hidden_states", hidden_states, self.hidden))

    def object_logits(self, pre_norm: Tensor, subject_ids: Tensor) -> Tensor:
        """(batch, seq, num_predicates, 2) object start/end scores given one subject per row, ``subject_ids``
        (batch, 2) its (start, end) token indices; q = σ(·)^object_power."""
        u = check_states("pre_norm", pre_norm, self.hidden)
        ids = _check_subject_ids(subject_ids, u.shape[0], u.shape[1]).to(u.device)
        rows = torch.arange(u.shape[0], device=u.device)
        cond = torch.cat([u[rows, ids[:, 0]], u[rows, ids[:, 1]]], dim=-1)
        if self.cond_proj is not None:
            cond = self.cond_proj(cond)
        z = self.object(self.norm(u, cond))
        return z.reshape(u.shape[0], u.shape[1], self.num_predicates, 2)

    def forward(self, hidden_states: Tensor, subject_ids: Tensor, pre_norm: Tensor | None = None) -> PointerLogits:
        subj = self.subject_logits(hidden_states)
        if pre_norm is not None and isinstance(pre_norm, Tensor) and pre_norm.shape != hidden_states.shape:
            raise ValueError(f"expected pre_norm of hidden_states' shape {tuple(hidden_states.shape)}, got "
                             f"{tuple(pre_norm.shape)}")
        return PointerLogits(subj, self.object_logits(hidden_states if pre_norm is None else pre_norm, subject_ids))

    def loss(self, logits: PointerLogits, target: PointerTargets, mask: Tensor) -> Tensor:
        """BCE on both heads' powered outputs (kexue.fm/archives/7321), each averaged over the 2 flags, the object's
        summed over predicates, both averaged over the non-padding tokens, and added:

            L = Σ_t m_t [mean_f BCE(y^s_{t,f}, q^s_{t,f}) + Σ_p mean_f BCE(y^o_{t,p,f}, q^o_{t,p,f})] / Σ_t m_t

        computed exactly from the scores (log q = k·log σ(z), log(1 − q) = −softplus(z) + log Σ_{i<k} σ^i), where
        Keras clips q to [1e-7, 1 − 1e-7]. ``target``: :func:`pointer_targets`' labels (values in [0, 1]);
        ``mask``: (batch, seq) bool or 0/1, True on real tokens, at least one per batch.
        """
        if not isinstance(logits, tuple) or len(logits) != 2:
            raise TypeError(f"expected logits to be a PointerLogits (subject, object), got {type(logits).__name__}")
        if not isinstance(target, tuple) or len(target) != 3:
            raise TypeError(f"expected target to be a PointerTargets (subject, subject_ids, object), got "
                            f"{type(target).__name__}")
        zs, zo = logits
        if not isinstance(zs, Tensor) or zs.dim() != 3 or zs.shape[-1] != 2:
            raise ValueError(f"expected logits.subject of shape (batch, seq, 2), got "
                             f"{tuple(getattr(zs, 'shape', ()))}")
        b, n = zs.shape[:2]
        shape_o = (b, n, self.num_predicates, 2)
        if not isinstance(zo, Tensor) or tuple(zo.shape) != shape_o:
            raise ValueError(f"expected logits.object of shape {shape_o}, got {tuple(getattr(zo, 'shape', ()))}")
        ys = _check_flags("target.subject", target[0], (b, n, 2))
        yo = _check_flags("target.object", target[2], shape_o)
        m = check_mask("mask", mask, (b, n)).to(zs.device)
        if not bool(m.any()):
            raise ValueError("expected mask with at least one real token (the loss averages over them), got none")
        dtype = torch.promote_types(zs.dtype, torch.float32)
        ls = _powered_bce(zs.to(dtype), ys.to(zs.device, dtype), self.subject_power).mean(-1)
        lo = _powered_bce(zo.to(dtype), yo.to(zo.device, dtype), self.object_power).mean(-1).sum(-1)
        w = m.to(dtype)
        return ((ls * w).sum() + (lo * w).sum()) / w.sum()

    @torch.no_grad()
    def extract(self, hidden_states: Tensor, mask: Tensor, pre_norm: Tensor | None = None,
                start_threshold: float = 0.4, end_threshold: float = 0.4) -> list[list[SpanTriple]]:
        """Decode every row's triples (kexue.fm/archives/7321): subjects by :func:`decode_pointers` on the subject
        head (start > threshold, the nearest end >= it above threshold), then, with each subject in turn, objects
        by the same rule per predicate on the object head. ``mask``: (batch, seq), True on the tokens that may hold
        a span (leave out [CLS], [SEP] and padding, as the script zeroes them). Returns a list of
        :class:`SpanTriple` per row."""
        x = check_states("hidden_states", hidden_states, self.hidden)
        m = check_mask("mask", mask, tuple(x.shape[:2])).to(x.device)
        u = x if pre_norm is None else pre_norm
        if isinstance(u, Tensor) and u.shape != x.shape:
            raise ValueError(f"expected pre_norm of hidden_states' shape {tuple(x.shape)}, got {tuple(u.shape)}")
        q = powered_sigmoid(self.subject_logits(x), self.subject_power)
        subs = decode_pointers(q, m, start_threshold, end_threshold)
        out: list[list[SpanTriple]] = [[] for _ in range(x.shape[0])]
        if subs.batch.numel() == 0:
            return out
        ids = torch.stack([subs.start, subs.end], dim=1)
        qo = powered_sigmoid(self.object_logits(u[subs.batch], ids), self.object_power)
        objs = decode_pointers(qo, m[subs.batch], start_threshold, end_threshold)
        sb, ss, se = subs.batch.tolist(), subs.start.tolist(), subs.end.tolist()
        for i, os_, oe, p in zip(objs.batch.tolist(), objs.start.tolist(), objs.end.tolist(),
                                 objs.channel.tolist()):
            out[sb[i]].append(SpanTriple(ss[i], se[i], p, os_, oe))
        return out

    def extra_repr(self) -> str:
        return (f"hidden={self.hidden}, num_predicates={self.num_predicates}, subject_power={self.subject_power}, "
                f"object_power={self.object_power}")


def decode_pointers(probs: Tensor, mask: Tensor | None = None, start_threshold: float = 0.4,
                    end_threshold: float = 0.4) -> Spans:
    """Spans from start/end flag probabilities, all rows and channels at once (kexue.fm/archives/7321): every
    position t with q_start[t] > start_threshold opens a span that ends at the nearest e >= t of the same channel
    with q_end[e] > end_threshold; a start with no such end gives nothing. Two starts may share an end.

    Args:
        probs: (batch, seq, 2) (one channel: subjects) or (batch, seq, channels, 2) (objects per predicate), the
            powered probabilities q (thresholds apply to q, not to σ).
        mask: (batch, seq) bool or 0/1, True where a start or end may lie; None: everywhere.
        start_threshold, end_threshold: in [0, 1]; a flag counts when q is strictly above.
    """
    if not isinstance(probs, Tensor) or not probs.is_floating_point():
        raise TypeError(f"expected probs to be a floating-point tensor, got "
                        f"{getattr(probs, 'dtype', type(probs).__name__)}")
    if probs.dim() not in (3, 4) or probs.shape[-1] != 2:
        raise ValueError(f"expected probs of shape (batch, seq, 2) or (batch, seq, channels, 2), got "
                         f"{tuple(probs.shape)}")
    ts = check_float("start_threshold", start_threshold, 0.0, 1.0)
    te = check_float("end_threshold", end_threshold, 0.0, 1.0)
    q = probs if probs.dim() == 4 else probs[:, :, None]
    b, n = q.shape[:2]
    starts, ends = q[..., 0] > ts, q[..., 1] > te  # (batch, seq, channels)
    if mask is not None:
        m = check_mask("mask", mask, (b, n)).to(q.device)[:, :, None]
        starts, ends = starts & m, ends & m
    pos = torch.arange(n, device=q.device)[None, :, None]
    end_at = torch.where(ends, pos, n)  # n: no end here
    nearest = end_at.flip(1).cummin(dim=1).values.flip(1)  # min{e >= t : end flag at e}
    hit = (starts & (nearest < n)).nonzero()
    bi, si, ci = hit.unbind(-1)
    return Spans(bi, si, nearest[bi, si, ci], ci)


def _check_sentence(i: int, triples: Sequence[Sequence[int]], seq_len: int, num_predicates: int) -> list[SpanTriple]:
    if len(triples) == 0:
        raise ValueError(f"expected at least one triple per sentence (the post skips sentences without), got none in "
                         f"sentence {i}")
    out = []
    for t in triples:
        if len(t) != 5:
            raise ValueError(f"expected triples of (subject_start, subject_end, predicate, object_start, object_end), "
                             f"got {tuple(t)!r} in sentence {i}")
        ss, se, p, os_, oe = (check_int("triples' values", v) for v in t)
        if not (0 <= ss <= se < seq_len and 0 <= os_ <= oe < seq_len):
            raise ValueError(f"expected spans with 0 <= start <= end < seq_len = {seq_len}, got {tuple(t)!r} in "
                             f"sentence {i}")
        if not 0 <= p < num_predicates:
            raise ValueError(f"expected predicate in [0, {num_predicates}), got {p} in sentence {i}")
        out.append(SpanTriple(ss, se, p, os_, oe))
    return out


def pointer_targets(triples: Sequence[Sequence[Sequence[int]]], seq_len: int, num_predicates: int,
                    generator: torch.Generator | None = None) -> PointerTargets:
    """A batch's labels for :class:`SubjectObjectPointer`, with the post's training-time subject sampling
    (kexue.fm/archives/7321): subject flags at every gold subject's start and end; then one subject per sentence,
    drawn as the script does it — a random start among the gold subjects' starts, then a random end among the gold
    subjects' ends >= that start. The pair need not be a real subject; then its object labels are all zero (an
    implicit negative). Otherwise the object flags mark the starts and ends of its objects per predicate.

    Args:
        triples: per sentence, a non-empty list of (subject_start, subject_end, predicate, object_start, object_end)
            token indices (inclusive; :class:`SpanTriple` or plain tuples).
        seq_len: the padded length.
        num_predicates: P.
        generator: the draws' ``torch.Generator`` (None: torch's global one).
    """
    n = check_int("seq_len", seq_len, 1)
    p = check_int("num_predicates", num_predicates, 1)
    check_generator("generator", generator)
    if isinstance(triples, (str, bytes)) or not isinstance(triples, Sequence):
        raise TypeError(f"expected triples to be a sequence (one list of triples per sentence), got "
                        f"{type(triples).__name__}")
    b = len(triples)
    subject = torch.zeros(b, n, 2)
    obj = torch.zeros(b, n, p, 2)
    ids = torch.zeros(b, 2, dtype=torch.long)

    def draw(k: int) -> int:
        return int(torch.randint(k, (1,), generator=generator))

    for i, sent in enumerate(triples):
        spo = _check_sentence(i, sent, n, p)
        subjects = list(dict.fromkeys((t.subject_start, t.subject_end) for t in spo))
        for ss, se in subjects:
            subject[i, ss, 0] = subject[i, se, 1] = 1
        start = subjects[draw(len(subjects))][0]
        ends = [se for _, se in subjects if se >= start]
        end = ends[draw(len(ends))]
        ids[i] = torch.tensor([start, end])
        for t in spo:
            if (t.subject_start, t.subject_end) == (start, end):
                obj[i, t.object_start, t.predicate, 0] = obj[i, t.object_end, t.predicate, 1] = 1
    return PointerTargets(subject, ids, obj)


__all__ = ["PointerLogits", "PointerTargets", "Spans", "SubjectObjectPointer", "SpanTriple", "decode_pointers",
           "pointer_targets", "powered_sigmoid"]
