"""Multiply counts of a Transformer layer, as the linear-Transformer post counts them.

Post: "线性Transformer应该不是你要等的那个模型" (The linear Transformer is probably not the model you are waiting
for), 2021-08-09, https://kexue.fm/archives/8610.

Only matrix products count, as multiply-accumulates (MACs): (a×b)·(b×c) costs abc. Softmax, LayerNorm, residuals,
activations, biases and embeddings are ignored. FLOPs = 2 × MACs. With n tokens, h heads of size d (hidden hd) and
an FFN of inner size ffn_mult·hd:

- attention: Q, K, V projections 3n(hd)², scores QKᵀ n²d per head, weighted sum AV n²d per head, output n(hd)²:
  SA = 4nh²d² + 2n²hd;
- FFN (two matrices): 2·ffn_mult·n·h²d² (8nh²d² for ffn_mult = 4); a GLU FFN has three matrices: 3·ffn_mult·n·h²d²;
- layer: 12nh²d² + 2n²hd. Self-attention outweighs the FFN past n = 2hd (1,536 for base); the quadratic part
  outweighs the linear part past n = 6hd (4,608); its share is n/(n + 6hd).
- Linear attention computes φ(Q)(φ(K)ᵀV): 2nd'² per head at feature size d'. With Su's rule of thumb d' = 4d it is
  cheaper than softmax attention's 2n²d per head iff n > 16d (1,024 for d = 64).
"""

from __future__ import annotations

import argparse
import sys
from typing import Literal, TypedDict, get_args

from .._validate import check_choice, check_float, check_int, positive_float_arg, positive_int_arg

FFNKind = Literal["mlp", "glu"]


class LayerMACs(TypedDict):
    """What :func:`transformer_layer_macs` returns: MACs by part, their total, and the quadratic part's share."""

    qkv: float
    scores: float
    weighted_sum: float
    out_proj: float
    ffn: float
    total: float
    quadratic: float
    quadratic_share: float


class Crossovers(TypedDict):
    """What :func:`crossover_lengths` returns: the sequence lengths where the balance tips."""

    attention_over_ffn: float
    quadratic_over_linear: float
    linear_attention: float


class AttentionMACs(TypedDict):
    """What :func:`linear_attention_macs` returns: MACs of softmax and of linear attention's core."""

    softmax: float
    linear: float


def _check_sizes(heads: int, head_size: int, ffn_mult: float, ffn_kind: FFNKind) -> None:
    check_int("heads", heads, minimum=1)
    check_int("head_size", head_size, minimum=1)
    check_float("ffn_mult", ffn_mult, low=0.0, low_open=True)
    check_choice("ffn_kind", ffn_kind, FFNKind)


def transformer_layer_macs(n: int, heads: int = 12, head_size: int = 64, ffn_mult: float = 4,
                           ffn_kind: FFNKind = "mlp") -> LayerMACs:
    """MACs of one BERT-like layer at sequence length ``n`` (batch 1), by part.

    Returns ``{qkv, scores, weighted_sum, out_proj, ffn, total, quadratic, quadratic_share}`` (a :class:`LayerMACs`).
    """
    check_int("n", n, minimum=1)
    _check_sizes(heads, head_size, ffn_mult, ffn_kind)
    hidden = heads * head_size
    qkv = 3 * n * hidden * hidden
    scores = heads * n * n * head_size
    weighted = heads * n * n * head_size
    out = n * hidden * hidden
    ffn = (2 if ffn_kind == "mlp" else 3) * ffn_mult * n * hidden * hidden
    total = qkv + scores + weighted + out + ffn
    quadratic = scores + weighted
    return LayerMACs(qkv=qkv, scores=scores, weighted_sum=weighted, out_proj=out, ffn=ffn, total=total,
                     quadratic=quadratic, quadratic_share=quadratic / total)


def crossover_lengths(heads: int = 12, head_size: int = 64, ffn_mult: float = 4, head_mult: float = 4,
                      ffn_kind: FFNKind = "mlp") -> Crossovers:
    """Sequence lengths where the balance tips (closed forms of :func:`transformer_layer_macs`):

    - ``attention_over_ffn``: SA > FFN ⇔ 4nh²d² + 2n²hd > c·n·h²d² ⇔ n > (c − 4)hd/2, c = 2·ffn_mult (GLU: 3·ffn_mult)
      (2hd = 1,536 for base);
    - ``quadratic_over_linear``: 2n²hd > (4 + c)nh²d² ⇔ n > (4 + c)hd/2 (6hd = 4,608 for base);
    - ``linear_attention``: 2n(head_mult·d)² < 2n²d ⇔ n > head_mult²·d (16d = 1,024 for d = 64).
    """
    _check_sizes(heads, head_size, ffn_mult, ffn_kind)
    check_float("head_mult", head_mult, low=0.0, low_open=True)
    c = (2 if ffn_kind == "mlp" else 3) * ffn_mult
    hd = heads * head_size
    return Crossovers(attention_over_ffn=(c - 4) * hd / 2, quadratic_over_linear=(4 + c) * hd / 2,
                      linear_attention=head_mult**2 * head_size)


