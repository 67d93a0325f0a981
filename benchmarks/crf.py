"""CRF throughput against pytorch-crf at BERT-like shapes: the negative log-likelihood (forward, and forward +
backward as in training) and Viterbi decoding, kexue.nn.CRF against torchcrf.CRF with the same weights.

    KEXUE_THREADS=1 .venv/bin/python benchmarks/crf.py [--batch 32] [--seq 128] [--tags 9 131] [--rounds 15]
        [--device cpu]

Emissions (batch, seq, tags) are random normal; the mask is right padding with lengths drawn in [seq/2, seq] and
the first position on (pytorch-crf's rule, so both run on the same input). Tag counts 2 * pairs + 1 (the LIC2020
BIO layout: 9 = 4 pairs, 131 = 65 pairs). Each measurement runs once per round in turn (interleaved rounds after a
warm-up); the median seconds give sequences per second, and RATIO is kexue's throughput over pytorch-crf's (>= 1:
no slower, the target). The agreement of the outputs (max |NLL difference|, identical Viterbi paths) is printed.
Needs pytorch-crf (the ``test`` extra); without it the script says how to install it and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--tags", type=int, nargs="+", default=[9, 131])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    try:
        import torchcrf
    except ImportError:
        print("pytorch-crf is not installed: pip install 'pytorch-crf>=0.7' (or the test extra: pip install -e "
              "'.[test]'); nothing measured")
        return

    from kexue.env import set_threads
    from kexue.nn import CRF

    threads = set_threads(1)
    device = torch.device(args.device)
    print(f"# CRF, batch {args.batch}, seq {args.seq}, {device}, {threads} thread(s), median of {args.rounds} "
          f"interleaved rounds; throughput in sequences/s")
    print(f"{'tags':>5s} {'measure':22s} {'kexue':>10s} {'torchcrf':>10s} {'ratio':>7s}  agreement")
    for k in args.tags:
        g = torch.Generator().manual_seed(k)
        emissions = torch.randn(args.batch, args.seq, k, generator=g).to(device)
        target = torch.randint(0, k, (args.batch, args.seq), generator=g).to(device)
        lengths = torch.randint(args.seq // 2, args.seq + 1, (args.batch,), generator=g)
        mask = (torch.arange(args.seq) < lengths.unsqueeze(1)).to(device)
        ours = CRF(k).to(device)
        theirs = torchcrf.CRF(k, batch_first=True).to(device)
        theirs.load_state_dict(ours.state_dict())
        _compare(k, _Case(emissions, target, mask), ours, theirs, args.rounds, device)


class _Case(NamedTuple):
    emissions: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor


def _compare(k: int, case: _Case, ours: torch.nn.Module, theirs: torch.nn.Module, rounds: int,
             device: torch.device) -> None:
    """Time and compare the NLL forward, the NLL forward + backward and Viterbi of both CRFs on one case."""
    emissions, target, mask = case
    leaf = emissions.clone().requires_grad_(True)

    def nll(crf: torch.nn.Module, sign: float) -> torch.Tensor:
        return sign * crf(emissions, target, mask, reduction="none")  # pytorch-crf returns the log-likelihood

    def train(crf: torch.nn.Module, sign: float) -> None:
        leaf.grad = None
        crf.zero_grad()
        (sign * crf(leaf, target, mask, reduction="sum")).backward()

    def decode(crf: torch.nn.Module) -> list[list[int]]:
        return crf.viterbi(emissions, mask).tolist() if crf is ours else crf.decode(emissions, mask)

    runs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "NLL forward": (lambda: nll(ours, 1.0), lambda: nll(theirs, -1.0)),
        "NLL forward+backward": (lambda: train(ours, 1.0), lambda: train(theirs, -1.0)),
        "Viterbi": (lambda: decode(ours), lambda: decode(theirs)),
    }
    with torch.no_grad():
        a, b = nll(ours, 1.0), nll(theirs, -1.0)
    train(ours, 1.0)
    g_ours = {n: p.grad.clone() for n, p in ours.named_parameters() if p.grad is not None}
    train(theirs, -1.0)
    grads = dict(theirs.named_parameters())
    rel = max(float((g - grads[n].grad).abs().max() / g.abs().max()) for n, g in g_ours.items())
    agree = {
        "NLL forward": f"max |diff| {float((a - b).abs().max()):.1e} (|NLL| up to {float(a.abs().max()):.0f})",
        "NLL forward+backward": f"gradients: max |diff| / max |grad| {rel:.1e}",
        "Viterbi": f"paths identical: {decode(ours) == decode(theirs)}",
    }
    for name, (f_ours, f_theirs) in runs.items():
        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        for r in range(rounds + 2):
            order = (("ours", f_ours), ("theirs", f_theirs))
            for who, f in order if r % 2 else order[::-1]:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                with torch.enable_grad() if "backward" in name else torch.no_grad():
                    f()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if r >= 2:  # two warm-up rounds
                    times[who].append(time.perf_counter() - t0)
        t_ours, t_theirs = statistics.median(times["ours"]), statistics.median(times["theirs"])
        ratio = t_theirs / t_ours
        batch = emissions.shape[0]
        print(f"{k:5d} {name:22s} {batch / t_ours:10.0f} {batch / t_theirs:10.0f} {ratio:7.2f}  {agree[name]}")
        print(f"RATIO tags {k} {name}: kexue / torchcrf throughput = {ratio:.2f} "
              f"({'meets' if ratio >= 1.0 else 'misses'} the target >= 1)")


if __name__ == "__main__":
    main()
