"""Synthetic associative recall, shared by reproductions: a sequence of key–value pairs, then a query key; the model
must output the value paired with the query at the last position. Keys are tokens 1..K, values K+1..2K."""

from __future__ import annotations

from typing import Any

import torch

from ..models import Transformer, TransformerConfig


def recall_batch(batch: int, pairs: int, num_keys: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    keys = torch.stack([torch.randperm(num_keys, generator=g)[:pairs] for _ in range(batch)]) + 1
    values = torch.randint(num_keys + 1, 2 * num_keys + 1, (batch, pairs), generator=g)
    pick = torch.randint(0, pairs, (batch,), generator=g)
    seq = torch.stack([keys, values], dim=-1).flatten(1)
    query = keys.gather(1, pick[:, None])
    return torch.cat([seq, query], dim=1), values.gather(1, pick[:, None]).squeeze(1)


def recall_accuracy(seed: int, steps: int = 600, lr: float = 1e-3, pairs: int = 8, num_keys: int = 16,
                    hidden: int = 64, heads: int = 8, layers: int = 2, **config: Any) -> float:
    """Train a small kexue Transformer (MLM head read at the last position) and return its accuracy on 2,000 fresh
    queries. ``config`` goes to :class:`TransformerConfig` (e.g. ``attention_key_size=32``, ``talking_heads=True``)."""
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=2 * num_keys + 1, hidden_size=hidden, num_layers=layers, num_heads=heads,
                            intermediate_size=4 * hidden, max_position_embeddings=2 * pairs + 1, hidden_dropout=0.0,
                            attention_dropout=0.0, type_vocab_size=0, with_pooler=False, with_mlm=True, **config)
    model = Transformer(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(10_000 + seed)
    for _ in range(steps):
        x, y = recall_batch(64, pairs, num_keys, g)
        loss = torch.nn.functional.cross_entropy(model(x).mlm_logits[:, -1], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        x, y = recall_batch(2000, pairs, num_keys, torch.Generator().manual_seed(99))
        return (model(x).mlm_logits[:, -1].argmax(-1) == y).float().mean().item()