def linear_attention_macs(n: int, head_size: int = 64, head_mult: float = 4, heads: int = 1) -> AttentionMACs:
    """MACs of the attention core with ``heads`` heads: softmax (QKᵀ then AV: 2n²d per head) against linear
    attention with feature size head_mult·d (φ(K)ᵀV then φ(Q)·(...): 2n(head_mult·d)² per head; feature maps and
    the normaliser not counted)."""
    check_int("n", n, minimum=1)
    check_int("head_size", head_size, minimum=1)
    check_float("head_mult", head_mult, low=0.0, low_open=True)
    check_int("heads", heads, minimum=1)
    d_lin = head_mult * head_size
    return AttentionMACs(softmax=heads * 2 * n * n * head_size, linear=heads * 2 * n * d_lin * d_lin)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``kexue flops`` on an argparse sub-parser collection."""
    p = sub.add_parser("flops", help="multiply counts of a Transformer layer and the crossover lengths",
                       description="Multiply counts of a Transformer layer, as the linear-Transformer post counts "
                       "them (https://kexue.fm/archives/8610). Counts are MACs (multiply-accumulates); FLOPs = 2×.")
    p.add_argument("--hidden", type=positive_int_arg, default=768, help="hidden size (default: 768)")
    p.add_argument("--heads", type=positive_int_arg, default=12, help="attention heads (default: 12)")
    p.add_argument("--layers", type=positive_int_arg, default=12, help="layers (default: 12)")
    p.add_argument("--seq", type=positive_int_arg, nargs="+", default=[128, 512, 1536, 4608], metavar="N",
                   help="sequence lengths (default: 128 512 1536 4608)")
    p.add_argument("--ffn-mult", type=positive_float_arg, default=4.0, help="FFN inner size / hidden (default: 4)")
    p.add_argument("--ffn-kind", choices=list(get_args(FFNKind)), default="mlp",
                   help="mlp: two matrices; glu: three (default: mlp)")
    p.add_argument("--head-mult", type=positive_float_arg, default=4.0,
                   help="linear attention's feature size / head size (default: 4, Su's rule of thumb)")
    p.set_defaults(func=_cmd_flops)


def _cmd_flops(args: argparse.Namespace) -> int:
    if args.hidden % args.heads:  # checked before the first line prints (the sizes' types checked each >= 1)
        print(f"kexue flops: expected --hidden divisible by --heads, got {args.hidden} and {args.heads}",
              file=sys.stderr)
        return 2
    d = args.hidden // args.heads
    print(f"hidden {args.hidden} = {args.heads} heads × {d}; {args.layers} layers; "
          f"FFN {args.ffn_kind} ×{args.ffn_mult:g}")
    print(f"{'n':>7} {'GMACs/layer':>12} {'GFLOPs model':>13} {'attention':>10} {'FFN':>7} {'quadratic':>10}")
    for n in args.seq:
        c = transformer_layer_macs(n, args.heads, d, args.ffn_mult, args.ffn_kind)
        sa = c["qkv"] + c["scores"] + c["weighted_sum"] + c["out_proj"]
        print(f"{n:>7} {c['total'] / 1e9:>12.3f} {2 * args.layers * c['total'] / 1e9:>13.2f} "
              f"{sa / c['total']:>10.1%} {c['ffn'] / c['total']:>7.1%} {c['quadratic_share']:>10.1%}")
    x = crossover_lengths(args.heads, d, args.ffn_mult, args.head_mult, args.ffn_kind)
    print(f"self-attention outweighs the FFN past n = {x['attention_over_ffn']:g}")
    print(f"the quadratic part outweighs the linear part past n = {x['quadratic_over_linear']:g}")
    print(f"linear attention (feature size {args.head_mult:g}×{d}) is cheaper than softmax attention past "
          f"n = {x['linear_attention']:g}")
    return 0


__all__ = ["AttentionMACs", "Crossovers", "FFNKind", "LayerMACs", "add_parser", "crossover_lengths",
           "linear_attention_macs", "transformer_layer_macs"]
