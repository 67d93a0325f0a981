"""The kexue Transformer: a BERT-family encoder built from one :class:`TransformerConfig`.

Embeddings (word + position + segment, LayerNorm, dropout) -> ``num_layers`` blocks -> optional heads:
the pooler (tanh Dense on [CLS]), the MLM head (Dense, activation, LayerNorm, decoder tied to the word embeddings)
and the NSP head (Dense to 2 on the pooled vector).

Post-norm block (BERT):  h = LN(x + Attn(x));  y = LN(h + FFN(h)).
Pre-norm block:          h = x + Attn(LN(x));  y = h + FFN(LN(h)); a final LN follows the last block.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.activations import get_activation
from ..nn.attention import Attention
from ..nn.frozen_linear import KERNELS, FrozenLinear, Kernel, onednn_available
from ..nn.init import init_weight_
from ..nn.masks import causal_mask, padding_mask, unilm_mask
from .config import TransformerConfig


@dataclass
class TransformerOutput:
    """What :class:`Transformer` returns; a head that the model lacks gives None."""

    last_hidden_state: Tensor
    #: Embedding output first, then each block's output (as transformers orders them), when asked for.
    hidden_states: tuple[Tensor, ...] | None = None
    pooler_output: Tensor | None = None
    mlm_logits: Tensor | None = None
    nsp_logits: Tensor | None = None


class Embeddings(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.segment = nn.Embedding(config.type_vocab_size, config.hidden_size) if config.type_vocab_size else None
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def position_ids(self, input_ids: Tensor) -> Tensor:
        c = self.config
        if c.position_style == "roberta":
            # RoBERTa counts positions over non-padding tokens, starting after the padding index.
            keep = input_ids.ne(c.pad_token_id).long()
            return keep.cumsum(dim=1) * keep + c.pad_token_id
        return torch.arange(input_ids.shape[1], device=input_ids.device)[None]

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None, position_ids: Tensor | None) -> Tensor:
        seq_len = input_ids.shape[1]
        if position_ids is None:
            position_ids = self.position_ids(input_ids)
        if int(position_ids.max()) >= self.config.max_position_embeddings:
            raise ValueError(
                f"sequence of length {seq_len} needs position {int(position_ids.max())}, beyond "
                f"max_position_embeddings = {self.config.max_position_embeddings}"
            )
        # (word + segment) + position: the order transformers sums them in, so rounding matches it too.
        x = self.word(input_ids)
        if self.segment is not None:
            x = x + (self.segment.weight[0] if token_type_ids is None else self.segment(token_type_ids))
        x = x + self.position(position_ids)
        return self.dropout(self.norm(x))


class FeedForward(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = get_activation(config.hidden_act)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)
        # (up, down) inference snapshot, or None; see freeze().
        self._frozen: tuple[FrozenLinear, FrozenLinear] | None = None

    def freeze(self, kernel: Kernel | None) -> None:
        """Snapshot the two projections for inference on ``kernel`` (only "onednn" changes anything), or drop it."""
        self._frozen = None if kernel in (None, "torch") else (FrozenLinear([self.up], kernel),
                                                                FrozenLinear([self.down], kernel))

    def forward(self, x: Tensor) -> Tensor:
        frozen = self._frozen
        if frozen is not None and not torch.is_grad_enabled():
            return frozen[1](self.act(frozen[0](x)))
        return self.down(self.act(self.up(x)))


class Block(nn.Module):
    """One encoder block, post- or pre-norm as ``config.norm`` says.

    ``forward(x, mask, scores=None, key_padding=None, causal=False) -> (x, scores)``: ``scores`` are the carried
    pre-softmax scores of residual attention (None otherwise).
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.pre_norm = config.norm == "pre"
        self.attn = Attention(
            config.hidden_size, config.num_heads, config.attention_dropout,
            key_size=config.attention_key_size, scale=config.attention_scale, talking_heads=config.talking_heads,
            talking_heads_post_softmax=config.talking_heads_post_softmax,
            residual_attention=config.residual_attention, kind=config.attention,  # type: ignore[arg-type]
            impl=config.attn_impl, feature_order=config.linear_attention_order,  # type: ignore[arg-type]
            num_features=config.performer_features,
        )
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x: Tensor, mask: Tensor | None, scores: Tensor | None = None, key_padding: Tensor | None = None,
                causal: bool = False) -> tuple[Tensor, Tensor | None]:
        h = self.attn_norm(x) if self.pre_norm else x
        a, scores = self.attn(h, mask, prev_scores=scores, key_padding=key_padding, causal=causal,
                              return_scores=True)
        if self.pre_norm:
            x = x + self.dropout(a)
            return x + self.dropout(self.ffn(self.ffn_norm(x))), scores
        x = self.attn_norm(x + self.dropout(a))
        return self.ffn_norm(x + self.dropout(self.ffn(x))), scores


