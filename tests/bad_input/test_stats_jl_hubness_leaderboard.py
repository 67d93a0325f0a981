"""Bad-input rows: kexue.stats' JL lemma, hubness and leaderboard means (issue 14)."""

from __future__ import annotations

import pytest
import torch
from _matrix import Bad, check

from kexue.stats import (
    gaussian_projection,
    hub_summary,
    hub_values,
    hubness_skew,
    jl_min_dim,
    kendall_tau_between_means,
    knn_indices,
    means,
    orthogonality_tail_bound,
    pairwise_distortion,
    rank_table,
    sklearn_min_dim,
    unit_norm_tail_bound,
    unit_norm_tail_exact,
)

X = torch.randn(20, 4, generator=torch.Generator().manual_seed(0))
V = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
A = torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
NAN_X = X.clone()
NAN_X[3, 1] = float("nan")
DUP_V = V.clone()
DUP_V[4] = DUP_V[1]
ZERO_ROW = X.clone()
ZERO_ROW[7] = 0.0
H = torch.full((20,), 5, dtype=torch.long)
TASKS = ["CoLA", "SST-2"]
ROW = {"CoLA": 60.0, "SST-2": 95.0}
BOARD = {"Human": ROW, "A": {"CoLA": 62.0, "SST-2": 96.0}}

