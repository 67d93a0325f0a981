"""Exposure bias in seq2seq: random replacement of decoder inputs, and the UniLM seq2seq batch and loss it trains.

Su Jianlin, "Seq2Seq中Exposure Bias现象的浅析与对策" (Exposure bias in seq2seq: a brief analysis and remedies),
2020-03-09, https://kexue.fm/archives/7259.

Teacher forcing trains the locally normalised p(y|x) = Π_t softmax(f(y_<t; x))[y_t] on gold prefixes only, so
continuations of wrong prefixes are never trained and may get high probability; that is why a wider beam can do
worse (the post's two-step toy: greedy keeps (a, b) at 0.33, beam 2 returns (c, d) at 0.36). The post's cheap remedy
builds negative prefixes by **randomly replacing decoder-input tokens** while the labels stay the gold tokens:

- with probability ``apply_prob`` (0.5) a sample is corrupted at all;
- then each target token is replaced with probability ``token_prob`` (0.3), by a token drawn uniformly from
  the sample's **target** tokens (the post, ``pool="target"``), or from the whole concatenated input, source,
  target and special tokens (the released ``bojone/exposure_bias`` code, ``pool="sequence"``).

The second remedy, loss + ½·‖∂L/∂e‖² on the token-embedding outputs, is the input-gradient penalty of
:mod:`kexue.train.penalty`; :func:`penalized_unilm_loss` applies it to a UniLM seq2seq loss.

:func:`pack_unilm` lays out ``[CLS] source [SEP] target [SEP]`` batches and :func:`unilm_seq2seq_loss` scores them.
Decoding (greedy, beam search with length normalisation, the UniLM step function on the KV cache) is in
:mod:`kexue.models.decoding`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_choice, check_float, check_int
from ..losses import Reduction
from ._checks import check_state, check_token_ids, int_ids
from .penalty import PenalizedLoss, gradient_penalty_loss

logger = logging.getLogger(__name__)

ReplacementPool = Literal["target", "sequence", "vocab"]
_POOL_SOURCE: dict[ReplacementPool, str] = {"target": "the post", "sequence": "the released code",
                                            "vocab": "uniform over the vocabulary"}


# ---------------------------------------------------------------------------------------------------------------
# Random replacement of decoder inputs
# ---------------------------------------------------------------------------------------------------------------


class CorruptedBatch(NamedTuple):
    """What :class:`RandomTokenReplacement` returns: the corrupted ``input_ids``, the gold ``labels`` (a copy of the
    uncorrupted ``input_ids``) and the bool mask of the ``replaced`` positions."""

    input_ids: Tensor
    labels: Tensor
    replaced: Tensor


def _check_shape(name: str, x: Tensor | None, like: Tensor, like_name: str = "input_ids") -> None:
    if x is not None and x.shape != like.shape:
        raise ValueError(f"expected {name} in the shape of {like_name}, {tuple(like.shape)}, got {tuple(x.shape)}")


def _ranks(scores: Tensor) -> Tensor:
    """Rank of each entry within its row, 0 for the smallest score."""
    return scores.argsort(dim=1).argsort(dim=1)


class RandomTokenReplacement:
    """Collate-time corruption of decoder inputs with gold labels kept (kexue.fm/archives/7259).

    ``corrupted, labels, replaced = rtr(input_ids, target_mask, attention_mask)`` (a :class:`CorruptedBatch`): a
    sample is corrupted with probability
    ``apply_prob``; in a corrupted sample each eligible token (``target_mask`` true, not padding, not in
    ``protect_ids``) is replaced with probability ``token_prob`` (or, with ``exact_fraction=True``, exactly
    round(``token_prob`` · #eligible) of them are) by a token drawn uniformly from the pool:

    - ``"target"``: the sample's target tokens (``target_mask``, not padding, not protected); the post's rule, and
      the default (the post argues a model mostly emits the target's own words, in the wrong order or repeated);
    - ``"sequence"``: every non-padding token of the sample, source, target and special tokens alike, as the
      released code draws them (``np.random.choice(token_ids)``);
    - ``"vocab"``: uniform over the vocabulary minus ``protect_ids`` (needs ``vocab_size``).

    As in the released code a drawn replacement may equal the token it replaces. ``labels`` is a copy of the
    uncorrupted ``input_ids``: the corrupted input at position t still predicts the gold token t + 1 (see
    :func:`unilm_seq2seq_loss`). For a UniLM batch :meth:`unilm` takes the target segment from ``token_type_ids``.
    Call it once per batch in the training loop (fresh corruptions every epoch, never precomputed).

    Args:
        apply_prob: probability that a sample is corrupted at all (post and code: 0.5).
        token_prob: per-token replacement probability in a corrupted sample (0.3).
        pool: ``"target"`` (the post), ``"sequence"`` (the released code) or ``"vocab"``.
        exact_fraction: replace exactly round(token_prob · n) tokens instead of Bernoulli(token_prob) each.
        protect_ids: ids never replaced and never drawn from the target/vocab pools (BOS/[CLS], EOS/[SEP], PAD).
        vocab_size: needed for ``pool="vocab"``.
        generator: a ``torch.Generator`` for repeatable draws (its state is in :meth:`state_dict`).
    """

    def __init__(self, apply_prob: float = 0.5, token_prob: float = 0.3, pool: ReplacementPool = "target",
                 exact_fraction: bool = False, protect_ids: Iterable[int] = (), vocab_size: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        self.apply_prob = check_float("apply_prob", apply_prob, 0.0, 1.0)
        self.token_prob = check_float("token_prob", token_prob, 0.0, 1.0)
        check_choice("pool", pool, ReplacementPool)
        self.protect_ids = int_ids("protect_ids", protect_ids)
        if pool == "vocab":
            if vocab_size is None:
                raise ValueError("expected vocab_size (an integer) with pool='vocab', got None")
            check_int("vocab_size", vocab_size, minimum=len(self.protect_ids) + 1)
            bad = [i for i in self.protect_ids if not 0 <= i < vocab_size]
            if bad:
                raise ValueError(f"expected protect_ids in the vocabulary [0, {vocab_size}), got {bad}")
        self.pool = pool
        self.exact_fraction = bool(exact_fraction)
        self.vocab_size = vocab_size
        self.generator = generator
        logger.info("RandomTokenReplacement: pool=%r (%s), apply_prob=%g, token_prob=%g, exact_fraction=%s", pool,
                    _POOL_SOURCE[pool], apply_prob, token_prob, exact_fraction)

    def __repr__(self) -> str:
        return (f"RandomTokenReplacement(apply_prob={self.apply_prob}, token_prob={self.token_prob}, "
                f"pool={self.pool!r}, exact_fraction={self.exact_fraction}, protect_ids={self.protect_ids})")

    def _rand(self, *shape: int, device: torch.device) -> Tensor:
        if self.generator is not None and self.generator.device != device:
            return torch.rand(*shape, generator=self.generator, device=self.generator.device).to(device)
        return torch.rand(*shape, generator=self.generator, device=device)

    def __call__(self, input_ids: Tensor, target_mask: Tensor,
                 attention_mask: Tensor | None = None) -> CorruptedBatch:
        """:class:`CorruptedBatch` ``(input_ids, labels, replaced)``: the corrupted ids, the gold labels and the bool
        mask of the replaced positions."""
        if check_token_ids("input_ids", input_ids).dim() != 2:
            raise ValueError(f"expected input_ids of shape (batch, seq), got {tuple(input_ids.shape)}")
        _check_shape("target_mask", target_mask, input_ids)
        _check_shape("attention_mask", attention_mask, input_ids)
        b, t = input_ids.shape
        dev = input_ids.device
        real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        protected = torch.isin(input_ids, torch.tensor(self.protect_ids, dtype=input_ids.dtype, device=dev))
        eligible = target_mask.bool() & real & ~protected
        sample_on = self._rand(b, device=dev) < self.apply_prob
        u = self._rand(b, t, device=dev)
        if self.exact_fraction:
            n = eligible.sum(dim=1)
            k = torch.floor(self.token_prob * n.double() + 0.5).long()
            chosen = eligible & (_ranks(torch.where(eligible, u, 2.0)) < k[:, None])
        else:
            chosen = eligible & (u < self.token_prob)
        chosen &= sample_on[:, None]

        if self.pool == "vocab":
            assert self.vocab_size is not None  # the constructor refuses pool='vocab' without it
            allowed = torch.ones(self.vocab_size, dtype=torch.bool, device=dev)
            allowed[self.protect_ids] = False
            ids = allowed.nonzero().squeeze(1)
            pick = (self._rand(b, t, device=dev) * len(ids)).long().clamp_max(len(ids) - 1)
            replacement = ids[pick].to(input_ids.dtype)
        else:
            members = eligible if self.pool == "target" else real
            count = members.sum(dim=1)
            chosen &= count[:, None] > 0  # nothing to draw from: leave the sample alone
            # the j-th member of row r, j uniform in [0, count_r): position of the (j+1)-th True in the row
            j = (self._rand(b, t, device=dev) * count[:, None]).long().clamp_max((count - 1).clamp_min(0)[:, None])
            order = torch.where(members, torch.arange(t, device=dev), t).sort(dim=1).values.clamp_max(t - 1)
            replacement = input_ids.gather(1, order.gather(1, j))
        corrupted = torch.where(chosen, replacement, input_ids)
        return CorruptedBatch(corrupted, input_ids.clone(), chosen)

    def unilm(self, input_ids: Tensor, token_type_ids: Tensor,
              attention_mask: Tensor | None = None) -> CorruptedBatch:
        """For a UniLM batch: the target segment is ``token_type_ids == 1`` (its closing [SEP] should be in
        ``protect_ids``; its corruption would not change the loss anyway, since nothing is predicted from it)."""
        _check_shape("token_type_ids", token_type_ids, input_ids)
        return self(input_ids, token_type_ids == 1, attention_mask)

    def state_dict(self) -> dict[str, Any]:
        return {"apply_prob": self.apply_prob, "token_prob": self.token_prob, "pool": self.pool,
                "exact_fraction": self.exact_fraction, "protect_ids": list(self.protect_ids),
                "vocab_size": self.vocab_size,
                "generator": None if self.generator is None else self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load a :meth:`state_dict`: its settings are checked as the constructor checks them before any is set, so
        a refused state leaves this object as it was."""
        check_state("a RandomTokenReplacement", state,
                    ("apply_prob", "token_prob", "pool", "exact_fraction", "protect_ids", "vocab_size", "generator"))
        gen_state = state["generator"]
        if gen_state is not None and not isinstance(gen_state, Tensor):
            raise TypeError(f"expected the state's generator to be a generator state tensor or None, got "
                            f"{type(gen_state).__name__}")
        fresh = RandomTokenReplacement(state["apply_prob"], state["token_prob"], state["pool"],
                                       state["exact_fraction"], state["protect_ids"], state["vocab_size"],
                                       self.generator)  # validates the settings as the constructor does
        if gen_state is not None:
            if fresh.generator is None:
                fresh.generator = torch.Generator()
            fresh.generator.set_state(gen_state)
        vars(self).update(vars(fresh))


# ---------------------------------------------------------------------------------------------------------------
# UniLM seq2seq batches and loss
# ---------------------------------------------------------------------------------------------------------------


def _token_list(name: str, i: int, seq: Any) -> list[int]:
    """``seq`` (a list or 1-D tensor of token ids) as a list of ints, else a ``TypeError`` naming ``name[i]``."""
    t = None
    if not isinstance(seq, (str, bytes)):
        try:
            t = torch.as_tensor(seq)
        except (TypeError, ValueError, RuntimeError):
            t = None
    if t is None or t.dim() != 1 or (t.numel() and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)):
        raise TypeError(f"expected {name}[{i}] to be a sequence of integer token ids, got {seq!r}")
    return [int(v) for v in t.tolist()]


def pack_unilm(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]] | None, cls_id: int, sep_id: int,
               pad_id: int = 0, target_start: int | None = None) -> dict[str, Tensor]:
    """The UniLM layout ``[CLS] source [SEP] target [SEP]``, segment 0 then 1, right-padded with ``pad_id``.

    ``targets=None`` gives the source part alone (``[CLS] source [SEP]``, segment 0), the decoder's prompt.
    Returns ``input_ids``, ``token_type_ids`` and ``attention_mask`` (long tensors, batch × longest). With
    ``target_start`` it also returns ``position_ids``: the source at 0, 1, …, the target (from its first token)
    at ``target_start``, ``target_start`` + 1, … (padding at 0); pass them to the model, and the same
    ``target_start`` to :class:`kexue.models.decoding.UniLMStep` / :func:`kexue.models.decoding.generate`. By
    default positions run on through the packed sequence, UniLM's usual layout.
    """
    if targets is not None and len(targets) != len(sources):
        raise ValueError(f"expected as many targets as sources ({len(sources)}), got {len(targets)}")
    if len(sources) == 0:
        raise ValueError("expected at least one source, got none")
    for name, value in (("cls_id", cls_id), ("sep_id", sep_id), ("pad_id", pad_id)):
        check_int(name, value)
    if target_start is not None:
        check_int("target_start", target_start, minimum=0)
    rows, segs = [], []
    for i, src in enumerate(sources):
        ids = [cls_id, *_token_list("sources", i, src), sep_id]
        seg = [0] * len(ids)
        if targets is not None:
            tgt = _token_list("targets", i, targets[i])
            ids += [*tgt, sep_id]
            seg += [1] * (len(tgt) + 1)
        rows.append(ids)
        segs.append(seg)
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (r, s) in enumerate(zip(rows, segs, strict=True)):
        input_ids[i, :len(r)] = torch.tensor(r)
        token_type_ids[i, :len(s)] = torch.tensor(s)
        attention_mask[i, :len(r)] = 1
    out = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
    if target_start is not None:
        position_ids = torch.zeros(len(rows), width, dtype=torch.long)
        for i, src in enumerate(sources):
            n_src = len(src) + 2
            position_ids[i, :n_src] = torch.arange(n_src)
            n_tgt = len(rows[i]) - n_src
            position_ids[i, n_src:n_src + n_tgt] = torch.arange(target_start, target_start + n_tgt)
        out["position_ids"] = position_ids
    return out


