"""Classification heads and post-processing: CAN, the analytic logistic regression, NSP zero-shot.

* :mod:`kexue.classify.can` — "CAN：借助先验分布提升分类性能的简单后处理技巧" (2021-10-22, kexue.fm/archives/8728);
* :mod:`kexue.classify.logistic` — "概率视角下的线性模型：逻辑回归有解析解吗？" (2021-07-22, kexue.fm/archives/8578);
* :mod:`kexue.classify.nsp_zero_shot` — "曾被嫌弃的预训练任务NSP，做出了优秀的Zero Shot效果" (2021-09-10,
  kexue.fm/archives/8671).
"""

from .can import CANMode, UncertaintyKind, can, confident_mask, prior_from_labels, topk_uncertainty
from .logistic import (
    AnalyticLogisticRegression,
    GaussianLinearClassifier,
    LinearSolution,
    Priors,
    Sigma,
    analytic_linear_regression,
)
from .nsp_zero_shot import (
    LABEL_SLOT,
    NSPZeroShot,
    SentencePairs,
    assign_by_thresholds,
    nsp_zero_shot,
    pair_scores,
    quantile_thresholds,
)

__all__ = [
    "LABEL_SLOT",
    "AnalyticLogisticRegression",
    "CANMode",
    "GaussianLinearClassifier",
    "LinearSolution",
    "NSPZeroShot",
    "Priors",
    "SentencePairs",
    "Sigma",
    "UncertaintyKind",
    "analytic_linear_regression",
    "assign_by_thresholds",
    "can",
    "confident_mask",
    "nsp_zero_shot",
    "pair_scores",
    "prior_from_labels",
    "quantile_thresholds",
    "topk_uncertainty",
]
