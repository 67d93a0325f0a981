"""Attention masks: padding, causal (LM), UniLM (prefix), and UniVAE's independent and UniAE masks.

All masks are boolean with True meaning "may attend", shaped to broadcast against attention scores
(batch, heads, queries, keys). :func:`to_bias` turns one into the additive float form.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validate import check_int


def _check_ids(name: str, x: object) -> Tensor:
    """``x`` if it is an integer or bool tensor of shape (batch, seq)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected {name} to be a tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"expected {name} of shape (batch, seq), got {tuple(x.shape)}")
    return x


def _odd_mask_values(attention_mask: Tensor) -> Tensor:
    """A 0-d bool tensor, True where a 1/0 ``attention_mask`` holds anything but 1 and 0 (no device sync: callers
    batch it with their other checks). Always False for a bool mask."""
    if attention_mask.dtype == torch.bool:
        return torch.zeros((), dtype=torch.bool, device=attention_mask.device)
    return ((attention_mask != 0) & (attention_mask != 1)).any()


def _refuse_odd_mask(attention_mask: Tensor, name: str = "attention_mask", one: str = "token",
                     zero: str = "padding") -> None:
    """Raise the error for a mask that :func:`_odd_mask_values` flagged, naming its first odd value (``name``, and
    what 1 and 0 mean for it, in the message)."""
    odd = (attention_mask != 0) & (attention_mask != 1)
    raise ValueError(f"expected {name} values 1 ({one}) and 0 ({zero}), got {attention_mask[odd][0].item()!r} "
                     f"(an additive mask? pass the 1/0 mask)")


def padding_mask(attention_mask: Tensor) -> Tensor:
    """(batch, keys) 1/0 or bool -> (batch, 1, 1, keys) bool: each query may attend to every non-padding key.

    A mask that is not bool must hold 1 and 0 only: an additive mask (0 to keep, a large negative number to drop)
    would otherwise be read backwards, a mask of 2s taken for 1s."""
    _check_ids("attention_mask", attention_mask)
    if bool(_odd_mask_values(attention_mask)):
        _refuse_odd_mask(attention_mask)
    return attention_mask.bool()[:, None, None, :]


def causal_mask(seq_len: int, device: torch.device | None = None) -> Tensor:
    """(1, 1, seq, seq) bool, lower triangular: query i sees keys j <= i (the LM mask)."""
    check_int("seq_len", seq_len, 0)
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()[None, None]


def unilm_mask(token_type_ids: Tensor) -> Tensor:
    """UniLM seq2seq mask from segment ids (batch, seq) -> (batch, 1, seq, seq) bool.

    Segment 0 is the source: every token sees all of it. Segment 1 is the target: a target token sees the source
    and the target tokens up to itself. As bert4keras builds it: idx = cumsum(segment_ids); j visible from i iff
    idx[j] <= idx[i].
    """
    idx = _check_segments("token_type_ids", token_type_ids).cumsum(dim=1)
    return (idx[:, None, :] <= idx[:, :, None])[:, None]


def _check_segments(name: str, x: object) -> Tensor:
    """``x`` as a long tensor if it is an integer or bool tensor of shape (batch, seq)."""
    x = _check_ids(name, x)
    if x.is_floating_point() or x.is_complex():  # .long() would truncate 0.5 to segment 0
        raise TypeError(f"expected {name} to be an integer tensor, got {x.dtype}")
    return x.long()


def independent_mask(segment_ids: Tensor) -> Tensor:
    """UniVAE's independent mask from segment ids (batch, seq) -> (batch, 1, seq, seq) bool.

    With s the segment ids and c = cumsum(s) along the sequence, query i may attend to key j iff s_i = s_j and
    c_j <= c_i: for the layout [encoder 0…0 | decoder 1…1] the encoder is bidirectional within itself, the decoder
    causal within itself, and no attention crosses the segments. The bottom layers of UniVAE use it (Su Jianlin,
    "UniVAE：基于Transformer的单模型、多尺度的VAE模型", 2021-06-29, https://kexue.fm/archives/8475).
    """
    s = _check_segments("segment_ids", segment_ids)
    c = s.cumsum(dim=1)
    same = s[:, None, :] == s[:, :, None]
    return (same & (c[:, None, :] <= c[:, :, None]))[:, None]


def uniae_mask(segment_ids: Tensor) -> Tensor:
    """UniVAE's UniAE mask: :func:`independent_mask` plus column 0 (the encoder's [CLS]) visible from every row,
    (batch, seq) -> (batch, 1, seq, seq) bool.

    Query i may attend to key j iff (s_i = s_j and c_j <= c_i) or j = 0, c = cumsum(s). The decoder thus reads the
    encoder only through position 0, which UniVAE's latent layers overwrite with the decoded latent, making the model
    an autoencoder (kexue.fm/archives/8475).
    """
    mask = independent_mask(segment_ids)
    mask[..., 0] = True
    return mask


def to_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Bool mask -> additive bias: 0 where allowed, the dtype's most negative finite value where not.

    ``finfo(dtype).min`` rather than a constant like -1e12, which overflows in fp16 (a pitfall the specs name).
    """
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"expected mask to be a bool tensor (True = may attend), got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"expected dtype to be a floating-point torch.dtype, got {dtype!r}")
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)


__all__ = ["causal_mask", "independent_mask", "padding_mask", "to_bias", "uniae_mask", "unilm_mask"]
