"""Sentence embeddings: pooling, encoding, STS evaluation, whitening.

``encode(texts, model, tokenizer, pooling="mean")`` gives sentence vectors; ``evaluate(model, tokenizer, pairs)`` the
Spearman correlation of their cosines with an STS set's gold scores (:func:`kexue.data.datasets.load_sts` loads one);
``Whitening(n_components).fit(vectors)`` BERT-whitening.
"""

from .encode import encode
from .pooling import POOLINGS, Pooling, masked_mean, pool
from .sts import cosine_scores, evaluate, rankdata, spearman, spearman_eval
from .whitening import Whitening, whitening_matrix

__all__ = ["POOLINGS", "Pooling", "Whitening", "cosine_scores", "encode", "evaluate", "masked_mean",
           "pool", "rankdata", "spearman", "spearman_eval", "whitening_matrix"]
