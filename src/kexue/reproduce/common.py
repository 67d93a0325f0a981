"""Helpers shared by reproductions: matplotlib set-up, transformers without progress bars in logs, the class
entropy of predictions, number formatting, the digits data set and its split, a Transformer's blocks typed as blocks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models.transformer import Block, Transformer


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def transformers_quiet() -> Any:
    """The ``transformers`` module, its progress bars ("Loading weights") off unless stderr is a terminal
    (:func:`kexue.env.interactive`), so logs and the report's captured output stay free of bar redraws."""
    import transformers

    from ..env import interactive

    if not interactive():
        transformers.utils.logging.disable_progress_bar()
    return transformers


def class_entropy(labels: Any, num_classes: int = 10) -> float:
    """The entropy (nats) of the histogram of predicted ``labels`` (a tensor or array of class indices): a sample
    set's diversity, log(num_classes) when the classes are equally represented (log 10 = 2.303 for digits)."""
    import torch

    hist = torch.bincount(torch.as_tensor(labels).flatten().long(), minlength=num_classes).double()
    p = hist[hist > 0] / hist.sum()
    return float(-(p * p.log()).sum())


def fmt(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}"


def digits_split(standardize: bool = False, n_train: int = 1400) -> tuple[Any, Any, Any, Any]:
    """scikit-learn's 8x8 digits as float32 tensors in [0, 1] (``standardize``: then each pixel to zero mean and unit
    variance over the whole set), the labels, and a fixed split (seed 0): ``(X, y, train_idx, heldout_idx)``."""
    import torch
    from sklearn.datasets import load_digits

    X_np, y_np = load_digits(return_X_y=True)
    X = torch.tensor(X_np / 16.0, dtype=torch.float32)
    if standardize:
        X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    return X, torch.tensor(y_np), perm[:n_train], perm[n_train:]


def blocks_of(model: Transformer) -> list[Block]:
    """``model.blocks`` as a list of :class:`~kexue.models.transformer.Block` (an ``nn.ModuleList`` types its items as
    ``nn.Module``; recompute wraps a block's forward in place, so every item is a Block)."""
    from ..models.transformer import Block

    out = [b for b in model.blocks if isinstance(b, Block)]
    if len(out) != len(model.blocks):
        raise TypeError(f"expected model.blocks to hold Blocks only, got {[type(b).__name__ for b in model.blocks]}")
    return out
