"""The building blocks of empirical verdict rules: estimates with standard errors, and decisions from them.

A rule is a pure function of the measurements. Its thresholds come from the measured noise: the standard error of a
mean over seeds, or of paired differences where runs share data; ``z`` standard errors make the interval. A claim of
"better" is judged by :func:`superiority`, a claim of "no worse" by :func:`non_inferiority` with an explicit margin
(the equivalence margin the post's claim allows, stated in the entry), and a guard (:func:`learned`) comes first:
a model that does not beat its trivial baseline gives ``not measured``, never a verdict.

Each function returns one of ``holds``, ``does not hold``, ``inconclusive``; every branch is tested on stand-in
measurements in ``tests/reproduce/test_rules.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Decision = Literal["holds", "does not hold", "inconclusive"]

#: Standard errors on each side of a mean that make the decision interval (about 95 % for a normal mean).
Z = 2.0


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error over ``n`` measurements (``se`` is ``nan`` for fewer than 2)."""

    mean: float
    se: float
    n: int

    def lower(self, z: float = Z) -> float:
        return self.mean - z * self.se

    def upper(self, z: float = Z) -> float:
        return self.mean + z * self.se

    @property
    def finite(self) -> bool:
        return math.isfinite(self.mean) and math.isfinite(self.se)

    def __str__(self) -> str:
        return f"{self.mean:.3g} ± {self.se:.2g} (s.e., n = {self.n})"


def estimate(values: Iterable[float]) -> Estimate:
    """Mean and standard error (sample standard deviation / √n) of ``values``."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return Estimate(math.nan, math.nan, 0)
    mean = sum(xs) / n
    if n < 2:
        return Estimate(mean, math.nan, n)
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    return Estimate(mean, math.sqrt(var / n), n)


def paired(ours: Sequence[float], base: Sequence[float]) -> Estimate:
    """Estimate of ``ours[i] - base[i]`` over runs that share seed and data (the paired difference)."""
    if len(ours) != len(base):
        raise ValueError(f"expected paired measurements of equal length, got {len(ours)} and {len(base)}")
    return estimate(a - b for a, b in zip(ours, base))


def difference(ours: Sequence[float], base: Sequence[float]) -> Estimate:
    """Estimate of mean(ours) − mean(base) for unpaired runs (Welch's standard error)."""
    a, b = estimate(ours), estimate(base)
    return Estimate(a.mean - b.mean, math.sqrt(a.se**2 + b.se**2), min(a.n, b.n))


def proportion(successes: int, n: int) -> Estimate:
    """A rate with its binomial standard error √(p(1−p)/n)."""
    if n <= 0:
        return Estimate(math.nan, math.nan, 0)
    p = successes / n
    return Estimate(p, math.sqrt(max(p * (1 - p), 0.0) / n), n)


def superiority(effect: Estimate, *, z: float = Z, min_effect: float = 0.0) -> Decision:
    """Claim: the effect (ours − base, oriented so that larger is better) is positive.

    ``holds`` if the interval lies above 0; ``does not hold`` if it lies below ``min_effect`` (0 by default: ours is
    worse; a positive ``min_effect`` is the smallest effect the post's claim implies, and an interval under it rules
    the claim out); ``inconclusive`` otherwise, and when the estimate is not finite.
    """
    if not effect.finite:
        return "inconclusive"
    if effect.lower(z) > 0:
        return "holds"
    if effect.upper(z) < min_effect:
        return "does not hold"
    return "inconclusive"


def clear_gain(effect: Estimate, min_effect: float, *, z: float = Z) -> Decision:
    """Claim: the effect (larger is better) is positive and of at least the size the post names (``min_effect``:
    "+12 Spearman points", "at least 20 % lower"): a real but much smaller effect does not make the claim hold.

    ``holds`` if the interval lies above 0 and the mean reaches ``min_effect``; ``does not hold`` if the interval lies
    below ``min_effect``; ``inconclusive`` otherwise, and when the estimate is not finite. With ``min_effect`` = 0
    this is :func:`superiority`.
    """
    if not effect.finite:
        return "inconclusive"
    if effect.lower(z) > 0 and effect.mean >= min_effect:
        return "holds"
    if effect.upper(z) < min_effect:
        return "does not hold"
    return "inconclusive"


def non_inferiority(effect: Estimate, margin: float, *, z: float = Z) -> Decision:
    """Claim: ours is no worse than the base by more than ``margin`` (effect oriented so that larger is better).

    ``holds`` if the interval lies above −margin; ``does not hold`` if it lies below −margin; ``inconclusive``
    otherwise. The margin is the equivalence margin of the claim, stated in the entry's rule.
    """
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"expected a finite margin >= 0, got {margin!r}")
    if not effect.finite:
        return "inconclusive"
    if effect.lower(z) > -margin:
        return "holds"
    if effect.upper(z) < -margin:
        return "does not hold"
    return "inconclusive"


def equivalence(effect: Estimate, margin: float, *, z: float = Z) -> Decision:
    """Claim: no change beyond ±``margin`` (two one-sided tests). ``holds`` if the interval lies inside
    (−margin, margin), ``does not hold`` if it lies wholly outside on either side, ``inconclusive`` otherwise (and
    for a non-finite estimate)."""
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"expected a finite margin >= 0, got {margin!r}")
    if not effect.finite:
        return "inconclusive"
    lo, hi = effect.lower(z), effect.upper(z)
    if -margin < lo and hi < margin:
        return "holds"
    if lo > margin or hi < -margin:
        return "does not hold"
    return "inconclusive"


def learned(score: Estimate, baseline: float, *, z: float = Z, higher_is_better: bool = True) -> bool:
    """Whether ``score`` beats the trivial ``baseline`` (majority-class accuracy, unigram loss) clearly: by more than
    ``z`` standard errors, or at all where the score has no spread (a single deterministic measurement)."""
    if not math.isfinite(score.mean):
        return False
    se = score.se if math.isfinite(score.se) else 0.0
    gap = score.mean - baseline if higher_is_better else baseline - score.mean
    return gap > z * se and gap > 0


def all_of(*decisions: str) -> Decision:
    """``holds`` if every part holds, ``does not hold`` if any part does not, else ``inconclusive``."""
    if any(d == "does not hold" for d in decisions):
        return "does not hold"
    if decisions and all(d == "holds" for d in decisions):
        return "holds"
    return "inconclusive"


def not_learned_reason(what: str, score: float, baseline: float, name: str = "trivial baseline") -> str:
    """The reason line of a ``not measured`` verdict."""
    return f"the model did not learn: {what} {score:.3g} does not clearly beat the {name} ({baseline:.3g})"
