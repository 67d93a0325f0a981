"""reproduce.common.class_entropy against scipy.stats.entropy of the predicted-class histogram."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kexue.reproduce.common import class_entropy

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("labels", [np.array([0, 0, 1, 3, 3, 3, 9]), torch.arange(10), torch.tensor([4] * 5),
                                    np.random.default_rng(0).integers(0, 10, 500)])
def test_class_entropy_equals_scipy(labels):
    counts = np.bincount(np.asarray(labels), minlength=10)
    assert class_entropy(labels) == pytest.approx(float(scipy_stats.entropy(counts)), abs=1e-12)
