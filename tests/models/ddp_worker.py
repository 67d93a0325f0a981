"""Run by test_distributed.py through the ``run_ddp`` launcher (tests/conftest.py, torchrun): trains a small kexue
Transformer under DDP (gloo, CPU).

Each rank writes its final parameters to OUT_DIR/rank{r}.pt.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from kexue.models import Transformer, TransformerConfig


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    cfg = TransformerConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                            max_position_embeddings=16, with_mlm=True, with_nsp=True)
    model = DDP(Transformer(cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(100 + rank)  # each rank sees different data
    for _ in range(5):
        ids = torch.randint(1, 100, (4, 12), generator=g)
        mask = torch.ones_like(ids)
        mask[0, 8:] = 0
        out = model(ids, attention_mask=mask)
        loss = torch.nn.functional.cross_entropy(out.mlm_logits.flatten(0, 1), ids.flatten()) \
            + torch.nn.functional.cross_entropy(out.nsp_logits, torch.tensor([0, 1, 0, 1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save({k: v.detach().clone() for k, v in model.module.state_dict().items()},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
    assert world == 2


if __name__ == "__main__":
    main(sys.argv[1])
