"""Two CPU processes (gloo) train with AdaFactor, AccumAdamW and ChildTuning under DistributedDataParallel: the ranks
agree exactly, and equal one process stepping on the rank-averaged gradients."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


def _worker_module():
    spec = importlib.util.spec_from_file_location("kexue_optim_ddp_worker", WORKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ddp_two_processes_agree_with_the_averaged_gradient_reference(tmp_path, run_ddp):
    worker = _worker_module()
    run_ddp(WORKER, tmp_path, nproc=worker.WORLD)
    init = worker.make_model().state_dict()
    for name in worker.OPTIMIZERS:
        r0 = torch.load(tmp_path / f"{name}_rank0.pt", weights_only=True)
        r1 = torch.load(tmp_path / f"{name}_rank1.pt", weights_only=True)
        ref = worker.reference(name)
        assert r0.keys() == r1.keys() == ref.keys()
        for k in r0:
            assert torch.equal(r0[k], r1[k]), (name, k)
            at = f"{name} {k}"
            torch.testing.assert_close(r0[k], ref[k], rtol=1e-5, atol=1e-6, msg=lambda m, at=at: f"{at}: {m}")
        moved = sum(not torch.equal(init[k], r0[k]) for k in r0)
        assert moved > len(r0) // 2, name
