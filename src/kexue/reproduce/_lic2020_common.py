"""Fine-tuning all-MiniLM-L6-v2 for the LIC2020 reproductions on a CPU budget: a frozen bottom, a trained top.

The embeddings and the lower ``6 − n_top`` blocks stay frozen; their output is computed once per text set
(:func:`bottom_states`) and shared by every seed and epoch, and only the top ``n_top`` blocks (deep copies) and a
task head train (:class:`TopEncoder`). Training the top blocks costs about a third of full fine-tuning per token,
and the frozen part is paid once instead of per seed and epoch. Used by ``lic2020_span_qa``, ``lic2020_relation``
and ``lic2020_ner_crf``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.optim.optimizer import ParamsT

from ..models import Transformer
from ..models.transformer import Block
from ..nn.masks import padding_mask
from ..nn.padding import pad
from .common import blocks_of


@torch.no_grad()
def bottom_states(model: Transformer, ids: Sequence[Sequence[int]], n_frozen: int, batch: int = 32,
                  type_ids: Sequence[Sequence[int]] | None = None) -> list[Tensor]:
    """The embeddings and the first ``n_frozen`` blocks of ``model`` applied to each sequence of token ids, one
    (length, hidden) float32 tensor per sequence, unpadded (batches of similar length, padding masked)."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[Tensor | None] = [None] * len(ids)
    blocks = blocks_of(model)[:n_frozen]
    with model.fast_inference():
        for s in range(0, len(order), batch):
            _bottom_batch(model, blocks, ids, type_ids, order[s:s + batch], out)
    return [t for t in out if t is not None]


def _bottom_batch(model: Transformer, blocks: list[Block], ids: Sequence[Sequence[int]],
                  type_ids: Sequence[Sequence[int]] | None, idx: list[int], out: list[Tensor | None]) -> None:
    x_ids, keep = pad([list(ids[i]) for i in idx])
    tt = pad([list(type_ids[i]) for i in idx])[0] if type_ids is not None else None
    x = model.embeddings(x_ids, tt, None)
    mask = None if bool(keep.all()) else padding_mask(keep.bool())
    for blk in blocks:
        x, _ = blk(x, mask)
    for j, i in enumerate(idx):
        out[i] = x[j, : len(ids[i])].clone()


class TopEncoder(nn.Module):
    """Deep copies of the top ``n_top`` blocks of a kexue Transformer, run on cached lower-block states.

    ``forward(x, keep) -> (last, pre_norm)``: ``x`` (batch, seq, hidden) the frozen part's output, ``keep`` (batch,
    seq) 1 on real tokens; ``last`` the encoder's output and ``pre_norm`` the last block's residual sum before its
    final LayerNorm, taken with a forward pre-hook on that block's ``ffn_norm`` (the object head of
    :class:`kexue.heads.SubjectObjectPointer` reads it).
    """

    def __init__(self, model: Transformer, n_top: int) -> None:
        super().__init__()
        blocks = blocks_of(model)
        top = [copy.deepcopy(b) for b in blocks[len(blocks) - n_top:]]
        self.blocks = nn.ModuleList(top)
        self._pre: list[Tensor] = []
        top[-1].ffn_norm.register_forward_pre_hook(lambda m, args: self._pre.append(args[0]))

    def forward(self, x: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        mask = None if bool(keep.all()) else padding_mask(keep.bool())
        self._pre.clear()
        for blk in self.blocks:
            x, _ = blk(x, mask)
        pre = self._pre[-1]
        self._pre.clear()
        return x, pre


def batch_states(states: Sequence[Tensor], idx: Sequence[int]) -> tuple[Tensor, Tensor]:
    """The cached states of ``idx`` right-padded with zeros: ``(x, keep)``."""
    return pad([states[i] for i in idx])


def batches(n: int, size: int, generator: torch.Generator | None) -> Iterator[list[int]]:
    """Indices 0..n−1 in batches of ``size``: shuffled with ``generator``, in order without one."""
    order = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    for s in range(0, n, size):
        yield order[s:s + size]


def fit(params: ParamsT, n: int, loss_fn: Callable[[list[int], torch.Generator], Tensor], *,
        epochs: int, batch: int, lr: float, seed: int, modules: Sequence[nn.Module] = ()) -> list[float]:
    """AdamW (weight decay 0.01; ``params`` are parameters, or groups with their own ``lr``) with a linear warm-up
    over the first 10 % of the steps and linear decay, over ``epochs`` passes of ``n`` examples in shuffled batches
    (``torch.Generator`` seeded with ``seed``, also handed to ``loss_fn`` for its own draws). Returns the loss of
    every step. ``modules`` are set to train mode."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    total = epochs * ((n + batch - 1) // batch)
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: min((t + 1) / warm, max(0.0, (total - t) / max(1, total - warm))))
    for m in modules:
        m.train()
    losses = []
    for _ in range(epochs):
        for idx in batches(n, batch, g):
            loss = loss_fn(idx, g)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    for m in modules:
        m.eval()
    return losses
