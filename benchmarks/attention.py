"""Forward+backward time of each attention kind against SDPA, n = 128 … 4096, one thread.

    python benchmarks/attention.py [--hidden 256] [--heads 4] [--lengths 128 256 ...] [--repeats 3]

Each kind runs inside kexue.nn.attention.Attention (projections included) on batch 1. Prints ms per step, the ratio to
SDPA, and the first length at which each linear kind overtakes SDPA. The post (kexue.fm/archives/8610) predicts
linear attention with head size d pays off only past n ≈ d (same feature size) and ≈ 16d with a 4× feature size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from kexue.nn.attention import Attention

KINDS = {
    "sdpa (softmax)": dict(kind="softmax"),
    "explicit softmax": dict(kind="softmax", impl="math"),
    "linear (elu+1)": dict(kind="linear"),
    "performer (256)": dict(kind="performer", num_features=256),
    "taylor (order 2)": dict(kind="taylor", feature_order=2),
    "exp_limit (n = 2)": dict(kind="exp_limit", feature_order=2),
}


def step_ms(module: Attention, n: int, hidden: int, repeats: int) -> float:
    x = torch.randn(1, n, hidden, requires_grad=True)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        module(x).output.sum().backward()
        if i:  # the first run warms up
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024, 2048, 4096])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("KEXUE_THREADS", "1")))
    torch.manual_seed(0)
    head = args.hidden // args.heads
    print(f"hidden {args.hidden}, {args.heads} heads of {head}, batch 1, {torch.get_num_threads()} thread(s), "
          f"median of {args.repeats}; forward+backward ms (ratio to SDPA)")
    mods = {name: Attention(args.hidden, args.heads, **kw) for name, kw in KINDS.items()}
    times: dict[str, dict[int, float]] = {name: {} for name in KINDS}
    print(f"{'n':>6} " + " ".join(f"{name:>22}" for name in KINDS))
    for n in args.lengths:
        for name, mod in mods.items():
            times[name][n] = step_ms(mod, n, args.hidden, args.repeats)
        base = times["sdpa (softmax)"][n]
        print(f"{n:>6} " + " ".join(f"{times[name][n]:>12.1f} ({times[name][n] / base:>5.2f}x)" for name in KINDS),
              flush=True)
    print("\nfirst length where each kind is faster than SDPA:")
    for name in KINDS:
        if name == "sdpa (softmax)":
            continue
        faster = [n for n in args.lengths if times[name][n] < times["sdpa (softmax)"][n]]
        print(f"  {name:>20}: {faster[0] if faster else 'none up to ' + str(args.lengths[-1])}")
    print(f"(the post's count: same-size linear attention is cheaper past n = d = {head}; with a 4× head size past "
          f"16d = {16 * head})")


if __name__ == "__main__":
    main()
