"""Analysis tools: multiply counts of a Transformer layer and the sequence lengths where its balance tips
(:mod:`kexue.stats.flops`, the linear-Transformer post, kexue.fm/archives/8610)."""

from .flops import (
    AttentionMACs,
    Crossovers,
    FFNKind,
    LayerMACs,
    crossover_lengths,
    linear_attention_macs,
    transformer_layer_macs,
)

__all__ = ["AttentionMACs", "Crossovers", "FFNKind", "LayerMACs", "crossover_lengths", "linear_attention_macs",
           "transformer_layer_macs"]
