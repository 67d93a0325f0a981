"""Two CPU processes train the Transformer under DistributedDataParallel (gloo); parameters agree afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from kexue.models import Transformer, TransformerConfig


def test_ddp_two_processes_agree(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(worker), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                          timeout=900)  # a guard against a hung rendezvous, not a speed limit
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
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
