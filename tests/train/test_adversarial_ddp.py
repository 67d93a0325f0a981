"""FGM (both forms), the gradient penalty and recompute under DistributedDataParallel (2 gloo processes) with
gradient accumulation (``no_sync`` on the first of two micro-steps): each rank's gradient equals one process summing
the same micro-steps over the ranks' batches and averaging over ranks (what DDP must compute).

Run as a script (by the test, through the ``run_ddp`` launcher of tests/conftest.py, under torchrun) it is the
worker.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kexue.models import Transformer, TransformerConfig, enable_recompute
from kexue.train import FGM, fgm_step, gradient_penalty_loss

WORLD, MICRO = 2, 2
CASES = ("fgm_post", "fgm_pytorch", "fgm_output", "penalty", "recompute")


def make_model() -> Transformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                            max_position_embeddings=16, with_mlm=True, with_pooler=False, hidden_dropout=0.0,
                            attention_dropout=0.0)
    return Transformer(cfg)


def batch(rank: int, micro: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 * rank + micro)
    ids = torch.randint(1, 100, (4, 10), generator=g)
    ids[:, 3] = ids[:, 1]  # repeated tokens
    return ids


def loss_fn(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    out = model(ids)
    return F.cross_entropy(out.mlm_logits.flatten(0, 1), ids.flatten()) / MICRO


def micro_step(case: str, model: nn.Module, ids: torch.Tensor) -> None:
    """One micro-step of ``case``, leaving its gradient in ``.grad`` (``model`` plain or DDP-wrapped)."""
    if case.startswith("fgm"):
        fgm = {"fgm_post": lambda: FGM.preset("post", model),
               "fgm_pytorch": lambda: FGM.preset("pytorch", model),
               "fgm_output": lambda: FGM(model, epsilon=0.5, scope="output")}[case]()
        fgm_step(model, ids, loss_fn, None, fgm)
        fgm.remove()
    elif case == "penalty":
        total, _, _ = gradient_penalty_loss(model, ids, loss_fn, epsilon=1.0)
        total.backward()
    else:
        loss_fn(model, ids).backward()


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def reference(case: str) -> dict[str, torch.Tensor]:
    model = make_model()
    total: dict[str, torch.Tensor] = {}
    for rank in range(WORLD):
        for micro in range(MICRO):
            model.zero_grad(set_to_none=True)
            micro_step(case, model, batch(rank, micro))
            for n, g in _grads(model).items():
                total[n] = total.get(n, 0) + g / WORLD
    return total


def main(out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    for case in CASES:
        inner = make_model()
        if case == "recompute":
            enable_recompute(inner)
        model = DDP(inner)
        for micro in range(MICRO):
            with model.no_sync() if micro < MICRO - 1 else contextlib.nullcontext():
                micro_step(case, model, batch(rank, micro))
        torch.save(_grads(model.module), os.path.join(out_dir, f"{case}_rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_with_accumulation_equals_the_rank_averaged_reference(tmp_path, run_ddp):
    run_ddp(Path(__file__), tmp_path, nproc=WORLD)
    for case in CASES:
        r0 = torch.load(tmp_path / f"{case}_rank0.pt", weights_only=True)
        r1 = torch.load(tmp_path / f"{case}_rank1.pt", weights_only=True)
        ref = reference(case)
        assert r0.keys() == r1.keys() == ref.keys(), case
        for k in ref:
            at = f"{case} {k}"
            torch.testing.assert_close(r0[k], r1[k], rtol=0, atol=0, msg=lambda m, at=at: f"{at}: {m}")
            torch.testing.assert_close(r0[k], ref[k], rtol=1e-5, atol=1e-7, msg=lambda m, at=at: f"{at}: {m}")
    # the forms differ: clean+adv carries the clean gradient too
    post, common = reference("fgm_post"), reference("fgm_pytorch")
    assert not torch.allclose(post["blocks.0.ffn.up.weight"], common["blocks.0.ffn.up.weight"])


if __name__ == "__main__":
    main(sys.argv[1])