ROWS = [
    # jl
    Bad("kexue.stats.jl_min_dim", "n_points = 0", lambda: jl_min_dim(0, 0.1), ValueError,
        r"expected n_points >= 1, got 0"),
    Bad("kexue.stats.jl_min_dim", "n_points a float", lambda: jl_min_dim(100.5, 0.1), TypeError,
        r"expected n_points to be an integer, got 100\.5"),
    Bad("kexue.stats.jl_min_dim", "eps = 1 (the lemma needs eps < 1)", lambda: jl_min_dim(100, 1.0), ValueError,
        r"expected eps < 1\.0, got 1\.0"),
    Bad("kexue.stats.jl_min_dim", "eps = 0", lambda: jl_min_dim(100, 0), ValueError, r"expected eps > 0\.0, got 0"),
    Bad("kexue.stats.jl_min_dim", "constant negative", lambda: jl_min_dim(100, 0.1, constant=-24), ValueError,
        r"expected constant > 0\.0, got -24"),
    Bad("kexue.stats.sklearn_min_dim", "eps nan", lambda: sklearn_min_dim(100, float("nan")), ValueError,
        r"expected eps to be finite, got nan"),
    Bad("kexue.stats.sklearn_min_dim", "n_points a string", lambda: sklearn_min_dim("1797", 0.1), TypeError,
        r"expected n_points to be an integer, got '1797'"),
    Bad("kexue.stats.sklearn_min_dim", "eps above 1", lambda: sklearn_min_dim(100, 1.5), ValueError,
        r"expected eps < 1\.0, got 1\.5"),
    Bad("kexue.stats.gaussian_projection", "out_dim = 0", lambda: gaussian_projection(8, 0), ValueError,
        r"expected out_dim >= 1, got 0"),
    Bad("kexue.stats.gaussian_projection", "in_dim a float", lambda: gaussian_projection(8.0, 2), TypeError,
        r"expected in_dim to be an integer, got 8\.0"),
    Bad("kexue.stats.gaussian_projection", "generator a seed", lambda: gaussian_projection(8, 2, 42), TypeError,
        r"expected generator to be a torch\.Generator or None, got int"),
    Bad("kexue.stats.gaussian_projection", "integer dtype", lambda: gaussian_projection(8, 2, dtype=torch.int64),
        TypeError, r"expected dtype to be a floating torch\.dtype, got torch\.int64"),
    Bad("kexue.stats.pairwise_distortion", "V one-dimensional", lambda: pairwise_distortion(V[0], A), ValueError,
        r"expected V of shape \(N, m\) with N >= 2, got \(8,\)"),
    Bad("kexue.stats.pairwise_distortion", "A with the wrong number of columns",
        lambda: pairwise_distortion(V, A[:, :5]), ValueError, r"expected A of shape \(n, m\) with m = V\.shape\[1\] "
        r"= 8, got \(3, 5\)"),
    Bad("kexue.stats.pairwise_distortion", "duplicate rows (zero distance)", lambda: pairwise_distortion(DUP_V, A),
        ValueError, r"expected distinct rows of V, got rows 1 and 4 at distance 0"),
    Bad("kexue.stats.pairwise_distortion", "NaN in V", lambda: pairwise_distortion(NAN_X[:, :4], A[:, :4]),
        ValueError, r"expected finite V and A, got NaN"),
    Bad("kexue.stats.pairwise_distortion", "integer V", lambda: pairwise_distortion(V.long(), A), TypeError,
        r"expected floating V and A, got torch\.int64 and torch\.float32"),
    Bad("kexue.stats.pairwise_distortion", "V a list", lambda: pairwise_distortion(V.tolist(), A), TypeError,
        r"expected V and A to be tensors, got list and Tensor"),
    Bad("kexue.stats.unit_norm_tail_bound", "n = 0", lambda: unit_norm_tail_bound(0, 0.1), ValueError,
        r"expected n >= 1, got 0"),
    Bad("kexue.stats.unit_norm_tail_bound", "eps above 1", lambda: unit_norm_tail_bound(10, 1.2), ValueError,
        r"expected eps < 1\.0, got 1\.2"),
    Bad("kexue.stats.orthogonality_tail_bound", "n negative", lambda: orthogonality_tail_bound(-1, 0.1), ValueError,
        r"expected n >= 1, got -1"),
    Bad("kexue.stats.orthogonality_tail_bound", "eps a string", lambda: orthogonality_tail_bound(10, "0.1"),
        TypeError, r"expected eps to be a real number, got '0\.1'"),
    Bad("kexue.stats.unit_norm_tail_exact", "n a bool", lambda: unit_norm_tail_exact(True, 0.1), TypeError,
        r"expected n to be an integer, got True"),
    Bad("kexue.stats.unit_norm_tail_exact", "eps negative", lambda: unit_norm_tail_exact(10, -0.1), ValueError,
        r"expected eps > 0\.0, got -0\.1"),
    # hubness
    Bad("kexue.stats.knn_indices", "k = 0", lambda: knn_indices(X, 0), ValueError, r"expected k >= 1, got 0"),
    Bad("kexue.stats.knn_indices", "k not below N", lambda: knn_indices(X, 20), ValueError,
        r"expected at least k \+ 1 = 21 points in x .*got 20"),
    Bad("kexue.stats.knn_indices", "unknown metric", lambda: knn_indices(X, 5, "euclidean"), ValueError,
        r"expected metric to be one of \['sqeuclidean', 'cosine'\], got 'euclidean'"),
    Bad("kexue.stats.knn_indices", "chunk = 0", lambda: knn_indices(X, 5, chunk=0), ValueError,
        r"expected chunk >= 1, got 0"),
    Bad("kexue.stats.knn_indices", "cosine with a zero row", lambda: knn_indices(ZERO_ROW, 5, "cosine"),
        ValueError, r"expected no zero rows in x for metric 'cosine', got row 7"),
    Bad("kexue.stats.knn_indices", "x a list", lambda: knn_indices(X.tolist(), 5), TypeError,
        r"expected x to be a tensor, got list"),
    Bad("kexue.stats.hub_values", "NaN in x", lambda: hub_values(NAN_X, 5), ValueError,
        r"expected finite x, got NaN"),
    Bad("kexue.stats.hub_values", "x three-dimensional", lambda: hub_values(X[None], 5), ValueError,
        r"expected x of shape \(N, d\), got \(1, 20, 4\)"),
    Bad("kexue.stats.hub_values", "integer x", lambda: hub_values(X.long(), 5), TypeError,
        r"expected x to be a floating tensor, got torch\.int64"),
    Bad("kexue.stats.hub_values", "k a float", lambda: hub_values(X, 2.5), TypeError,
        r"expected k to be an integer, got 2\.5"),
    Bad("kexue.stats.hubness_skew", "k not below N", lambda: hubness_skew(X[:5], 5), ValueError,
        r"expected at least k \+ 1 = 6 points in x .*got 5"),
    Bad("kexue.stats.hubness_skew", "unknown metric", lambda: hubness_skew(X, 5, metric="l1"), ValueError,
        r"expected metric to be one of .*got 'l1'"),
    Bad("kexue.stats.hub_summary", "values of another k (wrong sum)", lambda: hub_summary(H, 3), ValueError,
        r"expected values to sum to len\(values\)·k = 60 \(hub values of a 3-NN graph\), got 100"),
    Bad("kexue.stats.hub_summary", "float values", lambda: hub_summary(H.double(), 5), TypeError,
        r"expected values to be a 1-D integer tensor \(hub values\), got torch\.float64 of shape \(20,\)"),
    Bad("kexue.stats.hub_summary", "negative values", lambda: hub_summary(H - 6, 5), ValueError,
        r"expected at least 2 non-negative hub values, got \[-1"),
    Bad("kexue.stats.hub_summary", "values a list", lambda: hub_summary(H.tolist(), 5), TypeError,
        r"expected values to be a 1-D integer tensor \(hub values\), got list"),
    Bad("kexue.stats.hub_summary", "hub_size = 0", lambda: hub_summary(H, 5, hub_size=0), ValueError,
        r"expected hub_size > 0\.0, got 0"),
    # leaderboard
    Bad("kexue.stats.means", "a task missing from the row", lambda: means({"CoLA": 60.0}, TASKS), ValueError,
        r"expected scores to have a score for every task in tasks, got none for \['SST-2'\]"),
    Bad("kexue.stats.means", "a score <= 0 without a shift", lambda: means({"CoLA": -2.0, "SST-2": 95.0}, TASKS),
        ValueError, r"expected every score \+ shift > 0 in scores .*got scores\['CoLA'\] = -2 with shift 0"),
    Bad("kexue.stats.means", "ambiguous separators", lambda: means({"CoLA": "1,234.5", "SST-2": 95.0}, TASKS),
        ValueError, r"expected scores\['CoLA'\] to have at most one decimal separator .*got '1,234\.5'"),
    Bad("kexue.stats.means", "not a number", lambda: means({"CoLA": "n/a/b", "SST-2": 95.0}, TASKS), ValueError,
        r"expected scores\['CoLA'\] to be a number or a pair 'a/b', got 'n/a/b'"),
    Bad("kexue.stats.means", "a bool score", lambda: means({"CoLA": True, "SST-2": 95.0}, TASKS), TypeError,
        r"expected scores\['CoLA'\] to be a number, a string or a pair, got True \(bool\)"),
    Bad("kexue.stats.means", "an infinite score", lambda: means({"CoLA": float("inf"), "SST-2": 95.0}, TASKS),
        ValueError, r"expected scores\['CoLA'\] to be finite, got inf"),
    Bad("kexue.stats.means", "a triple for a pair", lambda: means({"CoLA": (1.0, 2.0, 3.0), "SST-2": 95.0}, TASKS),
        ValueError, r"expected scores\['CoLA'\] to be a number or a pair of numbers, got 3 values"),
    Bad("kexue.stats.means", "tasks a string", lambda: means(ROW, "CoLA"), TypeError,
        r"expected tasks to be a sequence of task names, got 'CoLA'"),
    Bad("kexue.stats.means", "tasks empty", lambda: means(ROW, []), ValueError,
        r"expected tasks to name at least one task, got none"),
    Bad("kexue.stats.means", "a task twice", lambda: means(ROW, ["CoLA", "CoLA"]), ValueError,
        r"expected distinct tasks, got \['CoLA'\] more than once"),
    Bad("kexue.stats.means", "shift negative", lambda: means(ROW, TASKS, shift=-1), ValueError,
        r"expected shift >= 0\.0, got -1"),
    Bad("kexue.stats.means", "scores a list", lambda: means([60.0, 95.0], TASKS), TypeError,
        r"expected scores to be a mapping from task to score, got list"),
    Bad("kexue.stats.rank_table", "unknown mean", lambda: rank_table(BOARD, TASKS, "median"), ValueError,
        r"expected mean to be one of \['am', 'gm', 'hm'\], got 'median'"),
    Bad("kexue.stats.rank_table", "a row lacking a task", lambda: rank_table(BOARD, [*TASKS, "WNLI"]), ValueError,
        r"expected rows\['Human'\] to have a score for every task in tasks, got none for \['WNLI'\]"),
    Bad("kexue.stats.rank_table", "rows a list", lambda: rank_table([ROW], TASKS), TypeError,
        r"expected rows to be a mapping from row name to scores, got list"),
    Bad("kexue.stats.kendall_tau_between_means", "one row", lambda: kendall_tau_between_means({"A": ROW}, TASKS),
        ValueError, r"expected at least 2 rows to rank, got 1"),
    Bad("kexue.stats.kendall_tau_between_means", "shift nan",
        lambda: kendall_tau_between_means(BOARD, TASKS, shift=float("nan")), ValueError,
        r"expected shift to be finite, got nan"),
    Bad("kexue.stats.kendall_tau_between_means", "a row lacking a task",
        lambda: kendall_tau_between_means({**BOARD, "B": {"CoLA": 1.0}}, TASKS), ValueError,
        r"expected rows\['B'\] to have a score for every task in tasks, got none for \['SST-2'\]"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
