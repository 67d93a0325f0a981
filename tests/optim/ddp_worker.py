"""Run by test_distributed.py through the ``run_ddp`` launcher (tests/conftest.py, torchrun): the kexue optimizers
train a small Transformer under DDP (gloo, CPU).

Each rank writes its final parameters to OUT_DIR/{name}_rank{r}.pt for every optimizer in OPTIMIZERS.
:func:`reference` trains the same model in one process on the rank-averaged gradients (what DDP computes).
"""

from __future__ import annotations

import os
import sys

import torch
from torch import nn

from kexue.models import Transformer, TransformerConfig
from kexue.optim import AccumAdamW, AdaFactor, ChildTuning

STEPS = 6
WORLD = 2


def make_model() -> Transformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                            max_position_embeddings=16, with_mlm=True, with_pooler=False, hidden_dropout=0.0,
                            attention_dropout=0.0)
    return Transformer(cfg)


def make_optimizer(name: str, params) -> torch.optim.Optimizer:
    if name == "adafactor":  # small tensors: factor from 16 entries so the factored path runs
        return AdaFactor(params, lr=1e-2, min_dim_size_to_factor=16, beta1=0.9)
    if name == "accum_adamw":
        return AccumAdamW(params, lr=1e-3, k=3)
    if name == "child_tuning":  # the same generator seed on every rank, so the ranks draw the same masks
        return ChildTuning(torch.optim.AdamW(params, lr=1e-3), reserve_p=0.3,
                           generator=torch.Generator().manual_seed(1234))
    raise ValueError(name)


OPTIMIZERS = ("adafactor", "accum_adamw", "child_tuning")


def batch(rank: int, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * rank + step)  # each rank sees different data
    return torch.randint(1, 100, (4, 12), generator=g)


def loss_fn(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    out = model(ids)
    return nn.functional.cross_entropy(out.mlm_logits.flatten(0, 1), ids.flatten())


def reference(name: str) -> dict[str, torch.Tensor]:
    """One process, gradients averaged over the ranks' batches by hand."""
    model = make_model()
    opt = make_optimizer(name, model.parameters())
    for step in range(STEPS):
        grads = []
        for rank in range(WORLD):
            model.zero_grad()
            loss_fn(model, batch(rank, step)).backward()
            grads.append([None if p.grad is None else p.grad.clone() for p in model.parameters()])
        for i, p in enumerate(model.parameters()):
            gs = [g[i] for g in grads if g[i] is not None]
            p.grad = sum(gs) / WORLD if gs else None
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def main(out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    assert dist.get_world_size() == WORLD
    for name in OPTIMIZERS:
        model = DDP(make_model())
        opt = make_optimizer(name, model.parameters())
        for step in range(STEPS):
            opt.zero_grad()
            loss_fn(model, batch(rank, step)).backward()
            opt.step()
        torch.save({k: v.detach().clone() for k, v in model.module.state_dict().items()},
                   os.path.join(out_dir, f"{name}_rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
