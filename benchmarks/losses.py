"""Time and peak memory of ZLPR (dense and sparse) against per-label binary cross-entropy.

    python benchmarks/losses.py [--labels 1000 10000 100000] [--batch 64] [--positives 5] [--device cpu]

For each label count C: logits (batch, C) with ``positives`` true labels per row; one forward + backward of

* ``bce``: ``F.binary_cross_entropy_with_logits`` summed over labels, averaged over rows (the peer);
* ``zlpr``: :func:`kexue.losses.zlpr` with float 0/1 targets (the soft-label path, as a BCE user would call it);
* ``zlpr-bool``: the same with bool targets (the hard-label masking path);
* ``sparse``: :func:`kexue.losses.sparse_zlpr` with the (batch, positives) index tensor (no dense labels at all).

Time is the median over ``--repeats`` runs after warm-up. Peak memory is the high-water mark of tensor storage
allocated during forward + backward (inputs excluded), tracked op by op with a ``TorchDispatchMode`` (kernel-internal
scratch is not seen); on CUDA ``torch.cuda.max_memory_allocated`` is printed beside it. Ratios are against ``bce``
measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from kexue.losses import sparse_zlpr, zlpr


class PeakTensorMemory(TorchDispatchMode):
    """High-water mark of the bytes of tensor storage created inside the ``with`` block and still alive."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, weakref.ref] = {}

    def _free(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._refs.pop(key, None)

    def __torch_dispatch__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()
                key = id(st)
                if key in self._refs:
                    continue
                n = st.nbytes()
                self._refs[key] = weakref.ref(st, lambda _r, k=key, n=n: self._free(k, n))
                self.live += n
                self.peak = max(self.peak, self.live)
        return out


def _inputs(batch: int, labels: int, positives: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(batch, labels, generator=g) * 3).to(device)
    idx = torch.stack([torch.randperm(labels, generator=g)[:positives] for _ in range(batch)]).to(device)
    dense = torch.zeros(batch, labels, device=device).scatter_(1, idx, 1.0)
    return logits, dense, idx


def _methods(dense: torch.Tensor, idx: torch.Tensor) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    dense_bool = dense.bool()
    return {
        "bce": lambda x: F.binary_cross_entropy_with_logits(x, dense, reduction="none").sum(-1).mean(),
        "zlpr": lambda x: zlpr(x, dense),
        "zlpr-bool": lambda x: zlpr(x, dense_bool),
        "sparse": lambda x: sparse_zlpr(x, pos_index=idx),
    }


def _step(fn: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor) -> None:
    x = logits.detach().requires_grad_(True)
    fn(x).backward()


def _time(fn, logits, repeats: int) -> float:
    cuda = logits.is_cuda
    for _ in range(3):
        _step(fn, logits)
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        _step(fn, logits)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _peak(fn, logits) -> tuple[int, int | None]:
    with PeakTensorMemory() as tracker:
        _step(fn, logits)
    cuda_peak = None
    if logits.is_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _step(fn, logits)
        torch.cuda.synchronize()
        cuda_peak = torch.cuda.max_memory_allocated() - base
    return tracker.peak, cuda_peak


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", type=int, nargs="+", default=[1000, 10_000, 100_000])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--positives", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} thread(s), batch {args.batch}, "
          f"{args.positives} positives per row; forward + backward, median of {args.repeats}")
    header = f"{'labels':>8} {'method':>10} {'time ms':>9} {'× bce':>7} {'peak MiB':>9} {'× bce':>7}"
    if args.device.startswith("cuda"):
        header += f" {'cuda MiB':>9}"
    print(header)
    for c in args.labels:
        logits, dense, idx = _inputs(args.batch, c, args.positives, args.device)
        # sanity: the dense and sparse forms are the same loss
        torch.testing.assert_close(zlpr(logits, dense), sparse_zlpr(logits, pos_index=idx))
        base_t = base_m = None
        for name, fn in _methods(dense, idx).items():
            t = _time(fn, logits, args.repeats)
            m, cm = _peak(fn, logits)
            if name == "bce":
                base_t, base_m = t, m
            line = (f"{c:>8} {name:>10} {t * 1e3:>9.3f} {t / base_t:>7.2f} {m / 2**20:>9.2f} "
                    f"{m / base_m:>7.2f}")
            if cm is not None:
                line += f" {cm / 2**20:>9.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
