"""Sentence embeddings: pooling, encoding, STS evaluation, whitening.

``encode(texts, model, tokenizer, pooling="mean")`` gives sentence vectors; ``kexue.embed.sts.evaluate`` gives the
Spearman correlation of their cosines with an STS set's gold scores.
"""

from .encode import encode
from .pooling import POOLINGS, pool
from .whitening import Whitening

__all__ = ["POOLINGS", "Whitening", "encode", "pool"]