class Pooler(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class MLMHead(nn.Module):
    """Dense -> activation -> LayerNorm -> logits over the vocabulary (decoder tied to the word embeddings)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = get_activation(config.mlm_hidden_act or config.hidden_act)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = None if config.tie_word_embeddings else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        h = self.norm(self.act(self.dense(hidden)))
        weight = word_embeddings if self.decoder is None else self.decoder.weight
        return F.linear(h, weight, self.bias)


class Transformer(nn.Module):
    """A BERT-family encoder. See :class:`TransformerConfig` for the switches.

    ``model(input_ids, attention_mask=None, token_type_ids=None, output_hidden_states=False)`` returns a
    :class:`TransformerOutput`.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.norm == "pre" else None
        self.pooler = Pooler(config) if config.with_pooler else None
        self.mlm = MLMHead(config) if config.with_mlm else None
        self.nsp = nn.Linear(config.hidden_size, 2) if config.with_nsp else None
        self.reset_parameters()

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
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
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
        self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None
    ) -> Tensor | None:
        """The boolean attention mask (True = may attend) for this batch, or None when all positions see all.
        Linear attention builds no n×n mask (it takes the padding mask and a causal flag instead): None."""
        mask: Tensor | None = None
        if self.config.attention != "softmax":
            if attention_mask is not None and attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape {tuple(input_ids.shape)}"
                )
            return None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape {tuple(input_ids.shape)}"
                )
            if not bool(attention_mask.all()):
                mask = padding_mask(attention_mask)
        kind = self.config.mask_type
        if kind == "lm":
            c = causal_mask(input_ids.shape[1], input_ids.device)
            mask = c if mask is None else mask & c
        elif kind == "unilm":
            if token_type_ids is None:
                raise ValueError("mask_type 'unilm' needs token_type_ids (0 = source, 1 = target)")
            u = unilm_mask(token_type_ids)
            mask = u if mask is None else mask & u
        # A boolean mask (True = attend), as transformers passes it: SDPA then takes the same kernel, so outputs
        # match transformers to float rounding at padded positions too. Every row keeps at least one key
        # (position 0 is never padding), so no row is fully masked.
        return mask

    @contextmanager
    def fast_inference(self, kernel: str = "auto") -> Iterator["Transformer"]:
        """Inside this block, forwards with autograd off run on a snapshot of the weights taken on entry: Q, K and V
        fused into one matrix product per block and, with ``kernel="onednn"``, every block's Linear layer on
        oneDNN with prepacked weights (see :mod:`kexue.nn.frozen_linear`). On exit the snapshot is dropped.

        ``kernel``: ``"torch"`` (the same bits as the plain forward on BERT shapes), ``"onednn"`` (CPU fp32 only;
        faster on CPU; its sums are rounded differently, so hidden states move by up to ~1e-5 relative to their
        largest values, 3.7e-5 absolute on all-MiniLM-L6-v2, and mean-pooled unit vectors by ~4e-7) or ``"auto"``
        (``"onednn"`` where it applies, else ``"torch"``). Forwards with autograd on ignore the snapshot, so training inside the block stays
        correct; but weights changed inside the block are not seen by no-grad forwards until it is re-entered.
        """
        if kernel == "auto":
            p = next(iter(self.parameters()))
            kernel = "onednn" if p.device.type == "cpu" and p.dtype == torch.float32 and onednn_available() else "torch"
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; expected one of {['auto', *KERNELS]}")
        previous = [(block.attn._frozen, block.ffn._frozen) for block in self.blocks]
        try:
            for block in self.blocks:
                block.attn.freeze(kernel)  # type: ignore[arg-type]
                block.ffn.freeze(kernel)  # type: ignore[arg-type]
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
    ) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        """Embeddings and blocks (and a pre-norm model's final LayerNorm) without any head:
        ``(last_hidden_state, hidden_states or None)``, exactly as :meth:`forward` computes them."""
        if input_ids.dim() != 2:
            raise ValueError(f"expected input_ids of shape (batch, seq), got {tuple(input_ids.shape)}")
        if token_type_ids is not None and token_type_ids.shape != input_ids.shape:
            raise ValueError(
                f"token_type_ids shape {tuple(token_type_ids.shape)} != input_ids shape {tuple(input_ids.shape)}"
            )
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        mask = self.attention_mask(input_ids, attention_mask, token_type_ids)
        hidden: list[Tensor] | None = [x] if output_hidden_states else None
        c = self.config
        # linear attention takes the padding mask as a key mask and the LM mask as a causal flag
        key_padding = attention_mask if c.attention != "softmax" else None
        causal = c.mask_type == "lm" and c.attention != "softmax"
        scores: Tensor | None = None
        for block in self.blocks:
            x, scores = block(x, mask, scores if c.residual_attention else None, key_padding, causal)
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
    ) -> TransformerOutput:
        x, hidden = self.run_encoder(input_ids, attention_mask, token_type_ids, output_hidden_states, position_ids)
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
