"""The kexue Transformer: a BERT-family encoder built from one :class:`TransformerConfig`.

Embeddings (word + position + segment, LayerNorm, dropout) -> ``num_layers`` blocks -> optional heads:
the pooler (tanh Dense on [CLS]), the MLM head (Dense, activation, LayerNorm, decoder tied to the word embeddings)
and the NSP head (Dense to 2 on the pooled vector). The embeddings, FFN and heads are in :mod:`kexue.models.layers`,
the key/value cache of incremental decoding in :mod:`kexue.models.cache`.

Post-norm block (BERT):  h = LN(x + Attn(x));  y = LN(h + FFN(h)).
Pre-norm block:          h = x + Attn(LN(x));  y = h + FFN(LN(h)); a final LN follows the last block.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast, overload

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from .._validate import check_choice
from ..nn.attention import Attention
from ..nn.dropout import Dropout, seeded_dropout
from ..nn.frozen_linear import Kernel, onednn_available
from ..nn.init import init_weight_
from ..nn.masks import padding_mask, unilm_mask
from ._inputs import check_inputs
from .cache import KVCache
from .config import TransformerConfig
from .layers import Embeddings, FeedForward, MLMHead, Pooler, _make_norm
from .recompute import Policy, _run_blocks, is_recomputed

#: ``fast_inference``'s kernel: "auto" (oneDNN where it applies, else torch) or one of :data:`kexue.nn.Kernel`.
InferenceKernel = Literal["auto", Kernel]


@dataclass
class TransformerOutput:
    """What :class:`Transformer` returns; a head that the model lacks gives None."""

    last_hidden_state: Tensor
    #: Embedding output first, then each block's output (as transformers orders them), when asked for.
    hidden_states: tuple[Tensor, ...] | None = None
    pooler_output: Tensor | None = None
    mlm_logits: Tensor | None = None
    nsp_logits: Tensor | None = None


class Block(nn.Module):
    """One encoder block, as ``config.norm`` places the norms, each branch scaled by a residual gate α if asked:

    - post: h = N(x + α·Attn(x)); y = N(h + α'·FFN(h))   (BERT; α = 1 without a gate)
    - pre:  h = x + α·Attn(N(x)); y = h + α'·FFN(N(h))
    - none: h = x + α·Attn(x);    y = h + α'·FFN(h)      (ReZero's form with ``residual_gate="rezero"``)

    ``forward(x, mask, scores=None, key_padding=None, causal=False, cache=None) -> (y, scores)``: ``scores`` are
    the carried pre-softmax scores of residual attention (None otherwise). It reads h = :meth:`attn_residual` (x),
    y = :meth:`ffn_residual` (h, :meth:`ffn_out` (h)), then a post-norm block's second norm: three pieces, so that
    the ``tail_once`` recompute (:mod:`kexue.models.recompute`) can end its checkpoint at ``ffn_out``.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.placement = config.norm
        self.attn = Attention(
            config.hidden_size, config.num_heads, config.attention_dropout,
            key_size=config.attention_key_size, scale=config.attention_scale, talking_heads=config.talking_heads,
            talking_heads_post_softmax=config.talking_heads_post_softmax,
            residual_attention=config.residual_attention, kind=config.attention, impl=config.attn_impl,
            feature_order=config.linear_attention_order, num_features=config.performer_features,
        )
        self.attn_norm = _make_norm(config) if config.norm != "none" else nn.Identity()
        self.ffn = FeedForward(config)
        self.ffn_norm = _make_norm(config) if config.norm != "none" else nn.Identity()
        self.dropout = Dropout(config.hidden_dropout)
        # Residual gates (post 8620): α starts at 0 so each block starts as the identity. "rezero": learned;
        # "ramp" (Su's preference): a buffer, not trained, raised by a fixed step per optimizer step up to 1.
        self.gate: Tensor | None
        if config.residual_gate == "rezero":
            self.gate = nn.Parameter(torch.zeros(2))
        elif config.residual_gate == "ramp":
            self.register_buffer("gate", torch.zeros(2))
        else:
            self.gate = None

    def attn_residual(self, x: Tensor, mask: Tensor | None, scores: Tensor | None = None,
                      key_padding: Tensor | None = None, causal: bool = False,
                      cache: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
        """(h, scores): h = x + α·dropout(Attn(x)), the FFN branch's residual input (post: N(x + α·Attn(x)); pre:
        x + α·Attn(N(x))), and the pre-softmax scores that residual attention carries."""
        a, scores = self.attn(self.attn_norm(x) if self.placement == "pre" else x, mask, prev_scores=scores,
                              key_padding=key_padding, causal=causal, cache=cache)
        h = x + self._gated(0, self.dropout(a))
        return (self.attn_norm(h) if self.placement == "post" else h), scores

    def ffn_out(self, h: Tensor) -> Tensor:
        """FFN(h) (pre: FFN(N(h))) before its dropout: the down projection's output, where the ``tail_once``
        recompute ends each checkpoint (:mod:`kexue.models.recompute`)."""
        return self.ffn(self.ffn_norm(h) if self.placement == "pre" else h)

    def ffn_residual(self, h: Tensor, f: Tensor) -> Tensor:
        """h + α'·dropout(f), before a post-norm block's second norm. It keeps nothing for backward: the dropout is
        :func:`~kexue.nn.dropout.seeded_dropout`, which draws its mask again in backward (on CPU; why: the
        ``tail_once`` policy of :mod:`kexue.models.recompute`)."""
        return h + self._gated(1, seeded_dropout(f, self.dropout.p, self.training))

    def _gated(self, i: int, branch: Tensor) -> Tensor:
        return branch if self.gate is None else self.gate[i] * branch

    def forward(self, x: Tensor, mask: Tensor | None, scores: Tensor | None = None, key_padding: Tensor | None = None,
                causal: bool = False, cache: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
        h, scores = self.attn_residual(x, mask, scores, key_padding, causal, cache)
        y = self.ffn_residual(h, self.ffn_out(h))
        return (self.ffn_norm(y) if self.placement == "post" else y), scores


class BlockList(nn.ModuleList):
    """The model's blocks: an ``nn.ModuleList`` whose items are typed :class:`Block` (same ``state_dict`` keys)."""

    def __iter__(self) -> Iterator[Block]:
        return cast(Iterator[Block], super().__iter__())

    @overload
    def __getitem__(self, idx: slice) -> BlockList: ...

    @overload
    def __getitem__(self, idx: int) -> Block: ...

    def __getitem__(self, idx: int | slice) -> Block | BlockList:
        return cast("Block | BlockList", super().__getitem__(idx))


class Transformer(nn.Module):
    """A BERT-family encoder. See :class:`TransformerConfig` for the switches.

    ``model(input_ids, attention_mask=None, token_type_ids=None, output_hidden_states=False)`` returns a
    :class:`TransformerOutput`.
    """

    @torch.no_grad()
    def advance_ramp(self) -> None:
        """Raise every ``ramp`` residual gate by ``1 / residual_gate_ramp_steps``, capped at 1. Call it once per
        optimizer step (not per forward or micro-batch), or let :meth:`attach_ramp` do so."""
        steps = self._ramp_steps("advance_ramp")
        for block in self.blocks:
            if block.gate is not None:
                block.gate.add_(1.0 / steps).clamp_(max=1.0)

    def attach_ramp(self, optimizer: torch.optim.Optimizer) -> RemovableHandle:
        """Advance the ramp after each ``optimizer.step()`` (a step post-hook); returns the hook's handle."""
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"expected optimizer to be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self._ramp_steps("attach_ramp")

        def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self.advance_ramp()

        return optimizer.register_step_post_hook(hook)

    def _ramp_steps(self, caller: str) -> int:
        steps = self.config.residual_gate_ramp_steps
        if self.config.residual_gate != "ramp" or steps is None:
            raise ValueError(f"expected a model with residual_gate='ramp' for {caller}, got residual_gate="
                             f"{self.config.residual_gate!r}")
        return steps

    def new_cache(self) -> KVCache:
        """An empty :class:`KVCache` for incremental decoding with this model."""
        return KVCache(self.config.num_layers)

    def __init__(self, config: TransformerConfig) -> None:
        if not isinstance(config, TransformerConfig):
            hint = " (load_pretrained(folder) loads a checkpoint)" if isinstance(config, (str, os.PathLike)) else ""
            raise TypeError(f"expected config to be a TransformerConfig, got {type(config).__name__}{hint}")
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.blocks = BlockList(Block(config) for _ in range(config.num_layers))
        self.final_norm = _make_norm(config) if config.norm == "pre" else None
        self.pooler = Pooler(config) if config.with_pooler else None
        self.mlm = MLMHead(config) if config.with_mlm else None
        self.nsp = nn.Linear(config.hidden_size, 2) if config.with_nsp else None
        self._checkpointing: Policy | None = None  # see gradient_checkpointing_enable
        self.reset_parameters()

    def gradient_checkpointing_enable(self, policy: Policy = "tail_once") -> None:
        """Recompute activations in backward instead of keeping them (kexue.fm/archives/7367), in training-mode
        forwards with autograd on; a run-time switch, as transformers' models have it: the config is untouched.
        ``policy``: "tail_once" (the default: a checkpoint per block ending at the FFN down projection's output) or
        "block" (the post's: a checkpoint around each block); see :mod:`kexue.models.recompute`."""
        check_choice("policy", policy, Policy)
        wrapped = [i for i, b in enumerate(self.blocks) if is_recomputed(b)]
        if wrapped:
            raise ValueError(f"expected blocks without a recompute() wrapper, got blocks {wrapped} wrapped by "
                             f"enable_recompute(): disable_recompute(model) first")
        self._checkpointing = policy

    def gradient_checkpointing_disable(self) -> None:
        """Switch :meth:`gradient_checkpointing_enable` off."""
        self._checkpointing = None

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether :meth:`gradient_checkpointing_enable` is on."""
        return self._checkpointing is not None

    @property
    def checkpointing_policy(self) -> Policy | None:
        """The recompute policy switched on by :meth:`gradient_checkpointing_enable`, None when off."""
        return self._checkpointing

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise as ``config.init`` says (default ``bert_hf``: weights ~ N(0, initializer_range²), not truncated,
        as transformers' BERT); biases 0, LayerNorm 1 and 0, the padding row of the word embeddings 0, talking-heads
        mixing matrices the identity. Embeddings use the normal (or, for ``bert_tf``/``trunc_normal``, the truncated)
        form at ``initializer_range``; fan modes apply to the Linear layers. ``qk_init`` then re-draws W_q, W_k (and
        for ``t5_hf`` W_v) for unscaled attention."""
        c = self.config
        std = c.initializer_range
        emb_scheme = c.init if c.init in ("bert_tf", "trunc_normal") else "bert_hf"
        for m in self.modules():
            if isinstance(m, nn.Linear):
                init_weight_(m.weight, c.init, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                init_weight_(m.weight, emb_scheme, std)
            elif isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
                nn.init.ones_(m.weight)
                if isinstance(m, nn.LayerNorm) and m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, Block) and m.gate is not None:
                m.gate.zero_()
            elif isinstance(m, Attention):
                for mix in (m.pre_mix, m.post_mix):
                    if mix is not None:
                        mix.copy_(torch.eye(mix.shape[0]))
        if c.qk_init != "default":
            d, dk = c.hidden_size, c.key_size
            for block in self.blocks:
                a = block.attn
                if c.qk_init == "t5_hf":  # transformers' T5: the whole extra factor on W_q
                    nn.init.normal_(a.q.weight, 0.0, (d * dk) ** -0.5)
                    nn.init.normal_(a.k.weight, 0.0, d**-0.5)
                    nn.init.normal_(a.v.weight, 0.0, d**-0.5)
                else:  # Su's symmetric form: Var(q·k) ≈ dk·(1/√dk)² = 1
                    nn.init.normal_(a.q.weight, 0.0, (d * dk**0.5) ** -0.5)
                    nn.init.normal_(a.k.weight, 0.0, (d * dk**0.5) ** -0.5)
        self.embeddings.word.weight[c.pad_token_id].zero_()
        if self.mlm is not None:
            nn.init.zeros_(self.mlm.bias)

    def attention_mask(
        self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None,
        cache: KVCache | None = None,
    ) -> Tensor | None:
        """The boolean attention mask (True = may attend) for this batch, or None when all positions see all.
        Linear attention builds no n×n mask (it takes the padding mask and a causal flag instead): None.
        With a ``cache`` the mask covers (new tokens, cached + new tokens) and the cache's bookkeeping is updated.
        The inputs are checked as :meth:`forward` checks them."""
        check_inputs(self.config, input_ids, attention_mask, token_type_ids, None)
        return self._mask(input_ids, attention_mask, token_type_ids, cache)

    def _mask(self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None,
              cache: KVCache | None) -> Tensor | None:
        """:meth:`attention_mask` on inputs already checked."""
        if self.config.attention != "softmax":
            return None
        past = cache.length if cache is not None else 0
        b, t = input_ids.shape
        mask: Tensor | None = None
        keep = attention_mask
        if cache is not None:
            new = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
            keep = new if cache.padding is None else torch.cat([cache.padding, new.to(cache.padding.dtype)], dim=1)
            cache.padding = keep
        if keep is not None and not bool(keep.all()):
            mask = padding_mask(keep.bool())  # values checked by check_inputs
        kind = self.config.mask_type
        if kind == "lm":
            c = torch.ones(t, past + t, dtype=torch.bool, device=input_ids.device).tril(diagonal=past)[None, None]
            mask = c if mask is None else mask & c
        elif kind == "unilm":
            if token_type_ids is None:
                raise ValueError("expected token_type_ids with mask_type='unilm' (0 = source, 1 = target), got None")
            if cache is None:
                mask_u = unilm_mask(token_type_ids)
            else:
                start = cache.segment_index[:, -1:] if cache.segment_index is not None else 0
                idx_new = token_type_ids.long().cumsum(dim=1) + start
                idx_all = idx_new if cache.segment_index is None else torch.cat([cache.segment_index, idx_new], 1)
                cache.segment_index = idx_all
                # as unilm_mask: key j visible from query i iff idx[j] <= idx[i]
                mask_u = (idx_all[:, None, :] <= idx_new[:, :, None])[:, None]
            mask = mask_u if mask is None else mask & mask_u
        elif kind == "bidirectional" and cache is not None:
            raise ValueError("expected mask_type 'lm' or 'unilm' with a key/value cache (a bidirectional encoder "
                             "cannot decode incrementally), got mask_type='bidirectional'")
        # A boolean mask (True = attend), as transformers passes it: SDPA then takes the same kernel, so outputs
        # match transformers to float rounding at padded positions too. Every row keeps at least one key
        # (position 0 is never padding), so no row is fully masked.
        return mask

    @contextmanager
    def fast_inference(self, kernel: InferenceKernel = "auto") -> Iterator[Transformer]:
        """Inside this block, forwards with autograd off run on a snapshot of the weights taken on entry: Q, K and V
        fused into one matrix product per block and, with ``kernel="onednn"``, every block's Linear layer on
        oneDNN with prepacked weights (see :mod:`kexue.nn.frozen_linear`). On exit the snapshot is dropped.

        ``kernel``: ``"torch"`` (the same bits as the plain forward on BERT shapes), ``"onednn"`` (CPU fp32 only;
        faster on CPU; its sums are rounded differently, so hidden states move by up to ~1e-5 relative to their
        largest values, 3.7e-5 absolute on all-MiniLM-L6-v2, and mean-pooled unit vectors by ~4e-7) or ``"auto"``
        (``"onednn"`` where it applies, else ``"torch"``). Forwards with autograd on ignore the snapshot, so training
        inside the block stays correct; but weights changed inside the block are not seen by no-grad forwards until it
        is re-entered.
        """
        check_choice("kernel", kernel, InferenceKernel)
        chosen: Kernel
        if kernel == "auto":
            p = next(iter(self.parameters()))
            cpu32 = p.device.type == "cpu" and p.dtype == torch.float32
            chosen = "onednn" if cpu32 and onednn_available() else "torch"
        else:
            chosen = kernel
        previous = [(block.attn._frozen, block.ffn._frozen) for block in self.blocks]
        try:
            for block in self.blocks:
                block.attn.freeze(chosen)
                block.ffn.freeze(chosen)
            yield self
        finally:  # restore what an enclosing block had set (None outside any)
            for block, (attn, ffn) in zip(self.blocks, previous):
                block.attn._frozen, block.ffn._frozen = attn, ffn

    def run_encoder(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
        position_ids: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        """Embeddings and blocks (and a pre-norm model's final LayerNorm) without any head:
        ``(last_hidden_state, hidden_states or None)``, exactly as :meth:`forward` computes them."""
        check_inputs(self.config, input_ids, attention_mask, token_type_ids, position_ids)
        c = self.config
        past = 0
        if cache is not None:
            if len(cache.layers) != c.num_layers:
                raise ValueError(f"expected a cache of the model's {c.num_layers} layers (model.new_cache()), got "
                                 f"{len(cache.layers)} layers")
            past = cache.length
        mask = self._mask(input_ids, attention_mask, token_type_ids, cache)
        if cache is not None and position_ids is None:
            if c.position_style == "roberta" and cache.padding is not None:  # set by attention_mask above
                keep = cache.padding.long()
                position_ids = (keep.cumsum(dim=1) * keep + c.pad_token_id)[:, past:]
            else:
                position_ids = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)[None]
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        hidden: list[Tensor] | None = [x] if output_hidden_states else None
        # linear attention takes the padding mask as a key mask and the LM mask as a causal flag
        key_padding = attention_mask if c.attention != "softmax" else None
        causal = c.mask_type == "lm" and c.attention != "softmax"
        # a call with a key/value cache (incremental decoding) runs plainly: a recompute would extend the cache twice
        if self._checkpointing is not None and self.training and torch.is_grad_enabled() and cache is None:
            x = _run_blocks(list(self.blocks), self._checkpointing, x, mask, key_padding, causal, c.residual_attention,
                            hidden)
        else:
            scores: Tensor | None = None
            for i, block in enumerate(self.blocks):
                carried = scores if c.residual_attention else None
                x, scores = block(x, mask, carried, key_padding, causal, cache.layers[i] if cache else None)
                if hidden is not None:
                    hidden.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
            if hidden is not None:
                hidden[-1] = x
        return x, tuple(hidden) if hidden is not None else None

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
        position_ids: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> TransformerOutput:
        """``cache`` (a :class:`KVCache`, for ``lm``/``unilm`` models): decode incrementally; pass only the new
        tokens, with ``attention_mask``/``token_type_ids`` for them."""
        x, hidden = self.run_encoder(input_ids, attention_mask, token_type_ids, output_hidden_states, position_ids,
                                     cache)
        pooled = self.pooler(x) if self.pooler is not None else None
        mlm = self.mlm(x, self.embeddings.word.weight) if self.mlm is not None else None
        nsp = self.nsp(pooled) if self.nsp is not None and pooled is not None else None
        return TransformerOutput(
            last_hidden_state=x,
            hidden_states=hidden,
            pooler_output=pooled,
            mlm_logits=mlm,
            nsp_logits=nsp,
        )


__all__ = ["Block", "BlockList", "InferenceKernel", "Transformer", "TransformerOutput"]
