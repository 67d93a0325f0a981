"""AdaFactor step time and state size on MiniLM-sized parameters: kexue against torch.optim.Adafactor (foreach) and
transformers.Adafactor.

The parameters are those of a kexue Transformer with all-MiniLM-L6-v2's shapes (22.7M: vocab 30522, 384 hidden,
6 layers, 1536 FFN); each step gets fresh random gradients (precomputed, so drawing them is not timed). Every
optimizer runs 3 warm-up steps; then steps are interleaved in rounds (one step of each optimizer per round) and the
median ms/step is reported. Target: kexue's AdaFactor no slower than torch's foreach Adafactor (ratio <= 1).

    KEXUE_THREADS=1 .venv/bin/python benchmarks/optimizers.py [--rounds 15] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

# read by the Hugging Face libraries, which main() imports
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import transformers

    from kexue.env import set_threads
    from kexue.models import Transformer, TransformerConfig
    from kexue.optim import AdaFactor
    from kexue.reproduce._optim_state import state_nbytes

    threads = set_threads(1)
    device = torch.device(args.device)
    cfg = TransformerConfig(vocab_size=30522, hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536)
    torch.manual_seed(0)
    template = [p.detach().to(device) for p in Transformer(cfg).parameters()]
    n_params = sum(p.numel() for p in template)
    g = torch.Generator(device=device).manual_seed(1)
    grads = [[torch.randn(p.shape, generator=g, device=device) * 1e-2 for p in template] for _ in range(2)]

    makers: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
        "torch.optim.Adafactor (foreach)": lambda ps: torch.optim.Adafactor(ps, foreach=True),
        "torch.optim.Adafactor (single-tensor)": lambda ps: torch.optim.Adafactor(ps, foreach=False),
        "transformers.Adafactor": lambda ps: transformers.Adafactor(ps),
        "kexue AdaFactor.preset('torch')": lambda ps: AdaFactor.preset("torch", ps),
        "kexue AdaFactor.preset('transformers')": lambda ps: AdaFactor.preset("transformers", ps),
        "kexue AdaFactor (bert4keras, default)": lambda ps: AdaFactor(ps),
        "kexue AdaFactor (bert4keras, per-tensor)": lambda ps: AdaFactor(ps, foreach=False),
        "torch.optim.AdamW (reference for state size)": lambda ps: torch.optim.AdamW(ps, foreach=True),
    }
    runs = {}
    for name, make in makers.items():
        params = [torch.nn.Parameter(p.clone()) for p in template]
        opt = make(params)
        runs[name] = (params, opt)

    def step(name: str, i: int) -> float:
        params, opt = runs[name]
        for p, gr in zip(params, grads[i % 2]):
            p.grad = gr
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for name in runs:
        for i in range(3):
            step(name, i)
    times: dict[str, list[float]] = {n: [] for n in runs}
    for r in range(args.rounds):
        for name in runs:
            times[name].append(step(name, r))

    print(f"# AdaFactor on {n_params / 1e6:.1f}M MiniLM-sized parameters, {device}, {threads} thread(s), "
          f"median of {args.rounds} interleaved steps")
    ref = statistics.median(times["torch.optim.Adafactor (foreach)"])
    adamw_bytes = state_nbytes(runs["torch.optim.AdamW (reference for state size)"][1])
    print(f"{'optimizer':46s} {'ms/step':>9s} {'vs torch foreach':>17s} {'state MB':>9s} {'vs AdamW':>9s}")
    for name in runs:
        med = statistics.median(times[name])
        nbytes = state_nbytes(runs[name][1])
        print(f"{name:46s} {1e3 * med:9.2f} {med / ref:17.3f} {nbytes / 2**20:9.3f} {nbytes / adamw_bytes:9.4f}")
    for name in ("kexue AdaFactor.preset('torch')", "kexue AdaFactor (bert4keras, default)"):
        ratio = statistics.median(times[name]) / ref
        print(f"RATIO {name} / torch.optim.Adafactor (foreach) = {ratio:.3f} "
              f"({'meets' if ratio <= 1.0 else 'misses'} the target <= 1)")


if __name__ == "__main__":
    main()
