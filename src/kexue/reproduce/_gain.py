"""A decision for claims of a gain of a stated size, used by the ``whitening`` and ``gradient_penalty_inequality``
rules (a building block beside :mod:`kexue.reproduce.rules`).

:func:`~kexue.reproduce.rules.superiority` asks only that an effect be above 0. Where the claim names a size (the
post's "+12 Spearman points", the spec's "at least 20 % lower"), an effect that is real but much smaller than that
should not count as the claim holding, and an interval wholly below the size rules the claim out.
"""

from __future__ import annotations

from .rules import Z, Decision, Estimate


def clear_gain(effect: Estimate, min_effect: float, z: float = Z) -> Decision:
    """Claim: the effect (larger is better) is positive and at least ``min_effect``.

    ``holds`` if the interval mean ± z·se lies above 0 and the mean reaches ``min_effect``; ``does not hold`` if the
    interval lies below ``min_effect``; ``inconclusive`` otherwise, and when the estimate is not finite. With
    ``min_effect`` = 0 this is :func:`~kexue.reproduce.rules.superiority`.
    """
    if not effect.finite:
        return "inconclusive"
    if effect.lower(z) > 0 and effect.mean >= min_effect:
        return "holds"
    if effect.upper(z) < min_effect:
        return "does not hold"
    return "inconclusive"
