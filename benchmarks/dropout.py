"""kexue's CPU dropout against ``torch.nn.functional.dropout``: time of forward + backward, and the bytes kept for
backward.

    KEXUE_THREADS=1 .venv/bin/python benchmarks/dropout.py [--shape 8 4 256 256] [--p 0.1] [--rounds 15]

Three forms on a float32 tensor that requires grad (a BERT attention-probability tensor by default: batch 8, 4 heads,
256 x 256): torch's dropout (``bernoulli_`` mask, a float mask kept), :func:`kexue.nn.dropout.dropout` (four mask
elements per 64-bit draw, a bool mask kept) and :func:`kexue.nn.dropout.seeded_dropout` (the mask drawn again in
backward, nothing kept). The forms take turns in each round; time is the median CPU time of forward + backward, and
a ratio is torch's time over the form's (>= 1: faster than torch). Kept bytes are counted with
``torch.autograd.graph.saved_tensors_hooks``. On CUDA kexue's forms are torch's dropout, so this is a CPU benchmark.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs="+", default=[8, 4, 256, 256])
    ap.add_argument("--p", type=float, default=0.1)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from kexue.env import set_threads
    from kexue.nn.dropout import dropout, seeded_dropout

    set_threads()
    x = torch.randn(*args.shape, requires_grad=True)
    g = torch.randn(*args.shape)
    forms = {
        "torch F.dropout": lambda t: F.dropout(t, args.p, True),
        "kexue dropout": lambda t: dropout(t, args.p),
        "kexue seeded_dropout": lambda t: seeded_dropout(t, args.p),
    }

    def kept(fn) -> int:
        sizes: list[int] = []

        def pack(t):
            sizes.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(x)
        return sum(sizes)

    times: dict[str, list[float]] = {k: [] for k in forms}
    for r in range(args.rounds + 1):
        for name, fn in forms.items():
            x.grad = None
            c0 = time.process_time()
            fn(x).backward(g)
            if r:  # round 0 warms up
                times[name].append(time.process_time() - c0)
    n = x.numel()
    base = "torch F.dropout"
    print(f"dropout p = {args.p} on a float32 tensor of shape {tuple(args.shape)} ({n:,} elements), forward + "
          f"backward, {torch.get_num_threads()} thread(s), torch {torch.__version__}, {args.rounds} rounds")
    print(f"{'':22s} {'ms':>8s} {'ns/element':>11s} {'torch / this':>13s} {'kept for backward':>18s}")
    for name in forms:
        t = statistics.median(times[name])
        ratio = statistics.median(a / b for a, b in zip(times[base], times[name]))
        print(f"{name:22s} {1e3 * t:8.2f} {1e9 * t / n:11.2f} {ratio:12.2f}x {kept(forms[name]) / 2**20:14.1f} MiB")


if __name__ == "__main__":
    main()
