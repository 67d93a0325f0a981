"""Two CPU processes train the Transformer under DistributedDataParallel (gloo); parameters agree afterwards."""

from __future__ import annotations

from pathlib import Path

import torch

from kexue.models import Transformer, TransformerConfig


def test_ddp_two_processes_agree(tmp_path, run_ddp):
    run_ddp(Path(__file__).with_name("ddp_worker.py"), tmp_path, nproc=2)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    # and training moved them: they are not the initial weights
    torch.manual_seed(0)
    init = Transformer(TransformerConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4,
                                         intermediate_size=64, max_position_embeddings=16,
                                         with_mlm=True, with_nsp=True)).state_dict()
    moved = sum(not torch.equal(init[k], r0[k]) for k in r0)
    assert moved > len(r0) // 2
