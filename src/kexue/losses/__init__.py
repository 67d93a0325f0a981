"""Losses from Scientific Spaces: ZLPR (multi-label softmax + cross-entropy), AM-Softmax, InfoNCE and FlatNCE.

Each loss is a function taking **logits** (never probabilities) with an ``nn.Module`` twin. Every loss computes in
at least float32 (a bf16 or fp16 input is upcast first; float64 stays float64), so the result is finite for logits
up to ±1e4 in any input dtype. An empty batch under ``reduction="mean"`` is refused (the mean of no rows is NaN).

Posts:

* "将"Softmax+交叉熵"推广到多标签分类问题" (Generalizing "softmax + cross-entropy" to multi-label classification),
  2020-04-25, https://kexue.fm/archives/7359 — :func:`zlpr`, :func:`sparse_zlpr`, :func:`zlpr_predict`;
* "从三角不等式到Margin Softmax" (From the triangle inequality to margin softmax), 2021-09-01,
  https://kexue.fm/archives/8656 — :func:`am_softmax`, :class:`AMSoftmaxLoss`, :func:`class_mean_diameter`;
* "FlatNCE：小批次对比学习效果差的原因竟是浮点误差？" (FlatNCE: is floating-point error why small-batch contrastive
  learning does poorly?), 2021-07-26, https://kexue.fm/archives/8586 — :func:`info_nce`, :func:`flat_nce`,
  :func:`simclr_logits`.

The losses live by post: :mod:`.zlpr`, :mod:`.margin` (AM-Softmax) and :mod:`.nce` (InfoNCE, FlatNCE, SimCLR);
import them from here.
"""

from ._common import Reduction
from .margin import AMSoftmaxLoss, Distance, am_softmax, am_softmax_logits, class_mean_diameter
from .nce import FlatForm, FlatNCELoss, InfoNCELoss, SimCLRLogits, flat_nce, info_nce, simclr_logits
from .zlpr import (
    SparseZLPRLoss,
    ZLPRLoss,
    multilabel_categorical_crossentropy,
    sparse_zlpr,
    zlpr,
    zlpr_predict,
    zlpr_proba,
)

__all__ = [
    "AMSoftmaxLoss",
    "Distance",
    "FlatForm",
    "FlatNCELoss",
    "InfoNCELoss",
    "Reduction",
    "SimCLRLogits",
    "SparseZLPRLoss",
    "ZLPRLoss",
    "am_softmax",
    "am_softmax_logits",
    "class_mean_diameter",
    "flat_nce",
    "info_nce",
    "multilabel_categorical_crossentropy",
    "simclr_logits",
    "sparse_zlpr",
    "zlpr",
    "zlpr_predict",
    "zlpr_proba",
]

