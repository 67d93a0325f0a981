"""Analysis tools: multiply counts of a Transformer layer and the sequence lengths where its balance tips
(:mod:`kexue.stats.flops`, the linear-Transformer post, kexue.fm/archives/8610); the Johnson–Lindenstrauss lemma
(:mod:`kexue.stats.jl`, 8679); hubness of k-nearest-neighbour graphs (:mod:`kexue.stats.hubness`, 9147); leaderboard
means over one task list (:mod:`kexue.stats.leaderboard`, 8783); KL, Bhattacharyya, Hellinger and 2-Wasserstein
(Fréchet) distances between multivariate normals (:mod:`kexue.stats.gaussian`, 8512)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .flops import (
    AttentionMACs,
    Crossovers,
    FFNKind,
    LayerMACs,
    crossover_lengths,
    linear_attention_macs,
    transformer_layer_macs,
)

if TYPE_CHECKING:
    from .gaussian import (
        W2_FORMS,
        W2Form,
        bhattacharyya_normal,
        frechet_distance,
        hellinger_normal,
        kl_diag,
        kl_normal,
        sqrtm_psd,
        w2_diag,
        w2_normal,
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

#: The torch-based modules load on first use (PEP 562), so that ``kexue flops`` and the rest of the command line,
#: which import :mod:`kexue.stats.flops`, start without importing torch.
_LAZY = {
    "W2_FORMS": "gaussian",
    "W2Form": "gaussian",
    "bhattacharyya_normal": "gaussian",
    "frechet_distance": "gaussian",
    "hellinger_normal": "gaussian",
    "kl_diag": "gaussian",
    "kl_normal": "gaussian",
    "sqrtm_psd": "gaussian",
    "w2_diag": "gaussian",
    "w2_normal": "gaussian",
    "HubSummary": "hubness",
    "Metric": "hubness",
    "hub_summary": "hubness",
    "hub_values": "hubness",
    "hubness_skew": "hubness",
    "knn_indices": "hubness",
    "Distortion": "jl",
    "gaussian_projection": "jl",
    "jl_min_dim": "jl",
    "orthogonality_tail_bound": "jl",
    "pairwise_distortion": "jl",
    "sklearn_min_dim": "jl",
    "unit_norm_tail_bound": "jl",
    "unit_norm_tail_exact": "jl",
    "MeanKind": "leaderboard",
    "Means": "leaderboard",
    "MeanTaus": "leaderboard",
    "Ranked": "leaderboard",
    "Score": "leaderboard",
    "kendall_tau_between_means": "leaderboard",
    "means": "leaderboard",
    "rank_table": "leaderboard",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["AttentionMACs", "Crossovers", "Distortion", "FFNKind", "HubSummary", "LayerMACs", "MeanKind", "MeanTaus",
           "Means", "Metric", "Ranked", "Score", "W2Form", "W2_FORMS", "bhattacharyya_normal", "crossover_lengths",
           "frechet_distance", "gaussian_projection", "hellinger_normal", "hub_summary", "hub_values", "hubness_skew",
           "jl_min_dim", "kendall_tau_between_means", "kl_diag", "kl_normal", "knn_indices", "linear_attention_macs",
           "means", "orthogonality_tail_bound", "pairwise_distortion", "rank_table", "sklearn_min_dim", "sqrtm_psd",
           "transformer_layer_macs", "unit_norm_tail_bound", "unit_norm_tail_exact", "w2_diag", "w2_normal"]
