"""MLM as dropout: BERT masking, the expected-embedding correction, and DropToken.

Su Jianlin, "Dropout视角下的MLM和MAE：一些新的启发" (MLM and MAE from the dropout viewpoint: some new insights),
2021-11-29, https://kexue.fm/archives/8770.

- **MLM is dropout on the input embeddings.** BERT selects 15 % of the tokens; of those 80 % become [MASK], 10 %
  stay and 10 % become a random token (:class:`MLMMasking`). Dropout's usual inference rule (the weight average)
  feeds a random input's expectation, so after pre-training the token embedding E[i] should become
  E[corrupted i] = (1 − s)·E[i] + s·(p_m·E[mask] + p_k·E[i] + p_r·Σ_v q_v E[v]); for BERT's numbers with uniform
  random tokens, 0.865·E[i] + 0.12·E[mask] + 0.015·mean(E) (:func:`expected_embedding_correction_`). The post
  found **no significant change** on CLUE with BERT and RoBERTa.
- **MAE is attention dropout on key columns, shared by every layer.** Read backwards this gives **DropToken** for
  fine-tuning: drop a random fraction of the tokens but keep the survivors' original position ids
  (:class:`DropToken`). It equals masking the dropped keys in every layer and costs less, the sequence being
  shorter. Su's CLUE runs: IFLYTEK gains, elsewhere the changes are within luck; 0.1–0.15 recommended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .._validate import check_float, check_int
from ..nn.padding import pad
from ._checks import check_state, check_token_ids, int_ids


class MaskedBatch(NamedTuple):
    """What :class:`MLMMasking` returns: the masked ``input_ids``, the ``labels`` (the original token at selected
    positions, -100 elsewhere) and ``kinds``, a (batch, seq) long tensor: 0 not selected, 1 [MASK], 2 kept,
    3 random."""

    input_ids: Tensor
    labels: Tensor
    kinds: Tensor


def _check_split(p_mask: float, p_keep: float, p_random: float) -> None:
    for name, v in (("p_mask", p_mask), ("p_keep", p_keep), ("p_random", p_random)):
        check_float(name, v, 0.0, 1.0)
    if abs(p_mask + p_keep + p_random - 1.0) > 1e-9:
        raise ValueError(f"expected p_mask + p_keep + p_random = 1, got {p_mask} + {p_keep} + {p_random} = "
                         f"{p_mask + p_keep + p_random}")


def _embedding_weight(weight: Tensor | nn.Embedding) -> Tensor:
    """The (vocab, dim) floating-point, finite table of ``weight`` (an ``nn.Embedding`` or its weight)."""
    w = weight.weight if isinstance(weight, nn.Embedding) else weight
    if not isinstance(w, Tensor) or w.dim() != 2:
        got = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
        raise ValueError(f"expected weight to be a (vocab, dim) embedding weight, got {got}")
    if not w.is_floating_point():
        raise TypeError(f"expected weight to be a floating-point tensor, got {w.dtype}")
    bad = int((~torch.isfinite(w)).sum())
    if bad:
        raise ValueError(f"expected weight to be finite, got {bad} NaN or infinite values (the correction would "
                         f"spread them to every row)")
    return w


def _check_shape(name: str, x: Tensor | None, input_ids: Tensor) -> None:
    if x is not None and x.shape != input_ids.shape:
        raise ValueError(f"expected {name} in the shape of input_ids, {tuple(input_ids.shape)}, got {tuple(x.shape)}")


def _check_dist(random_dist: Tensor | None, vocab_size: int) -> Tensor | None:
    if random_dist is None:
        return None
    q = torch.as_tensor(random_dist, dtype=torch.float64)
    if q.shape != (vocab_size,):
        raise ValueError(f"expected random_dist of shape ({vocab_size},), got {tuple(q.shape)}")
    if not bool(torch.isfinite(q).all()) or bool((q < 0).any()) or not float(q.sum()) > 0:
        raise ValueError(f"expected random_dist to be finite and non-negative with a positive sum, got minimum "
                         f"{float(q.min()):g} and sum {float(q.sum()):g}")
    return q / q.sum()


def _ids(ids: Iterable[int], vocab_size: int, name: str) -> list[int]:
    out = int_ids(name, ids)
    bad = [i for i in out if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"expected {name} in the vocabulary [0, {vocab_size}), got {bad}")
    return out


class MLMMasking:
    """BERT's masking as a collate transform: ``masked, labels, kinds = masking(input_ids, attention_mask)`` (a
    :class:`MaskedBatch`).

    Each real token not in ``protect_ids`` is selected with probability ``select`` (or, ``exact_fraction=True``,
    exactly round(select · n) of them per row); a selected token becomes ``mask_id`` with probability ``p_mask``,
    stays with ``p_keep`` and becomes a random token with ``p_random``, drawn from ``random_dist`` (a
    probability vector over the vocabulary, e.g. unigram frequencies) or uniformly over the vocabulary (BERT and
    ``transformers.DataCollatorForLanguageModeling``). ``labels`` holds the original token at selected positions and
    -100 elsewhere. :meth:`collate` is a ready ``DataLoader`` ``collate_fn`` (pad, then mask);
    :meth:`correct_embeddings_` applies the matching :func:`expected_embedding_correction_`.
    """

    def __init__(self, mask_id: int, vocab_size: int, select: float = 0.15, p_mask: float = 0.8, p_keep: float = 0.1,
                 p_random: float = 0.1, protect_ids: Iterable[int] = (), random_dist: Tensor | None = None,
                 exact_fraction: bool = False, generator: torch.Generator | None = None) -> None:
        check_int("vocab_size", vocab_size, minimum=1)
        check_int("mask_id", mask_id, minimum=0, maximum=vocab_size - 1)
        self.select = check_float("select", select, 0.0, 1.0)
        _check_split(p_mask, p_keep, p_random)
        self.mask_id = mask_id
        self.vocab_size = vocab_size
        self.p_mask, self.p_keep, self.p_random = float(p_mask), float(p_keep), float(p_random)
        self.protect_ids = _ids(protect_ids, vocab_size, "protect_ids")
        self.random_dist = _check_dist(random_dist, vocab_size)
        self.exact_fraction = bool(exact_fraction)
        self.generator = generator

    def _rand(self, *shape: int, device: torch.device) -> Tensor:
        gen_dev = self.generator.device if self.generator is not None else device
        return torch.rand(*shape, generator=self.generator, device=gen_dev).to(device)

    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> MaskedBatch:
        """:class:`MaskedBatch` ``(input_ids, labels, kinds)``: the masked ids, the labels and the (batch, seq) kind
        of each position (0 not selected, 1 [MASK], 2 kept, 3 random)."""
        if check_token_ids("input_ids", input_ids).dim() != 2:
            raise ValueError(f"expected input_ids of shape (batch, seq), got {tuple(input_ids.shape)}")
        _check_shape("attention_mask", attention_mask, input_ids)
        real_ids = input_ids if attention_mask is None else input_ids[attention_mask.bool()]
        if real_ids.numel() and bool(((real_ids < 0) | (real_ids >= self.vocab_size)).any()):
            bad = real_ids[(real_ids < 0) | (real_ids >= self.vocab_size)][0]
            raise ValueError(f"expected input_ids in the vocabulary [0, {self.vocab_size}), got {int(bad)}")
        dev = input_ids.device
        b, t = input_ids.shape
        eligible = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        if self.protect_ids:
            eligible &= ~torch.isin(input_ids, torch.tensor(self.protect_ids, dtype=input_ids.dtype, device=dev))
        u = self._rand(b, t, device=dev)
        if self.exact_fraction:
            k = torch.floor(self.select * eligible.sum(dim=1).double() + 0.5).long()
            ranks = torch.where(eligible, u, 2.0).argsort(dim=1).argsort(dim=1)
            selected = eligible & (ranks < k[:, None])
        else:
            selected = eligible & (u < self.select)
        v = self._rand(b, t, device=dev)
        to_mask = selected & (v < self.p_mask)
        to_random = selected & (v >= self.p_mask + self.p_keep)
        if self.random_dist is None:
            rand_ids = (self._rand(b, t, device=dev) * self.vocab_size).long().clamp_max(self.vocab_size - 1)
        else:
            rand_ids = torch.multinomial(self.random_dist.float(), b * t, replacement=True,
                                         generator=self.generator).view(b, t).to(dev)
        masked = torch.where(to_mask, torch.full_like(input_ids, self.mask_id), input_ids)
        masked = torch.where(to_random, rand_ids.to(input_ids.dtype), masked)
        labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
        kinds = selected.long() * 2  # kept by default
        kinds = torch.where(to_mask, 1, kinds)
        kinds = torch.where(to_random, 3, kinds)
        return MaskedBatch(masked, labels, kinds)

    def collate(self, examples: Sequence[Sequence[int] | Tensor | Mapping[str, Any]],
                pad_id: int = 0) -> dict[str, Tensor]:
        """A ``DataLoader`` ``collate_fn``: right-pad the examples (token-id lists, 1-D tensors or dicts with
        ``input_ids``) with ``pad_id`` and mask them: ``{"input_ids", "attention_mask", "labels"}``. Use
        ``functools.partial(masking.collate, pad_id=...)`` for another padding id."""
        if len(examples) == 0:
            raise ValueError("expected at least one example to collate, got none")
        check_int("pad_id", pad_id)
        for i, e in enumerate(examples):
            if isinstance(e, Mapping) and "input_ids" not in e:
                raise KeyError(f"expected example {i} to hold 'input_ids', got keys {sorted(e)}")
        rows = [torch.as_tensor(e["input_ids"] if isinstance(e, Mapping) else e, dtype=torch.long)
                for e in examples]
        for i, r in enumerate(rows):
            if r.dim() != 1:
                raise ValueError(f"expected example {i} to be a 1-D list of token ids, got shape {tuple(r.shape)}")
        ids, attention_mask = pad(rows, pad_id)
        masked, labels, _ = self(ids, attention_mask)
        return {"input_ids": masked, "attention_mask": attention_mask, "labels": labels}

    def correct_embeddings_(self, weight: Tensor | nn.Embedding, exclude_ids: Iterable[int] | None = None) -> Tensor:
        """:func:`expected_embedding_correction_` with this masking's rates and random distribution;
        ``exclude_ids`` defaults to ``protect_ids`` (tokens that are never selected keep their rows). A table with
        more rows than ``vocab_size`` (a vocabulary padded to a multiple of 8, say) is corrected with random tokens
        drawn from the masking's vocabulary only, as :meth:`__call__` draws them."""
        rows = _embedding_weight(weight).shape[0]
        if rows < self.vocab_size:
            raise ValueError(f"expected weight with the masking's {self.vocab_size} rows (vocab_size) or more, got "
                             f"{rows}")
        q = self.random_dist
        if rows > self.vocab_size:
            padded = torch.zeros(rows, dtype=torch.float64)
            padded[:self.vocab_size] = 1.0 / self.vocab_size if q is None else q
            q = padded
        return expected_embedding_correction_(
            weight, self.mask_id, self.select, self.p_mask, self.p_keep, self.p_random, q,
            self.protect_ids if exclude_ids is None else exclude_ids)

    def state_dict(self) -> dict[str, Any]:
        return {"mask_id": self.mask_id, "vocab_size": self.vocab_size, "select": self.select, "p_mask": self.p_mask,
                "p_keep": self.p_keep, "p_random": self.p_random, "protect_ids": list(self.protect_ids),
                "random_dist": self.random_dist, "exact_fraction": self.exact_fraction,
                "generator": None if self.generator is None else self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` of an ``MLMMasking``: its settings are checked as the constructor checks them
        before any is set, so a refused state leaves this masking as it was."""
        keys = ("mask_id", "vocab_size", "select", "p_mask", "p_keep", "p_random", "protect_ids", "random_dist",
                "exact_fraction")
        check_state("an MLMMasking", state, keys)
        gen_state = state.get("generator")
        if gen_state is not None and not isinstance(gen_state, Tensor):
            raise TypeError(f"expected the state's generator to be a generator state tensor or None, got "
                            f"{type(gen_state).__name__}")
        fresh = MLMMasking(**{k: state[k] for k in keys})  # validates the settings as the constructor does
        fresh.generator = self.generator
        if gen_state is not None and fresh.generator is None:
            fresh.generator = torch.Generator()
        if gen_state is not None:
            assert fresh.generator is not None
            fresh.generator.set_state(gen_state)
        vars(self).update(vars(fresh))


@torch.no_grad()
def expected_embedding_correction_(weight: Tensor | nn.Embedding, mask_id: int, select: float = 0.15,
                                   p_mask: float = 0.8, p_keep: float = 0.1, p_random: float = 0.1,
                                   random_dist: Tensor | None = None, exclude_ids: Iterable[int] = ()) -> Tensor:
    """Replace each token embedding by its expectation under MLM corruption, in place, once, after pre-training:

        E[i] ← (1 − s)·E[i] + s·(p_m·E[mask] + p_k·E[i] + p_r·Σ_v q_v·E[v])

    with s = ``select``, (p_m, p_k, p_r) the split of a selected token and q = ``random_dist`` (uniform when None:
    BERT's 0.865·E[i] + 0.12·E[mask] + 0.015·mean(E)). All terms use the table as it was before the call.
    Rows in ``exclude_ids`` (tokens never selected for masking, e.g. [CLS], [SEP], [PAD]) are left alone; Su's
    snippet rewrites every row. Apply it to the **token** embedding only (``model.embeddings.word``), never to the
    position or segment tables. With a tied MLM decoder this also changes the output layer. Returns the weight.

    kexue.fm/archives/8770 ("Dropout视角下的MLM和MAE：一些新的启发", 2021-11-29).
    """
    w = _embedding_weight(weight)
    vocab = w.shape[0]
    check_int("mask_id", mask_id, minimum=0, maximum=vocab - 1)
    check_float("select", select, 0.0, 1.0)
    _check_split(p_mask, p_keep, p_random)
    q = _check_dist(random_dist, vocab)
    excluded = _ids(exclude_ids, vocab, "exclude_ids")
    e = w.detach().double()
    mean = e.mean(dim=0) if q is None else q.to(e.device) @ e
    new = (1 - select + select * p_keep) * e + select * (p_mask * e[mask_id] + p_random * mean)
    if excluded:
        new[excluded] = e[excluded]
    w.copy_(new.to(w.dtype))
    return w


# ---------------------------------------------------------------------------------------------------------------
# DropToken
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class DroppedBatch:
    """DropToken's output: the survivors gathered to the left in their original order, right-padded.

    ``kept`` is the (batch, original seq) bool mask of the surviving positions; :meth:`model_inputs` gives the
    keyword arguments for a kexue Transformer (or any model taking ``position_ids``).
    """

    input_ids: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    token_type_ids: Tensor | None
    kept: Tensor

    def model_inputs(self) -> dict[str, Tensor]:
        out = {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "position_ids": self.position_ids}
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids
        return out


class DropToken(nn.Module):
    """Drop a random fraction of the tokens in fine-tuning, keeping the survivors' original position ids.

    In training mode each real token not in ``protect_ids`` is dropped with probability ``rate`` (or, with
    ``exact_fraction``, exactly round(rate · n) of them per row), but at least ``min_keep`` droppable tokens of a row
    survive (those with the largest draws). The survivors are gathered in order, with their position ids and
    segment ids, and the padding mask is rebuilt. In eval mode nothing is dropped. The result equals the full
    sequence with the dropped keys masked in every layer, at the kept positions (the MAE reading of the post), and
    is cheaper. For sequence-level tasks only: token-level labels would lose their tokens.

    ``position_ids`` default to 0..T−1 (BERT); for RoBERTa-style positions pass
    ``model.embeddings.position_ids(input_ids)``. Never re-index positions after dropping.

    kexue.fm/archives/8770 ("Dropout视角下的MLM和MAE：一些新的启发", 2021-11-29).
    """

    def __init__(self, rate: float = 0.1, protect_ids: Iterable[int] = (), min_keep: int = 1, pad_id: int = 0,
                 exact_fraction: bool = False, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.rate = check_float("rate", rate, 0.0, 1.0, high_open=True)
        self.min_keep = check_int("min_keep", min_keep, minimum=0)
        self.pad_id = check_int("pad_id", pad_id)
        self.protect_ids = int_ids("protect_ids", protect_ids)
        self.exact_fraction = bool(exact_fraction)
        self.generator = generator

    def extra_repr(self) -> str:
        return f"rate={self.rate}, protect_ids={self.protect_ids}, min_keep={self.min_keep}"

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                position_ids: Tensor | None = None) -> DroppedBatch:
        if check_token_ids("input_ids", input_ids).dim() != 2:
            raise ValueError(f"expected input_ids of shape (batch, seq), got {tuple(input_ids.shape)}")
        _check_shape("attention_mask", attention_mask, input_ids)
        _check_shape("token_type_ids", token_type_ids, input_ids)
        b, t = input_ids.shape
        dev = input_ids.device
        if position_ids is None:
            position_ids = torch.arange(t, device=dev).expand(b, t)
        elif position_ids.shape != input_ids.shape:
            if position_ids.dim() != 2 or position_ids.shape[1] != t or position_ids.shape[0] not in (1, b):
                raise ValueError(f"expected position_ids of shape {(b, t)} or {(1, t)} for input_ids "
                                 f"{tuple(input_ids.shape)}, got {tuple(position_ids.shape)}")
            position_ids = position_ids.expand(b, t)
        real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        if not self.training or self.rate == 0.0:
            kept = real
        else:
            droppable = real
            if self.protect_ids:
                droppable = real & ~torch.isin(input_ids, torch.tensor(self.protect_ids, dtype=input_ids.dtype,
                                                                       device=dev))
            gen_dev = self.generator.device if self.generator is not None else dev
            u = torch.rand(b, t, generator=self.generator, device=gen_dev).to(dev)
            # rank 0 = the smallest draw among droppable tokens of the row
            ranks = torch.where(droppable, u, 2.0).argsort(dim=1).argsort(dim=1)
            n = droppable.sum(dim=1, keepdim=True)
            if self.exact_fraction:
                drop = droppable & (ranks < torch.floor(self.rate * n.double() + 0.5).long())
            else:
                drop = droppable & (u < self.rate)
            drop &= ranks < n - self.min_keep  # the min_keep largest draws always survive
            kept = real & ~drop
        count = kept.sum(dim=1)
        width = max(int(count.max()), 1)
        order = (~kept).to(torch.int8).argsort(dim=1, stable=True)[:, :width]  # survivors first, in order
        valid = torch.arange(width, device=dev)[None] < count[:, None]
        ids = torch.where(valid, input_ids.gather(1, order), self.pad_id)
        pos = torch.where(valid, position_ids.gather(1, order), 0)
        seg = None if token_type_ids is None else torch.where(valid, token_type_ids.gather(1, order), 0)
        mask_dtype = attention_mask.dtype if attention_mask is not None else torch.long
        return DroppedBatch(ids, valid.to(mask_dtype), pos, seg, kept)


__all__ = ["DropToken", "DroppedBatch", "MLMMasking", "MaskedBatch",
           "expected_embedding_correction_"]
