"""Sentence embeddings: pooling, encoding, STS evaluation, whitening."""
