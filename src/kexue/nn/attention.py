"""Multi-head self-attention with the posts' switches: key_size, talking heads, residual attention (RealFormer),
and linear-attention kernels.

Standard: per head P = softmax(QKᵀ·s + M), O = PV, with s = 1/√key_size (or 1 without the scale) and M = 0 where the
mask allows, −∞ where not. Variants:

- ``key_size`` (post "突破瓶颈，打造更强大的Transformer", 2020-04-13, https://kexue.fm/archives/7325): Q and K
  have ``key_size`` dims per head, V keeps ``head_size``; the scale is 1/√key_size (not the V size).
- ``talking_heads`` (same post; Shazeer et al. 2020): the pre-softmax logits are mixed across heads,
  J^{(i)} = Σ_j λ_ij Ĵ^{(j)}, λ initialised to the identity; the mask is added *after* mixing (mixing −∞ gives NaN),
  in float32. ``talking_heads_post_softmax`` adds the paper's second mixing of the probabilities (also identity).
- ``residual_attention`` (post "RealFormer：把残差转移到Attention矩阵上面去", 2020-12-24,
  https://kexue.fm/archives/8027): A_n = Q_nK_nᵀ·s + A_{n−1}, the running sum over layers of the *pre-mask* scores
  (the mask is added afresh in each layer), as the paper defines it. bert4keras passes only the previous layer's own
  scores; we follow the paper (the specs' decision). With talking heads as well, the carried sum is taken before mixing.
- ``kind`` ∈ {"linear", "performer", "taylor", "exp_limit"}: linear attention (see :mod:`kexue.nn.linear_attention`),
  with padding masks and a causal form; no score matrix exists, so none of the variants above combine with it.

SDPA (``torch.nn.functional.scaled_dot_product_attention``) serves every case that needs no score matrix (standard
attention at any key_size, with or without the scale); talking heads and residual attention run an explicit path,
chosen automatically, and ``impl="sdpa"`` with them is refused. In training on CPU with attention dropout, SDPA
would take its math path and draw the mask with ``bernoulli_`` (slow on CPU); ``impl="auto"`` then computes the same
product explicitly with :func:`kexue.nn.dropout.dropout` (``impl="sdpa"`` keeps SDPA).

For inference, :meth:`Attention.freeze` snapshots the projections with Q, K and V fused into one matrix product
(:class:`kexue.nn.frozen_linear.FrozenLinear`); it applies to standard softmax attention with key_size = head_size and
is a no-op otherwise. :meth:`kexue.models.Transformer.fast_inference` sets and drops it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_bool, check_choice, check_float, check_int
from . import linear_attention as LA
from .dropout import dropout
from .frozen_linear import FrozenLinear, Kernel

#: "softmax", or a linear-attention kernel (:mod:`kexue.nn.linear_attention`): "linear" (elu + 1), "performer",
#: "taylor", "exp_limit".
AttentionKind = Literal["softmax", "linear", "performer", "taylor", "exp_limit"]
ATTENTION_KINDS: tuple[AttentionKind, ...] = get_args(AttentionKind)
#: "auto" (SDPA where no score matrix is needed), "sdpa" (refused when one is), "math" (always explicit).
AttentionImpl = Literal["auto", "sdpa", "math"]
ATTENTION_IMPLS: tuple[AttentionImpl, ...] = get_args(AttentionImpl)


def check_attention(
    hidden_size: int,
    num_heads: int,
    dropout: float = 0.0,
    *,
    key_size: int | None = None,
    talking_heads: bool = False,
    talking_heads_post_softmax: bool = False,
    residual_attention: bool = False,
    kind: AttentionKind = "softmax",
    impl: AttentionImpl = "auto",
    feature_order: int = 2,
    num_features: int = 256,
    names: Mapping[str, str] | None = None,
) -> None:
    """Every rule on :class:`Attention`'s options, checked here once: :class:`Attention` calls it, and so does
    ``kexue.models.TransformerConfig`` (which names the options by its own fields: ``names`` maps an argument here to
    the caller's name, e.g. ``{"kind": "attention"}``, so the error names what the caller wrote). Raises
    ``ValueError`` (``TypeError`` for a non-integer size) saying what was expected and what came."""

    def name(arg: str) -> str:
        return names.get(arg, arg) if names else arg

    check_int(name("hidden_size"), hidden_size, 1)
    check_int(name("num_heads"), num_heads, 1)
    if hidden_size % num_heads != 0:
        raise ValueError(f"expected {name('hidden_size')} divisible by {name('num_heads')} "
                         f"({hidden_size} % {num_heads} = {hidden_size % num_heads})")
    check_float(name("dropout"), dropout, 0.0, 1.0, high_open=True)
    for flag, value in (("talking_heads", talking_heads), ("talking_heads_post_softmax", talking_heads_post_softmax),
                        ("residual_attention", residual_attention)):
        check_bool(name(flag), value)
    check_choice(name("kind"), kind, AttentionKind)
    check_choice(name("impl"), impl, AttentionImpl)
    if key_size is not None:
        check_int(name("key_size"), key_size, 1)
    th, ra = name("talking_heads"), name("residual_attention")
    if (talking_heads or residual_attention) and impl == "sdpa":
        raise ValueError(f"expected {name('impl')} 'auto' or 'math' with {th} or {ra} (they need the score matrix, "
                         f"which fused SDPA does not expose), got {name('impl')}='sdpa'")
    if (talking_heads or residual_attention) and kind != "softmax":
        raise ValueError(f"expected {name('kind')}='softmax' with {th} or {ra} (they mix or carry the score matrix, "
                         f"which linear attention never forms), got {name('kind')}={kind!r}")
    if talking_heads_post_softmax and not talking_heads:
        raise ValueError(f"expected {th}=True with {name('talking_heads_post_softmax')}=True (the second mixing "
                         f"comes with the first), got {th}=False")
    if kind in ("taylor", "exp_limit"):
        LA._check_order(feature_order, False, name("feature_order"))
    check_int(name("num_features"), num_features, 1)


class AttentionOutput(NamedTuple):
    """What :class:`Attention` returns (it unpacks as ``out, scores = attn(x)``)."""

    #: (batch, seq, hidden) after the output projection.
    output: Tensor
    #: The pre-softmax scores QKᵀ·s (+ the carried sum with residual attention), before talking-heads mixing and the
    #: mask, when the explicit path ran (talking heads, residual attention, ``impl="math"``); None after SDPA or
    #: linear attention.
    scores: Tensor | None


def _broadcasts(x: Tensor, shape: tuple[int, ...]) -> bool:
    """Whether ``x`` broadcasts to ``shape`` (without growing it). Plain Python: torch.broadcast_shapes takes about
    70 µs here, this about 3 µs."""
    return x.dim() <= len(shape) and all(a == 1 or a == b for a, b in zip(reversed(x.shape), reversed(shape)))


def _masked_logits(logits: Tensor, mask: Tensor | None, inplace: bool = False) -> Tensor:
    """logits + M: a boolean mask (True = may attend) puts the dtype's lowest value where False (a fully masked row
    stays finite); a float mask is added."""
    if mask is None:
        return logits
    if mask.dtype == torch.bool:
        low = torch.finfo(logits.dtype).min
        return logits.masked_fill_(~mask, low) if inplace else logits.masked_fill(~mask, low)
    return logits.add_(mask) if inplace else logits + mask.to(logits.dtype)


class Attention(nn.Module):
    """Self-attention with separate Q, K, V projections (as BERT's checkpoints store them) and an output projection.

    ``forward(x, mask=None, prev_scores=None, key_padding=None, causal=False, cache=None)`` returns an
    :class:`AttentionOutput` ``(output, scores)``: ``mask`` is a bool (True = attend) or additive float mask
    broadcastable to (batch, heads, seq, seq) for softmax attention; linear kinds take ``key_padding`` (batch, seq)
    and ``causal`` instead. With ``residual_attention``, pass the previous layer's ``scores`` as ``prev_scores``.
    The options are checked by :func:`check_attention`.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        dropout: float = 0.0,
        *,
        key_size: int | None = None,
        scale: bool = True,
        talking_heads: bool = False,
        talking_heads_post_softmax: bool = False,
        residual_attention: bool = False,
        kind: AttentionKind = "softmax",
        impl: AttentionImpl = "auto",
        feature_order: int = 2,
        num_features: int = 256,
        feature_seed: int = 0,
    ) -> None:
        super().__init__()
        check_attention(hidden_size, num_heads, dropout, key_size=key_size, talking_heads=talking_heads,
                        talking_heads_post_softmax=talking_heads_post_softmax,
                        residual_attention=residual_attention, kind=kind, impl=impl, feature_order=feature_order,
                        num_features=num_features)
        check_bool("scale", scale)
        check_int("feature_seed", feature_seed)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.key_size = key_size if key_size is not None else self.head_size
        self.scale = scale
        self.dropout = dropout
        self.kind = kind
        self.impl = impl
        self.residual_attention = residual_attention
        self.q = nn.Linear(hidden_size, num_heads * self.key_size)
        self.k = nn.Linear(hidden_size, num_heads * self.key_size)
        self.v = nn.Linear(hidden_size, hidden_size)
        self.o = nn.Linear(hidden_size, hidden_size)
        eye = torch.eye(num_heads)
        self.pre_mix = nn.Parameter(eye.clone()) if talking_heads else None
        self.post_mix = nn.Parameter(eye.clone()) if talking_heads_post_softmax else None
        self.feature_map: LA.FeatureMap | None = None
        if kind == "linear":
            self.feature_map = LA.elu_features
        elif kind == "taylor":
            self.feature_map = partial(LA.taylor_features, order=feature_order)
        elif kind == "exp_limit":
            self.feature_map = partial(LA.exp_limit_features, n=feature_order)
        self.omega: Tensor | None
        if kind == "performer":
            omega = LA.performer_omega(num_features, self.key_size, torch.Generator().manual_seed(feature_seed))
            self.register_buffer("omega", omega)  # fixed random features, saved with the state_dict
        else:
            self.omega = None
        # (fused q/k/v, o) snapshot for inference, or None; see freeze().
        self._frozen: tuple[FrozenLinear, FrozenLinear | nn.Linear] | None = None

    @property
    def standard(self) -> bool:
        """Plain softmax attention with key_size = head_size: what Hugging Face BERT computes."""
        return (self.kind == "softmax" and self.pre_mix is None and not self.residual_attention
                and self.key_size == self.head_size and self.scale)

    @property
    def uses_sdpa(self) -> bool:
        return self.kind == "softmax" and self.impl != "math" and self.pre_mix is None and not self.residual_attention

    def freeze(self, kernel: Kernel | None = "torch") -> None:
        """Snapshot the projections for inference (Q, K, V fused into one product), or drop it (``None``).

        While a snapshot is set and autograd is off, the forward uses it; changing the weights afterwards does not
        reach it until ``freeze`` is called again. Only standard attention has a fused form; for the variants this
        leaves the snapshot unset.
        """
        if kernel is not None:
            check_choice("kernel", kernel, Kernel)  # here too: the variants below never reach FrozenLinear's check
        if kernel is None or not self.standard:
            self._frozen = None
            return
        o = FrozenLinear([self.o], kernel) if kernel != "torch" else self.o
        self._frozen = (FrozenLinear([self.q, self.k, self.v], kernel), o)

    def _heads(self, x: Tensor, size: int) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, size).transpose(1, 2)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        prev_scores: Tensor | None = None,
        key_padding: Tensor | None = None,
        causal: bool = False,
        cache: dict[str, Tensor] | None = None,
    ) -> AttentionOutput:
        """``cache``: a dict this layer keeps its keys and values in for incremental decoding; the new tokens' K and
        V are appended to what it holds, and the queries (the new tokens only) attend over all of them. The mask
        must then cover (new queries, cached + new keys)."""
        self._check_inputs(x, mask, prev_scores, key_padding, causal, cache)
        b, t, _ = x.shape
        drop = self.dropout if self.training else 0.0
        frozen = self._frozen
        if frozen is not None and not torch.is_grad_enabled():
            qkv = frozen[0](x).view(b, t, 3, self.num_heads, self.head_size)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        else:
            frozen = None
            q, k = self._heads(self.q(x), self.key_size), self._heads(self.k(x), self.key_size)
            v = self._heads(self.v(x), self.head_size)
        if cache is not None:
            if self.kind != "softmax":
                raise ValueError(f"expected kind='softmax' with a key/value cache (linear attention keeps no keys), "
                                 f"got kind={self.kind!r}")
            if "k" in cache:
                self._check_cache(cache, b)
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        expect = (b, self.num_heads, t, k.shape[2])  # (batch, heads, queries, keys)
        for arg, value in (("mask", mask), ("prev_scores", prev_scores)):
            if value is not None and not _broadcasts(value, expect):
                raise ValueError(f"expected {arg} broadcastable to (batch, heads, queries, keys) = {expect}, got "
                                 f"{tuple(value.shape)}")
        scores: Tensor | None = None
        if self.kind != "softmax":
            out = self._linear(q, k, v, key_padding, causal)
        elif self.uses_sdpa and drop > 0 and q.device.type == "cpu" and self.impl == "auto":
            out = self._cpu_dropout(q, k, v, mask, drop)
        elif self.uses_sdpa:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop,
                                                 scale=None if self.scale else 1.0)
        else:
            out, scores = self._explicit(q, k, v, mask, prev_scores, drop)
        out = out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_size)
        return AttentionOutput(frozen[1](out) if frozen is not None else self.o(out), scores)

    def _check_inputs(self, x: Tensor, mask: Tensor | None, prev_scores: Tensor | None, key_padding: Tensor | None,
                      causal: bool, cache: dict[str, Tensor] | None) -> None:
        """forward's arguments, by type, shape and dtype only (no look at values, so no device sync)."""
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.hidden_size or not x.is_floating_point():
            if not isinstance(x, Tensor):
                raise TypeError(f"expected x to be a tensor, got {type(x).__name__}")
            if not x.is_floating_point():
                raise TypeError(f"expected x to be floating-point, got {x.dtype}")
            raise ValueError(f"expected x of shape (batch, seq, {self.hidden_size}), got {tuple(x.shape)}")
        if mask is not None and not (isinstance(mask, Tensor)
                                     and (mask.dtype == torch.bool or mask.is_floating_point())):
            raise TypeError(f"expected mask to be a bool (True = may attend) or float (additive) tensor, got "
                            f"{getattr(mask, 'dtype', type(mask).__name__)}")
        if self.kind == "softmax":
            if key_padding is not None or causal:
                raise ValueError(f"expected key_padding=None and causal=False with kind='softmax' (softmax attention "
                                 f"takes padding and causal masking in mask), got key_padding "
                                 f"{'None' if key_padding is None else 'a tensor'} and causal={causal!r}")
        elif mask is not None:
            raise ValueError(f"expected mask=None with kind={self.kind!r} (linear attention forms no score matrix; "
                             f"pass key_padding and causal), got a mask of shape {tuple(mask.shape)}")
        if prev_scores is not None:
            if not self.residual_attention:
                raise ValueError("expected prev_scores=None without residual_attention (nothing would add them), got "
                                 "a tensor")
            if not isinstance(prev_scores, Tensor):
                raise TypeError(f"expected prev_scores to be a tensor, got {type(prev_scores).__name__}")
        if cache is not None and not isinstance(cache, dict):
            raise TypeError(f"expected cache to be a dict (empty at the first step), got {type(cache).__name__}")

    def _check_cache(self, cache: dict[str, Tensor], b: int) -> None:
        ck, cv = cache["k"], cache.get("v")
        past = ck.shape[2] if ck.dim() == 4 else -1
        want_k, want_v = (b, self.num_heads, past, self.key_size), (b, self.num_heads, past, self.head_size)
        if tuple(ck.shape) != want_k or cv is None or tuple(cv.shape) != want_v:
            raise ValueError(f"expected a cache of this layer's keys {want_k} and values {want_v} (batch, heads, "
                             f"cached, size), got {tuple(ck.shape)} and {None if cv is None else tuple(cv.shape)}")

    def _cpu_dropout(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, drop: float) -> Tensor:
        """softmax(QKᵀ·s + M) with dropout on the probabilities, then ·V: what SDPA computes in training on CPU (it
        takes its math path whenever dropout is on), with the mask drawn by :func:`kexue.nn.dropout.dropout` (a
        quarter of the random draws of SDPA's ``bernoulli_``, a bool mask for backward). The scale is applied to Q,
        the smaller operand; a masked-out key gets the dtype's lowest value, as in :meth:`_explicit`."""
        if self.scale:
            q = q * (1.0 / math.sqrt(self.key_size))
        logits = _masked_logits(q @ k.transpose(-1, -2), mask, inplace=True)  # a fresh product: write into it
        p = torch.softmax(logits, dim=-1, dtype=torch.float32)
        return dropout(p.to(v.dtype), drop) @ v

    def _explicit(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, prev: Tensor | None,
                  drop: float) -> tuple[Tensor, Tensor]:
        logits = q @ k.transpose(-1, -2)
        if self.scale:
            logits = logits * (1.0 / math.sqrt(self.key_size))
        if prev is not None:
            logits = logits + prev  # RealFormer: A_n = QKᵀ·s + A_{n−1} (pre-mask, carried to the next layer)
        carried = logits
        if self.pre_mix is not None:  # talking heads, mixed in float32 before the mask
            logits = torch.einsum("bhij,gh->bgij", logits.float(), self.pre_mix.float())
        # not in place: without talking heads, logits.float() may be the carried tensor itself
        logits = _masked_logits(logits.float(), mask)
        p = torch.softmax(logits, dim=-1)
        if self.post_mix is not None:
            p = torch.einsum("bhij,gh->bgij", p, self.post_mix.float())
        p = dropout(p.to(v.dtype), drop, training=drop > 0)
        return p @ v, carried

    def _linear(self, q: Tensor, k: Tensor, v: Tensor, key_padding: Tensor | None, causal: bool) -> Tensor:
        if self.omega is not None:  # performer
            return LA.performer_attention(q, k, v, self.omega, mask=key_padding, causal=causal, scale=self.scale)
        return LA.linear_attention(q, k, v, self.feature_map, mask=key_padding, causal=causal, scale=self.scale)


__all__ = [
    "ATTENTION_IMPLS",
    "ATTENTION_KINDS",
    "Attention",
    "AttentionImpl",
    "AttentionKind",
    "AttentionOutput",
    "check_attention",
]