def unilm_seq2seq_loss(logits: Tensor, target: Tensor, token_type_ids: Tensor, attention_mask: Tensor | None = None,
                       reduction: Reduction = "mean") -> Tensor:
    """Cross-entropy of ``logits[:, :-1]`` against ``target[:, 1:]`` (the gold token ids, batch × seq) where the
    label is a target token (segment 1, not padding), as the post's code: ``y_mask = segment_ids[:, 1:]``; the mean
    is over those tokens. ``reduction="none"`` returns the (batch, seq − 1) per-token losses (0 off the target)."""
    check_choice("reduction", reduction, Reduction)
    check_token_ids("target", target)
    if logits.dim() != 3 or logits.shape[:2] != target.shape:
        raise ValueError(f"expected logits (batch, seq, vocab) matching target {tuple(target.shape)}, "
                         f"got {tuple(logits.shape)}")
    _check_shape("token_type_ids", token_type_ids, target, "target")
    _check_shape("attention_mask", attention_mask, target, "target")
    weight = (token_type_ids[:, 1:] == 1)
    if attention_mask is not None:
        weight = weight & attention_mask[:, 1:].bool()
    counted = target[:, 1:][weight]
    out_of_range = (counted < 0) | (counted >= logits.shape[-1])
    if bool(out_of_range.any()):  # cross_entropy would fail without naming the id (or a device assert on a GPU)
        raise ValueError(f"expected target ids in [0, {logits.shape[-1]}) (the logits' vocabulary) where the loss "
                         f"counts, got {int(counted[out_of_range][0])}")
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1), target[:, 1:].flatten(), reduction="none")
    ce = ce.view(target.shape[0], -1) * weight
    if reduction == "none":
        return ce
    if reduction == "sum":
        return ce.sum()
    return ce.sum() / weight.sum().clamp_min(1)


