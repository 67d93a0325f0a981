"""Extraction heads: the span pointer, the subject–object pointer with conditional LayerNorm, GlobalPointer, and the
label schemes of tagging (BIO over (event type, role) pairs; predicate–slot flattening; the LCS soft match).

Posts:

* "bert4keras在手，baseline我有：百度LIC2020" (With bert4keras in hand, baselines are easy: Baidu LIC2020),
  2020-04-02, https://kexue.fm/archives/7321 — :class:`SpanPointerHead` with :func:`span_loss` and
  :func:`decode_span` (reading comprehension), :class:`SubjectObjectPointer` with :func:`pointer_targets` and
  :func:`decode_pointers` (relation extraction), :class:`BIOScheme`, :func:`flatten_triples`,
  :func:`merge_triples`, :func:`soft_match` and :func:`soft_f1` (event extraction and the schemas);
* "GlobalPointer：用统一的方式处理嵌套和非嵌套NER" (GlobalPointer: nested and flat NER handled the same way),
  2021-05-01, https://kexue.fm/archives/8373 — :class:`GlobalPointer`, :func:`decode_global_pointer`;
* "将"Softmax+交叉熵"推广到多标签分类问题" (Generalizing "softmax + cross-entropy" to multi-label classification),
  2020-04-25, https://kexue.fm/archives/7359 — the ZLPR loss of :func:`global_pointer_loss`
  (:func:`kexue.losses.sparse_zlpr`).

The conditional LayerNorm is :class:`kexue.nn.ConditionalLayerNorm`; the CRF of the BIO tagger lives in
:mod:`kexue.nn`. Heads take the encoder's states (batch, seq, hidden) and token indices; mapping tokens to
characters is :mod:`kexue.models`' tokenizer's.
"""

from .global_pointer import GlobalPointer, decode_global_pointer, global_pointer_loss
from .labels import (
    ArgumentSpan,
    BIOScheme,
    FlatTriple,
    MatchKind,
    Overlap,
    SlotTriple,
    SoftF1,
    flatten_triples,
    lcs_length,
    merge_triples,
    soft_f1,
    soft_match,
)
from .pointer import (
    PointerLogits,
    PointerTargets,
    Spans,
    SpanTriple,
    SubjectObjectPointer,
    decode_pointers,
    pointer_targets,
    powered_sigmoid,
)
from .span import SpanLogits, SpanPointerHead, SpanPrediction, decode_span, span_loss

__all__ = [
    "ArgumentSpan",
    "BIOScheme",
    "FlatTriple",
    "GlobalPointer",
    "MatchKind",
    "Overlap",
    "PointerLogits",
    "PointerTargets",
    "SlotTriple",
    "SoftF1",
    "SpanLogits",
    "SpanPointerHead",
    "SpanPrediction",
    "Spans",
    "SubjectObjectPointer",
    "SpanTriple",
    "decode_global_pointer",
    "decode_pointers",
    "decode_span",
    "flatten_triples",
    "global_pointer_loss",
    "lcs_length",
    "merge_triples",
    "pointer_targets",
    "powered_sigmoid",
    "soft_f1",
    "soft_match",
    "span_loss",
]
