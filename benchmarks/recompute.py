"""Recompute (activation checkpointing) against transformers' own, on the same BERT configuration.

kexue's Transformer with ``kexue.train.enable_recompute`` (one non-reentrant checkpoint per block) against
transformers' ``BertModel`` (sdpa attention) with ``activation_checkpointing_enable`` (``gradient_checkpointing_enable``
before transformers 5; ``use_reentrant=False``), each also without checkpointing, and kexue checkpointing every
second block. A training step is forward + backward of mean(last_hidden_state²) in training mode (dropout on).

How it is measured (kexue.reproduce.recompute.measure): every configuration runs in a fresh Python process with one
thread and glibc's ``MALLOC_MMAP_THRESHOLD_=65536`` (freed tensors leave the resident set at once); after a warm-up
step it resets the peak-RSS counter (``/proc/self/clear_refs``), takes the timed steps and reports peak RSS
(``VmHWM``) minus the RSS before them: the step's activation memory. Time is CPU time per step (median of the timed
steps, then of the rounds; wall time shown too). Rounds interleave the configurations.

Targets (issue 5): at least 3x less activation memory than without recompute, at no more than 35 % extra time, and
no worse than transformers' checkpointing on either figure (within 2 %: repeated runs of one configuration differ by
about that much). On one CPU thread with dropout the forward is ~40 % of a step (drawing dropout masks is slow on CPU
and the recompute draws them again), so one extra forward costs more than the ~+25-33 % of a GPU; ``--dropout 0``
shows the share of the masks.

    KEXUE_THREADS=1 .venv/bin/python benchmarks/recompute.py [--rounds 2] [--batch 8] [--seq 256] [--dropout 0.1]
"""

from __future__ import annotations

import argparse
import statistics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per process (after one warm-up step)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=1024)
    ap.add_argument("--dropout", type=float, default=0.1)
    args = ap.parse_args()

    import torch
    import transformers

    from kexue.reproduce.recompute import measure

    base = dict(layers=args.layers, hidden=args.hidden, heads=args.heads, ffn=args.ffn, vocab=1000,
                dropout=args.dropout, seq=args.seq, batch=args.batch, steps=args.steps)
    configs = {
        "kexue plain": dict(impl="kexue", recompute="none"),
        "kexue recompute": dict(impl="kexue", recompute="kexue"),
        "kexue recompute every 2nd": dict(impl="kexue", recompute="kexue", every=2),
        "transformers plain": dict(impl="hf", recompute="none"),
        "transformers checkpointing": dict(impl="hf", recompute="hf"),
    }
    print(f"BERT config: {args.layers} layers, hidden {args.hidden}, {args.heads} heads, FFN {args.ffn}, dropout "
          f"{args.dropout}; batch {args.batch} x {args.seq} tokens; one thread; torch {torch.__version__}, "
          f"transformers {transformers.__version__}; {args.rounds} rounds, each configuration a fresh process",
          flush=True)
    act: dict[str, list[float]] = {k: [] for k in configs}
    cpu: dict[str, list[float]] = {k: [] for k in configs}
    wall: dict[str, list[float]] = {k: [] for k in configs}
    for r in range(args.rounds):
        for name, extra in configs.items():
            rec = measure({**base, **extra})
            act[name].append(rec["activation"] / 2**20)
            cpu[name].append(statistics.median(rec["cpu"]))
            wall[name].append(statistics.median(rec["wall"]))
            print(f"  round {r + 1}: {name:28s} activation {act[name][-1]:8.1f} MiB   CPU {1e3 * cpu[name][-1]:7.0f} "
                  f"ms/step   wall {1e3 * wall[name][-1]:7.0f} ms/step", flush=True)
    a = {k: statistics.median(v) for k, v in act.items()}
    c = {k: statistics.median(v) for k, v in cpu.items()}
    w = {k: statistics.median(v) for k, v in wall.items()}
    print(f"\n{'':28s} {'activation MiB':>14s} {'CPU ms/step':>12s} {'wall ms/step':>13s}")
    for k in configs:
        print(f"{k:28s} {a[k]:14.1f} {1e3 * c[k]:12.0f} {1e3 * w[k]:13.0f}")

    def ok(flag: bool) -> str:
        return "meets target" if flag else "MISSES target"

    def parity(ratio: float) -> str:  # peak RSS and CPU time repeat to about 1-2 % between runs
        return "meets target" if ratio >= 1 else ("parity within the 2 % noise" if ratio >= 0.98 else "MISSES target")

    saving = a["kexue plain"] / a["kexue recompute"]
    overhead = c["kexue recompute"] / c["kexue plain"] - 1
    hf_saving = a["transformers plain"] / a["transformers checkpointing"]
    hf_overhead = c["transformers checkpointing"] / c["transformers plain"] - 1
    mem_vs_hf = a["transformers checkpointing"] / a["kexue recompute"]
    time_vs_hf = c["transformers checkpointing"] / c["kexue recompute"]
    print("\nratios")
    print(f"  activation memory, kexue plain / kexue recompute:              {saving:5.2f}x  (>= 3x: {ok(saving >= 3)})")
    print(f"  extra CPU time of kexue recompute:                            {100 * overhead:+5.1f} %  (<= 35 %: "
          f"{ok(overhead <= 0.35)})")
    print(f"  activation memory, transformers ckpt / kexue recompute:       {mem_vs_hf:5.3f}x  (>= 1: "
          f"{parity(mem_vs_hf)})")
    print(f"  CPU time, transformers ckpt / kexue recompute:                {time_vs_hf:5.3f}x  (>= 1: "
          f"{parity(time_vs_hf)})")
    print(f"  for reference, transformers: saving {hf_saving:.2f}x at {100 * hf_overhead:+.1f} % time; kexue every "
          f"2nd block: saving {a['kexue plain'] / a['kexue recompute every 2nd']:.2f}x at "
          f"{100 * (c['kexue recompute every 2nd'] / c['kexue plain'] - 1):+.1f} % time")


if __name__ == "__main__":
    main()