# ---------------------------------------------------------------------------------------------------------------
# The gradient-penalty remedy
# ---------------------------------------------------------------------------------------------------------------


def penalized_unilm_loss(model: nn.Module, batch: dict[str, Tensor], epsilon: float = 1.0,
                         embedding: nn.Module | None = None) -> PenalizedLoss:
    """The post's second remedy: :class:`~kexue.train.PenalizedLoss` ``(total, loss, penalty)``, total = loss +
    ½ε·Σ‖∂loss/∂e‖², for a UniLM seq2seq batch, with e the token-embedding outputs (one row per token; the post's
    code: ``0.5 * K.sum(grad.values**2)``, ε = 1).

    ``batch``: ``input_ids``, ``token_type_ids``, ``attention_mask`` and optionally ``labels`` (gold tokens when the
    inputs were corrupted by :class:`RandomTokenReplacement`; default ``input_ids``) and ``position_ids``. The loss is
    :func:`unilm_seq2seq_loss`; the penalty is :func:`kexue.train.penalty.gradient_penalty_loss` (padding rows
    masked). Call ``total.backward()``.
    """
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        if key not in batch:
            raise KeyError(f"expected batch to hold {key!r}, got keys {sorted(batch)}")

    def loss_fn(m: nn.Module, b: dict[str, Tensor]) -> Tensor:
        logits = m(b["input_ids"], attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"],
                   position_ids=b.get("position_ids")).mlm_logits
        if logits is None:
            raise ValueError("expected model to return mlm_logits (a model with an MLM head), got None")
        return unilm_seq2seq_loss(logits, b.get("labels", b["input_ids"]), b["token_type_ids"], b["attention_mask"])

    return gradient_penalty_loss(model, batch, loss_fn, epsilon=epsilon, mask=batch["attention_mask"],
                                 embedding=embedding)


__all__ = ["CorruptedBatch", "RandomTokenReplacement", "ReplacementPool", "pack_unilm", "penalized_unilm_loss",
           "unilm_seq2seq_loss"]
