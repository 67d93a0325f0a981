"""Analysis tools: multiply counts of a Transformer layer and the sequence lengths where its balance tips
(:mod:`kexue.stats.flops`, the linear-Transformer post, kexue.fm/archives/8610); the Johnson–Lindenstrauss lemma
(:mod:`kexue.stats.jl`, 8679); hubness of k-nearest-neighbour graphs (:mod:`kexue.stats.hubness`, 9147); leaderboard
means over one task list (:mod:`kexue.stats.leaderboard`, 8783)."""

from .flops import (
    AttentionMACs,
    Crossovers,
    FFNKind,
    LayerMACs,
    crossover_lengths,
    linear_attention_macs,
    transformer_layer_macs,
)
from .hubness import HubSummary, Metric, hub_summary, hub_values, hubness_skew, knn_indices
from .jl import (
    Distortion,
    gaussian_projection,
    jl_min_dim,
    orthogonality_tail_bound,
    pairwise_distortion,
    sklearn_min_dim,
    unit_norm_tail_bound,
    unit_norm_tail_exact,
)
from .leaderboard import MeanKind, Means, MeanTaus, Ranked, Score, kendall_tau_between_means, means, rank_table

__all__ = ["AttentionMACs", "Crossovers", "Distortion", "FFNKind", "HubSummary", "LayerMACs", "MeanKind",
           "MeanTaus", "Means", "Metric", "Ranked", "Score", "crossover_lengths", "gaussian_projection",
           "hub_summary", "hub_values", "hubness_skew", "jl_min_dim", "kendall_tau_between_means", "knn_indices",
           "linear_attention_macs", "means", "orthogonality_tail_bound", "pairwise_distortion", "rank_table",
           "sklearn_min_dim", "transformer_layer_macs", "unit_norm_tail_bound", "unit_norm_tail_exact"]
