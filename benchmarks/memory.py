"""Peak memory of a MiniLM-sized training step with 4 micro-batches: torch.optim.AdamW with ordinary gradient
accumulation against kexue's AccumAdamW (k = 4) with gradient release inside backward.

How it is measured: each variant runs in a fresh Python process (this script re-invokes itself), so nothing of one
run stays in the other's allocator. The process builds a kexue Transformer with all-MiniLM-L6-v2's shapes (22.7M
parameters) plus a 2-way head, and trains one full cycle (4 micro-batches of 8 × 64 tokens, one update) as warm-up, so
the optimizer state exists; then it resets the kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``) and
trains two more cycles, reading the peak resident set size (``VmHWM`` in ``/proc/self/status``). glibc's malloc is
told to serve every block of 64 KiB or more with mmap (``MALLOC_MMAP_THRESHOLD_=65536``), so freed tensors leave
RSS at once and the peak reflects live memory rather than allocator caching (``--no-mmap-threshold`` turns that
off). Reported: the peak above the post-warm-up baseline, and the difference between the variants against the size
of one full set of gradients (4 bytes per parameter). Target: the peak drops by at least that much.

    KEXUE_THREADS=1 .venv/bin/python benchmarks/memory.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

VARIANTS = ("adamw_accumulate", "accum_adamw_release")
MICRO, K = 8, 4
SEQ = 64


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def child(variant: str) -> None:
    import torch
    from torch import nn

    from kexue.env import set_threads
    from kexue.models import Transformer, TransformerConfig
    from kexue.optim import AccumAdamW

    set_threads(1)
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=30522, hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536)
    model = nn.ModuleDict({"encoder": Transformer(cfg), "head": nn.Linear(384, 2)})
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randint(1000, 30000, (MICRO, SEQ), generator=g), torch.randint(0, 2, (MICRO,), generator=g))
               for _ in range(3 * K)]

    def loss_of(ids: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pooled = model["encoder"](ids).pooler_output
        return nn.functional.cross_entropy(model["head"](pooled), y)

    if variant == "adamw_accumulate":
        opt = torch.optim.AdamW(params, lr=1e-4)

        def cycle(bs):
            for ids, y in bs:
                (loss_of(ids, y) / K).backward()  # ordinary accumulation: .grad holds the sum
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        opt = AccumAdamW(params, lr=1e-4, k=K)
        opt.release_gradients()

        def cycle(bs):
            for ids, y in bs:
                loss_of(ids, y).backward()  # each gradient folded into the moments and freed inside backward
                opt.step()

    cycle(batches[:K])  # warm-up: the optimizer state now exists
    baseline = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
    cycle(batches[K:2 * K])
    cycle(batches[2 * K:])
    peak = _status_kib("VmHWM")
    assert all(p.grad is None for p in params) or variant == "adamw_accumulate"
    print(json.dumps({"variant": variant, "params": n_params, "baseline_kib": baseline, "peak_kib": peak}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=VARIANTS)
    ap.add_argument("--no-mmap-threshold", action="store_true", help="leave glibc's malloc thresholds alone")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    env = dict(os.environ)
    env.setdefault("KEXUE_THREADS", "1")
    if not args.no_mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    res = {}
    for v in VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--child", v], env=env, capture_output=True, text=True,
                             check=True)
        res[v] = json.loads(out.stdout.strip().splitlines()[-1])
    n = res[VARIANTS[0]]["params"]
    grads_mb = 4 * n / 2**20
    print(f"# MiniLM-sized step ({n / 1e6:.1f}M parameters), {K} micro-batches of {MICRO} x {SEQ} tokens; peak RSS "
          f"of a fresh process (VmHWM after clear_refs), MALLOC_MMAP_THRESHOLD_="
          f"{env.get('MALLOC_MMAP_THRESHOLD_', 'default')}")
    for v in VARIANTS:
        r = res[v]
        print(f"{v:22s} baseline {r['baseline_kib'] / 1024:8.1f} MB  peak {r['peak_kib'] / 1024:8.1f} MB  "
              f"peak above baseline {(r['peak_kib'] - r['baseline_kib']) / 1024:8.1f} MB")
    drop = (res[VARIANTS[0]]["peak_kib"] - res[VARIANTS[1]]["peak_kib"]) / 1024
    print(f"one set of gradients: {grads_mb:.1f} MB")
    print(f"RATIO peak drop / gradient size = {drop:.1f} MB / {grads_mb:.1f} MB = {drop / grads_mb:.2f} "
          f"({'meets' if drop >= grads_mb else 'misses'} the target >= 1)")


if __name__ == "__main__":
    main()
