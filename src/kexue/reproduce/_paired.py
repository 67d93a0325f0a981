"""Paired differences of per-example outcomes over seeds, for the rules of ``can``, ``analytic_logreg`` and
``adversarial``.

Two methods scored on the same test examples under the same seeds give, per seed s and example i, outcomes
a[s, i] and b[s, i] (1 for correct, 0 for wrong, or any score). The effect is the mean of d = a − b. Its standard
error has two sources, and the rule takes the larger:

* the test sample: the seed-averaged per-example differences d̄_i = mean_s d[s, i] have standard error
  sd(d̄) / √n (the paired, McNemar-style error; a bootstrap over test examples estimates the same);
* the seeds: the per-seed means m_s = mean_i d[s, i] have standard error sd(m) / √S, when S ≥ 2.

With one seed only the first applies; with a few seeds and a small test set the first keeps an unlucky pair of
seeds that happen to agree from making the interval too narrow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .rules import Estimate, estimate

#: One run's (seed's) per-example outcomes: a list of floats or a 1-D array.
Outcomes = Sequence[float] | np.ndarray
#: Outcomes over seeds: a (seeds, examples) array or one :data:`Outcomes` per seed.
OutcomeMatrix = Sequence[Outcomes] | np.ndarray


def _matrix(x: OutcomeMatrix) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"expected (seeds, examples) outcomes, got shape {a.shape}")
    return a


def paired_examples(ours: OutcomeMatrix, base: OutcomeMatrix) -> Estimate:
    """Mean of ``ours − base`` over seeds and examples, with the larger of the test-sample and the seed standard
    error (module docstring); ``n`` is the number of test examples."""
    a, b = _matrix(ours), _matrix(base)
    if a.shape != b.shape:
        raise ValueError(f"expected paired outcomes of one shape, got {a.shape} and {b.shape}")
    d = a - b
    per_example = estimate(d.mean(axis=0))
    se = per_example.se
    if d.shape[0] >= 2:
        per_seed = estimate(d.mean(axis=1))
        se = max(se, per_seed.se) if math.isfinite(se) else per_seed.se
    return Estimate(float(d.mean()), se, d.shape[1])


def accuracy(correct: OutcomeMatrix) -> Estimate:
    """Accuracy over seeds and examples with the same two-source standard error (against a constant 0)."""
    a = _matrix(correct)
    return paired_examples(a, np.zeros_like(a))


def paired_split_runs(ours: Sequence[Outcomes], base: Sequence[Outcomes]) -> Estimate:
    """Like :func:`paired_examples` for runs that each have their own test examples (random splits, or each run's
    own training rows): the mean of the per-run mean differences, with the larger of the test-sample standard error
    √(Σ_r var_r / n_r) / R and the standard error of the per-run means; ``n`` is the number of examples in all."""
    if len(ours) != len(base) or not ours:
        raise ValueError(f"expected paired runs of equal, non-zero number, got {len(ours)} and {len(base)}")
    diffs = []
    for run_ours, run_base in zip(ours, base):
        a, b = np.asarray(run_ours, dtype=np.float64), np.asarray(run_base, dtype=np.float64)
        if a.shape != b.shape or a.ndim != 1 or a.size == 0:
            raise ValueError(f"expected paired outcomes of one non-empty 1-D shape, got {a.shape} and {b.shape}")
        diffs.append(a - b)
    r = len(diffs)
    means = [float(d.mean()) for d in diffs]
    var = sum(float(d.var(ddof=1)) / d.size if d.size > 1 else math.nan for d in diffs)
    se = math.sqrt(var) / r
    if r >= 2:
        seed_se = estimate(means).se
        se = max(se, seed_se) if math.isfinite(se) else seed_se
    return Estimate(float(np.mean(means)), se, sum(d.size for d in diffs))


def pooled(estimates: Sequence[Estimate]) -> Estimate:
    """The equal-weight mean of independent estimates (one per data set), its s.e. √(Σ se²) / m."""
    if not estimates:
        return Estimate(math.nan, math.nan, 0)
    m = len(estimates)
    return Estimate(float(np.mean([e.mean for e in estimates])), math.sqrt(sum(e.se**2 for e in estimates)) / m,
                    sum(e.n for e in estimates))
